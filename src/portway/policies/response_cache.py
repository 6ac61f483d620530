"""Response cache: answers repeated GET/HEAD requests from the local or the shared cache.

Key: the route, the method, the path, the query (sorted), plus any chosen variables. The request
may opt out (``Cache-Control: no-store`` / ``no-cache``); responses marked ``no-store``,
``private``, ``no-cache``, ``max-age=0``, ``Vary: *`` or carrying ``Set-Cookie`` are never stored.
For a response with ``Vary``, the named request headers become part of a second-level key.

Invalidation (the ``cache_invalidation`` policy) works by generations, since hashed keys cannot be
listed: a response cache with ``invalidation_key`` reads two generation tokens from its cache —
one for the API, one for the rendered ``invalidation_key`` — and puts them into every entry's key;
invalidating replaces a token, so the entries made under the old one are never found again (they
expire with their TTL). A cache without ``invalidation_key`` reads no token and cannot be
invalidated."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from portway.config.models import HTTP_METHODS
from portway.errors import StoreUnavailable
from portway.policies._headers import check_header_name
from portway.policies.base import Build, Policy, PolicyConfig, add_reply_header
from portway.policies.contract import HeaderMap, PolicyContext, Reply
from portway.policies.variables import VariableTemplate, as_text, compile_variable
from portway.stores.cache import Cache

_KEY = "_portway.response_cache.key"
_HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "content-length", "age", "x-cache",
    }
)  # fmt: skip
GENERATION_TTL = 86400 + 60
"""Longer than any entry lives (``ttl_seconds`` ≤ 86400): a token that expires takes no live
entry's key back to the default one."""
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*(\d+)")


def _directives(value: str | None) -> set[str]:
    return {d.strip().split("=", 1)[0].lower() for d in (value or "").split(",") if d.strip()}


class ResponseCacheConfig(PolicyConfig):
    ttl_seconds: Annotated[int, Field(ge=1, le=86400, description="how long an entry lives")] = 60
    storage: Annotated[
        Literal["local", "distributed"],
        Field(description="this worker's memory, or the cache shared by the workers"),
    ] = "local"
    methods: Annotated[
        list[str], Field(min_length=1, description="methods whose responses are cached")
    ] = Field(default_factory=lambda: ["GET", "HEAD"])
    key_variables: Annotated[
        list[str], Field(max_length=20, description="variables added to the key (header.X ...)")
    ] = Field(default_factory=list)
    vary_headers: Annotated[
        list[str], Field(max_length=20, description="request headers always added to the key")
    ] = Field(default_factory=list)
    statuses: Annotated[
        list[int], Field(min_length=1, description="response statuses that are stored")
    ] = Field(default_factory=lambda: [200])
    max_body_bytes: Annotated[
        int, Field(ge=0, le=64 << 20, description="larger responses are not stored")
    ] = 1 << 20
    invalidation_key: Annotated[
        str | None,
        Field(
            max_length=500,
            description="${variable} template grouping entries for cache_invalidation "
            "(e.g. ${path}); unset: the entries cannot be invalidated",
        ),
    ] = None

    @field_validator("invalidation_key")
    @classmethod
    def _invalidation_key(cls, value: str | None) -> str | None:
        if value is not None:
            check_group_template(value)
        return value

    _methods = field_validator("methods")(classmethod(lambda cls, v: upper_methods(v)))

    @field_validator("key_variables")
    @classmethod
    def _variables(cls, value: list[str]) -> list[str]:
        for name in value:
            if compile_variable(name).needs_body:
                raise ValueError(f"{name!r} reads the body; cache keys may not")
        return value

    @field_validator("vary_headers")
    @classmethod
    def _vary(cls, value: list[str]) -> list[str]:
        return [check_header_name(v).lower() for v in value]

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        for status in value:
            if not 200 <= status <= 599:
                raise ValueError(f"{status} is not a cacheable status")
        return value


def upper_methods(value: list[str]) -> list[str]:
    upper = [m.upper() for m in value]
    for method in upper:
        if method not in HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {method!r}")
    return upper


def check_group_template(text: str) -> str:
    """A template that groups entries: any variable that does not read the body."""
    for variable in VariableTemplate(text).variables:
        if variable.needs_body:
            raise ValueError(f"${{{variable.source}}} reads the body; invalidation keys may not")
    return text


def _same(text: str) -> str:
    return text


def render_group(template: VariableTemplate, ctx: PolicyContext, now: float) -> str:
    return template.render_now(ctx, now, _same)


def generation_keys(project: str, api: str, group: str | None) -> list[str]:
    """The generation tokens an entry of ``project/api`` (in ``group``) depends on."""
    keys = [f"rcache:gen:{project}/{api}"]
    if group is not None:
        digest = hashlib.sha256(group.encode("utf-8", "surrogateescape")).hexdigest()
        keys.append(f"rcache:gen:{project}/{api}:{digest}")
    return keys


async def new_generation(cache: Cache, key: str) -> None:
    await cache.set(key, secrets.token_hex(8).encode(), ttl=GENERATION_TTL)


def encode_entry(meta: dict[str, Any], body: bytes) -> bytes:
    return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + body


def decode_entry(raw: bytes) -> tuple[dict[str, Any], bytes] | None:
    head, sep, body = raw.partition(b"\n")
    if not sep:
        return None
    try:
        meta = json.loads(head)
    except ValueError:
        return None
    return (meta, body) if isinstance(meta, dict) else None


def _vary_key(base: str, names: list[str], headers: HeaderMap) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"=" + ",".join(headers.get_all(name)).encode() + b"\n")
    return f"{base}:vary:{digest.hexdigest()}"


class ResponseCachePolicy(Policy[ResponseCacheConfig]):
    type_name = "response_cache"
    summary = "Serve repeated GET/HEAD requests from a local or shared response cache."
    config_model = ResponseCacheConfig
    errors = {}
    __slots__ = ("_group", "_variables")

    def __init__(self, config: ResponseCacheConfig, build: Build) -> None:
        super().__init__(config, build)
        self._variables = [compile_variable(v) for v in config.key_variables]
        key = config.invalidation_key
        self._group = VariableTemplate(key) if key is not None else None

    @property
    def _cache(self) -> Cache:
        services = self.services
        return services.cache if self.config.storage == "distributed" else services.local_cache

    async def _generations(self, ctx: PolicyContext, now: float) -> list[str]:
        if self._group is None:
            return []
        group = render_group(self._group, ctx, now)
        keys = generation_keys(ctx.project, ctx.api, group)
        tokens = await asyncio.gather(*(self._cache.get(k) for k in keys))
        return [(t or b"0").decode("ascii", "replace") for t in tokens]

    def _base_key(self, ctx: PolicyContext, now: float, generations: list[str]) -> str:
        req = ctx.request
        digest = hashlib.sha256()
        parts: list[str] = [self.build.label, self.name, req.method, req.path, *generations]
        parts += [f"{k}={v}" for k, v in sorted(req.query)]
        parts += [f"{v.source}={as_text(v.resolve_now(ctx, now))}" for v in self._variables]
        parts += [f"{h}={','.join(req.headers.get_all(h))}" for h in self.config.vary_headers]
        for part in parts:
            digest.update(part.encode("utf-8", "surrogateescape") + b"\x00")
        return "rcache:" + digest.hexdigest()

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        req = ctx.request
        if req.method not in self.config.methods:
            return None
        request_cc = _directives(req.headers.get("cache-control"))
        now = self.services.clock()
        try:
            generations = await self._generations(ctx, now)
        except StoreUnavailable:
            return None  # without the tokens an entry could be stale: neither read nor store
        key = self._base_key(ctx, now, generations)
        if "no-store" not in request_cc:
            ctx.variables[_KEY] = key
        if request_cc & {"no-store", "no-cache"}:
            add_reply_header(ctx, "X-Cache", "BYPASS")
            return None
        try:
            hit = await self._lookup(key, req.headers)
        except StoreUnavailable:
            hit = None
        if hit is None:
            add_reply_header(ctx, "X-Cache", "MISS")
            return None
        meta, body = hit
        headers: list[tuple[str, str]] = [(str(k), str(v)) for k, v in meta.get("headers", [])]
        headers.append(("Age", str(max(0, int(now - float(meta.get("stored_at", now)))))))
        headers.append(("X-Cache", "HIT"))
        content_type = str(meta.get("content_type") or "application/octet-stream")
        ctx.variables.pop(_KEY, None)
        return Reply(int(meta["status"]), body, headers, content_type)

    async def _lookup(self, key: str, headers: HeaderMap) -> tuple[dict[str, Any], bytes] | None:
        raw = await self._cache.get(key)
        entry = decode_entry(raw) if raw is not None else None
        if entry is None:
            return None
        vary = entry[0].get("vary")
        if isinstance(vary, list) and vary:
            raw = await self._cache.get(_vary_key(key, [str(v) for v in vary], headers))
            entry = decode_entry(raw) if raw is not None else None
        return entry

    async def after_response(self, ctx: PolicyContext) -> None:
        key = ctx.variables.get(_KEY)
        response = ctx.response
        if key is None or response is None or response.status not in self.config.statuses:
            return
        headers = response.headers
        cc = headers.get("cache-control")
        if _directives(cc) & {"no-store", "private", "no-cache"} or "set-cookie" in headers:
            return
        ttl = self.config.ttl_seconds
        found = _MAX_AGE.search((cc or "").lower())
        if found:
            ttl = min(ttl, int(found.group(1)))
        if ttl <= 0:
            return
        vary = sorted(
            {v.strip().lower() for value in headers.get_all("vary") for v in value.split(",")}
            - {""}
        )
        if "*" in vary:
            return
        declared = headers.get("content-length")
        if response.body_override is None and (
            declared is None or not declared.isdigit() or int(declared) > self.config.max_body_bytes
        ):
            return  # never buffer a body of unknown or excessive size just to cache it
        body = await response.body()
        if len(body) > self.config.max_body_bytes:
            return
        meta: dict[str, Any] = {
            "status": response.status,
            "headers": [
                [k, v]
                for k, v in headers.items()
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-type"
            ],
            "content_type": headers.get("content-type"),
            "stored_at": self.services.clock(),
            "vary": [],
        }
        try:
            if vary:
                await self._cache.set(key, encode_entry({"vary": vary}, b""), ttl=ttl)
                key = _vary_key(key, vary, ctx.request.headers)
            await self._cache.set(key, encode_entry(meta, body), ttl=ttl)
        except StoreUnavailable:
            return

"""API call: call another service while the request passes, and put parts of its answer into
variables (for later policies, read as ``var.NAME``) or request headers (for the backend).

The URL, header values and body are ``${variable}`` templates (``variables.py``); each value is
escaped where it goes (percent-encoded in the URL, cleaned in a header, escaped for the body's
content type), never evaluated. The URL's scheme, host and port are fixed text: a placeholder may
only sit in the path or query, so the manager's backend address rule (``backend_deny_cidrs`` /
``backend_allow_cidrs``, applied to this URL like to a backend's) sees the address that is called.
Redirects are not followed.

With ``cache_seconds`` the answer is kept in the shared cache under a hash of the rendered
request (method, URL, headers, body), so a secret in a header is never a cache key in clear.
A failure — the call cannot be made, times out, answers more than ``max_response_bytes``, or (with
``fail_on_error_status``) a status of 400 or more — either refuses the request
(``on_failure: deny``, status ``deny_status``) or goes on without the outputs (``continue``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field, field_validator, model_validator

from portway.config.base import FrozenModel
from portway.config.models import HTTP_METHODS
from portway.errors import StoreUnavailable
from portway.policies._headers import check_header_name, check_header_value, clean_header_value
from portway.policies.base import Build, Deny, ErrorSpec, Phase, Policy, PolicyConfig
from portway.policies.contract import HeaderMap, PolicyContext, Reply
from portway.policies.jsonpath import JsonPath, compile_jsonpath, load_json
from portway.policies.render import escape_for
from portway.policies.response_cache import decode_entry, encode_entry
from portway.policies.variables import VariableTemplate, as_text

MAX_OUTPUTS = 20
VARIABLE_NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
_GATEWAY_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def check_call_url(url: str) -> str:
    """An http(s) URL whose scheme, host and port carry no placeholder."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    parts = urlsplit(url)
    if "$" in parts.netloc or "{" in parts.netloc:
        raise ValueError("placeholders may only be used in the path and query, not the host")
    if not parts.hostname or "@" in parts.netloc:
        raise ValueError("must name a host (and no user or password)")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("has a malformed port") from None
    if any(c in url for c in " \r\n\t\x00"):
        raise ValueError("must not contain spaces or control characters")
    VariableTemplate(url)
    return url


class Output(FrozenModel):
    source: Annotated[
        Literal["status", "body", "header", "json"],
        Field(description="the answer's status, body text, a header, or a JSONPath into it"),
    ]
    path: Annotated[
        str | None, Field(max_length=500, description="header name or JSONPath ($.a.b)")
    ] = None
    variable: Annotated[
        str | None,
        Field(pattern=VARIABLE_NAME, description="store the value as var.NAME"),
    ] = None
    header: Annotated[
        str | None,
        Field(max_length=256, description="set the value as this header (request or response)"),
    ] = None

    @model_validator(mode="after")
    def _rules(self) -> Output:
        if self.source in ("header", "json") and not self.path:
            raise ValueError(f"source {self.source} needs a path")
        if self.source in ("status", "body") and self.path is not None:
            raise ValueError(f"source {self.source} takes no path")
        if self.source == "header" and self.path is not None:
            check_header_name(self.path)
        if self.source == "json" and self.path is not None:
            compile_jsonpath(self.path)
        if self.variable is None and self.header is None:
            raise ValueError("give a variable, a header or both")
        if self.header is not None:
            check_header_name(self.header)
            if self.header.lower() in _GATEWAY_HEADERS:
                raise ValueError(f"the {self.header} header is the gateway's to set")
        return self


class ApiCallConfig(PolicyConfig):
    url: Annotated[
        str,
        Field(max_length=2000, description="http(s) URL; ${variable} only in path and query"),
    ]
    method: Annotated[str, Field(description="HTTP method")] = "GET"
    headers: Annotated[
        dict[str, str], Field(max_length=50, description="headers sent; values are templates")
    ] = Field(default_factory=dict)
    body: Annotated[
        str | None, Field(max_length=64 * 1024, description="body template (escaped for it)")
    ] = None
    content_type: Annotated[str, Field(max_length=200, description="Content-Type of the body")] = (
        "application/json"
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=60, description="for the whole call")] = 5.0
    cache_seconds: Annotated[
        float, Field(ge=0, le=86400, description="reuse an answer from the shared cache (0: never)")
    ] = 0.0
    max_response_bytes: Annotated[
        int, Field(ge=0, le=8 << 20, description="a larger answer is a failure")
    ] = 1 << 20
    fail_on_error_status: Annotated[
        bool, Field(description="an answer with status 400 or more is a failure")
    ] = True
    outputs: Annotated[
        list[Output], Field(max_length=MAX_OUTPUTS, description="what to take from the answer")
    ] = Field(default_factory=list)
    on_failure: Annotated[
        Literal["deny", "continue"], Field(description="refuse the request, or go on without")
    ] = "deny"
    deny_status: Annotated[int, Field(ge=400, le=599, description="status of a refusal")] = 502
    deny_message: Annotated[
        str, Field(min_length=1, max_length=500, description="message of a refusal")
    ] = "a service the request depends on failed"

    _url = field_validator("url")(classmethod(lambda cls, v: check_call_url(v)))

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {value!r}")
        return value.upper()

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, template in value.items():
            check_header_name(name)
            check_header_value(template)
            if name.lower() in _GATEWAY_HEADERS:
                raise ValueError(f"the {name} header is the gateway's to set")
            VariableTemplate(template)
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        if value is not None:
            VariableTemplate(value)
        return value

    _type = field_validator("content_type")(classmethod(lambda cls, v: check_header_value(v)))


class _Answer:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


class _Failed(Exception):
    pass


def _url_value(text: str) -> str:
    # "/" and "." encoded too: a value stays inside its path segment, and the HTTP client, which
    # removes dot segments, cannot turn ".." from a client into a step up the called path
    return quote(text, safe="").replace(".", "%2E")


class ApiCallPolicy(Policy[ApiCallConfig]):
    type_name = "api_call"
    summary = "Call another service and put parts of its answer into variables or headers."
    config_model = ApiCallConfig
    phases = frozenset({Phase.REQUEST, Phase.RESPONSE})
    errors = {"api_call_failed": ErrorSpec(502, "a service the request depends on failed")}
    __slots__ = ("_body", "_headers", "_paths", "_url")

    def __init__(self, config: ApiCallConfig, build: Build) -> None:
        super().__init__(config, build)
        self._url = VariableTemplate(config.url)
        self._headers = [(k, VariableTemplate(v)) for k, v in config.headers.items()]
        self._body = VariableTemplate(config.body) if config.body is not None else None
        self._paths: dict[str, JsonPath] = {
            o.path: compile_jsonpath(o.path)
            for o in config.outputs
            if o.source == "json" and o.path is not None
        }

    async def _render(self, ctx: PolicyContext) -> tuple[str, list[tuple[str, str]], bytes | None]:
        now = self.services.clock()
        url = await self._url.render(ctx, now, _url_value)
        headers = [(k, await t.render(ctx, now, clean_header_value)) for k, t in self._headers]
        body: bytes | None = None
        if self._body is not None:
            content_type = self.config.content_type.lower()
            text = await self._body.render(ctx, now, lambda v: escape_for(content_type, v))
            body = text.encode()
            headers.append(("Content-Type", self.config.content_type))
        return url, headers, body

    def _cache_key(self, url: str, headers: list[tuple[str, str]], body: bytes | None) -> str:
        digest = hashlib.sha256()
        for part in (self.build.label, self.name, self.config.method, url):
            digest.update(part.encode("utf-8", "surrogateescape") + b"\x00")
        for name, value in headers:
            digest.update(f"{name.lower()}:{value}".encode("utf-8", "surrogateescape") + b"\x00")
        digest.update(body or b"")
        return "apicall:" + digest.hexdigest()

    async def _call(self, url: str, headers: list[tuple[str, str]], body: bytes | None) -> _Answer:
        cfg = self.config
        limit = cfg.max_response_bytes
        try:
            async with (
                asyncio.timeout(cfg.timeout_seconds),  # the whole call, a slow drip included
                self.services.http().stream(
                    cfg.method,
                    url,
                    headers=[*headers, ("Accept-Encoding", "identity")],
                    content=body,
                    timeout=cfg.timeout_seconds,
                ) as response,
            ):
                # raw bytes, counted as they arrive: a compressed answer could expand past any
                # limit inside one chunk, so one is a failure rather than decoded
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding != "identity":
                    raise _Failed("the answer is compressed")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise _Failed("the answer is too large")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > limit:
                        raise _Failed("the answer is too large")
                    chunks.append(chunk)
                return _Answer(
                    response.status_code, list(response.headers.items()), b"".join(chunks)
                )
        except TimeoutError:
            raise _Failed("timed out") from None
        except httpx.HTTPError as exc:
            raise _Failed(type(exc).__name__) from None

    async def _answer(self, ctx: PolicyContext) -> _Answer:
        url, headers, body = await self._render(ctx)
        cfg = self.config
        key = self._cache_key(url, headers, body) if cfg.cache_seconds > 0 else None
        cache = self.services.cache
        if key is not None:
            try:
                raw = await cache.get(key)
            except StoreUnavailable:
                raw = None
            entry = decode_entry(raw) if raw is not None else None
            if entry is not None:
                meta, cached = entry
                return _Answer(
                    int(meta["status"]), [(str(k), str(v)) for k, v in meta["headers"]], cached
                )
        answer = await self._call(url, headers, body)
        if cfg.fail_on_error_status and answer.status >= 400:
            raise _Failed(f"status {answer.status}")
        if key is not None:
            meta = {"status": answer.status, "headers": [list(h) for h in answer.headers]}
            with contextlib.suppress(StoreUnavailable):
                await cache.set(key, encode_entry(meta, answer.body), ttl=cfg.cache_seconds)
        return answer

    def _value(self, output: Output, answer: _Answer) -> object:
        if output.source == "status":
            return answer.status
        if output.source == "body":
            return answer.body.decode("utf-8", "replace")
        if output.source == "header":
            return answer.header(output.path or "")
        try:
            document = load_json(answer.body)
        except ValueError:
            return None
        return self._paths[output.path or ""].first(document)[1]

    async def _run(self, ctx: PolicyContext, target: HeaderMap) -> None:
        cfg = self.config
        try:
            answer = await self._answer(ctx)
        except _Failed as exc:
            ctx.variables[f"{self.name}.error"] = str(exc)
            if cfg.on_failure == "deny":
                raise Deny(
                    "api_call_failed", status=cfg.deny_status, message=cfg.deny_message
                ) from None
            return
        for output in cfg.outputs:
            value = self._value(output, answer)
            if output.variable is not None:
                ctx.variables[output.variable] = value
            if output.header is not None:
                text = as_text(value)
                if text is None:
                    target.remove(output.header)
                else:
                    target.set(output.header, clean_header_value(text))

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        await self._run(ctx, ctx.request.headers)
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        if ctx.response is not None:
            await self._run(ctx, ctx.response.headers)
        return None

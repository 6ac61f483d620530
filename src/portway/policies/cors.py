"""CORS: the gateway answers preflight requests itself and adds the CORS headers to responses
(and to error answers) for allowed origins."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from portway.config.models import HTTP_METHODS
from portway.policies._headers import check_header_name
from portway.policies.base import Build, Deny, ErrorSpec, Policy, PolicyConfig, add_reply_header
from portway.policies.contract import PolicyContext, Reply

_ORIGIN = re.compile(r"^https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def _origin_pattern(origin: str) -> re.Pattern[str]:
    scheme, rest = origin.split("://", 1)
    if rest.startswith("*."):
        host = re.escape(rest[2:])
        return re.compile(rf"^{scheme}://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.{host}$", re.I)
    return re.compile(rf"^{re.escape(origin)}$", re.I)


class CorsConfig(PolicyConfig):
    allowed_origins: Annotated[
        list[str],
        Field(
            min_length=1,
            max_length=500,
            description="origins allowed: 'https://app.example', 'https://*.example' or '*'",
        ),
    ]
    allowed_methods: Annotated[list[str], Field(min_length=1, description="methods allowed")] = (
        Field(default_factory=lambda: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    )
    allowed_headers: Annotated[
        list[str], Field(max_length=200, description="request headers allowed; '*' reflects")
    ] = Field(default_factory=lambda: ["*"])
    exposed_headers: Annotated[
        list[str], Field(max_length=200, description="response headers scripts may read")
    ] = Field(default_factory=list)
    allow_credentials: Annotated[bool, Field(description="allow cookies and credentials")] = False
    max_age: Annotated[
        int, Field(ge=0, le=86400, description="seconds a preflight answer may be cached")
    ] = 3600

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        return value

    @field_validator("allowed_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        upper = [m.upper() for m in value]
        for method in upper:
            if method not in HTTP_METHODS:
                raise ValueError(f"unknown HTTP method {method!r}")
        return upper

    @field_validator("allowed_headers", "exposed_headers")
    @classmethod
    def _headers(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*":
                check_header_name(name)
        return value

    @model_validator(mode="after")
    def _rules(self) -> CorsConfig:
        if "*" in self.allowed_origins and self.allow_credentials:
            raise ValueError("allowed_origins '*' cannot be combined with allow_credentials")
        return self


class CorsPolicy(Policy[CorsConfig]):
    type_name = "cors"
    summary = "Answer CORS preflight requests and add CORS headers for allowed origins."
    config_model = CorsConfig
    errors = {"cors_rejected": ErrorSpec(403, "this cross-origin request is not allowed")}
    __slots__ = ("_any", "_headers", "_patterns")

    def __init__(self, config: CorsConfig, build: Build) -> None:
        super().__init__(config, build)
        self._any = "*" in config.allowed_origins
        self._patterns = [_origin_pattern(o) for o in config.allowed_origins if o != "*"]
        self._headers = {h.lower() for h in config.allowed_headers}

    def _allowed(self, origin: str) -> bool:
        return self._any or any(p.fullmatch(origin) for p in self._patterns)

    def _allow_origin(self, origin: str) -> str:
        # with credentials the exact origin must be echoed; '*' only when no list applies
        return "*" if self._any and not self.config.allow_credentials else origin

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        origin = ctx.request.headers.get("origin")
        if origin is None:
            return None
        wanted_method = ctx.request.headers.get("access-control-request-method")
        if ctx.request.method == "OPTIONS" and wanted_method is not None:
            return self._preflight(origin, wanted_method, ctx)
        if not self._allowed(origin):
            return None  # no CORS headers: the browser refuses to expose the response
        add_reply_header(ctx, "Access-Control-Allow-Origin", self._allow_origin(origin))
        add_reply_header(ctx, "Vary", "Origin")
        if cfg.allow_credentials:
            add_reply_header(ctx, "Access-Control-Allow-Credentials", "true")
        if cfg.exposed_headers:
            add_reply_header(ctx, "Access-Control-Expose-Headers", ", ".join(cfg.exposed_headers))
        return None

    def _preflight(self, origin: str, method: str, ctx: PolicyContext) -> Reply:
        cfg = self.config
        if not self._allowed(origin) or method.upper() not in cfg.allowed_methods:
            raise Deny("cors_rejected")
        requested = [
            h.strip()
            for h in (ctx.request.headers.get("access-control-request-headers") or "").split(",")
            if h.strip()
        ]
        if "*" not in self._headers and any(h.lower() not in self._headers for h in requested):
            raise Deny("cors_rejected")
        if any(not _TOKEN.fullmatch(h) for h in requested):
            raise Deny("cors_rejected")
        headers = [
            ("Access-Control-Allow-Origin", self._allow_origin(origin)),
            ("Access-Control-Allow-Methods", ", ".join(cfg.allowed_methods)),
            ("Access-Control-Max-Age", str(cfg.max_age)),
            ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ]
        if requested:
            headers.append(("Access-Control-Allow-Headers", ", ".join(requested)))
        if cfg.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return Reply(204, b"", headers, content_type="text/plain")


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")

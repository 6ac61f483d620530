"""OAuth2 token introspection (RFC 7662): opaque bearer tokens are checked with the authorization
server; answers are cached in the shared cache under a hash of the token (never the token)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Annotated, Any, Literal

import httpx
from pydantic import Field, field_validator

from portway.errors import StoreUnavailable
from portway.policies.base import Deny, ErrorSpec, Policy
from portway.policies.consumers import (
    AUTH_ERRORS,
    AuthOptions,
    apply_identity,
    scrub_identity_headers,
)
from portway.policies.contract import PolicyContext, Reply
from portway.policies.jwt_auth import check_url, roles_of
from portway.policies.secrets import WRITE_ONLY

MAX_ANSWER_BYTES = 256 * 1024


class IntrospectionConfig(AuthOptions):
    introspection_url: Annotated[
        str, Field(max_length=2000, description="the authorization server's introspection endpoint")
    ]
    client_id: Annotated[
        str, Field(min_length=1, max_length=200, description="the gateway's client id at the AS")
    ]
    client_secret: Annotated[
        str,
        Field(
            min_length=1,
            max_length=500,
            description="the gateway's client secret",
            json_schema_extra=WRITE_ONLY,
        ),
    ]
    cache_seconds: Annotated[
        float, Field(ge=0, le=3600, description="how long an answer is reused (0: never)")
    ] = 60.0
    timeout_seconds: Annotated[float, Field(gt=0, le=60, description="per introspection call")] = (
        5.0
    )
    required_scopes: Annotated[
        list[str], Field(max_length=50, description="scopes the token must carry (all of them)")
    ] = Field(default_factory=list)
    consumer_field: Annotated[
        Literal["sub", "username", "client_id"],
        Field(description="field of the answer that names the consumer"),
    ] = "sub"
    roles_field: Annotated[
        str | None, Field(max_length=100, description="field with roles (list or space-separated)")
    ] = None
    max_token_length: Annotated[
        int, Field(ge=16, le=16384, description="longer tokens are refused without a call")
    ] = 4096

    _url = field_validator("introspection_url")(classmethod(lambda cls, v: check_url(v)))


class IntrospectionPolicy(Policy[IntrospectionConfig]):
    type_name = "oauth2_introspection"
    summary = "Validate opaque OAuth2 bearer tokens with the authorization server (RFC 7662)."
    config_model = IntrospectionConfig
    errors = {
        **AUTH_ERRORS,
        "missing_credentials": ErrorSpec(401, "a bearer token is required"),
        "invalid_token": ErrorSpec(401, "the token is not active"),
        "insufficient_scope": ErrorSpec(403, "the token lacks a required scope"),
        "introspection_unavailable": ErrorSpec(503, "the token cannot be checked right now"),
    }

    async def _introspect(self, token: str) -> dict[str, Any]:
        cfg = self.config
        try:
            response = await self.services.http().post(
                cfg.introspection_url,
                data={"token": token, "token_type_hint": "access_token"},
                auth=(cfg.client_id, cfg.client_secret),
                headers={"Accept": "application/json"},
                timeout=cfg.timeout_seconds,
            )
        except httpx.HTTPError:
            raise Deny("introspection_unavailable") from None
        if response.status_code != 200 or len(response.content) > MAX_ANSWER_BYTES:
            raise Deny("introspection_unavailable")
        try:
            answer = json.loads(response.content)
        except ValueError:
            raise Deny("introspection_unavailable") from None
        if not isinstance(answer, dict):
            raise Deny("introspection_unavailable")
        return answer

    async def answer_for(self, token: str) -> dict[str, Any]:
        cfg = self.config
        cache = self.services.cache
        key = "introspect:" + hashlib.sha256(token.encode()).hexdigest()
        now = self.services.clock()
        if cfg.cache_seconds > 0:
            try:
                cached = await cache.get(key)
            except StoreUnavailable:
                cached = None
            if cached is not None:
                answer: dict[str, Any] = json.loads(cached)
                return answer
        answer = await self._introspect(token)
        if cfg.cache_seconds > 0:
            ttl = cfg.cache_seconds
            exp = answer.get("exp")
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                ttl = min(ttl, exp - now)
            if ttl > 0:
                with contextlib.suppress(StoreUnavailable):
                    await cache.set(key, json.dumps(answer).encode(), ttl=ttl)
        return answer

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        scrub_identity_headers(ctx, cfg)
        challenge = [("WWW-Authenticate", "Bearer")]
        raw = ctx.request.headers.get("authorization") or ""
        scheme, _, token = raw.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Deny("missing_credentials", headers=challenge)
        if len(token) > cfg.max_token_length:
            raise Deny("invalid_token", headers=challenge)
        answer = await self.answer_for(token)
        now = self.services.clock()
        exp = answer.get("exp")
        expired = isinstance(exp, int | float) and not isinstance(exp, bool) and exp <= now
        if answer.get("active") is not True or expired:
            raise Deny("invalid_token", headers=challenge)
        scope = answer.get("scope")
        scopes = set(scope.split()) if isinstance(scope, str) else set()
        if not set(cfg.required_scopes) <= scopes:
            raise Deny("insufficient_scope")
        subject = answer.get(cfg.consumer_field)
        if not isinstance(subject, str) or not subject:
            raise Deny("invalid_token", headers=challenge)
        roles = roles_of(answer.get(cfg.roles_field)) if cfg.roles_field else []
        apply_identity(ctx, cfg, subject, roles, self.build.consumers)
        ctx.variables["oauth2.scopes"] = sorted(scopes)
        if cfg.strip_credential:
            ctx.request.headers.remove("authorization")
        return None

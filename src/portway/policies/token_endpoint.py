"""A token endpoint: the gateway issues JWTs (RFC 6749 client_credentials, password and
refresh_token grants) for consumers of its own store. Put it on the endpoint that should answer
(e.g. ``POST /oauth/token``); the JWT policy verifies what it issues with the same key.

With ``key_source: environment`` it signs with the environment's current signing key (generated
and rotated by the manager, ``kid`` in the header) instead of a key in its config; workers publish
the public keys as a JWKS, and the ``jwt`` policy verifies with ``environment_keys``."""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import jwt
from jwt.exceptions import InvalidTokenError
from pydantic import Field, model_validator

from portway.config.revision import ConsumerSnapshot, CredentialSnapshot
from portway.policies._keys import (
    HMAC_ALGORITHMS,
    MIN_SECRET_LENGTH,
    Algorithm,
    key_fits,
    load_private_key,
)
from portway.policies.base import Build, Deny, ErrorSpec, Policy, PolicyConfig
from portway.policies.basic_auth import authenticate, parse_basic
from portway.policies.consumers import AUTH_ERRORS, check_address, check_consumer
from portway.policies.contract import PolicyContext, Reply
from portway.policies.secrets import WRITE_ONLY

Grant = Literal["client_credentials", "password", "refresh_token"]
MAX_FORM_BYTES = 64 * 1024


class TokenEndpointConfig(PolicyConfig):
    key_source: Annotated[
        Literal["config", "environment"],
        Field(
            description="config: sign with algorithm and secret/private_key below; environment: "
            "with the environment's current signing key (rotated by the manager)"
        ),
    ] = "config"
    algorithm: Annotated[Algorithm, Field(description="signing algorithm of issued tokens")] = (
        "HS256"
    )
    secret: Annotated[
        str | None,
        Field(
            min_length=MIN_SECRET_LENGTH,
            max_length=4096,
            description="signing secret for HS*",
            json_schema_extra=WRITE_ONLY,
        ),
    ] = None
    private_key: Annotated[
        str | None,
        Field(
            max_length=20000,
            description="PEM private key for RS/PS/ES/EdDSA",
            json_schema_extra=WRITE_ONLY,
        ),
    ] = None
    key_id: Annotated[str | None, Field(max_length=200, description="'kid' of issued tokens")] = (
        None
    )
    issuer: Annotated[str, Field(min_length=1, max_length=500, description="'iss' claim")]
    audience: Annotated[str | None, Field(max_length=500, description="'aud' claim")] = None
    grants: Annotated[
        list[Grant], Field(min_length=1, description="grant types this endpoint accepts")
    ] = Field(default_factory=lambda: list[Grant](["client_credentials"]))
    access_token_seconds: Annotated[
        int, Field(ge=30, le=86400, description="lifetime of access tokens")
    ] = 3600
    refresh_token_seconds: Annotated[
        int, Field(ge=60, le=90 * 86400, description="lifetime of refresh tokens")
    ] = 14 * 86400
    scopes: Annotated[
        list[str], Field(max_length=100, description="scopes a client may ask for (empty: none)")
    ] = Field(default_factory=list)
    check_grant: Annotated[
        bool, Field(description="the consumer needs a grant for this API to get a token")
    ] = False

    @model_validator(mode="after")
    def _keys(self) -> TokenEndpointConfig:
        if len(set(self.grants)) != len(self.grants):
            raise ValueError("grants must not repeat")
        if self.key_source == "environment":
            given = {"algorithm", "secret", "private_key", "key_id"} & self.model_fields_set
            if given:
                raise ValueError(
                    f"{sorted(given)[0]} comes from the environment's signing key "
                    "(key_source: environment)"
                )
            return self
        hmac = self.algorithm in HMAC_ALGORITHMS
        if hmac and (self.secret is None or self.private_key is not None):
            raise ValueError(f"{self.algorithm} needs a secret and no private_key")
        if not hmac:
            if self.private_key is None or self.secret is not None:
                raise ValueError(f"{self.algorithm} needs a private_key and no secret")
            if not key_fits(self.algorithm, load_private_key(self.private_key)):
                raise ValueError(f"private_key does not fit {self.algorithm}")
        return self


class TokenEndpointPolicy(Policy[TokenEndpointConfig]):
    type_name = "token_endpoint"
    summary = "Issue JWTs to consumers (client_credentials, password, refresh_token grants)."
    config_model = TokenEndpointConfig
    errors = {
        "invalid_request": ErrorSpec(400, "the token request is malformed"),
        "invalid_client": ErrorSpec(401, "client authentication failed"),
        "invalid_grant": ErrorSpec(400, "the grant is invalid or expired"),
        "unsupported_grant_type": ErrorSpec(400, "this grant type is not supported"),
        "invalid_scope": ErrorSpec(400, "the requested scope is not allowed"),
        "method_not_allowed": ErrorSpec(405, "use POST"),
        "no_signing_key": ErrorSpec(503, "the environment has no signing key"),
        "address_not_allowed": AUTH_ERRORS["address_not_allowed"],
    }
    __slots__ = ("_key", "_verify_key")

    def __init__(self, config: TokenEndpointConfig, build: Build) -> None:
        super().__init__(config, build)
        if config.private_key is not None:
            self._key: Any = load_private_key(config.private_key)
            self._verify_key: Any = self._key.public_key()
        else:
            self._key = self._verify_key = config.secret

    async def _authenticate(
        self, username: str, password: str
    ) -> tuple[ConsumerSnapshot, CredentialSnapshot] | None:
        return await authenticate(self.build.consumers, self.services, username, password)

    def _check(
        self,
        ctx: PolicyContext,
        consumer: ConsumerSnapshot,
        code: str,
        credential: CredentialSnapshot | None = None,
    ) -> None:
        try:
            check_consumer(
                ctx,
                consumer,
                credential,
                self.services.clock(),
                require_grant=self.config.check_grant,
            )
        except Deny:
            raise Deny(code) from None
        check_address(ctx, self.build.consumers, consumer.name)

    def _scope(self, form: dict[str, str]) -> list[str]:
        requested = form.get("scope", "").split()
        if any(s not in self.config.scopes for s in requested):
            raise Deny("invalid_scope")
        return requested

    def _issue(self, consumer: ConsumerSnapshot, scopes: list[str], refresh: bool) -> Reply:
        cfg = self.config
        now = int(self.services.clock())
        base: dict[str, Any] = {"iss": cfg.issuer, "sub": consumer.name, "iat": now, "nbf": now}
        if cfg.audience:
            base["aud"] = cfg.audience
        key, algorithm, headers = self._signer()
        access = {
            **base,
            "exp": now + cfg.access_token_seconds,
            "jti": secrets.token_urlsafe(16),
            "roles": list(consumer.roles),
            "typ": "access",
        }
        if scopes:
            access["scope"] = " ".join(scopes)
        answer: dict[str, Any] = {
            "access_token": jwt.encode(access, key, algorithm=algorithm, headers=headers),
            "token_type": "Bearer",
            "expires_in": cfg.access_token_seconds,
        }
        if scopes:
            answer["scope"] = " ".join(scopes)
        if refresh and "refresh_token" in cfg.grants:
            claims = {
                **base,
                "exp": now + cfg.refresh_token_seconds,
                "jti": secrets.token_urlsafe(16),
                "typ": "refresh",
                "scope": " ".join(scopes),
            }
            answer["refresh_token"] = jwt.encode(claims, key, algorithm=algorithm, headers=headers)
        return Reply(
            200,
            json.dumps(answer).encode(),
            [("Cache-Control", "no-store"), ("Pragma", "no-cache")],
        )

    def _signer(self) -> tuple[Any, str, dict[str, Any] | None]:
        """The key, algorithm and extra JWT header tokens are signed with."""
        cfg = self.config
        if cfg.key_source == "environment":
            signing = self.build.consumers.keys.signing
            if signing is None:
                raise Deny("no_signing_key")
            return signing.key, signing.algorithm, {"kid": signing.kid}
        return self._key, cfg.algorithm, {"kid": cfg.key_id} if cfg.key_id else None

    def _verifier(self, token: str) -> tuple[Any, str]:
        """The key and algorithm a refresh token presented here must verify with."""
        cfg = self.config
        if cfg.key_source == "config":
            return self._verify_key, cfg.algorithm
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except InvalidTokenError:
            raise Deny("invalid_grant") from None
        found = (
            self.build.consumers.keys.find(kid, self.services.clock())
            if isinstance(kid, str)
            else None
        )
        if found is None:
            raise Deny("invalid_grant")
        return found.key, found.algorithm

    async def _form(self, ctx: PolicyContext) -> dict[str, str]:
        content_type = (ctx.request.headers.get("content-type") or "").lower()
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise Deny("invalid_request")
        length = ctx.request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
            raise Deny("invalid_request")
        body = await ctx.request.body()
        if len(body) > MAX_FORM_BYTES:
            raise Deny("invalid_request")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise Deny("invalid_request") from None
        form: dict[str, str] = {}
        for key, value in pairs:
            if key in form:
                raise Deny("invalid_request")  # RFC 6749 §3.2: parameters must not repeat
            form[key] = value
        return form

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        if ctx.request.method != "POST":
            raise Deny("method_not_allowed", headers=[("Allow", "POST")])
        form = await self._form(ctx)
        grant = form.get("grant_type")
        if not grant:
            raise Deny("invalid_request")
        if grant not in self.config.grants:
            raise Deny("unsupported_grant_type")
        if grant == "refresh_token":
            return await self._refresh(ctx, form)
        if grant == "client_credentials":
            basic = parse_basic(ctx.request.headers.get("authorization"))
            if basic is None and "client_id" in form:
                basic = (form["client_id"], form.get("client_secret", ""))
            if basic is None:
                raise Deny("invalid_client", headers=[("WWW-Authenticate", 'Basic realm="token"')])
            found = await self._authenticate(*basic)
            if found is None:
                raise Deny("invalid_client", headers=[("WWW-Authenticate", 'Basic realm="token"')])
            consumer, credential = found
            self._check(ctx, consumer, "invalid_client", credential)
            return self._issue(consumer, self._scope(form), refresh=False)
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            raise Deny("invalid_request")
        found = await self._authenticate(username, password)
        if found is None:
            raise Deny("invalid_grant")
        consumer, credential = found
        self._check(ctx, consumer, "invalid_grant", credential)
        return self._issue(consumer, self._scope(form), refresh=True)

    async def _refresh(self, ctx: PolicyContext, form: dict[str, str]) -> Reply:
        cfg = self.config
        token = form.get("refresh_token", "")
        if not token or len(token) > 8192:
            raise Deny("invalid_request")
        key, algorithm = self._verifier(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=cfg.issuer,
                audience=cfg.audience,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": cfg.audience is not None,
                },
            )
        except InvalidTokenError:
            raise Deny("invalid_grant") from None
        exp = claims.get("exp")
        if (
            claims.get("typ") != "refresh"
            or not isinstance(exp, int)
            or exp < self.services.clock()
        ):
            raise Deny("invalid_grant")
        consumer = self.build.consumers.by_name.get(str(claims.get("sub")))
        if consumer is None:
            raise Deny("invalid_grant")
        self._check(ctx, consumer, "invalid_grant")
        granted = str(claims.get("scope", "")).split()
        requested = form.get("scope")
        scopes = requested.split() if requested else granted
        if any(s not in granted for s in scopes):
            raise Deny("invalid_scope")
        return self._issue(consumer, scopes, refresh=True)

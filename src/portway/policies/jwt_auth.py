"""JWT validation: HS/RS/PS/ES/EdDSA with the algorithm pinned to its key type, keys from a
secret, a PEM public key or a JWKS URL (cached, refetched on an unknown ``kid`` at most once per
``jwks_min_refresh_seconds``), ``iss``/``aud``/``exp``/``nbf`` with leeway against the gateway's
clock, required claims, claims to headers. With ``environment_keys`` it verifies against the
environment's signing keys (the current one and those in their rotation overlap), which the
token endpoint signs with and the workers publish as a JWKS."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import httpx
import jwt
from jwt.exceptions import InvalidTokenError, PyJWKError
from pydantic import Field, field_validator, model_validator

from portway.policies._headers import check_header_name, clean_header_value
from portway.policies._keys import (
    HMAC_ALGORITHMS,
    MIN_SECRET_LENGTH,
    Algorithm,
    key_fits,
    load_public_key,
)
from portway.policies.base import Build, Deny, ErrorSpec, Policy
from portway.policies.consumers import (
    AUTH_ERRORS,
    AuthOptions,
    apply_identity,
    check_consumer,
    scrub_identity_headers,
)
from portway.policies.contract import PolicyContext, Reply
from portway.policies.resources import Memo, PolicyServices
from portway.policies.secrets import WRITE_ONLY

MAX_JWKS_BYTES = 1 << 20


def check_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return value


class JwtConfig(AuthOptions):
    algorithms: Annotated[
        list[Algorithm],
        Field(min_length=1, max_length=13, description="algorithms accepted; never 'none'"),
    ] = Field(default_factory=lambda: list[Algorithm](["RS256"]))
    secret: Annotated[
        str | None,
        Field(
            min_length=MIN_SECRET_LENGTH,
            max_length=4096,
            description="shared secret for HS* algorithms",
            json_schema_extra=WRITE_ONLY,
        ),
    ] = None
    public_key: Annotated[
        str | None, Field(max_length=20000, description="PEM public key for RS/PS/ES/EdDSA")
    ] = None
    jwks_url: Annotated[
        str | None, Field(max_length=2000, description="URL of the issuer's JWKS document")
    ] = None
    environment_keys: Annotated[
        bool,
        Field(
            description="verify with the environment's signing keys (managed by the manager; "
            "the key named by the token's 'kid', with its own algorithm)"
        ),
    ] = False
    jwks_cache_seconds: Annotated[
        float, Field(ge=10, le=86400, description="how long a fetched JWKS is used")
    ] = 300.0
    jwks_min_refresh_seconds: Annotated[
        float, Field(ge=1, le=3600, description="least time between two JWKS fetches")
    ] = 30.0
    issuers: Annotated[
        list[str], Field(max_length=20, description="accepted 'iss' values (empty: any)")
    ] = Field(default_factory=list)
    audiences: Annotated[
        list[str], Field(max_length=20, description="accepted 'aud' values (empty: not checked)")
    ] = Field(default_factory=list)
    leeway_seconds: Annotated[
        float, Field(ge=0, le=300, description="clock skew tolerated on exp/nbf")
    ] = 30.0
    required_claims: Annotated[
        list[str], Field(max_length=50, description="claims that must be present")
    ] = Field(default_factory=lambda: ["exp"])
    claims_to_headers: Annotated[
        dict[str, str], Field(max_length=50, description="claim name → request header name")
    ] = Field(default_factory=dict)
    token_header: Annotated[
        str, Field(description="header carrying the token ('Authorization' expects Bearer)")
    ] = "Authorization"
    token_query: Annotated[
        str | None, Field(max_length=100, description="query parameter tried when no header")
    ] = None
    max_token_length: Annotated[
        int, Field(ge=256, le=65536, description="longer tokens are refused unparsed")
    ] = 8192
    consumer_claim: Annotated[
        str, Field(min_length=1, max_length=100, description="claim naming the consumer")
    ] = "sub"
    roles_claim: Annotated[
        str | None, Field(max_length=100, description="claim with roles (list or space-separated)")
    ] = "roles"
    check_consumer: Annotated[
        bool, Field(description="the consumer must exist in the consumer store with a grant")
    ] = False

    _url = field_validator("jwks_url")(classmethod(lambda cls, v: check_url(v)))
    _token_header = field_validator("token_header")(
        classmethod(lambda cls, v: check_header_name(v))
    )

    @field_validator("claims_to_headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for header in value.values():
            check_header_name(header)
        return value

    @model_validator(mode="after")
    def _keys(self) -> JwtConfig:
        hmac = [a for a in self.algorithms if a in HMAC_ALGORITHMS]
        asymmetric = [a for a in self.algorithms if a not in HMAC_ALGORITHMS]
        if hmac and self.secret is None:
            raise ValueError(f"{hmac[0]} needs a secret")
        if self.secret is not None and not hmac:
            raise ValueError("secret is set but no HS* algorithm is allowed")
        sources = [
            name
            for name, given in (
                ("public_key", self.public_key is not None),
                ("jwks_url", self.jwks_url is not None),
                ("environment_keys", self.environment_keys),
            )
            if given
        ]
        if asymmetric and not sources:
            raise ValueError(f"{asymmetric[0]} needs public_key, jwks_url or environment_keys")
        if sources and not asymmetric:
            raise ValueError(f"{sources[0]} is set but only HS* algorithms are allowed")
        if len(sources) > 1:
            raise ValueError(f"set one of {' or '.join(sources)}, not both")
        if self.public_key is not None:
            key = load_public_key(self.public_key)
            if not any(key_fits(a, key) for a in asymmetric):
                raise ValueError(
                    "public_key does not fit any allowed algorithm (RSA >= 2048 bits for RS/PS, "
                    "the matching curve for ES, Ed25519/Ed448 for EdDSA)"
                )
        return self


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class JwksKeys:
    """Parsed signing keys of one JWKS document, by kid ('' for a key without kid)."""

    def __init__(self, keys: dict[str, tuple[jwt.PyJWK, str | None]]) -> None:
        self.keys = keys


async def fetch_jwks(services: PolicyServices, url: str) -> JwksKeys:
    response = await services.http().get(url, headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise ValueError(f"JWKS answered {response.status_code}")
    if len(response.content) > MAX_JWKS_BYTES:
        raise ValueError("JWKS document is too large")
    document = json.loads(response.content)
    keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
    for raw in document.get("keys", []) if isinstance(document, dict) else []:
        if not isinstance(raw, dict) or raw.get("use", "sig") != "sig" or raw.get("kty") == "oct":
            continue  # symmetric keys never come from a JWKS: that would be algorithm confusion
        try:
            declared = raw.get("alg")
            keys[str(raw.get("kid", ""))] = (
                jwt.PyJWK(raw),
                declared if isinstance(declared, str) else None,
            )
        except PyJWKError:
            continue
    return JwksKeys(keys)


class JwksSource:
    """Shared per worker through the services memo; policy objects keep no state themselves."""

    def __init__(self, url: str, cache_seconds: float, min_refresh: float) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.min_refresh = min_refresh

    async def key(self, services: PolicyServices, kid: str) -> tuple[jwt.PyJWK, str | None] | None:
        memo = services.shared_memo
        keys: JwksKeys | None = memo.get("jwks:" + self.url)
        if keys is None or kid not in keys.keys:
            fresh = await self._refresh(services, memo)
            keys = fresh or keys or memo.get("jwks-stale:" + self.url)
        if keys is None:
            return None
        if kid in keys.keys:
            return keys.keys[kid]
        if kid == "" and len(keys.keys) == 1:
            return next(iter(keys.keys.values()))
        return None

    async def _refresh(self, services: PolicyServices, memo: Memo) -> JwksKeys | None:
        inflight: asyncio.Future[JwksKeys] | None = memo.get("jwks-inflight:" + self.url)
        if inflight is None:
            if memo.get("jwks-recent:" + self.url) is not None:
                return None  # rate limit: unknown kids do not make us hammer the issuer
            memo.set("jwks-recent:" + self.url, True, self.min_refresh)
            inflight = asyncio.ensure_future(fetch_jwks(services, self.url))
            memo.set("jwks-inflight:" + self.url, inflight, 120)
            try:
                keys = await asyncio.shield(inflight)
            except (httpx.HTTPError, ValueError):
                return None
            finally:
                memo.delete("jwks-inflight:" + self.url)
            memo.set("jwks:" + self.url, keys, self.cache_seconds)
            memo.set("jwks-stale:" + self.url, keys, 7 * 86400)
            return keys
        try:
            return await asyncio.shield(inflight)
        except (httpx.HTTPError, ValueError):
            return None


class JwtPolicy(Policy[JwtConfig]):
    type_name = "jwt"
    summary = "Validate a JSON Web Token (signature, issuer, audience, expiry) and map its claims."
    config_model = JwtConfig
    errors = {
        **AUTH_ERRORS,
        "missing_credentials": ErrorSpec(401, "a bearer token is required"),
        "invalid_token": ErrorSpec(401, "the token is not valid"),
        "expired_token": ErrorSpec(401, "the token has expired"),
    }
    __slots__ = ("_jwks", "_public_key")

    def __init__(self, config: JwtConfig, build: Build) -> None:
        super().__init__(config, build)
        self._public_key = load_public_key(config.public_key) if config.public_key else None
        self._jwks = (
            JwksSource(config.jwks_url, config.jwks_cache_seconds, config.jwks_min_refresh_seconds)
            if config.jwks_url
            else None
        )

    def _token(self, ctx: PolicyContext) -> str | None:
        cfg = self.config
        raw = ctx.request.headers.get(cfg.token_header)
        if raw is not None:
            return _bearer(raw) if cfg.token_header.lower() == "authorization" else raw.strip()
        if cfg.token_query:
            return ctx.request.query_get(cfg.token_query)
        return None

    async def _key(self, alg: str, kid: str) -> Any:
        if alg in HMAC_ALGORITHMS:
            return self.config.secret
        if self._public_key is not None:
            return self._public_key if key_fits(alg, self._public_key) else None
        if self.config.environment_keys:
            own = self.build.consumers.keys.find(kid, self.services.clock())
            return own.key if own is not None and own.algorithm == alg else None
        if self._jwks is None:
            return None
        found = await self._jwks.key(self.services, kid)
        if found is None:
            return None
        jwk, declared = found
        if not key_fits(alg, jwk.key) or (declared is not None and declared != alg):
            return None
        return jwk.key

    async def verify(self, token: str) -> dict[str, Any]:
        """The verified claims; ``Deny`` otherwise."""
        cfg = self.config
        if len(token) > cfg.max_token_length or token.count(".") != 2:
            raise Deny("invalid_token")
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError:
            raise Deny("invalid_token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in cfg.algorithms:
            raise Deny("invalid_token")  # includes "none" and any algorithm not pinned
        kid = header.get("kid", "")
        if not isinstance(kid, str) or len(kid) > 256:
            raise Deny("invalid_token")
        key = await self._key(alg, kid)
        if key is None:
            raise Deny("invalid_token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=cfg.audiences or None,
                issuer=cfg.issuers or None,
                options={
                    "require": [c for c in cfg.required_claims if c not in ("exp", "nbf")],
                    "verify_aud": bool(cfg.audiences),
                    "verify_exp": False,  # checked below against the gateway's clock
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except InvalidTokenError:
            raise Deny("invalid_token") from None
        now = self.services.clock()
        for claim in ("exp", "nbf"):
            value = claims.get(claim)
            if value is None:
                if claim in cfg.required_claims:
                    raise Deny("invalid_token")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise Deny("invalid_token")
            if claim == "exp" and now > value + cfg.leeway_seconds:
                raise Deny("expired_token")
            if claim == "nbf" and now + cfg.leeway_seconds < value:
                raise Deny("invalid_token")
        return claims

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        scrub_identity_headers(ctx, cfg)
        for header in cfg.claims_to_headers.values():
            ctx.request.headers.remove(header)
        token = self._token(ctx)
        challenge = [("WWW-Authenticate", "Bearer")]
        if not token:
            raise Deny("missing_credentials", headers=challenge)
        try:
            claims = await self.verify(token)
        except Deny as deny:
            deny.headers = challenge
            raise
        subject = claims.get(cfg.consumer_claim)
        if not isinstance(subject, str) or not subject:
            raise Deny("invalid_token")
        roles = roles_of(claims.get(cfg.roles_claim) if cfg.roles_claim else None)
        if cfg.check_consumer:
            consumer = self.build.consumers.by_name.get(subject)
            if consumer is None:
                raise Deny("access_denied")
            check_consumer(ctx, consumer, None, self.services.clock(), require_grant=True)
            roles = list(dict.fromkeys([*roles, *consumer.roles]))
        apply_identity(ctx, cfg, subject, roles, self.build.consumers)
        ctx.variables["jwt.claims"] = claims
        for claim, header in cfg.claims_to_headers.items():
            if claim in claims:
                value = claims[claim]
                text = value if isinstance(value, str) else json.dumps(value)
                ctx.request.headers.set(header, clean_header_value(text))
        if cfg.strip_credential:
            if ctx.request.headers.get(cfg.token_header) is not None:
                ctx.request.headers.remove(cfg.token_header)
            elif cfg.token_query:
                ctx.request.query[:] = [
                    (k, v) for k, v in ctx.request.query if k != cfg.token_query
                ]
        return None


def roles_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [r for r in value.split() if r]
    if isinstance(value, list):
        return [r for r in value if isinstance(r, str) and r]
    return []

"""OpenID Connect relying party: the gateway logs browser users in at an OpenID Provider and keeps
them in a session; the backend sees the user's claims as headers, never a token or a cookie.

Flow (OpenID Connect Core 1.0, authorization code flow):

1. A request without a session: a browser navigation (GET/HEAD that does not ask for one of
   ``api_media_types``) is sent (302) to the provider's ``authorization_endpoint`` with PKCE
   (S256), a ``state`` and a ``nonce``; an API call is answered 401 ``login_required``.
2. The provider sends the browser back to ``redirect_uri``: the login transaction is claimed
   (once), ``state`` (and RFC 9207 ``iss``) checked, the code exchanged at the
   ``token_endpoint`` (``client_secret_basic`` or ``client_secret_post``), and the ID token
   verified: signature with the provider's JWKS and a pinned asymmetric algorithm, ``iss``,
   ``aud``, ``azp``, ``exp`` against the gateway's clock, ``nonce``.
3. A new session is made and the browser goes back to the page it first asked for.
4. ``logout_path`` ends the session here and sends the browser to the provider's
   ``end_session_endpoint`` (RP-initiated logout) when it has one.

Where state lives, and why: sessions and login transactions are records in the shared cache
(``PolicyServices.cache``: Redis or Hazelcast across workers, in-process when embedded); the
cookies carry only a random 256-bit id and its HMAC. Against a sealed cookie holding the claims,
this makes logout real (the record is deleted, a copied cookie is dead), keeps cookies small
whatever the claims, and keeps the claims off the client. The cost is a cache read per request;
when the cache is down the policy fails closed (503 ``store_unavailable``).

Threat model:
- forged or guessed cookies: the HMAC (``cookie_secret``) is checked before any cache read, and
  the cache key is a hash of the id, so a dump of the cache yields no usable cookie;
- login CSRF and injected authorization responses: the transaction is bound to the browser by
  its own cookie and must match ``state``; it is claimed with compare-and-set, so a replayed
  callback fails even when two arrive at once; a replayed code fails at the provider too;
- ID token substitution or replay: ``nonce`` from the transaction, ``aud``/``azp`` = client id;
- mix-up: discovery's ``issuer`` must equal the configured one, the callback's ``iss`` too;
- open redirects: the return target is the path of the request that started the login (never
  a parameter), kept server side, and must lie under ``app_path`` (else ``app_path`` itself);
- forged identity: claim headers, the consumer and roles headers are removed from every request
  before anything else, and the session cookie is removed before the backend call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx
import jwt
from jwt.exceptions import InvalidTokenError
from pydantic import Field, field_validator, model_validator

from portway.http.target import BadTarget, canonical_path
from portway.policies._headers import TOKEN_RE, check_header_name, clean_header_value
from portway.policies._keys import HMAC_ALGORITHMS, MIN_SECRET_LENGTH, Algorithm, key_fits
from portway.policies.base import Build, Deny, ErrorSpec, Policy
from portway.policies.consumers import (
    AUTH_ERRORS,
    AuthOptions,
    apply_identity,
    scrub_identity_headers,
)
from portway.policies.contract import PolicyContext, Reply
from portway.policies.jwt_auth import JwksSource, check_url, roles_of
from portway.policies.secrets import WRITE_ONLY

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_SESSION_BYTES = 64 * 1024
MAX_COOKIE_LENGTH = 256
MAX_RETURN_TARGET = 2048
MAX_CODE_LENGTH = 4096
DISCOVERY_PATH = "/.well-known/openid-configuration"


def _path_under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _check_app_path(value: str) -> str:
    try:
        canonical = canonical_path(value)
    except BadTarget as exc:
        raise ValueError(f"must be a plain absolute path ({exc})") from None
    if canonical != value or "?" in value or (value != "/" and value.endswith("/")):
        raise ValueError("must be a canonical absolute path without a trailing '/'")
    return value


def _check_url_plain(value: str) -> str:
    check_url(value)
    parts = urlsplit(value)
    if not parts.hostname or parts.fragment or parts.username or parts.password:
        raise ValueError("must be an absolute http(s) URL with a host, no fragment, no user")
    return value


class OidcConfig(AuthOptions):
    issuer: Annotated[
        str,
        Field(
            max_length=2000,
            description="the OpenID Provider's issuer URL; discovery reads "
            "<issuer>/.well-known/openid-configuration",
        ),
    ]
    client_id: Annotated[
        str, Field(min_length=1, max_length=200, description="the gateway's client id")
    ]
    client_secret: Annotated[
        str,
        Field(
            min_length=1,
            max_length=500,
            description="the gateway's client secret at the provider",
            json_schema_extra=WRITE_ONLY,
        ),
    ]
    token_endpoint_auth_method: Annotated[
        Literal["client_secret_basic", "client_secret_post"],
        Field(description="how the client secret is sent to the token endpoint"),
    ] = "client_secret_basic"
    app_path: Annotated[
        str,
        Field(
            max_length=500,
            description="the protected application's path (normally the API's base path): "
            "after login the browser only ever returns under it; the cookies are scoped to it",
        ),
    ]
    redirect_uri: Annotated[
        str,
        Field(
            max_length=2000,
            description="the callback URL registered at the provider, as the browser reaches "
            "the gateway; its path (under app_path) is answered by this policy",
        ),
    ]
    logout_path: Annotated[
        str | None,
        Field(max_length=500, description="path (under app_path) that ends the session"),
    ] = None
    post_logout_redirect_uri: Annotated[
        str | None,
        Field(
            max_length=2000,
            description="where the provider (or the gateway, when the provider has no "
            "end_session_endpoint) sends the browser after logout; registered at the provider",
        ),
    ] = None
    scopes: Annotated[
        list[Annotated[str, Field(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]{1,100}$")]],
        Field(min_length=1, max_length=30, description="scopes asked for; must include openid"),
    ] = Field(default_factory=lambda: ["openid"])
    cookie_name: Annotated[
        str, Field(min_length=1, max_length=64, description="name of the session cookie")
    ] = "portway_session"
    cookie_secret: Annotated[
        str,
        Field(
            min_length=MIN_SECRET_LENGTH,
            max_length=4096,
            description="key of the cookies' HMAC; the same on every worker (changing it ends "
            "every session)",
            json_schema_extra=WRITE_ONLY,
        ),
    ]
    session_seconds: Annotated[
        int, Field(ge=60, le=7 * 86400, description="lifetime of a session (absolute)")
    ] = 8 * 3600
    login_seconds: Annotated[
        int, Field(ge=30, le=3600, description="time a user has to log in at the provider")
    ] = 600
    id_token_algorithms: Annotated[
        list[Algorithm],
        Field(min_length=1, max_length=10, description="ID token algorithms accepted (no HS*)"),
    ] = Field(default_factory=lambda: list[Algorithm](["RS256"]))
    leeway_seconds: Annotated[
        float, Field(ge=0, le=300, description="clock skew tolerated on the ID token's exp")
    ] = 30.0
    max_id_token_length: Annotated[
        int, Field(ge=512, le=65536, description="longer ID tokens are refused unparsed")
    ] = 16384
    claims_to_headers: Annotated[
        dict[str, str], Field(max_length=50, description="ID token claim → request header name")
    ] = Field(default_factory=dict)
    consumer_claim: Annotated[
        str, Field(min_length=1, max_length=100, description="claim naming the consumer")
    ] = "sub"
    roles_claim: Annotated[
        str | None, Field(max_length=100, description="claim with roles (list or space-separated)")
    ] = None
    api_media_types: Annotated[
        list[Annotated[str, Field(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+*-]+$", max_length=100)]],
        Field(
            max_length=20,
            description="an unauthenticated request whose Accept names one of these (or that is "
            "not GET/HEAD) is answered 401 instead of being sent to the provider",
        ),
    ] = Field(default_factory=lambda: ["application/json"])
    discovery_cache_seconds: Annotated[
        float, Field(ge=10, le=86400, description="how long the discovery document is used")
    ] = 3600.0
    jwks_cache_seconds: Annotated[
        float, Field(ge=10, le=86400, description="how long the provider's JWKS is used")
    ] = 300.0
    timeout_seconds: Annotated[
        float, Field(gt=0, le=60, description="per call to the provider")
    ] = 5.0

    _urls = field_validator("issuer", "redirect_uri", "post_logout_redirect_uri")(
        classmethod(lambda cls, v: v if v is None else _check_url_plain(v))
    )
    _paths = field_validator("app_path", "logout_path")(
        classmethod(lambda cls, v: v if v is None else _check_app_path(v))
    )

    @field_validator("cookie_name")
    @classmethod
    def _cookie_name(cls, value: str) -> str:
        if TOKEN_RE.fullmatch(value) is None:
            raise ValueError(f"{value!r} is not a valid cookie name")
        return value

    @field_validator("claims_to_headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for header in value.values():
            check_header_name(header)
        return value

    @model_validator(mode="after")
    def _rules(self) -> OidcConfig:
        if "openid" not in self.scopes:
            raise ValueError("scopes must include 'openid'")
        hmac_algs = [a for a in self.id_token_algorithms if a in HMAC_ALGORITHMS]
        if hmac_algs:
            raise ValueError(
                f"id_token_algorithms: {hmac_algs[0]} is not accepted (keys come "
                "from the provider's JWKS)"
            )
        if urlsplit(self.issuer).query:
            raise ValueError("issuer must not have a query")
        callback = urlsplit(self.redirect_uri)
        if callback.query:
            raise ValueError("redirect_uri must not have a query")
        callback_path = _check_app_path(callback.path or "/")
        if not _path_under(callback_path, self.app_path):
            raise ValueError(f"redirect_uri's path must lie under app_path {self.app_path!r}")
        if self.logout_path is not None:
            if not _path_under(self.logout_path, self.app_path):
                raise ValueError(f"logout_path must lie under app_path {self.app_path!r}")
            if self.logout_path == callback_path:
                raise ValueError("logout_path must differ from redirect_uri's path")
        if self.post_logout_redirect_uri is not None and self.logout_path is None:
            raise ValueError("post_logout_redirect_uri needs logout_path")
        return self


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """The parts of the discovery document the relying party uses."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _accepts_any(accept: str, media_types: list[str]) -> bool:
    offered = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return any(m in offered for m in media_types)


def _endpoint(document: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = document.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > 2000:
        raise ValueError(f"discovery: {name} is missing")
    _check_url_plain(value)
    return value


class OidcPolicy(Policy[OidcConfig]):
    type_name = "oidc"
    summary = (
        "Log browser users in at an OpenID Connect provider (code flow with PKCE) and keep "
        "them in a session; claims go to the backend as headers."
    )
    config_model = OidcConfig
    errors = {
        **AUTH_ERRORS,
        "login_required": ErrorSpec(401, "a login is required"),
        "invalid_login_state": ErrorSpec(
            400, "the login response does not belong to a login started in this browser"
        ),
        "login_failed": ErrorSpec(401, "the identity provider did not complete the login"),
        "invalid_id_token": ErrorSpec(401, "the identity provider's ID token is not valid"),
        "provider_unavailable": ErrorSpec(503, "the identity provider cannot be reached"),
    }
    __slots__ = ("_callback_path", "_key", "_login_cookie", "_scope", "_secure")

    def __init__(self, config: OidcConfig, build: Build) -> None:
        super().__init__(config, build)
        self._callback_path = urlsplit(config.redirect_uri).path or "/"
        self._key = config.cookie_secret.encode()
        self._login_cookie = config.cookie_name + "_login"
        self._scope = f"{build.label}|{build.name}"
        self._secure = config.redirect_uri.startswith("https://")

    # -- cookies and cache records ----------------------------------------------------------

    def _seal(self, purpose: str, ident: str) -> str:
        return ident + "." + self._mac(purpose, ident)

    def _mac(self, purpose: str, ident: str) -> str:
        message = f"{purpose}|{self._scope}|{ident}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def _unseal(self, purpose: str, value: str | None) -> str | None:
        if value is None or len(value) > MAX_COOKIE_LENGTH:
            return None
        ident, _, mac = value.partition(".")
        if not ident or not hmac.compare_digest(mac.encode(), self._mac(purpose, ident).encode()):
            return None
        return ident

    def _cache_key(self, purpose: str, ident: str) -> str:
        return f"oidc:{self._scope}:{purpose}:{hashlib.sha256(ident.encode()).hexdigest()}"

    @staticmethod
    def _cookies(ctx: PolicyContext, name: str) -> list[str]:
        found: list[str] = []
        for header in ctx.request.headers.get_all("cookie"):
            for part in header.split(";"):
                key, sep, value = part.strip().partition("=")
                if sep and key == name:
                    found.append(value.strip())
        return found

    def _set_cookie(self, ctx: PolicyContext, name: str, value: str, max_age: int) -> str:
        parts = [
            f"{name}={value}",
            f"Path={self.config.app_path}",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self._secure or ctx.scheme == "https":
            parts.append("Secure")
        return "; ".join(parts)

    def _strip_cookies(self, ctx: PolicyContext) -> None:
        ours = {self.config.cookie_name, self._login_cookie}
        headers = ctx.request.headers
        kept: list[str] = []
        for header in headers.get_all("cookie"):
            for part in header.split(";"):
                if part.strip() and part.strip().partition("=")[0] not in ours:
                    kept.append(part.strip())
        headers.remove("cookie")
        if kept:
            headers.set("Cookie", "; ".join(kept))

    # -- the provider -------------------------------------------------------------------------

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self.services.http().get(
                url, headers={"Accept": "application/json"}, timeout=self.config.timeout_seconds
            )
        except httpx.HTTPError:
            raise Deny("provider_unavailable") from None
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
            raise Deny("provider_unavailable")
        try:
            document = json.loads(response.content)
        except ValueError:
            raise Deny("provider_unavailable") from None
        if not isinstance(document, dict):
            raise Deny("provider_unavailable")
        return document

    async def provider(self) -> ProviderInfo:
        """The provider's endpoints from its discovery document (cached per worker)."""
        cfg = self.config
        memo = self.services.shared_memo
        key = "oidc-discovery:" + cfg.issuer
        found: ProviderInfo | None = memo.get(key)
        if found is not None:
            return found
        document = await self._get_json(cfg.issuer.rstrip("/") + DISCOVERY_PATH)
        if document.get("issuer") != cfg.issuer:
            raise Deny("provider_unavailable")  # a document for another issuer: mix-up
        try:
            info = ProviderInfo(
                authorization_endpoint=str(_endpoint(document, "authorization_endpoint")),
                token_endpoint=str(_endpoint(document, "token_endpoint")),
                jwks_uri=str(_endpoint(document, "jwks_uri")),
                end_session_endpoint=_endpoint(document, "end_session_endpoint", False),
            )
        except ValueError:
            raise Deny("provider_unavailable") from None
        memo.set(key, info, cfg.discovery_cache_seconds)
        return info

    async def _exchange(self, provider: ProviderInfo, code: str, verifier: str) -> str:
        """The ID token for ``code``."""
        cfg = self.config
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": cfg.redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        if cfg.token_endpoint_auth_method == "client_secret_basic":
            headers["Authorization"] = _basic(cfg.client_id, cfg.client_secret)
        else:
            form |= {"client_id": cfg.client_id, "client_secret": cfg.client_secret}
        try:
            response = await self.services.http().post(
                provider.token_endpoint,
                data=form,
                headers=headers,
                timeout=cfg.timeout_seconds,
            )
        except httpx.HTTPError:
            raise Deny("provider_unavailable") from None
        if response.status_code in (400, 401):
            raise Deny("login_failed")  # invalid_grant: a used, expired or foreign code
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
            raise Deny("provider_unavailable")
        try:
            answer = json.loads(response.content)
        except ValueError:
            raise Deny("provider_unavailable") from None
        token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise Deny("invalid_id_token")
        return token

    async def verify_id_token(
        self, provider: ProviderInfo, token: str, nonce: str
    ) -> dict[str, Any]:
        """The verified claims of an ID token (OpenID Connect Core 3.1.3.7); ``Deny``
        otherwise."""
        cfg = self.config
        if len(token) > cfg.max_id_token_length or token.count(".") != 2:
            raise Deny("invalid_id_token")
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError:
            raise Deny("invalid_id_token") from None
        alg, kid = header.get("alg"), header.get("kid", "")
        if not isinstance(alg, str) or alg not in cfg.id_token_algorithms:
            raise Deny("invalid_id_token")
        if not isinstance(kid, str) or len(kid) > 256:
            raise Deny("invalid_id_token")
        jwks = JwksSource(provider.jwks_uri, cfg.jwks_cache_seconds, 30.0)
        found = await jwks.key(self.services, kid)
        if found is None:
            raise Deny("invalid_id_token")
        jwk, declared = found
        if not key_fits(alg, jwk.key) or (declared is not None and declared != alg):
            raise Deny("invalid_id_token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                jwk.key,
                algorithms=[alg],
                audience=cfg.client_id,
                issuer=cfg.issuer,
                options={
                    "require": ["iss", "sub", "aud", "exp", "iat"],
                    "verify_exp": False,  # checked below against the gateway's clock
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except InvalidTokenError:
            raise Deny("invalid_id_token") from None
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise Deny("invalid_id_token")
        if self.services.clock() > exp + cfg.leeway_seconds:
            raise Deny("invalid_id_token")
        aud, azp = claims["aud"], claims.get("azp")
        if isinstance(aud, list) and len(aud) > 1 and azp is None:
            raise Deny("invalid_id_token")
        if azp is not None and azp != cfg.client_id:
            raise Deny("invalid_id_token")
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise Deny("invalid_id_token")
        return claims

    # -- the request hook ---------------------------------------------------------------------

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        scrub_identity_headers(ctx, cfg)
        for header in cfg.claims_to_headers.values():
            ctx.request.headers.remove(header)
        path = ctx.request.path
        if path == self._callback_path:
            return await self._callback(ctx)
        if cfg.logout_path is not None and path == cfg.logout_path:
            return await self._logout(ctx)
        session = await self._session(ctx)
        if session is None:
            method = ctx.request.method
            accept = ctx.request.headers.get("accept") or ""
            if method not in ("GET", "HEAD") or _accepts_any(accept, cfg.api_media_types):
                raise Deny("login_required", headers=[("Cache-Control", "no-store")])
            return await self._start_login(ctx)
        roles = [r for r in session.get("roles", []) if isinstance(r, str)]
        apply_identity(ctx, cfg, str(session["sub"]), roles, self.build.consumers)
        for name, value in session.get("headers", []):
            ctx.request.headers.set(name, value)
        ctx.variables["oidc.claims"] = session.get("claims", {})
        if cfg.strip_credential:
            self._strip_cookies(ctx)
        return None

    async def _session(self, ctx: PolicyContext) -> dict[str, Any] | None:
        for value in self._cookies(ctx, self.config.cookie_name):
            ident = self._unseal("session", value)
            if ident is None:
                continue
            raw = await self.services.cache.get(self._cache_key("session", ident))
            if raw is None:
                continue
            record: dict[str, Any] = json.loads(raw)
            if record.get("exp", 0) > self.services.clock():
                record["id"] = ident
                return record
        return None

    def _return_target(self, ctx: PolicyContext) -> str:
        app = self.config.app_path
        path = ctx.request.path
        target = path + ("?" + urlencode(ctx.request.query) if ctx.request.query else "")
        # the router already made the path canonical; refuse anything a browser could read as
        # another origin (//host, /\host) or that leaves the application
        try:
            canonical = canonical_path(path) == path
        except BadTarget:
            canonical = False
        if (
            not canonical
            or not _path_under(path, app)
            or path in (self._callback_path, self.config.logout_path)
            or not target.startswith("/")
            or target[1:2] in ("/", "\\")
            or len(target) > MAX_RETURN_TARGET
            or not all("!" <= ch <= "~" for ch in target)
        ):
            return app
        return target

    async def _start_login(self, ctx: PolicyContext) -> Reply:
        cfg = self.config
        provider = await self.provider()
        ident = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)
        login = {
            "state": secrets.token_urlsafe(32),
            "nonce": secrets.token_urlsafe(32),
            "verifier": verifier,
            "return_to": self._return_target(ctx),
        }
        await self.services.cache.set(
            self._cache_key("login", ident), json.dumps(login).encode(), ttl=cfg.login_seconds
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": cfg.client_id,
                "redirect_uri": cfg.redirect_uri,
                "scope": " ".join(cfg.scopes),
                "state": login["state"],
                "nonce": login["nonce"],
                "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
                "code_challenge_method": "S256",
            }
        )
        sep = "&" if "?" in provider.authorization_endpoint else "?"
        cookie = self._set_cookie(
            ctx, self._login_cookie, self._seal("login", ident), cfg.login_seconds
        )
        return _redirect(provider.authorization_endpoint + sep + query, [cookie])

    async def _claim_login(self, ctx: PolicyContext) -> dict[str, Any] | None:
        """The login transaction of this browser, claimed so that it is used once."""
        cache = self.services.cache
        for value in self._cookies(ctx, self._login_cookie):
            ident = self._unseal("login", value)
            if ident is None:
                continue
            key = self._cache_key("login", ident)
            raw = await cache.get(key)
            if raw is None or raw == b"used":
                continue
            if not await cache.compare_and_set(key, raw, b"used", ttl=self.config.login_seconds):
                continue  # another callback claimed it first
            login: dict[str, Any] = json.loads(raw)
            return login
        return None

    async def _callback(self, ctx: PolicyContext) -> Reply:
        cfg = self.config
        clear = [("Set-Cookie", self._set_cookie(ctx, self._login_cookie, "", 0))]
        clear.append(("Cache-Control", "no-store"))
        if ctx.request.method != "GET":  # before the claim: another method must not burn it
            raise Deny("invalid_login_state", headers=clear)
        login = await self._claim_login(ctx)
        if login is None:
            raise Deny("invalid_login_state", headers=clear)
        state = ctx.request.query_get("state") or ""
        if not hmac.compare_digest(state.encode(), str(login["state"]).encode()):
            raise Deny("invalid_login_state", headers=clear)
        iss = ctx.request.query_get("iss")
        if iss is not None and iss != cfg.issuer:
            raise Deny("invalid_login_state", headers=clear)  # RFC 9207: another provider
        error = ctx.request.query_get("error")
        if error is not None:
            detail = clean_header_value(error)[:100]
            raise Deny("login_failed", headers=clear, details={"provider_error": detail})
        code = ctx.request.query_get("code")
        if not code or len(code) > MAX_CODE_LENGTH:
            raise Deny("invalid_login_state", headers=clear)
        try:
            provider = await self.provider()
            token = await self._exchange(provider, code, str(login["verifier"]))
            claims = await self.verify_id_token(provider, token, str(login["nonce"]))
            cookie = await self._new_session(ctx, token, claims)
        except Deny as deny:
            deny.headers = clear
            raise
        return _redirect(str(login["return_to"]), [cookie, clear[0][1]])

    async def _new_session(self, ctx: PolicyContext, token: str, claims: dict[str, Any]) -> str:
        cfg = self.config
        subject = claims.get(cfg.consumer_claim)
        if not isinstance(subject, str) or not subject:
            raise Deny("invalid_id_token")
        headers = []
        for claim, header in cfg.claims_to_headers.items():
            if claim in claims:
                value = claims[claim]
                text = value if isinstance(value, str) else json.dumps(value)
                headers.append((header, clean_header_value(text)))
        record = {
            "sub": subject,
            "roles": roles_of(claims.get(cfg.roles_claim)) if cfg.roles_claim else [],
            "headers": headers,
            "claims": {c: claims[c] for c in cfg.claims_to_headers if c in claims},
            "id_token": token,
            "exp": self.services.clock() + cfg.session_seconds,
        }
        data = json.dumps(record).encode()
        if len(data) > MAX_SESSION_BYTES:
            raise Deny("invalid_id_token")
        ident = secrets.token_urlsafe(32)  # a new id at every login: no session fixation
        await self.services.cache.set(
            self._cache_key("session", ident), data, ttl=cfg.session_seconds
        )
        return self._set_cookie(
            ctx, cfg.cookie_name, self._seal("session", ident), cfg.session_seconds
        )

    async def _logout(self, ctx: PolicyContext) -> Reply:
        cfg = self.config
        session = await self._session(ctx)
        if session is not None:
            await self.services.cache.delete(self._cache_key("session", str(session["id"])))
        cookies = [self._set_cookie(ctx, cfg.cookie_name, "", 0)]
        try:
            end_session = (await self.provider()).end_session_endpoint
        except Deny:
            end_session = None  # the provider is down: the local session is gone all the same
        if end_session is not None:
            params = {"client_id": cfg.client_id}
            if session is not None:
                params["id_token_hint"] = str(session["id_token"])
            if cfg.post_logout_redirect_uri is not None:
                params["post_logout_redirect_uri"] = cfg.post_logout_redirect_uri
            sep = "&" if "?" in end_session else "?"
            return _redirect(end_session + sep + urlencode(params), cookies)
        if cfg.post_logout_redirect_uri is not None:
            return _redirect(cfg.post_logout_redirect_uri, cookies)
        headers = [("Set-Cookie", c) for c in cookies] + [("Cache-Control", "no-store")]
        return Reply(200, b'{"logged_out": true}', headers)


def _basic(client_id: str, secret: str) -> str:
    # RFC 6749 2.3.1: both are form-encoded before Basic; '%20' is understood by every decoder
    pair = quote(client_id, safe="") + ":" + quote(secret, safe="")
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _redirect(location: str, cookies: list[str]) -> Reply:
    headers = [("Location", location), ("Cache-Control", "no-store")]
    headers += [("Set-Cookie", c) for c in cookies]
    return Reply(302, b"", headers, content_type="text/plain")

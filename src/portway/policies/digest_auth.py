"""HTTP Digest authentication (RFC 7616) against the consumer store's digest credentials.

The store keeps HA1 = H(username:realm:password) per hash, computed when the password is set; the
password is never kept. HA1 is password-equivalent for its realm, so it travels only inside the
signed revision and the management API never shows it.

Nonces are stateless: ``base64url(timestamp ‖ random ‖ HMAC(secret, timestamp ‖ random ‖ realm))``
with the revision's ``nonce_secret`` (random per revision, the same on every worker of the
environment), so any worker accepts a nonce another issued, a nonce from another realm or a
changed one is refused, and an expired or unrecognised one whose digest is otherwise right (it
proves the password) is answered with ``stale=true`` (clients then retry with the fresh nonce,
without asking the user again). A new revision changes the secret: outstanding nonces then get
``stale=true`` once.

Replay: each (nonce, nc) pair is claimed once in the shared cache with an atomic
compare-and-set, for as long as the nonce lives; a replayed request is refused on every worker.
When the cache cannot be reached, ``on_store_unavailable`` decides (reject by default).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from typing import Annotated, Literal
from urllib.parse import parse_qsl, unquote

from pydantic import Field, model_validator

from portway.config.revision import ConsumerSnapshot, CredentialSnapshot
from portway.errors import StoreUnavailable
from portway.policies.base import Build, Deny, ErrorSpec, Policy
from portway.policies.consumers import (
    AUTH_ERRORS,
    AuthOptions,
    apply_identity,
    check_consumer,
    scrub_identity_headers,
)
from portway.policies.contract import PolicyContext, Reply

Algorithm = Literal["SHA-256", "SHA-256-sess", "MD5", "MD5-sess"]
Qop = Literal["auth", "auth-int"]
MAX_HEADER = 4096
_HASHES = {"SHA-256": "sha256", "MD5": "md5"}
_PROCESS_SECRET = secrets.token_bytes(32)
_NONCE_BYTES = 8 + 8 + 16  # timestamp, random, truncated MAC
# RFC 7616 §3.4: auth-param = token "=" ( token / quoted-string ), comma separated
_PARAM = re.compile(r'\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*(?:,|$)')
_REQUIRED = ("username", "realm", "uri", "response", "nonce", "qop", "nc", "cnonce")
_NC = re.compile(r"^[0-9a-fA-F]{8}$")
REALM_PATTERN = r'^[^"\\\x00-\x1f\x7f]*$'


def hash_name(algorithm: str) -> str:
    """The hash an algorithm uses (``SHA-256-sess`` → ``SHA-256``)."""
    return algorithm.removesuffix("-sess")


def digest_hex(algorithm: str, text: str) -> str:
    return hash_bytes(algorithm, text.encode("utf-8"))


def hash_bytes(algorithm: str, data: bytes) -> str:
    return hashlib.new(_HASHES[hash_name(algorithm)], data).hexdigest()


def make_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """HA1 = H(username:realm:password), what a digest credential stores instead of the
    password."""
    return digest_hex(algorithm, f"{username}:{realm}:{password}")


def digest_response(
    algorithm: str,
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str,
    body: bytes = b"",
) -> str:
    """The ``response`` a client must send (RFC 7616 §3.4.1), from the stored HA1."""
    if algorithm.endswith("-sess"):
        ha1 = digest_hex(algorithm, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = digest_hex(algorithm, f"{method}:{uri}:{hash_bytes(algorithm, body)}")
    else:
        ha2 = digest_hex(algorithm, f"{method}:{uri}")
    return digest_hex(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def digest_lookup(username: str, realm: str) -> str:
    """How a digest credential is stored and found (``CredentialSnapshot.lookup``)."""
    return f"digest:{username}:{realm}"


def parse_digest(header: str | None) -> dict[str, str] | None:
    """The parameters of a ``Digest`` Authorization header; ``None`` when it is not one.

    Raises ``ValueError`` naming the problem when it is a Digest header but malformed."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    if len(header) > MAX_HEADER:
        raise ValueError(f"the Authorization header is longer than {MAX_HEADER} characters")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        found = _PARAM.match(rest, position)
        if found is None or found.end() == position:
            raise ValueError(f"malformed digest parameters at character {position}")
        name = found.group(1).lower()
        if name in params:
            raise ValueError(f"digest parameter {name} is repeated")
        quoted = found.group(2)
        params[name] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else found.group(3)
        position = found.end()
    return params


class DigestAuthConfig(AuthOptions):
    realm: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            pattern=REALM_PATTERN,
            description="realm announced in the challenge; digest credentials are made for one "
            "realm (HA1 includes it)",
        ),
    ] = "portway"
    algorithms: Annotated[
        list[Algorithm],
        Field(
            min_length=1,
            max_length=4,
            description="algorithms offered, most preferred first (one challenge each)",
        ),
    ] = Field(default_factory=lambda: list[Algorithm](["SHA-256"]))
    allow_md5: Annotated[
        bool,
        Field(
            description="MD5 and MD5-sess may be listed in algorithms (legacy clients; MD5 is "
            "broken, so it is off unless explicitly enabled)"
        ),
    ] = False
    qop: Annotated[
        list[Qop],
        Field(
            min_length=1,
            max_length=2,
            description="quality of protection offered: auth, and auth-int (digest over the "
            "body too)",
        ),
    ] = Field(default_factory=lambda: list[Qop](["auth"]))
    userhash: Annotated[
        bool, Field(description="announce userhash=true: clients may send H(username:realm)")
    ] = True
    nonce_seconds: Annotated[
        int, Field(ge=10, le=86400, description="how long a nonce is accepted before it is stale")
    ] = 300
    replay_protection: Annotated[
        bool,
        Field(
            description="refuse a nonce count used before, through the shared cache (every "
            "worker of the environment)"
        ),
    ] = True
    on_store_unavailable: Annotated[
        Literal["fail", "continue"],
        Field(description="when replay protection cannot reach the cache: reject or let through"),
    ] = "fail"
    check_grant: Annotated[
        bool, Field(description="require the consumer to hold a grant for this API")
    ] = True

    @model_validator(mode="after")
    def _algorithms(self) -> DigestAuthConfig:
        if len(set(self.algorithms)) != len(self.algorithms):
            raise ValueError("algorithms must not repeat")
        if len(set(self.qop)) != len(self.qop):
            raise ValueError("qop must not repeat")
        if not self.allow_md5 and any(hash_name(a) == "MD5" for a in self.algorithms):
            raise ValueError("MD5 algorithms need allow_md5: true")
        return self


Found = tuple[ConsumerSnapshot, CredentialSnapshot]


class DigestAuthPolicy(Policy[DigestAuthConfig]):
    type_name = "digest_auth"
    summary = "Authenticate the consumer with HTTP Digest (RFC 7616) from the consumer store."
    config_model = DigestAuthConfig
    errors = {
        **AUTH_ERRORS,
        "missing_credentials": ErrorSpec(401, "digest credentials are required"),
        "malformed_credentials": ErrorSpec(400, "the digest credentials are malformed"),
        "stale_nonce": ErrorSpec(401, "the nonce has expired; retry with the new one"),
        "replayed_request": ErrorSpec(401, "this nonce count was already used"),
        "store_unavailable": ErrorSpec(503, "the request cannot be checked right now"),
    }
    __slots__ = ("_secret", "_userhashes")

    def __init__(self, config: DigestAuthConfig, build: Build) -> None:
        super().__init__(config, build)
        # a manager-built revision carries the environment's secret; a static revision uses a
        # process-local one (nonces then hold on this worker only)
        self._secret = build.consumers.nonce_secret or _PROCESS_SECRET
        hashes = {hash_name(a) for a in config.algorithms}
        self._userhashes: dict[tuple[str, str], Found] = {}
        for found in build.consumers.by_digest.values():
            cred = found[1]
            if cred.realm == config.realm and cred.username is not None:
                for name in hashes:
                    key = digest_hex(name, f"{cred.username}:{config.realm}")
                    self._userhashes[(name, key)] = found

    # nonces -------------------------------------------------------------------------------
    def _mac(self, payload: bytes) -> bytes:
        message = payload + self.config.realm.encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:16]

    def new_nonce(self) -> str:
        payload = struct.pack(">Q", int(self.services.clock())) + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def _nonce_state(self, nonce: str) -> Literal["fresh", "stale", "invalid"]:
        if len(nonce) > 64:
            return "invalid"
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return "invalid"
        if len(raw) != _NONCE_BYTES or not hmac.compare_digest(raw[16:], self._mac(raw[:16])):
            return "invalid"
        (issued,) = struct.unpack(">Q", raw[:8])
        age = self.services.clock() - issued
        if age < -5:
            return "invalid"
        return "fresh" if age <= self.config.nonce_seconds else "stale"

    def challenge(self, *, stale: bool = False) -> list[tuple[str, str]]:
        cfg = self.config
        nonce = self.new_nonce()
        out = []
        for algorithm in cfg.algorithms:
            parts = [
                f'realm="{cfg.realm}"',
                f'qop="{", ".join(cfg.qop)}"',
                f"algorithm={algorithm}",
                f'nonce="{nonce}"',
            ]
            if cfg.userhash:
                parts.append("userhash=true")
            if stale:
                parts.append("stale=true")
            out.append(("WWW-Authenticate", "Digest " + ", ".join(parts)))
        return out

    # checking -----------------------------------------------------------------------------
    def _malformed(self, message: str) -> Deny:
        return Deny("malformed_credentials", message=message)

    def _fields(self, params: dict[str, str]) -> tuple[str, str]:
        for name in _REQUIRED:
            if not params.get(name):
                raise self._malformed(f"digest parameter {name} is missing")
        algorithm = params.get("algorithm", "MD5")  # RFC 7616 §3.4: absent means MD5
        matched = next((a for a in self.config.algorithms if a.lower() == algorithm.lower()), None)
        if matched is None:
            raise self._malformed(f"digest algorithm {algorithm[:40]!r} is not offered")
        qop = params["qop"]
        if qop not in self.config.qop:
            raise self._malformed(f"digest qop {qop[:40]!r} is not offered")
        if not _NC.fullmatch(params["nc"]):
            raise self._malformed("digest parameter nc must be 8 hexadecimal digits")
        if len(params["cnonce"]) > 256 or len(params["response"]) > 256:
            raise self._malformed("digest parameter cnonce or response is too long")
        return matched, qop

    def _uri_matches(self, ctx: PolicyContext, uri: str) -> bool:
        path, _, query = uri.partition("?")
        if "://" in path:  # absolute-form: compare its path
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        request_path = ctx.request.path
        if path != request_path and unquote(path) != unquote(request_path):
            return False
        return parse_qsl(query, keep_blank_values=True) == ctx.request.query

    def _find(self, params: dict[str, str], algorithm: str) -> Found | None:
        if params.get("userhash", "false").lower() == "true":
            return self._userhashes.get((hash_name(algorithm), params["username"].lower()))
        return self.build.consumers.by_digest.get(
            digest_lookup(params["username"], self.config.realm)
        )

    async def _expected(
        self, ctx: PolicyContext, params: dict[str, str], algorithm: str, qop: str, ha1: str
    ) -> str:
        body = await ctx.request.body() if qop == "auth-int" else b""
        return digest_response(
            algorithm,
            ha1,
            ctx.request.method,
            params["uri"],
            params["nonce"],
            params["nc"],
            params["cnonce"],
            qop,
            body,
        )

    async def _claim(self, params: dict[str, str]) -> bool:
        """Claim (nonce, nc) once in the shared cache; False when it was claimed before."""
        nonce_id = hashlib.sha256(params["nonce"].encode()).hexdigest()[:32]
        key = f"digest:nc:{self.build.label}:{nonce_id}:{params['nc'].lower()}"
        ttl = float(self.config.nonce_seconds + 60)
        return await self.services.cache.compare_and_set(key, None, b"1", ttl=ttl)

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        scrub_identity_headers(ctx, cfg)
        try:
            params = parse_digest(ctx.request.headers.get("authorization"))
        except ValueError as exc:
            raise self._malformed(str(exc)) from None
        if params is None:
            raise Deny("missing_credentials", headers=self.challenge())
        algorithm, qop = self._fields(params)
        if params["realm"] != cfg.realm:
            raise Deny("invalid_credentials", headers=self.challenge())
        if not self._uri_matches(ctx, params["uri"]):
            raise self._malformed("digest parameter uri does not match the request target")
        state = self._nonce_state(params["nonce"])
        found = self._find(params, algorithm)
        ha1 = found[1].ha1.get(hash_name(algorithm)) if found else None
        # the comparison runs for unknown users too, so timing does not tell which exist
        expected = await self._expected(ctx, params, algorithm, qop, ha1 or "0" * 64)
        matches = hmac.compare_digest(expected.encode(), params["response"].lower().encode())
        if found is None or ha1 is None or not matches:
            raise Deny("invalid_credentials", headers=self.challenge())
        if state != "fresh":
            # the digest proves the password, over a nonce that is too old or not ours (a
            # previous revision's secret): a fresh nonce, and the client retries without asking
            # the user again; nothing is let through on it
            raise Deny("stale_nonce", headers=self.challenge(stale=True))
        if cfg.replay_protection:
            try:
                first_use = await self._claim(params)
            except StoreUnavailable:
                if cfg.on_store_unavailable == "fail":
                    raise Deny("store_unavailable") from None
                first_use = True
            if not first_use:
                raise Deny("replayed_request", headers=self.challenge())
        consumer, credential = found
        check_consumer(
            ctx, consumer, credential, self.services.clock(), require_grant=cfg.check_grant
        )
        apply_identity(ctx, cfg, consumer.name, consumer.roles, self.build.consumers)
        ctx.variables["credential_id"] = credential.id
        if cfg.strip_credential:
            ctx.request.headers.remove("authorization")
        return None

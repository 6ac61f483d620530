"""HTTP Basic authentication against the consumer store (argon2 password hashes).

The username is a basic credential's username or an API client's ``client_id``; a client's
password is any of its secret versions that has not expired (a rotated secret keeps working
through its grace period). argon2 verification is deliberately slow, so it runs in a worker
thread, and a successful check is remembered briefly in-process under a hash of (username,
password, stored hash): a password change invalidates it, and the memo never holds a password."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
from datetime import UTC, datetime
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import Field

from portway.config.revision import ConsumerSnapshot, CredentialSnapshot
from portway.policies._headers import clean_header_value
from portway.policies.base import Deny, ErrorSpec, Policy
from portway.policies.consumers import (
    AUTH_ERRORS,
    AuthOptions,
    ConsumerIndex,
    apply_identity,
    check_consumer,
    scrub_identity_headers,
)
from portway.policies.contract import PolicyContext, Reply
from portway.policies.resources import PolicyServices

MAX_HEADER = 4096
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so timing does not reveal which users exist.
    Computed on first use: hashing costs ~0.2 s and 64 MiB, which a worker without Basic auth
    should not pay at start."""
    return _HASHER.hash("portway-no-such-user")


def verify_password(secret_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(secret_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def check_password(secret_hash: str | None, password: str) -> bool:
    """Shared with the token endpoint: argon2 in a thread."""
    return await asyncio.to_thread(verify_password, secret_hash or _dummy_hash(), password) and (
        secret_hash is not None
    )


def memo_key(username: str, password: str, secret_hash: str) -> str:
    digest = hashlib.sha256()
    for part in (username, password, secret_hash):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\x00")
    return "basic:" + digest.hexdigest()


def live_hashes(credential: CredentialSnapshot, now: float) -> list[str]:
    """The password hashes that open ``credential`` now: a basic password, or an API client's
    secret versions that have not expired (newest first)."""
    if credential.kind != "client":
        return [credential.secret_hash] if credential.secret_hash else []
    moment = datetime.fromtimestamp(now, UTC)
    return [
        s.secret_hash
        for s in sorted(credential.secrets, key=lambda s: -s.version)
        if s.expires_at is None
        or (s.expires_at if s.expires_at.tzinfo else s.expires_at.replace(tzinfo=UTC)) > moment
    ]


async def authenticate(
    index: ConsumerIndex,
    services: PolicyServices,
    username: str,
    password: str,
    *,
    cache_seconds: float = 60.0,
) -> tuple[ConsumerSnapshot, CredentialSnapshot] | None:
    """The consumer and credential a username and password open, if any (basic auth and the token
    endpoint share this). An unknown username costs one argon2 check like a known one."""
    found = index.by_username.get(username)
    hashes = live_hashes(found[1], services.clock()) if found else []
    memo = services.shared_memo
    for secret_hash in hashes:
        if memo.get(memo_key(username, password, secret_hash)) is not None:
            return found
    if not hashes:
        await check_password(None, password)
        return None
    for secret_hash in hashes:
        if await check_password(secret_hash, password):
            if cache_seconds > 0:
                memo.set(memo_key(username, password, secret_hash), True, cache_seconds)
            return found
    return None


def parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or len(header) > MAX_HEADER:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        return None
    return username, password


class BasicAuthConfig(AuthOptions):
    realm: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            pattern=r'^[^"\\\x00-\x1f\x7f]*$',
            description="realm announced in WWW-Authenticate",
        ),
    ] = "portway"
    check_grant: Annotated[
        bool, Field(description="require the consumer to hold a grant for this API")
    ] = True
    cache_seconds: Annotated[
        float, Field(ge=0, le=3600, description="how long a successful check is remembered")
    ] = 60.0


class BasicAuthPolicy(Policy[BasicAuthConfig]):
    type_name = "basic_auth"
    summary = "Authenticate the consumer with HTTP Basic credentials from the consumer store."
    config_model = BasicAuthConfig
    errors = {
        **AUTH_ERRORS,
        "missing_credentials": ErrorSpec(401, "basic credentials are required"),
    }

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        scrub_identity_headers(ctx, cfg)
        challenge = [("WWW-Authenticate", clean_header_value(f'Basic realm="{cfg.realm}"'))]
        parsed = parse_basic(ctx.request.headers.get("authorization"))
        if parsed is None:
            raise Deny("missing_credentials", headers=challenge)
        username, password = parsed
        found = await authenticate(
            self.build.consumers,
            self.services,
            username,
            password,
            cache_seconds=cfg.cache_seconds,
        )
        if found is None:
            raise Deny("invalid_credentials", headers=challenge)
        consumer, credential = found
        now = self.services.clock()
        check_consumer(ctx, consumer, credential, now, require_grant=cfg.check_grant)
        apply_identity(ctx, cfg, consumer.name, consumer.roles, self.build.consumers)
        ctx.variables["credential_id"] = credential.id
        if cfg.strip_credential:
            ctx.request.headers.remove("authorization")
        return None

"""Users, roles, personal access tokens, browser sessions and the failed-login guard.

Tokens and session ids are 256-bit random strings; only their SHA-256 is stored (a high-entropy
secret needs no slow hash, and the digest doubles as the lookup key). Passwords are argon2 hashes.
A browser session also carries a CSRF token (double submit: a readable cookie whose value must come
back in the ``X-CSRF-Token`` header of every unsafe request; the server keeps its digest too, so a
cookie planted by a sibling domain does not match).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from portway.errors import Conflict, NotFound
from portway.manager.passwords import fold
from portway.stores.config_store import ConfigStore, Document

_hasher = PasswordHasher()
_DUMMY_HASH: list[str] = []  # computed on first use: verifying it costs what a real check costs

TOKEN_PREFIX = "pwt_"
SESSION_COOKIE = "portway_session"
CSRF_COOKIE = "portway_csrf"
CSRF_HEADER = "X-CSRF-Token"


class Role(StrEnum):
    ADMIN = "admin"
    API_MANAGER = "api_manager"
    DEPLOYER = "deployer"
    SECURITY_OFFICER = "security_officer"
    VIEWER = "viewer"


class Permission(StrEnum):
    READ = "read"
    WRITE_APIS = "write_apis"
    DEPLOY = "deploy"
    MANAGE_ENVIRONMENTS = "manage_environments"
    MANAGE_CONSUMERS = "manage_consumers"
    MANAGE_USERS = "manage_users"
    READ_AUDIT = "read_audit"
    MANAGE_KEYS = "manage_keys"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.API_MANAGER: frozenset({Permission.READ, Permission.WRITE_APIS}),
    Role.DEPLOYER: frozenset({Permission.READ, Permission.DEPLOY}),
    Role.SECURITY_OFFICER: frozenset(
        {Permission.READ, Permission.MANAGE_CONSUMERS, Permission.READ_AUDIT}
    ),
    Role.VIEWER: frozenset({Permission.READ}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    username: str
    role: Role
    via: str = "token"
    session_id: str | None = None

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


def now_utc() -> datetime:
    return datetime.now(UTC)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check ``password``; an unknown user costs the same as a wrong password."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(_hasher.hash(secrets.token_urlsafe(16)))
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH[0], password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _expired(value: str | None, now: datetime) -> bool:
    return bool(value) and datetime.fromisoformat(str(value)) <= now


# users -------------------------------------------------------------------------------------
def username_key(username: str) -> str:
    """The stored, unique form of a username: NFKC, case-folded (``Admin`` is ``admin``)."""
    return fold(username)


def user_view(doc: Document) -> dict[str, Any]:
    return {
        "username": doc.data["username"],
        "role": doc.data["role"],
        "disabled": bool(doc.data.get("disabled")),
        "created_at": doc.data.get("created_at"),
        "version": doc.version,
    }


async def create_user(store: ConfigStore, username: str, role: Role, password: str) -> str:
    user_id = uuid.uuid4().hex
    await store.insert(
        "users",
        user_id,
        {
            "username": username_key(username),
            "role": role.value,
            "password_hash": hash_password(password),
            "disabled": False,
            "created_at": now_utc().isoformat(),
        },
    )
    return user_id


async def user_by_name(store: ConfigStore, username: str) -> Document | None:
    """The user of this name in any letter case; users stored before names were normalised are
    matched by their normalised name too."""
    key = username_key(username)
    found = await store.find("users", {"username": key}, limit=1)
    if found:
        return found[0]
    return next(
        (d for d in await store.find("users") if username_key(str(d.data["username"])) == key),
        None,
    )


async def active_admins(store: ConfigStore) -> list[Document]:
    return [
        d
        for d in await store.find("users", {"role": Role.ADMIN.value})
        if not d.data.get("disabled")
    ]


async def check_keeps_an_admin(store: ConfigStore, user: Document, new: dict[str, Any]) -> None:
    """Refuse a change that would leave no active admin (nobody could manage users again)."""
    was_admin = user.data["role"] == Role.ADMIN.value and not user.data.get("disabled")
    stays_admin = new.get("role") == Role.ADMIN.value and not new.get("disabled")
    if was_admin and not stays_admin:
        others = [d for d in await active_admins(store) if d.id != user.id]
        if not others:
            raise Conflict("at least one active admin must remain")


# personal access tokens --------------------------------------------------------------------
def token_view(doc: Document, now: datetime | None = None) -> dict[str, Any]:
    moment = now or now_utc()
    data = doc.data
    return {
        "id": doc.id,
        "name": data.get("name"),
        "created_at": data.get("created_at"),
        "expires_at": data.get("expires_at"),
        "revoked_at": data.get("revoked_at"),
        "active": not data.get("revoked_at") and not _expired(data.get("expires_at"), moment),
    }


async def create_token(
    store: ConfigStore, user_id: str, name: str, ttl: timedelta | None = timedelta(days=90)
) -> str:
    token, _ = await issue_token(store, user_id, name, ttl)
    return token


async def issue_token(
    store: ConfigStore, user_id: str, name: str, ttl: timedelta | None
) -> tuple[str, Document]:
    """A new token (returned once) and its stored record (digest only)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = now_utc()
    expires = (now + ttl).isoformat() if ttl else None
    doc = await store.insert(
        "tokens",
        uuid.uuid4().hex,
        {
            "lookup": token_digest(token),
            "user_id": user_id,
            "name": name,
            "created_at": now.isoformat(),
            "expires_at": expires,
            "revoked_at": None,
        },
    )
    return token, doc


async def revoke_user_tokens(store: ConfigStore, user_id: str) -> None:
    """Revoke every token of a user (password changed, user disabled or deleted)."""
    for doc in await store.find("tokens", {"user_id": user_id}):
        with contextlib.suppress(Conflict):  # revoked concurrently: revoked either way
            await revoke_token(store, doc)


async def revoke_token(store: ConfigStore, doc: Document) -> Document:
    if doc.data.get("revoked_at"):
        return doc
    data = {**doc.data, "revoked_at": now_utc().isoformat()}
    return await store.replace("tokens", doc.id, data, expected_version=doc.version)


async def _principal_for(store: ConfigStore, user_id: str) -> tuple[Document, Principal] | None:
    user = await store.get("users", user_id)
    if user is None or user.data.get("disabled"):
        return None
    return user, Principal(user.id, user.data["username"], Role(user.data["role"]))


async def authenticate_token(store: ConfigStore, token: str) -> Principal | None:
    found = await store.find("tokens", {"lookup": token_digest(token)}, limit=1)
    if not found:
        return None
    data = found[0].data
    if data.get("revoked_at") or _expired(data.get("expires_at"), now_utc()):
        return None
    resolved = await _principal_for(store, data["user_id"])
    return None if resolved is None else resolved[1]


# sessions ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NewSession:
    session_token: str
    csrf_token: str
    expires_at: datetime


async def create_session(store: ConfigStore, user_id: str, ttl: float) -> NewSession:
    session_token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    now = now_utc()
    expires = now + timedelta(seconds=ttl)
    await store.insert(
        "sessions",
        uuid.uuid4().hex,
        {
            "lookup": token_digest(session_token),
            "csrf": token_digest(csrf_token),
            "user_id": user_id,
            "created_at": now.isoformat(),
            "expires_at": expires.isoformat(),
        },
    )
    return NewSession(session_token, csrf_token, expires)


async def authenticate_session(
    store: ConfigStore, session_token: str
) -> tuple[Principal, str] | None:
    """The session's principal and its CSRF digest; an expired session is removed."""
    found = await store.find("sessions", {"lookup": token_digest(session_token)}, limit=1)
    if not found:
        return None
    doc = found[0]
    if _expired(doc.data.get("expires_at"), now_utc()):
        with contextlib.suppress(NotFound):  # another request removed it first
            await store.delete("sessions", doc.id)
        return None
    resolved = await _principal_for(store, doc.data["user_id"])
    if resolved is None:
        return None
    _, who = resolved
    return (
        Principal(who.user_id, who.username, who.role, via="session", session_id=doc.id),
        str(doc.data["csrf"]),
    )


def csrf_ok(stored_digest: str, cookie: str | None, header: str | None) -> bool:
    if not cookie or not header:
        return False
    return hmac.compare_digest(cookie, header) and hmac.compare_digest(
        token_digest(header), stored_digest
    )


# bootstrap ---------------------------------------------------------------------------------
async def bootstrap_admin(store: ConfigStore) -> tuple[str, str, str] | None:
    """Create the first admin when there is no user; returns (username, password, token) once."""
    if await store.find("users", limit=1):
        return None
    password = secrets.token_urlsafe(18)
    user_id = await create_user(store, "admin", Role.ADMIN, password)
    token = await create_token(store, user_id, "bootstrap", ttl=None)
    return "admin", password, token


# failed logins -----------------------------------------------------------------------------
@dataclass(slots=True)
class _Failures:
    times: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginGuard:
    """Slows down and locks out repeated failed logins, per username and per client IP.

    State lives in the manager process: with several manager replicas each counts on its own
    (the limits then apply per replica). Memory is bounded: the oldest keys are forgotten first.
    """

    def __init__(
        self,
        *,
        max_user_failures: int,
        max_ip_failures: int,
        window: float,
        lockout: float,
        base_delay: float,
        max_delay: float,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = 100_000,
    ) -> None:
        self.max_user_failures = max_user_failures
        self.max_ip_failures = max_ip_failures
        self.window = window
        self.lockout = lockout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock
        self.capacity = capacity
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def _entry(self, key: str) -> _Failures:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Failures()
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        now = self.clock()
        entry.times = [t for t in entry.times if now - t < self.window]
        return entry

    def locked_for(self, username: str, ip: str) -> float:
        """Seconds until a login for this username from this IP may be tried again (0 = now)."""
        now = self.clock()
        waits = [self._entry(key).locked_until - now for key in (f"user:{username}", f"ip:{ip}")]
        return max(0.0, *waits)

    def failed(self, username: str, ip: str) -> float:
        """Record a failure; the delay (seconds) to wait before answering."""
        now = self.clock()
        count = 0
        for key, limit in ((f"user:{username}", self.max_user_failures), (f"ip:{ip}", None)):
            entry = self._entry(key)
            entry.times.append(now)
            if key.startswith("user:"):
                count = len(entry.times)
            if len(entry.times) >= (limit or self.max_ip_failures):
                entry.locked_until = now + self.lockout
                entry.times.clear()
        delay: float = self.base_delay * 2.0 ** max(count - 1, 0)
        return min(delay, self.max_delay)

    def succeeded(self, username: str) -> None:
        self._entries.pop(f"user:{username}", None)

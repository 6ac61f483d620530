"""Users, roles and personal access tokens.

Tokens are 256-bit random strings prefixed ``pwt_``; only their SHA-256 is stored (a high-entropy
token needs no slow hash, and the digest doubles as the lookup key). Passwords are argon2 hashes.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher

from portway.stores.config_store import ConfigStore

_hasher = PasswordHasher()


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


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.API_MANAGER: frozenset({Permission.READ, Permission.WRITE_APIS}),
    Role.DEPLOYER: frozenset({Permission.READ, Permission.DEPLOY}),
    Role.SECURITY_OFFICER: frozenset({Permission.READ, Permission.MANAGE_CONSUMERS}),
    Role.VIEWER: frozenset({Permission.READ}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    username: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def create_user(store: ConfigStore, username: str, role: Role, password: str) -> str:
    user_id = uuid.uuid4().hex
    await store.insert(
        "users",
        user_id,
        {"username": username, "role": role.value, "password_hash": hash_password(password)},
    )
    return user_id


async def create_token(
    store: ConfigStore, user_id: str, name: str, ttl: timedelta | None = timedelta(days=90)
) -> str:
    token = "pwt_" + secrets.token_urlsafe(32)
    expires = (datetime.now(UTC) + ttl).isoformat() if ttl else None
    await store.insert(
        "tokens",
        uuid.uuid4().hex,
        {"lookup": token_digest(token), "user_id": user_id, "name": name, "expires_at": expires},
    )
    return token


async def authenticate_token(store: ConfigStore, token: str) -> Principal | None:
    found = await store.find("tokens", {"lookup": token_digest(token)}, limit=1)
    if not found:
        return None
    data = found[0].data
    expires = data.get("expires_at")
    if expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
        return None
    user = await store.get("users", data["user_id"])
    if user is None or user.data.get("disabled"):
        return None
    return Principal(user.id, user.data["username"], Role(user.data["role"]))


async def bootstrap_admin(store: ConfigStore) -> tuple[str, str, str] | None:
    """Create the first admin when there is no user; returns (username, password, token) once."""
    if await store.find("users", limit=1):
        return None
    password = secrets.token_urlsafe(18)
    user_id = await create_user(store, "admin", Role.ADMIN, password)
    token = await create_token(store, user_id, "bootstrap", ttl=None)
    return "admin", password, token

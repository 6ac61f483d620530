"""Access management: password sign-in under the failed-login guard, users, personal tokens.

The routes of ``routes_access`` translate HTTP (cookies, client address, status codes) and call
this service; every store access, rule (password quality, the last admin, re-authentication)
and audit record of users, sessions and tokens is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from datetime import timedelta
from typing import Annotated

from pydantic import Field, Strict

from portway.config.base import Model
from portway.errors import Conflict, NotFound
from portway.manager import audit
from portway.manager.auth import (
    LoginGuard,
    NewSession,
    Principal,
    Role,
    check_keeps_an_admin,
    create_session,
    create_user,
    hash_password,
    issue_token,
    revoke_token,
    revoke_user_tokens,
    user_by_name,
    username_key,
    verify_password,
)
from portway.manager.passwords import password_problem
from portway.manager.problems import ApiError
from portway.stores.config_store import ConfigStore, Document

log = logging.getLogger("portway.manager.auth")

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"
Password = Annotated[str, Field(min_length=12, max_length=1024)]


class LoginRequest(Model):
    username: Annotated[str, Field(min_length=1, max_length=100)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class UserCreate(Model):
    username: Annotated[str, Field(pattern=USERNAME_PATTERN)]
    role: Annotated[Role, Strict(False)]
    password: Annotated[
        str | None, Field(min_length=12, max_length=1024, description="generated when absent")
    ] = None


class UserUpdate(Model):
    role: Annotated[Role | None, Strict(False)] = None
    disabled: bool | None = None
    password: Annotated[str | None, Field(min_length=12, max_length=1024)] = None


class PasswordChange(Model):
    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Password


class TokenCreate(Model):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    current_password: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1024,
            description="the caller's password: minting a token needs re-authentication",
        ),
    ]
    expires_in_days: Annotated[int, Field(ge=1, le=365, description="lifetime")] = 90


def _check_password(password: str, username: str, field: str) -> None:
    problem = password_problem(password, username)
    if problem is not None:
        raise ApiError(422, "validation_error", f"{field}: the password {problem}", field)


def _locked_out(wait: float, what: str) -> ApiError:
    return ApiError(
        429,
        "locked_out",
        f"too many failed {what}; try again later",
        headers={"Retry-After": str(math.ceil(wait))},
    )


class Access:
    def __init__(self, store: ConfigStore, guard: LoginGuard, session_ttl: float) -> None:
        self.store = store
        self.guard = guard
        self.session_ttl = session_ttl

    # sessions ------------------------------------------------------------------------------
    async def login(self, body: LoginRequest, ip: str) -> tuple[Document, NewSession]:
        """The user and a new session; repeated failures are slowed down, then locked out
        (429) per username and per client address."""
        key = username_key(body.username)  # `Alice` and `alice` share one failure count
        wait = self.guard.locked_for(key, ip)
        if wait > 0:
            raise _locked_out(wait, "logins")
        user = await user_by_name(self.store, body.username)
        usable = user is not None and not user.data.get("disabled")
        stored = user.data.get("password_hash") if user is not None and usable else None
        ok = await asyncio.to_thread(verify_password, stored, body.password)
        if not ok or user is None:
            delay = self.guard.failed(key, ip)
            log.warning("failed login for %r from %s", body.username[:100], ip)
            if delay > 0:
                await asyncio.sleep(delay)
            raise ApiError(401, "invalid_credentials", "invalid username or password")
        self.guard.succeeded(key)
        return user, await create_session(self.store, user.id, self.session_ttl)

    async def logout(self, who: Principal) -> None:
        if who.session_id is not None:
            with contextlib.suppress(NotFound):
                await self.store.delete("sessions", who.session_id)

    async def _reauthenticate(self, user: Document, password: str, ip: str, field: str) -> None:
        """Check the caller's own password under the failed-login guard: a wrong one counts as
        a failed login for that username, and a locked-out username is a 429 before any check."""
        key = username_key(str(user.data["username"]))  # the key the login counts under
        wait = self.guard.locked_for(key, ip)
        if wait > 0:
            raise _locked_out(wait, "password checks")
        ok = await asyncio.to_thread(verify_password, user.data.get("password_hash"), password)
        if not ok:
            delay = self.guard.failed(key, ip)
            log.warning("wrong current password for %r from %s", key, ip)
            if delay > 0:
                await asyncio.sleep(delay)
            raise ApiError(422, "validation_error", "the current password is wrong", field)
        self.guard.succeeded(key)

    async def _drop_sessions(self, user_id: str) -> None:
        for doc in await self.store.find("sessions", {"user_id": user_id}):
            with contextlib.suppress(NotFound):
                await self.store.delete("sessions", doc.id)

    async def _caller(self, who: Principal) -> Document:
        user = await self.store.get("users", who.user_id)
        if user is None:
            raise NotFound("users", who.username)
        return user

    async def change_password(self, who: Principal, body: PasswordChange, ip: str) -> None:
        """A wrong current password counts as a failed login; every session and token of the
        user ends."""
        user = await self._caller(who)
        await self._reauthenticate(user, body.current_password, ip, "body.current_password")
        _check_password(body.new_password, who.username, "body.new_password")
        data = {**user.data, "password_hash": hash_password(body.new_password)}
        await self.store.replace("users", user.id, data, expected_version=user.version)
        await self._drop_sessions(user.id)
        await revoke_user_tokens(self.store, user.id)
        await audit.record(
            self.store,
            who.username,
            "user.password",
            f"users/{who.username}",
            {"changed": None},
            {"changed": "password"},
        )

    # users ---------------------------------------------------------------------------------
    async def users(self) -> list[Document]:
        return await self.store.find("users")

    async def user(self, username: str) -> Document:
        user = await user_by_name(self.store, username)
        if user is None:
            raise NotFound("users", username)
        return user

    async def create_user(self, body: UserCreate, actor: str) -> tuple[Document, str | None]:
        """The new user and its generated password (None when the body gave one). Usernames are
        stored case-folded: ``Alice`` and ``alice`` are one user."""
        if body.password is not None:
            _check_password(body.password, body.username, "body.password")
        if await user_by_name(self.store, body.username) is not None:
            raise Conflict(f"username {username_key(body.username)!r} is taken")
        password = body.password or secrets.token_urlsafe(18)
        user_id = await create_user(self.store, body.username, body.role, password)
        doc = await self.store.get("users", user_id)
        if doc is None:
            raise NotFound("users", body.username)
        stored_name = doc.data["username"]
        await audit.record(
            self.store,
            actor,
            "user.create",
            f"users/{stored_name}",
            None,
            {"username": stored_name, "role": body.role.value},
        )
        return doc, None if body.password is not None else password

    async def update_user(
        self, username: str, body: UserUpdate, expected: int | None, actor: str
    ) -> Document:
        user = await self.user(username)
        data = dict(user.data)
        if body.role is not None:
            data["role"] = body.role.value
        if body.disabled is not None:
            data["disabled"] = body.disabled
        if body.password is not None:
            _check_password(body.password, str(user.data["username"]), "body.password")
            data["password_hash"] = hash_password(body.password)
        await check_keeps_an_admin(self.store, user, data)
        doc = await self.store.replace(
            "users", user.id, data, expected_version=expected or user.version
        )
        if body.password is not None or body.disabled:
            await self._drop_sessions(user.id)
            await revoke_user_tokens(self.store, user.id)
        old_view = {k: user.data.get(k) for k in ("role", "disabled")}
        new_view = {k: data.get(k) for k in ("role", "disabled")}
        if body.password is not None:
            new_view["changed"] = "password"
        await audit.record(
            self.store, actor, "user.update", f"users/{username}", old_view, new_view
        )
        return doc

    async def delete_user(self, username: str, actor: str) -> None:
        user = await self.user(username)
        await check_keeps_an_admin(self.store, user, {"role": None, "disabled": True})
        await self.store.delete("users", user.id)
        await self._drop_sessions(user.id)
        await revoke_user_tokens(self.store, user.id)
        await audit.record(
            self.store,
            actor,
            "user.delete",
            f"users/{username}",
            {"username": username, "role": user.data["role"]},
            None,
        )

    # personal access tokens ----------------------------------------------------------------
    async def tokens(self, user_id: str) -> list[Document]:
        return await self.store.find("tokens", {"user_id": user_id})

    async def user_tokens(self, username: str) -> list[Document]:
        return await self.tokens((await self.user(username)).id)

    async def revoke_user_token(self, username: str, token_id: str, actor: str) -> None:
        await self.revoke((await self.user(username)).id, token_id, actor)

    async def revoke(self, user_id: str, token_id: str, actor: str) -> None:
        doc = await self.store.get("tokens", token_id)
        if doc is None or doc.data.get("user_id") != user_id:
            raise NotFound("tokens", token_id)
        await revoke_token(self.store, doc)
        await audit.record(
            self.store,
            actor,
            "token.revoke",
            f"tokens/{token_id}",
            {"name": doc.data.get("name"), "revoked": False},
            {"name": doc.data.get("name"), "revoked": True},
        )

    async def create_token(
        self, who: Principal, body: TokenCreate, ip: str
    ) -> tuple[str, Document]:
        """A token with the caller's role; the caller re-authenticates with its password."""
        user = await self._caller(who)
        await self._reauthenticate(user, body.current_password, ip, "body.current_password")
        token, doc = await issue_token(
            self.store, who.user_id, body.name, timedelta(days=body.expires_in_days)
        )
        await audit.record(
            self.store,
            who.username,
            "token.create",
            f"tokens/{doc.id}",
            None,
            {"name": body.name, "expires_at": doc.data["expires_at"]},
        )
        return token, doc

"""Routes: login/logout (browser sessions), users (admin only), personal access tokens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import Field, Strict

from portway.config.base import Model
from portway.errors import Conflict, NotFound
from portway.manager import audit
from portway.manager.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Role,
    check_keeps_an_admin,
    create_session,
    create_user,
    hash_password,
    issue_token,
    revoke_token,
    revoke_user_tokens,
    token_view,
    user_by_name,
    user_view,
    username_key,
    verify_password,
)
from portway.manager.context import Services
from portway.manager.deps import Caller, IfMatch, Reader, Svc, UserManager, if_match
from portway.manager.passwords import password_problem
from portway.manager.problems import ApiError
from portway.stores.config_store import ConfigStore, Document

log = logging.getLogger("portway.manager.auth")
router = APIRouter()

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"
Username = Annotated[str, Path(max_length=100)]
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


def _client_ip(request: Request) -> str:
    # X-Forwarded-For is not trusted here: the manager is reached directly on the LAN.
    return request.client.host if request.client else "unknown"


def _set_session_cookies(
    response: Response, session: str, csrf: str, max_age: int, secure: bool
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    # readable by the UI's script, which echoes it in the X-CSRF-Token header
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=False,
        samesite="strict",
    )


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


async def _reauthenticate(
    svc: Services, request: Request, user: Document, password: str, field: str
) -> None:
    """Check the caller's own password under the failed-login guard: a wrong one counts as a
    failed login for that username, and a locked-out username is a 429 before any check."""
    ip = _client_ip(request)
    key = username_key(str(user.data["username"]))  # the key the login counts under
    wait = svc.login_guard.locked_for(key, ip)
    if wait > 0:
        raise _locked_out(wait, "password checks")
    ok = await asyncio.to_thread(verify_password, user.data.get("password_hash"), password)
    if not ok:
        delay = svc.login_guard.failed(key, ip)
        log.warning("wrong current password for %r from %s", key, ip)
        if delay > 0:
            await asyncio.sleep(delay)
        raise ApiError(422, "validation_error", "the current password is wrong", field)
    svc.login_guard.succeeded(key)


async def _drop_sessions(store: ConfigStore, user_id: str) -> None:
    for doc in await store.find("sessions", {"user_id": user_id}):
        with contextlib.suppress(NotFound):
            await store.delete("sessions", doc.id)


# sessions ----------------------------------------------------------------------------------
@router.post("/auth/login", tags=["auth"])
async def login(
    body: LoginRequest, request: Request, response: Response, svc: Svc
) -> dict[str, Any]:
    """Password login for the web UI: sets an HttpOnly, SameSite=Strict session cookie and a CSRF
    cookie whose value must be echoed in ``X-CSRF-Token`` on unsafe requests. Repeated failures
    are slowed down, then locked out (429 with Retry-After) per username and per client IP."""
    ip = _client_ip(request)
    guard = svc.login_guard
    key = username_key(body.username)  # `Alice` and `alice` share one failure count
    wait = guard.locked_for(key, ip)
    if wait > 0:
        raise _locked_out(wait, "logins")
    user = await user_by_name(svc.store, body.username)
    usable = user is not None and not user.data.get("disabled")
    stored = user.data.get("password_hash") if user is not None and usable else None
    ok = await asyncio.to_thread(verify_password, stored, body.password)
    if not ok or user is None:
        delay = guard.failed(key, ip)
        log.warning("failed login for %r from %s", body.username[:100], ip)
        if delay > 0:
            await asyncio.sleep(delay)
        raise ApiError(401, "invalid_credentials", "invalid username or password")
    guard.succeeded(key)
    settings = svc.settings
    session = await create_session(svc.store, user.id, settings.session_ttl)
    _set_session_cookies(
        response,
        session.session_token,
        session.csrf_token,
        int(settings.session_ttl),
        settings.cookie_secure,
    )
    response.headers["Cache-Control"] = "no-store"
    return {
        "username": user.data["username"],
        "role": user.data["role"],
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at.isoformat(),
    }


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def logout(who: Caller, svc: Svc) -> Response:
    """End the browser session (a token caller has nothing to end)."""
    if who.session_id is not None:
        with contextlib.suppress(NotFound):
            await svc.store.delete("sessions", who.session_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/me", tags=["auth"])
async def me(who: Reader) -> dict[str, str]:
    return {"username": who.username, "role": who.role.value}


@router.put("/me/password", status_code=204, tags=["auth"])
async def change_my_password(
    body: PasswordChange, who: Caller, svc: Svc, request: Request
) -> Response:
    """Change the caller's password. A wrong current password counts as a failed login (repeated,
    it locks the username out: 429). Every session and token of the user ends."""
    user = await svc.store.get("users", who.user_id)
    if user is None:
        raise NotFound("users", who.username)
    await _reauthenticate(svc, request, user, body.current_password, "body.current_password")
    _check_password(body.new_password, who.username, "body.new_password")
    data = {**user.data, "password_hash": hash_password(body.new_password)}
    await svc.store.replace("users", user.id, data, expected_version=user.version)
    await _drop_sessions(svc.store, user.id)
    await revoke_user_tokens(svc.store, user.id)
    await audit.record(
        svc.store,
        who.username,
        "user.password",
        f"users/{who.username}",
        {"changed": None},
        {"changed": "password"},
    )
    return Response(status_code=204)


# users -------------------------------------------------------------------------------------
async def _user(store: ConfigStore, username: str) -> Document:
    user = await user_by_name(store, username)
    if user is None:
        raise NotFound("users", username)
    return user


@router.get("/users", tags=["users"])
async def list_users(svc: Svc, _: UserManager) -> list[dict[str, Any]]:
    return [user_view(d) for d in await svc.store.find("users")]


@router.post("/users", status_code=201, tags=["users"])
async def create_user_route(
    body: UserCreate, svc: Svc, who: UserManager, response: Response
) -> dict[str, Any]:
    """Create a user; a generated password is returned once, in ``password``. Usernames are
    stored case-folded: ``Alice`` and ``alice`` are one user."""
    if body.password is not None:
        _check_password(body.password, body.username, "body.password")
    if await user_by_name(svc.store, body.username) is not None:
        raise Conflict(f"username {username_key(body.username)!r} is taken")
    password = body.password or secrets.token_urlsafe(18)
    user_id = await create_user(svc.store, body.username, body.role, password)
    doc = await svc.store.get("users", user_id)
    assert doc is not None
    stored_name = doc.data["username"]
    await audit.record(
        svc.store,
        who.username,
        "user.create",
        f"users/{stored_name}",
        None,
        {"username": stored_name, "role": body.role.value},
    )
    response.headers["Cache-Control"] = "no-store"
    view = user_view(doc)
    if body.password is None:
        view["password"] = password
    return view


@router.get("/users/{username}", tags=["users"])
async def get_user(username: Username, svc: Svc, _: UserManager) -> dict[str, Any]:
    return user_view(await _user(svc.store, username))


@router.patch("/users/{username}", tags=["users"])
async def update_user(
    username: Username, body: UserUpdate, svc: Svc, who: UserManager, match: IfMatch = None
) -> dict[str, Any]:
    user = await _user(svc.store, username)
    data = dict(user.data)
    if body.role is not None:
        data["role"] = body.role.value
    if body.disabled is not None:
        data["disabled"] = body.disabled
    if body.password is not None:
        _check_password(body.password, str(user.data["username"]), "body.password")
        data["password_hash"] = hash_password(body.password)
    await check_keeps_an_admin(svc.store, user, data)
    doc = await svc.store.replace(
        "users", user.id, data, expected_version=if_match(match) or user.version
    )
    if body.password is not None or body.disabled:
        await _drop_sessions(svc.store, user.id)
        await revoke_user_tokens(svc.store, user.id)
    old_view = {k: user.data.get(k) for k in ("role", "disabled")}
    new_view = {k: data.get(k) for k in ("role", "disabled")}
    if body.password is not None:
        new_view["changed"] = "password"
    await audit.record(
        svc.store, who.username, "user.update", f"users/{username}", old_view, new_view
    )
    return user_view(doc)


@router.delete("/users/{username}", status_code=204, tags=["users"])
async def delete_user(username: Username, svc: Svc, who: UserManager) -> Response:
    user = await _user(svc.store, username)
    await check_keeps_an_admin(svc.store, user, {"role": None, "disabled": True})
    await svc.store.delete("users", user.id)
    await _drop_sessions(svc.store, user.id)
    await revoke_user_tokens(svc.store, user.id)
    await audit.record(
        svc.store,
        who.username,
        "user.delete",
        f"users/{username}",
        {"username": username, "role": user.data["role"]},
        None,
    )
    return Response(status_code=204)


@router.get("/users/{username}/tokens", tags=["users"])
async def list_user_tokens(username: Username, svc: Svc, _: UserManager) -> list[dict[str, Any]]:
    user = await _user(svc.store, username)
    return [token_view(d) for d in await svc.store.find("tokens", {"user_id": user.id})]


@router.delete("/users/{username}/tokens/{token_id}", status_code=204, tags=["users"])
async def revoke_user_token(
    username: Username, token_id: Annotated[str, Path(max_length=64)], svc: Svc, who: UserManager
) -> Response:
    user = await _user(svc.store, username)
    await _revoke(svc.store, user.id, token_id, who.username)
    return Response(status_code=204)


# personal access tokens --------------------------------------------------------------------
async def _revoke(store: ConfigStore, user_id: str, token_id: str, actor: str) -> None:
    doc = await store.get("tokens", token_id)
    if doc is None or doc.data.get("user_id") != user_id:
        raise NotFound("tokens", token_id)
    await revoke_token(store, doc)
    await audit.record(
        store,
        actor,
        "token.revoke",
        f"tokens/{token_id}",
        {"name": doc.data.get("name"), "revoked": False},
        {"name": doc.data.get("name"), "revoked": True},
    )


@router.get("/tokens", tags=["tokens"])
async def list_tokens(who: Caller, svc: Svc) -> list[dict[str, Any]]:
    """The caller's own personal access tokens (never the token values)."""
    return [token_view(d) for d in await svc.store.find("tokens", {"user_id": who.user_id})]


@router.post("/tokens", status_code=201, tags=["tokens"])
async def create_token_route(
    body: TokenCreate, who: Caller, svc: Svc, request: Request, response: Response
) -> dict[str, Any]:
    """A personal access token with the caller's role; its value is shown once, in ``token``.
    Every caller, by session or by token, re-authenticates with ``current_password`` (a stolen
    session or token alone cannot mint a lasting credential); a wrong one counts as a failed
    login."""
    user = await svc.store.get("users", who.user_id)
    if user is None:
        raise NotFound("users", who.username)
    await _reauthenticate(svc, request, user, body.current_password, "body.current_password")
    token, doc = await issue_token(
        svc.store, who.user_id, body.name, timedelta(days=body.expires_in_days)
    )
    await audit.record(
        svc.store,
        who.username,
        "token.create",
        f"tokens/{doc.id}",
        None,
        {"name": body.name, "expires_at": doc.data["expires_at"]},
    )
    response.headers["Cache-Control"] = "no-store"
    return {**token_view(doc), "token": token}


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
async def revoke_own_token(
    token_id: Annotated[str, Path(max_length=64)], who: Caller, svc: Svc
) -> Response:
    await _revoke(svc.store, who.user_id, token_id, who.username)
    return Response(status_code=204)

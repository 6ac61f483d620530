"""Routes: login/logout (browser sessions), users (admin only), personal access tokens.

HTTP only (cookies, the client address, answers); the rules live in ``manager.access``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from portway.config.management.access import (
    CreatedToken,
    CreatedUser,
    LoginAnswer,
    Me,
    TokenView,
    UserView,
)
from portway.manager.access import (
    LoginRequest,
    PasswordChange,
    TokenCreate,
    UserCreate,
    UserUpdate,
)
from portway.manager.auth import CSRF_COOKIE, SESSION_COOKIE, token_view, user_view
from portway.manager.deps import Caller, IfMatch, Reader, Svc, UserManager, if_match
from portway.manager.problems import LOCKOUT_RESPONSES

router = APIRouter()

Username = Annotated[str, Path(max_length=100)]
TokenId = Annotated[str, Path(max_length=64)]


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


# sessions ----------------------------------------------------------------------------------
@router.post("/auth/login", tags=["auth"], response_model=LoginAnswer, responses=LOCKOUT_RESPONSES)
async def login(
    body: LoginRequest, request: Request, response: Response, svc: Svc
) -> dict[str, Any]:
    """Password login for the web UI: sets an HttpOnly, SameSite=Strict session cookie and a CSRF
    cookie whose value must be echoed in ``X-CSRF-Token`` on unsafe requests. Repeated failures
    are slowed down, then locked out (429 with Retry-After) per username and per client IP."""
    user, session = await svc.access.login(body, _client_ip(request))
    settings = svc.settings
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
    await svc.access.logout(who)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/me", tags=["auth"], response_model=Me)
async def me(who: Reader) -> dict[str, str]:
    return {"username": who.username, "role": who.role.value}


@router.put("/me/password", status_code=204, tags=["auth"], responses=LOCKOUT_RESPONSES)
async def change_my_password(
    body: PasswordChange, who: Caller, svc: Svc, request: Request
) -> Response:
    """Change the caller's password. A wrong current password counts as a failed login (repeated,
    it locks the username out: 429). Every session and token of the user ends."""
    await svc.access.change_password(who, body, _client_ip(request))
    return Response(status_code=204)


# users -------------------------------------------------------------------------------------
@router.get("/users", tags=["users"], response_model=list[UserView])
async def list_users(svc: Svc, _: UserManager) -> list[dict[str, Any]]:
    return [user_view(d) for d in await svc.access.users()]


@router.post("/users", status_code=201, tags=["users"], response_model=CreatedUser)
async def create_user_route(
    body: UserCreate, svc: Svc, who: UserManager, response: Response
) -> dict[str, Any]:
    """Create a user; a generated password is returned once, in ``password``. Usernames are
    stored case-folded: ``Alice`` and ``alice`` are one user."""
    doc, generated = await svc.access.create_user(body, who.username)
    response.headers["Cache-Control"] = "no-store"
    view = user_view(doc)
    if generated is not None:
        view["password"] = generated
    return view


@router.get("/users/{username}", tags=["users"], response_model=UserView)
async def get_user(username: Username, svc: Svc, _: UserManager) -> dict[str, Any]:
    return user_view(await svc.access.user(username))


@router.patch("/users/{username}", tags=["users"], response_model=UserView)
async def update_user(
    username: Username, body: UserUpdate, svc: Svc, who: UserManager, match: IfMatch = None
) -> dict[str, Any]:
    return user_view(await svc.access.update_user(username, body, if_match(match), who.username))


@router.delete("/users/{username}", status_code=204, tags=["users"])
async def delete_user(username: Username, svc: Svc, who: UserManager) -> Response:
    await svc.access.delete_user(username, who.username)
    return Response(status_code=204)


@router.get("/users/{username}/tokens", tags=["users"], response_model=list[TokenView])
async def list_user_tokens(username: Username, svc: Svc, _: UserManager) -> list[dict[str, Any]]:
    return [token_view(d) for d in await svc.access.user_tokens(username)]


@router.delete("/users/{username}/tokens/{token_id}", status_code=204, tags=["users"])
async def revoke_user_token(
    username: Username, token_id: TokenId, svc: Svc, who: UserManager
) -> Response:
    await svc.access.revoke_user_token(username, token_id, who.username)
    return Response(status_code=204)


# personal access tokens --------------------------------------------------------------------
@router.get("/tokens", tags=["tokens"], response_model=list[TokenView])
async def list_tokens(who: Caller, svc: Svc) -> list[dict[str, Any]]:
    """The caller's own personal access tokens (never the token values)."""
    return [token_view(d) for d in await svc.access.tokens(who.user_id)]


@router.post(
    "/tokens",
    status_code=201,
    tags=["tokens"],
    response_model=CreatedToken,
    responses=LOCKOUT_RESPONSES,
)
async def create_token_route(
    body: TokenCreate, who: Caller, svc: Svc, request: Request, response: Response
) -> dict[str, Any]:
    """A personal access token with the caller's role; its value is shown once, in ``token``.
    Every caller, by session or by token, re-authenticates with ``current_password`` (a stolen
    session or token alone cannot mint a lasting credential); a wrong one counts as a failed
    login."""
    token, doc = await svc.access.create_token(who, body, _client_ip(request))
    response.headers["Cache-Control"] = "no-store"
    return {**token_view(doc), "token": token}


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
async def revoke_own_token(token_id: TokenId, who: Caller, svc: Svc) -> Response:
    await svc.access.revoke(who.user_id, token_id, who.username)
    return Response(status_code=204)

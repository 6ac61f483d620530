"""What routes depend on: the services, the caller (token or session) and its permissions."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from portway.manager.auth import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    Permission,
    Principal,
    authenticate_session,
    authenticate_token,
    csrf_ok,
)
from portway.manager.context import Services
from portway.manager.problems import ApiError
from portway.manager.query_check import dependants, refuse_unknown_query
from portway.stores.config_store import Document

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(
    auto_error=False, description="a personal access token (pwt_…)", scheme_name="token"
)
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="browser session from POST /api/v1/auth/login; unsafe methods also need the "
    f"{CSRF_HEADER} header equal to the {CSRF_COOKIE} cookie",
    scheme_name="session",
)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


_needs_caller_by_route: dict[int, bool] = {}


def _needs_caller(route: APIRoute) -> bool:
    return any(d.call is principal for d in dependants(route.dependant))


async def query_check(request: Request) -> None:
    """Every management route's first dependency: unknown query parameters are refused
    (``refuse_unknown_query``) — on a route that needs a caller, once ``principal`` has
    authenticated one, so an anonymous request is a 401 whatever its query and the refusal's list
    of the route's parameters goes to callers only."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    needs = _needs_caller_by_route.get(id(route))
    if needs is None:
        needs = _needs_caller_by_route[id(route)] = _needs_caller(route)
    if needs:
        request.state.query_check_pending = True
    else:
        refuse_unknown_query(request)


async def principal(
    request: Request,
    svc: Svc,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[str | None, Depends(session_cookie)],
) -> Principal:
    """The caller: a Bearer token wins; otherwise a session cookie (with CSRF on unsafe calls).
    Then the query check ``query_check`` left for after authentication."""
    who = await _authenticate(request, svc, credentials, session)
    if getattr(request.state, "query_check_pending", False):
        refuse_unknown_query(request)
    return who


async def _authenticate(
    request: Request,
    svc: Services,
    credentials: HTTPAuthorizationCredentials | None,
    session: str | None,
) -> Principal:
    if credentials is not None:
        found = await authenticate_token(svc.store, credentials.credentials)
        if found is None:
            raise ApiError(401, "unauthenticated", "the token is invalid, expired or revoked")
        return found
    if session:
        resolved = await authenticate_session(svc.store, session)
        if resolved is None:
            raise ApiError(401, "unauthenticated", "the session is invalid or expired")
        who, csrf_digest = resolved
        if request.method not in SAFE_METHODS and not csrf_ok(
            csrf_digest, request.cookies.get(CSRF_COOKIE), request.headers.get(CSRF_HEADER)
        ):
            raise ApiError(
                403,
                "csrf_failed",
                f"a session-authenticated {request.method} needs the {CSRF_HEADER} header "
                f"equal to the {CSRF_COOKIE} cookie",
            )
        return who
    raise ApiError(401, "unauthenticated", "a Bearer token or a session is required")


Caller = Annotated[Principal, Depends(principal)]


def allowed(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def check(who: Caller) -> Principal:
        if not who.can(permission):
            raise ApiError(
                403, "forbidden", f"role {who.role.value} lacks the {permission.value} permission"
            )
        return who

    return check


Reader = Annotated[Principal, Depends(allowed(Permission.READ))]
ApiWriter = Annotated[Principal, Depends(allowed(Permission.WRITE_APIS))]
DeployerRole = Annotated[Principal, Depends(allowed(Permission.DEPLOY))]
EnvManager = Annotated[Principal, Depends(allowed(Permission.MANAGE_ENVIRONMENTS))]
ConsumerManager = Annotated[Principal, Depends(allowed(Permission.MANAGE_CONSUMERS))]
UserManager = Annotated[Principal, Depends(allowed(Permission.MANAGE_USERS))]
AuditReader = Annotated[Principal, Depends(allowed(Permission.READ_AUDIT))]
KeyManager = Annotated[Principal, Depends(allowed(Permission.MANAGE_KEYS))]


def versioned(doc: Document, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{doc.version}"'
    return {**doc.data, "version": doc.version}


def if_match(value: str | None) -> int | None:
    if value is None:
        return None
    stripped = value.strip().removeprefix("W/").strip('"')
    if not stripped.isdigit() or len(stripped) > 18:
        raise ApiError(422, "validation_error", 'If-Match must be a version like "3"', "If-Match")
    return int(stripped)


IfMatch = Annotated[
    str | None, Header(alias="If-Match", max_length=40, description="the version you read")
]

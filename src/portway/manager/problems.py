"""Error answers of the management API: a status, a code, a message naming the field, and the
correlation id — never a stack trace."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from portway.config.log_format import CORRELATION_ID
from portway.config.management.common import Problem
from portway.errors import (
    ConfigError,
    Conflict,
    DeploymentError,
    LogStoreUnavailable,
    NotFound,
    StoreUnavailable,
)

log = logging.getLogger("portway.manager")
CORRELATION_HEADER = "X-Correlation-ID"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.details = details
        """several fields at once (e.g. each failed row of an import); default: ``field``"""


COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "the body is not valid JSON"},
    401: {"model": Problem, "description": "no valid token or session"},
    403: {"model": Problem, "description": "the role lacks the permission, or CSRF failed"},
    404: {"model": Problem, "description": "no such resource"},
    409: {"model": Problem, "description": "duplicate, stale version or resource in use"},
    413: {"model": Problem, "description": "the body is larger than its cap"},
    422: {"model": Problem, "description": "invalid input; details name the field"},
    500: {"model": Problem, "description": "internal error (the correlation id is in the log)"},
    503: {"model": Problem, "description": "the configuration store is unavailable"},
}
LOCKOUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"model": Problem, "description": "too many failed passwords; see Retry-After"},
}


def correlation_id(request: Request) -> str:
    value: str = getattr(request.state, "correlation_id", "") or uuid.uuid4().hex
    return value


def problem(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    cid = correlation_id(request)
    body: dict[str, Any] = {"error": code, "message": message, "correlation_id": cid}
    if details:
        body["details"] = details
    return JSONResponse(
        body, status_code=status, headers={CORRELATION_HEADER: cid, **(headers or {})}
    )


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_details(
    exc: ValidationError | RequestValidationError, prefix: str = ""
) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        field = _loc(loc)
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        details.append({"field": field, "message": err.get("msg", "invalid")})
    return details


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def correlate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get(CORRELATION_HEADER, "")
        ok = 0 < len(incoming) <= 128 and incoming.replace("-", "").isalnum()
        request.state.correlation_id = incoming if ok else uuid.uuid4().hex
        CORRELATION_ID.set(request.state.correlation_id)  # in every log line of this request
        try:
            response = await call_next(request)
        except Exception:
            log.exception("unhandled error")
            response = problem(
                request, 500, "internal_error", "internal error; see the manager log"
            )
        response.headers[CORRELATION_HEADER] = request.state.correlation_id
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(exc)
        first = details[0] if details else {"field": "body", "message": "invalid"}
        return problem(
            request, 422, "validation_error", f"{first['field']}: {first['message']}", details
        )

    @app.exception_handler(ValidationError)
    async def _model_validation(request: Request, exc: ValidationError) -> JSONResponse:
        details = validation_details(exc, "body")
        first = details[0] if details else {"field": "body", "message": "invalid"}
        return problem(
            request, 422, "validation_error", f"{first['field']}: {first['message']}", details
        )

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        details = [{"field": exc.field or "body", "message": exc.message}]
        return problem(request, 422, "validation_error", str(exc), details)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem(request, 409, "conflict", str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(request, 404, "not_found", str(exc))

    @app.exception_handler(DeploymentError)
    async def _deployment(request: Request, exc: DeploymentError) -> JSONResponse:
        return problem(request, 422, "deployment_refused", str(exc))

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.error("store unavailable: %s", exc)
        which = "traffic log" if isinstance(exc, LogStoreUnavailable) else "configuration"
        return problem(request, 503, "store_unavailable", f"the {which} store is unavailable")

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        details = exc.details or (
            [{"field": exc.field, "message": exc.message}] if exc.field else None
        )
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return problem(request, exc.status, exc.code, exc.message, details, headers | exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}
        return problem(
            request, exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )

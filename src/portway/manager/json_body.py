"""JSON request bodies of the management API are checked before a route sees them: a body that
is not UTF-8, not JSON, nested deeper than ``MAX_DEPTH``, or carries an integer beyond 64 bits, a
non-finite number (``NaN``) or a key twice is a 400 whose details name ``body`` — never a 500 and
never a silently mangled value."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from portway.manager.problems import problem
from portway.policies.jsonpath import json_depth

MAX_DEPTH = 64
MAX_INT_DIGITS = 19  # 2**63 has 19 digits; the exact bound is checked after parsing
INT_BOUND = 2**63
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyProblem(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS or abs(int(text)) >= INT_BOUND:
        raise BodyProblem(
            "body", f"integer {text[:24]}{'…' if len(text) > 24 else ''} is beyond 64 bits"
        )
    return int(text)


def _constant(name: str) -> Any:
    raise BodyProblem("body", f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BodyProblem(f"body.{key}", f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def check(raw: bytes) -> None:
    """Raise ``BodyProblem`` when ``raw`` is not an acceptable JSON document."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyProblem("body", f"not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text, parse_int=_int, parse_constant=_constant, object_pairs_hook=_unique_keys
        )
    except RecursionError:
        raise BodyProblem("body", f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BodyProblem("body", f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    if json_depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise BodyProblem("body", f"nested deeper than {MAX_DEPTH} levels")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return not media or media == "application/json" or media.endswith("+json")


def install(app: FastAPI, prefix: str = "/api/") -> None:
    """Check JSON bodies under ``prefix``; call before ``problems.install`` so the correlation
    middleware stays outermost."""

    @app.middleware("http")
    async def check_json_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if (
            request.method in BODY_METHODS
            and request.url.path.startswith(prefix)
            and _is_json(request.headers.get("content-type", ""))
        ):
            raw = await request.body()
            if raw.strip():
                try:
                    check(raw)
                except BodyProblem as exc:
                    details = [{"field": exc.field, "message": exc.message}]
                    return problem(
                        request, 400, "invalid_body", f"{exc.field}: {exc.message}", details
                    )
        return await call_next(request)

"""What expression and template policies (script, message_builder) read: the request, its
context and the response as plain JSON-like values, plus named variables (``variables.py``
sources) the operator declares.

Every value is bounded: a declared input whose JSON text is longer than ``MAX_INPUT_CHARS`` makes
the evaluation fail (``InputTooLarge``) rather than feeding megabytes into an interpreter; header
and query maps hold the first ``MAX_ITEMS`` names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from portway.policies.contract import HeaderMap, PolicyContext
from portway.policies.variables import Variable, compile_variable

MAX_INPUT_CHARS = 64 * 1024
MAX_ITEMS = 100
MAX_INPUTS = 20
BUILT_IN = frozenset({"request", "context", "response"})
INPUT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


class InputTooLarge(Exception):
    pass


def check_inputs(value: dict[str, str]) -> dict[str, str]:
    """Validate declared inputs (name → variable source); ``ValueError`` with an exact message."""
    if len(value) > MAX_INPUTS:
        raise ValueError(f"at most {MAX_INPUTS} inputs")
    for name, source in value.items():
        if not INPUT_NAME.match(name):
            raise ValueError(f"input name {name!r} must be a letter then letters, digits or _")
        if name in BUILT_IN:
            raise ValueError(f"input name {name!r} is built in ({', '.join(sorted(BUILT_IN))})")
        compile_variable(source)
    return value


def compile_inputs(value: Mapping[str, str]) -> dict[str, Variable]:
    return {name: compile_variable(source) for name, source in value.items()}


def _headers(headers: HeaderMap) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in out:
            out[key] += ", " + value
        elif len(out) < MAX_ITEMS:
            out[key] = value
    return out


def _size(value: Any) -> int:
    if value is None or isinstance(value, bool | int | float):
        return 8
    if isinstance(value, str):
        return len(value)
    return len(json.dumps(value, default=str))


async def resolve_inputs(
    ctx: PolicyContext, declared: Mapping[str, Variable], now: float
) -> dict[str, Any]:
    """The built-in documents and the declared inputs for this request."""
    req = ctx.request
    query: dict[str, str] = {}
    for key, val in req.query:
        if key not in query and len(query) < MAX_ITEMS:
            query[key] = val
    values: dict[str, Any] = {
        "request": {
            "method": req.method,
            "path": req.path,
            "query": query,
            "headers": _headers(req.headers),
            "client_ip": ctx.client_ip,
            "scheme": ctx.scheme,
        },
        "context": {
            "api": ctx.api,
            "project": ctx.project,
            "environment": ctx.environment,
            "endpoint": ctx.endpoint,
            "consumer": ctx.consumer,
            "roles": list(ctx.roles),
            "correlation_id": ctx.correlation_id,
            "path_params": dict(ctx.path_params),
        },
        "response": None
        if ctx.response is None
        else {"status": ctx.response.status, "headers": _headers(ctx.response.headers)},
    }
    for name, variable in declared.items():
        value = await variable.resolve(ctx, now)
        if _size(value) > MAX_INPUT_CHARS:
            raise InputTooLarge(f"input {name!r} is larger than {MAX_INPUT_CHARS} characters")
        values[name] = value
    return values

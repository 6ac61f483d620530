"""Checks every config store backend applies before writing, so all of them refuse the same data.

A document is refused with ``ConfigError`` naming the offending field (``data.policies[0].rate``)
before anything reaches the engine, so nothing partial is ever written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from portway.errors import ConfigError, DocumentTooLarge
from portway.stores.config_store import Prefix

MAX_KEY_LENGTH = 256
MAX_DOCUMENT_BYTES = 1 << 20
MAX_DEPTH = 32
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Scalar = str | int | float | bool | None


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigError("must be a non-empty string", field="id")
    if len(key) > MAX_KEY_LENGTH:
        raise ConfigError(f"must be at most {MAX_KEY_LENGTH} characters", field="id")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise ConfigError("must not contain control characters", field="id")
    _check_text(key, "id")
    return key


def _check_text(value: str, path: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("is not valid Unicode text (lone surrogate)", field=path) from None


def _walk(value: object, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ConfigError(f"nests deeper than {MAX_DEPTH} levels", field=path)
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError("must be a finite number (JSON has no NaN or infinity)", field=path)
        return
    if isinstance(value, str):
        _check_text(value, path)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"has a non-string key {k!r}", field=path)
            _check_text(k, path)
            _walk(v, f"{path}.{k}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _walk(v, f"{path}[{i}]", depth + 1)
        return
    raise ConfigError(f"a {type(value).__name__} is not a JSON value", field=path)


def canonical_json(data: object) -> str:
    """Validate ``data`` as a JSON object and return its canonical text (sorted keys, compact)."""
    if not isinstance(data, Mapping):
        raise ConfigError("must be a JSON object", field="data")
    _walk(data, "data", 0)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(size, MAX_DOCUMENT_BYTES)
    return text


def check_where(where: Mapping[str, Any] | None) -> dict[str, Scalar | Prefix]:
    """``find`` filters: top-level field names, scalar values (strings, numbers, booleans, None)
    or a ``Prefix`` of a string field."""
    out: dict[str, Scalar | Prefix] = {}
    for field, value in (where or {}).items():
        if not isinstance(field, str) or not _FIELD_RE.fullmatch(field):
            raise ValueError(f"invalid field name {field!r}: a top-level identifier is expected")
        if isinstance(value, Prefix):
            if not isinstance(value.text, str):
                raise ValueError(f"find() prefixes are strings; {field}={value!r} is not one")
            _check_text(value.text, field)
            out[field] = value
            continue
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"find() compares scalars only; {field}={value!r} is not one")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ValueError(f"find() compares 64-bit integers only; {field}={value!r} is not one")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"find() compares finite numbers only; {field}={value!r} is not one")
        out[field] = value
    return out


def json_type(value: object) -> str:
    """The JSON type name of a scalar, as SQLite's ``json_type`` spells it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "real"
    return "text"

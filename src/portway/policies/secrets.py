"""Write-only policy config fields: marked once, masked on every read, kept on a ``***`` write.

A config field is secret when its ``Field`` carries ``WRITE_ONLY`` (the published JSON Schema
then says ``"writeOnly": true``). The management API answers such a field as ``"***"``; a write
that sends ``"***"`` back keeps the value stored for the same policy (matched by scope and name).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel

from portway.errors import ConfigError

MASK = "***"
WRITE_ONLY: dict[str, Any] = {"writeOnly": True}
ENV_PREFIX = "PORTWAY_SECRET_"
_REFERENCE = re.compile(r"^\$\{env:(" + ENV_PREFIX + r"[A-Z0-9_]{1,200})\}$")
_VARIABLE = re.compile(r"^\$\{env\.[A-Z_][A-Z0-9_]{0,127}\}$")
"""A whole value that is an environment's variable (``portway.config.variables``)."""


@cache
def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s fields marked write-only."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("writeOnly")
    )


def secret_fields_of(spec: Mapping[str, Any]) -> frozenset[str]:
    """The secret config fields of a policy spec (by its type; none for an unknown type)."""
    return _fields_of(spec)


def _fields_of(spec: Mapping[str, Any]) -> frozenset[str]:
    from portway.policies.registry import POLICY_TYPES

    cls = POLICY_TYPES.get(str(spec.get("type")))
    return frozenset() if cls is None else secret_fields(cls.config_model)


def _is_spec(value: Mapping[str, Any]) -> bool:
    return isinstance(value.get("type"), str) and isinstance(value.get("config"), dict)


def _walk(value: Any, on_spec: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    if isinstance(value, dict):
        walked = {k: _walk(v, on_spec) for k, v in value.items()}
        return on_spec(walked) if _is_spec(walked) else walked
    if isinstance(value, list):
        return [_walk(v, on_spec) for v in value]
    return value


def _mask_spec(spec: dict[str, Any]) -> dict[str, Any]:
    fields = _fields_of(spec)
    config = spec["config"]
    if not fields & config.keys():
        return spec
    masked = {
        k: (MASK if k in fields and v is not None and not is_reference(v) else v)
        for k, v in config.items()
    }
    return {**spec, "config": masked}


def mask_secrets(value: Any) -> Any:
    """A copy of any JSON value with the secret fields of every policy spec in it masked."""
    return _walk(value, _mask_spec)


def keep_secrets(
    spec: dict[str, Any], stored: Mapping[str, Any] | None, where: str
) -> dict[str, Any]:
    """``spec`` with each ``"***"`` secret replaced by the value ``stored`` holds (same type);
    ``ConfigError`` naming the field when there is nothing stored to keep."""
    fields = _fields_of(spec)
    config = spec.get("config")
    if not isinstance(config, dict) or not fields:
        return spec
    old = stored.get("config") if stored and stored.get("type") == spec.get("type") else None
    kept = dict(config)
    for name in sorted(fields):
        if kept.get(name) != MASK:
            continue
        if not isinstance(old, dict) or old.get(name) in (None, MASK):
            raise ConfigError(
                f"{MASK!r} keeps a stored secret, and this policy has none stored: send the value",
                f"{where}.config.{name}",
            )
        kept[name] = old[name]
    return {**spec, "config": kept}


def is_reference(value: Any) -> bool:
    """Whether ``value`` is an ``${env:PORTWAY_SECRET_…}`` reference or an ``${env.NAME}``
    variable (not a secret itself: shown as written, never sealed)."""
    return isinstance(value, str) and (
        _REFERENCE.match(value) is not None or _VARIABLE.match(value) is not None
    )


def env_name(*parts: str) -> str:
    """``PORTWAY_SECRET_`` + the parts upper-cased, anything but letters and digits as ``_``."""
    return ENV_PREFIX + "_".join(re.sub(r"[^A-Z0-9]", "_", p.upper()) for p in parts)


def reference_secrets(spec: dict[str, Any], *owner: str) -> dict[str, Any]:
    """``spec`` with each secret replaced by ``${env:PORTWAY_SECRET_<owner…>_<POLICY>_<FIELD>}``."""
    fields = _fields_of(spec)
    config = spec.get("config")
    if not isinstance(config, dict) or not fields & config.keys():
        return spec
    referenced = {
        k: (
            f"${{env:{env_name(*owner, str(spec['name']), k)}}}"
            if k in fields and v and not is_reference(v)
            else v
        )
        for k, v in config.items()
    }
    return {**spec, "config": referenced}


def resolve_references(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """``spec`` with each ``${env:…}`` secret replaced by the manager's environment variable;
    ``ConfigError`` naming the field when it is not set."""
    fields = _fields_of(spec)
    config = spec.get("config")
    if not isinstance(config, dict) or not fields & config.keys():
        return spec
    resolved = dict(config)
    for name in sorted(fields & config.keys()):
        found = _REFERENCE.match(str(config[name])) if is_reference(config[name]) else None
        if found is None:
            continue
        value = os.environ.get(found.group(1))
        if not value:
            raise ConfigError(
                f"environment variable {found.group(1)} is not set on the manager",
                f"{where}.config.{name}",
            )
        resolved[name] = value
    return {**spec, "config": resolved}

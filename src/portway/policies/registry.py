"""Policy types by name; validation on write and the JSON schemas for the management API."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from portway.config.models import PolicySpec
from portway.config.variables import ENV_REFERENCE, has_references
from portway.errors import ConfigError
from portway.policies.api_call import ApiCallPolicy
from portway.policies.api_key import ApiKeyPolicy
from portway.policies.base import Build, Phase, Policy
from portway.policies.basic_auth import BasicAuthPolicy
from portway.policies.cache_invalidation import CacheInvalidationPolicy
from portway.policies.client_ban import ClientBanPolicy
from portway.policies.conditions import compile_condition
from portway.policies.content_filter import ContentFilterPolicy
from portway.policies.cors import CorsPolicy
from portway.policies.digest_auth import DigestAuthPolicy
from portway.policies.ip_filter import IpFilterPolicy
from portway.policies.json_schema import JsonSchemaPolicy
from portway.policies.json_transform import JsonTransformPolicy
from portway.policies.json_xml import JsonToXmlPolicy, XmlToJsonPolicy
from portway.policies.jwt_auth import JwtPolicy
from portway.policies.log import LogPolicy
from portway.policies.message_builder import MessageBuilderPolicy
from portway.policies.mock_response import MockResponsePolicy
from portway.policies.mtls import MtlsPolicy
from portway.policies.oauth2_introspection import IntrospectionPolicy
from portway.policies.oidc import OidcPolicy
from portway.policies.quota import QuotaPolicy
from portway.policies.redact import RedactPolicy
from portway.policies.render import check_template
from portway.policies.response_cache import ResponseCachePolicy
from portway.policies.rewrite import RewritePolicy
from portway.policies.script import ScriptPolicy
from portway.policies.size_limit import SizeLimitPolicy
from portway.policies.soap_rest import SoapRestPolicy
from portway.policies.throttling import ThrottlingPolicy
from portway.policies.time_restriction import TimeRestrictionPolicy
from portway.policies.token_endpoint import TokenEndpointPolicy
from portway.policies.xml_schema import XmlSchemaPolicy
from portway.policies.xslt import XsltPolicy

_CLASSES: tuple[type[Policy[Any]], ...] = (
    ApiKeyPolicy,
    BasicAuthPolicy,
    DigestAuthPolicy,
    JwtPolicy,
    IntrospectionPolicy,
    TokenEndpointPolicy,
    OidcPolicy,
    MtlsPolicy,
    IpFilterPolicy,
    CorsPolicy,
    ThrottlingPolicy,
    QuotaPolicy,
    ClientBanPolicy,
    TimeRestrictionPolicy,
    SizeLimitPolicy,
    ResponseCachePolicy,
    JsonSchemaPolicy,
    XmlSchemaPolicy,
    RewritePolicy,
    JsonToXmlPolicy,
    XmlToJsonPolicy,
    RedactPolicy,
    ContentFilterPolicy,
    XsltPolicy,
    JsonTransformPolicy,
    MockResponsePolicy,
    SoapRestPolicy,
    ScriptPolicy,
    ApiCallPolicy,
    MessageBuilderPolicy,
    LogPolicy,
    CacheInvalidationPolicy,
)
POLICY_TYPES: Mapping[str, type[Policy[Any]]] = {cls.type_name: cls for cls in _CLASSES}

_PHASE_IN_PATH = re.compile(r"(?:^|\.)(request|response|error)\[\d+\]$")


def _loc(where: str, loc: tuple[int | str, ...]) -> str:
    out = where
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def resolve_spec(entry: PolicySpec, global_policies: Mapping[str, PolicySpec]) -> PolicySpec | None:
    """The spec that runs for ``entry`` (its global policy when it refers to one), or ``None``
    when inactive."""
    if entry.global_ref is None:
        return entry if entry.active else None
    target = global_policies.get(entry.global_ref)
    if target is None:
        raise ConfigError(f"global policy {entry.global_ref!r} does not exist", "global_ref")
    if target.type != entry.type:
        raise ConfigError(
            f"global policy {entry.global_ref!r} is of type {target.type!r}, not {entry.type!r}",
            "type",
        )
    if not (entry.active and target.active):
        return None
    return target.model_copy(
        update={
            "name": entry.name,
            "shadow": entry.shadow or target.shadow,
            "condition": entry.condition if entry.condition is not None else target.condition,
            "messages": {**target.messages, **entry.messages},
        }
    )


def _policy_class(spec: PolicySpec, where: str) -> type[Policy[Any]]:
    cls = POLICY_TYPES.get(spec.type)
    if cls is None:
        raise ConfigError(
            f"unknown policy type {spec.type!r} (known: {', '.join(sorted(POLICY_TYPES))})",
            f"{where}.type",
        )
    return cls


_SHAPE_ERRORS = frozenset({"extra_forbidden", "missing"})
"""Errors no variable's value can mend: refused on write even where a value reads one."""


def _value_at(config: Mapping[str, Any], loc: tuple[int | str, ...]) -> Any:
    value: Any = config
    for part in loc:
        inside = (isinstance(value, Mapping) and part in value) or (
            isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        )
        if not inside:
            return None
        value = value[part]
    return value


def _stand_in(value: Any) -> Any:
    """``value`` with each ``${env.NAME}`` as plain text, to check all that does not read one."""
    if isinstance(value, str):
        return ENV_REFERENCE.sub("x", value)
    if isinstance(value, Mapping):
        return {k: _stand_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stand_in(v) for v in value]
    return value


def _validate_config(
    cls: type[Policy[Any]], config: Mapping[str, Any], where: str, *, defer: bool = False
) -> Any:
    """The config model. With ``defer``, a value that reads ``${env.NAME}`` waits for its
    expanded value (the manager checks, then compiles, the expanded APIs at deploy): the rest
    is checked with each reference as plain text, and an error in a value that is itself a
    reference, or holds one, is left for the deploy (then checked expanded, naming the field)."""
    try:
        return cls.config_model.model_validate(config)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if defer and has_references(json.dumps(config, default=str)):
            try:
                return cls.config_model.model_validate(_stand_in(config))
            except ValidationError as again:
                errors = [
                    e
                    for e in again.errors(include_url=False)
                    if e["type"] in _SHAPE_ERRORS
                    or not has_references(json.dumps(_value_at(config, e["loc"]), default=str))
                ]
            if not errors:
                return None
        first = errors[0]
        raise ConfigError(_message(first), _loc(f"{where}.config", first["loc"])) from None


def validate_policy_spec(
    spec: PolicySpec,
    where: str,
    *,
    phase: str | None = None,
    global_policies: Mapping[str, PolicySpec] | None = None,
) -> None:
    """Validate one policy entry before it is stored; raise ``ConfigError`` naming the field.

    ``where`` is the entry's path (``policies.request[2]``); the list it sits in (request,
    response, error) is taken from it unless ``phase`` is given. ``global_policies``, when
    given, lets an entry with ``global_ref`` be checked against its target."""
    cls = _policy_class(spec, where)
    if phase is None:
        found = _PHASE_IN_PATH.search(where)
        phase = found.group(1) if found else None
    if phase is not None and Phase(phase) not in cls.phases:
        allowed = ", ".join(p.value for p in Phase if p in cls.phases)
        raise ConfigError(
            f"policy type {spec.type!r} cannot run in the {phase} list (allowed: {allowed})",
            f"{where}.type",
        )
    if spec.condition is not None:
        compile_condition(spec.condition, f"{where}.condition")
    if spec.global_ref is not None:
        if spec.config:
            raise ConfigError(
                "an entry that refers to a global policy takes its config from it",
                f"{where}.config",
            )
        if global_policies is not None:
            try:
                resolve_spec(spec, global_policies)
            except ConfigError as exc:
                raise ConfigError(exc.message, f"{where}.{exc.field}") from None
        return
    _validate_config(cls, spec.config, where, defer=True)
    for code, template in spec.messages.items():
        if code != "*" and code not in cls.errors:
            known = ", ".join(sorted(cls.errors)) or "none"
            raise ConfigError(
                f"unknown error code {code!r} for policy type {spec.type!r} (known: {known}, *)",
                f"{where}.messages.{code}",
            )
        try:
            check_template(template)
        except ValueError as exc:
            raise ConfigError(str(exc), f"{where}.messages.{code}") from None


def build_policy(spec: PolicySpec, build: Build, phase: Phase, where: str) -> Policy[Any]:
    """Validate and compile one (already resolved) policy spec."""
    validate_policy_spec(spec, where, phase=phase.value)
    cls = _policy_class(spec, where)
    config = _validate_config(cls, spec.config, where)
    return cls(config, build)


def policy_json_schemas() -> dict[str, dict[str, Any]]:
    """For the management API docs and the UI: per type, its summary, the lists it may sit in,
    its error codes and the JSON schema of its config."""
    return {
        name: {
            "summary": cls.summary,
            "phases": [p.value for p in Phase if p in cls.phases],
            "errors": {
                code: {"status": spec.status, "message": spec.message}
                for code, spec in sorted(cls.errors.items())
            },
            "config": cls.config_model.model_json_schema(),
        }
        for name, cls in sorted(POLICY_TYPES.items())
    }

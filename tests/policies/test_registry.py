from __future__ import annotations

from typing import Any

import pytest

from portway.config.models import PolicySpec
from portway.errors import ConfigError
from portway.policies.registry import POLICY_TYPES, policy_json_schemas, validate_policy_spec

EVERY_TYPE = {
    "api_key",
    "basic_auth",
    "digest_auth",
    "jwt",
    "oauth2_introspection",
    "token_endpoint",
    "oidc",
    "mtls",
    "ip_filter",
    "cors",
    "throttling",
    "quota",
    "client_ban",
    "time_restriction",
    "size_limit",
    "response_cache",
    "json_schema",
    "xml_schema",
    "rewrite",
    "json_to_xml",
    "xml_to_json",
    "redact",
    "content_filter",
    "xslt",
    "json_transform",
    "mock_response",
    "soap_rest",
    "script",
    "api_call",
    "message_builder",
    "log",
    "cache_invalidation",
}


def spec(type_: str, config: dict[str, Any] | None = None, **extra: Any) -> PolicySpec:
    return PolicySpec(name="p", type=type_, config=config or {}, **extra)


def rejected(
    s: PolicySpec, where: str = "policies.request[2]", **kw: Any
) -> tuple[str | None, str]:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(s, where, **kw)
    return caught.value.field, caught.value.message


def test_every_type_is_registered() -> None:
    assert set(POLICY_TYPES) == EVERY_TYPE


def test_json_schemas_describe_every_field() -> None:
    schemas = policy_json_schemas()
    assert set(schemas) == EVERY_TYPE
    throttling = schemas["throttling"]
    assert throttling["phases"] == ["request"]
    assert throttling["errors"]["rate_limited"] == {"status": 429, "message": "too many requests"}
    props = throttling["config"]["properties"]
    assert props["limit"]["minimum"] == 1
    assert props["window"]["default"] == "fixed"
    for name, schema in schemas.items():
        assert schema["summary"], name
        config = schema["config"]
        for model_name, model in {"config": config, **config.get("$defs", {})}.items():
            for field, prop in model.get("properties", {}).items():
                assert "description" in prop, f"{name}: {model_name}.{field} lacks a description"


def test_unknown_type() -> None:
    field, message = rejected(spec("no_such"))
    assert field == "policies.request[2].type"
    assert message.startswith("unknown policy type 'no_such' (known: api_call, api_key,")


def test_field_path_of_a_bad_value() -> None:
    assert rejected(spec("throttling", {"limit": 0})) == (
        "policies.request[2].config.limit",
        "Input should be greater than or equal to 1",
    )
    assert rejected(spec("throttling", {"limit": 5, "overrides": [{"limit": 1}]})) == (
        "policies.request[2].config.overrides[0]",
        "set exactly one of value and regex",
    )


def test_extra_fields_are_refused() -> None:
    assert rejected(spec("throttling", {"limit": 5, "limmit": 3})) == (
        "policies.request[2].config.limmit",
        "Extra inputs are not permitted",
    )


def test_phase_is_taken_from_the_path() -> None:
    assert rejected(spec("cors", {"allowed_origins": ["*"]}), "api.policies.response[0]") == (
        "api.policies.response[0].type",
        "policy type 'cors' cannot run in the response list (allowed: request)",
    )
    validate_policy_spec(spec("mock_response"), "api.policies.error[0]")


def test_message_overrides_are_checked() -> None:
    assert rejected(spec("throttling", {"limit": 1}, messages={"nope": "x"})) == (
        "policies.request[2].messages.nope",
        "unknown error code 'nope' for policy type 'throttling' "
        "(known: rate_limited, store_unavailable, *)",
    )
    assert rejected(spec("throttling", {"limit": 1}, messages={"*": "slow down $who"})) == (
        "policies.request[2].messages.*",
        "unknown placeholder $who (known: code, status, message, correlation_id, request_uri, "
        "method, time)",
    )
    validate_policy_spec(
        spec("throttling", {"limit": 1}, messages={"rate_limited": "slow down ($correlation_id)"}),
        "policies.request[0]",
    )


def test_condition_is_checked_with_its_path() -> None:
    bad = spec("mock_response", condition={"or": [{"variable": "method", "operator": "XX"}]})
    field, _ = rejected(bad)
    assert field == "policies.request[2].condition.or[0].operator"


def test_global_ref_entries() -> None:
    target = spec("throttling", {"limit": 5})
    assert rejected(spec("throttling", {"limit": 1}, global_ref="shared")) == (
        "policies.request[2].config",
        "an entry that refers to a global policy takes its config from it",
    )
    ref = spec("throttling", global_ref="shared")
    validate_policy_spec(ref, "policies.request[0]", global_policies={"shared": target})
    assert rejected(ref, global_policies={}) == (
        "policies.request[2].global_ref",
        "global policy 'shared' does not exist",
    )
    assert rejected(spec("quota", global_ref="shared"), global_policies={"shared": target}) == (
        "policies.request[2].type",
        "global policy 'shared' is of type 'throttling', not 'quota'",
    )

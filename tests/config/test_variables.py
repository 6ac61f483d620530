"""``${env.NAME}`` references: expanded once, escaped with ``$${``, refused when undefined,
malformed or secret in a backend URL; the expanded API is checked again by its model."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from portway.config.models import ApiProxy
from portway.config.revision import DeployedApi, expand_apis, referenced_variables
from portway.config.variables import RevisionVariable, VariableBody
from portway.errors import ConfigError


def make_api(url: str = "${env.BACKEND}/v1", **config: Any) -> ApiProxy:
    headers = config or {"x-key": "${env.KEY}"}
    return ApiProxy.model_validate(
        {
            "name": "orders",
            "base_path": "/orders",
            "backends": [{"url": url}],
            "endpoints": [
                {
                    "path": "/items",
                    "policies": {
                        "request": [
                            {
                                "name": "hdr",
                                "type": "rewrite",
                                "config": {"request": {"headers": {"set": headers}}},
                            }
                        ]
                    },
                }
            ],
        }
    )


def expanded(api: ApiProxy, **values: str | tuple[str, bool]) -> ApiProxy:
    variables = {
        name: RevisionVariable(value=v[0], secret=v[1])
        if isinstance(v, tuple)
        else RevisionVariable(value=v)
        for name, v in values.items()
    }
    return expand_apis("prod", [DeployedApi(api=api, api_revision=1)], variables)[0].api


def refusal(api: ApiProxy, **values: str | tuple[str, bool]) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        expanded(api, **values)
    return refused.value


def set_headers(api: ApiProxy) -> Any:
    return api.endpoints[0].policies.request[0].config["request"]["headers"]["set"]


def test_references_in_backend_urls_and_policy_configs_expand() -> None:
    api = make_api()
    assert referenced_variables(api) == {"BACKEND", "KEY"}
    out = expanded(api, BACKEND="http://10.0.0.5:8080", KEY=("k-123", True))
    assert out.backends[0].url == "http://10.0.0.5:8080/v1"
    assert set_headers(out) == {"x-key": "k-123"}
    # the API as written is untouched
    assert api.backends[0].url == "${env.BACKEND}/v1"


def test_escape_and_no_recursion() -> None:
    api = make_api(**{"x-a": "$${env.KEY}", "x-b": "${env.KEY}${env.KEY}", "x-c": "$$x"})
    out = expanded(api, BACKEND="http://h", KEY="${env.OTHER}")
    # the value is inserted as it is: ${env.OTHER} is not looked up (OTHER is not even defined)
    assert set_headers(out) == {
        "x-a": "${env.KEY}",
        "x-b": "${env.OTHER}${env.OTHER}",
        "x-c": "$$x",
    }


def test_an_undefined_variable_names_the_api_the_field_and_the_variable() -> None:
    refused = refusal(make_api(), BACKEND="http://h")
    assert refused.field == (
        "apis[default/orders].endpoints[0].policies.request[0].config.request.headers.set.x-key"
    )
    assert refused.message == (
        "API default/orders in environment prod: variable KEY is not defined"
    )
    refused = refusal(make_api(), KEY="k")
    assert refused.field == "apis[default/orders].backends[0].url"
    assert "variable BACKEND is not defined" in refused.message


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ftp://files", "scheme must be http or https"),
        ("http://h/?q=1", "must not carry a query or a fragment"),
        ("http://user:pw@h", "must not carry credentials"),
        ("http://h:99999", "port is not a number in 1..65535"),
        ("", "scheme must be http or https"),
    ],
)
def test_an_expanded_url_is_checked_again_without_echoing_the_value(value: str, why: str) -> None:
    refused = refusal(make_api(), BACKEND=value, KEY="k")
    assert refused.field == "apis[default/orders].backends[0].url"
    assert refused.message.endswith(f"once variables are expanded: {why}")
    if value:
        assert value not in str(refused)


def test_a_secret_variable_is_refused_in_a_backend_url() -> None:
    refused = refusal(make_api(), BACKEND=("http://h", True), KEY="k")
    assert refused.field == "apis[default/orders].backends[0].url"
    assert "secret variable BACKEND may not be used in a backend URL" in refused.message
    assert "http://h" not in str(refused)


@pytest.mark.parametrize(
    "url",
    ["${env.lower}", "${env.}", "${env.A-B}", "http://${env.HOST", "${env.1X}"],
)
def test_a_malformed_reference_is_refused_when_written(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        make_api(url=url)
    assert refused.value.errors()[0]["loc"] == ("backends", 0, "url")


def test_a_malformed_reference_in_a_policy_config_is_refused_at_deploy() -> None:
    refused = refusal(make_api(**{"x-k": "${env.KEY"}), BACKEND="http://h", KEY="k")
    assert refused.field is not None
    assert refused.field.endswith("headers.set.x-k")
    assert "is not closed" in refused.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": "x" * 8193}, "value"),
        ({"value": 5}, "value"),
        ({"value": "v", "secret": "yes"}, "secret"),
        ({"value": "v", "extra": 1}, "extra"),
        ({}, "value"),
    ],
)
def test_variable_body_is_strict(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        VariableBody.model_validate(body)
    assert refused.value.errors()[0]["loc"][0] == field


def test_a_policy_config_waits_for_expanded_values_but_not_for_its_shape() -> None:
    from portway.config.models import PolicySpec
    from portway.policies.registry import validate_policy_spec

    def check(config: dict[str, Any]) -> None:
        spec = PolicySpec(name="r", type="rewrite", config=config)
        validate_policy_spec(spec, "policies.request[0]")

    check({"request_headers": {"set": {"x-key": "${env.KEY}"}}})  # checked once expanded
    cases: list[tuple[dict[str, Any], str]] = [
        ({"request": {"set": {"x-key": "${env.KEY}"}}}, "config.request"),
        ({"request_headers": {"set": {"x-key": "${env.KEY}"}, "sett": {}}}, "sett"),
        ({"request_headers": {"set": {"x-key": "${env.KEY}"}, "remove": ["bad name"]}}, "remove"),
    ]
    for wrong, field in cases:
        with pytest.raises(ConfigError) as refused:
            check(wrong)
        assert refused.value.field is not None
        assert field in refused.value.field, refused.value

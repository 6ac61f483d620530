"""``ApiProxy.traffic`` accepts what a worker can run and refuses the rest, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from portway.config.models import ApiProxy


def proxy(traffic: dict[str, Any]) -> ApiProxy:
    return ApiProxy.model_validate(
        {
            "name": "svc",
            "base_path": "/svc",
            "backends": [{"url": "http://stable:8080"}],
            "traffic": traffic,
        }
    )


CANARY = {"name": "canary", "backends": [{"url": "http://canary:8080"}]}


def refusal(traffic: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        proxy(traffic)
    error = caught.value.errors()[0]
    return ".".join(str(p) for p in error["loc"]), str(error["msg"])


def test_a_full_configuration_is_accepted() -> None:
    api = proxy(
        {
            "groups": [CANARY],
            "weights": {"default": 95, "canary": 5},
            "rules": [{"header": "X-Canary", "values": ["1"], "group": "canary"}],
            "sticky": {"mode": "hash", "hash_on": "cookie", "hash_name": "session"},
            "mirror": {"url": "https://shadow:8443/v2/", "percent": 12.5},
        }
    )
    assert api.traffic.routes_requests
    assert api.traffic.mirror is not None
    assert api.traffic.mirror.url == "https://shadow:8443/v2"
    assert not proxy({}).traffic.routes_requests
    assert not proxy({"weights": {"default": 3}}).traffic.routes_requests


@pytest.mark.parametrize(
    ("traffic", "loc", "message"),
    [
        (
            {"groups": [CANARY], "weights": {"canry": 1}},
            "traffic",
            "Value error, traffic.weights.canry: unknown backend group 'canry' "
            "(groups: default, canary)",
        ),
        (
            {"groups": [CANARY], "weights": {"default": 0, "canary": 0}},
            "traffic",
            "Value error, traffic.weights: the weights must add up to more than 0",
        ),
        (
            {"weights": {"default": -1}},
            "traffic.weights.default",
            "Input should be greater than or equal to 0",
        ),
        (
            {"weights": {"default": "5"}},
            "traffic.weights.default",
            "Input should be a valid integer",
        ),
        (
            {"rules": [{"header": "X-Canary", "group": "green"}]},
            "traffic",
            "Value error, traffic.rules[0].group: unknown backend group 'green' (groups: default)",
        ),
        (
            {"rules": [{"header": "X-A", "cookie": "b", "group": "default"}]},
            "traffic.rules.0",
            "Value error, exactly one of header and cookie is required",
        ),
        (
            {"rules": [{"group": "default"}]},
            "traffic.rules.0",
            "Value error, exactly one of header and cookie is required",
        ),
        (
            {"rules": [{"header": "X Canary", "group": "default"}]},
            "traffic.rules.0.header",
            "String should match pattern '^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$'",
        ),
        (
            {"groups": [CANARY, CANARY]},
            "traffic",
            "Value error, traffic.groups[1].name: 'canary' is used twice",
        ),
        (
            {"groups": [{"name": "default", "backends": [{"url": "http://x"}]}]},
            "traffic",
            "Value error, traffic.groups[0].name: 'default' is used twice",
        ),
        (
            {"groups": [{"name": "empty", "backends": []}]},
            "traffic.groups.0.backends",
            "List should have at least 1 item after validation, not 0",
        ),
        (
            {"sticky": {"mode": "hash", "hash_on": "header"}},
            "traffic.sticky",
            "Value error, hash_name is required when hash_on is header",
        ),
        (
            {"sticky": {"mode": "cookie", "cookie_name": "a;b"}},
            "traffic.sticky.cookie_name",
            "String should match pattern '^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$'",
        ),
        (
            {"sticky": {"mode": "cookie", "max_age": 0}},
            "traffic.sticky.max_age",
            "Input should be greater than or equal to 1",
        ),
        (
            {"mirror": {"url": "ftp://shadow"}},
            "traffic.mirror.url",
            "Value error, scheme must be http or https",
        ),
        (
            {"mirror": {"url": "http://user:pw@shadow"}},
            "traffic.mirror.url",
            "Value error, must not carry credentials",
        ),
        (
            {"mirror": {"url": "http://s", "percent": 0}},
            "traffic.mirror.percent",
            "Input should be greater than 0",
        ),
        (
            {"mirror": {"url": "http://s", "max_in_flight": 0}},
            "traffic.mirror.max_in_flight",
            "Input should be greater than or equal to 1",
        ),
        (
            {"mirror": {"url": "http://s", "extra": 1}},
            "traffic.mirror.extra",
            "Extra inputs are not permitted",
        ),
    ],
)
def test_refusals_name_the_field(traffic: dict[str, Any], loc: str, message: str) -> None:
    assert refusal(traffic) == (loc, message)

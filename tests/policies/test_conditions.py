from __future__ import annotations

from typing import Any

import pytest

from portway.errors import ConfigError
from portway.policies.conditions import compile_condition
from tests.policies.helpers import NOW, make_ctx


def cmp(variable: str, operator: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"variable": variable, "operator": operator, **extra}
    if value is not None:
        node["value"] = value
    return node


async def check(tree: dict[str, Any], **ctx_args: Any) -> bool:
    return await compile_condition(tree)(make_ctx(**ctx_args), NOW)


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("EQ", "beta", True),
        ("EQ", "Beta", False),
        ("NE", "beta", False),
        ("STARTS_WITH", "be", True),
        ("ENDS_WITH", "ta", True),
        ("CONTAINS", "et", True),
        ("NOT_CONTAINS", "et", False),
        ("IN", ["alpha", "beta"], True),
        ("NOT_IN", ["alpha", "beta"], False),
        ("LT", "c", True),
        ("GE", "beta", True),
        ("GT", "beta", False),
    ],
)
async def test_string_operators(operator: str, value: Any, expected: bool) -> None:
    tree = cmp("header.X-Env", operator, value)
    assert await check(tree, headers=[("x-env", "beta")]) is expected


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [("LT", 10, True), ("LE", 9, True), ("GT", 9, False), ("GE", 9.0, True), ("EQ", 9, True)],
)
async def test_numbers_compare_numerically(operator: str, value: Any, expected: bool) -> None:
    # "9" < 10 numerically, while as text "9" > "10"
    assert await check(cmp("query.n", operator, value), query=[("n", "9")]) is expected


@pytest.mark.parametrize(
    ("operator", "present", "expected"),
    [
        ("IS_EXISTS", True, True),
        ("IS_EXISTS", False, False),
        ("IS_NOT_EXISTS", False, True),
        ("IS_EMPTY", False, True),
        ("IS_NOT_EMPTY", True, False),  # present but empty
        ("IS_EMPTY", True, True),
    ],
)
async def test_presence_operators(operator: str, present: bool, expected: bool) -> None:
    headers = [("X-Flag", "")] if present else []
    assert await check(cmp("header.X-Flag", operator), headers=headers) is expected


async def test_missing_variable_only_satisfies_negative_operators() -> None:
    for op, value in [("EQ", "x"), ("LT", 1), ("CONTAINS", "x"), ("IN", ["x"])]:
        assert await check(cmp("header.Nope", op, value)) is False
    for op, value in [("NE", "x"), ("NOT_CONTAINS", "x"), ("NOT_IN", ["x"])]:
        assert await check(cmp("header.Nope", op, value)) is True


async def test_nested_and_or_not() -> None:
    tree = {
        "and": [
            cmp("method", "IN", ["GET", "HEAD"]),
            {"or": [cmp("path.id", "EQ", "42"), cmp("query.force", "EQ", "1")]},
            {"not": cmp("client_ip", "STARTS_WITH", "10.")},
        ]
    }
    assert await check(tree) is True
    assert await check(tree, client_ip="10.1.2.3") is False
    assert await check(tree, method="POST") is False
    assert await check(tree, path_params={"id": "7"}) is False
    assert await check(tree, path_params={"id": "7"}, query=[("force", "1")]) is True


async def test_json_body_variable() -> None:
    body = b'{"order": {"items": [{"qty": 3}, {"qty": 5}], "vip": true}}'
    assert await check(cmp("body.$.order.items[1].qty", "GT", 4), body=body)
    assert await check(cmp("body.$.order.vip", "EQ", True), body=body)
    assert await check(cmp("body.$..qty", "EQ", 3), body=body)
    assert not await check(cmp("body.$.order.missing", "IS_EXISTS"), body=body)
    # a body that is not JSON makes the variable missing, not an error
    assert not await check(cmp("body.$.order", "IS_EXISTS"), body=b"{not json")


async def test_xml_body_variable() -> None:
    body = b'<order id="7"><item sku="a">2</item><item sku="b">3</item></order>'
    assert await check(cmp("xml./order/item", "EQ", "2"), body=body)
    assert await check(cmp("xml./order/@id", "EQ", "7"), body=body)
    assert await check(cmp("xml.//item[@sku='b']", "EQ", 3), body=body)
    hostile = b'<!DOCTYPE x [<!ENTITY a "boom">]><order>&a;</order>'
    assert not await check(cmp("xml./order", "IS_EXISTS"), body=hostile)


async def test_form_and_context_variables() -> None:
    ctx_args: dict[str, Any] = {
        "method": "POST",
        "headers": [("Content-Type", "application/x-www-form-urlencoded")],
        "body": b"plan=gold&x=1",
    }
    assert await check(cmp("form.plan", "EQ", "gold"), **ctx_args)
    assert await check(cmp("environment", "EQ", "prod"))
    assert await check(cmp("time.weekday", "EQ", 3))  # NOW is a Wednesday
    assert await check(cmp("time.hour", "EQ", 12))
    assert await check(cmp("consumer", "IS_NOT_EXISTS"))


async def test_ignore_case() -> None:
    tree = cmp("header.X-Env", "EQ", "BETA", ignore_case=True)
    assert await check(tree, headers=[("X-Env", "beta")])


@pytest.mark.parametrize(
    ("tree", "field", "message"),
    [
        ({"and": []}, "condition.and", "'and' needs a non-empty list of conditions"),
        (
            {"and": [cmp("method", "EQ", "GET"), {"operator": "EQ"}]},
            "condition.and[1].variable",
            "a comparison needs a 'variable'",
        ),
        (
            {"not": cmp("header.X", "MATCHES", "a")},
            "condition.not.operator",
            "operator must be one of CONTAINS, ENDS_WITH, EQ, GE, GT, IN, IS_EMPTY, IS_EXISTS, "
            "IS_NOT_EMPTY, IS_NOT_EXISTS, LE, LT, NE, NOT_CONTAINS, NOT_IN, STARTS_WITH",
        ),
        (cmp("header.X", "IN", "a"), "condition.value", "IN needs a list of 1 to 1000 values"),
        (cmp("header.X", "IS_EMPTY", "a"), "condition.value", "IS_EMPTY takes no value"),
        (cmp("header.X", "EQ"), "condition.value", "EQ needs a string, number or boolean value"),
        (
            cmp("body.$.a[", "EQ", "x"),
            "condition.variable",
            "bad bracket expression at position 3 of the JSONPath",
        ),
        (
            cmp("xml.order", "EQ", "x"),
            "condition.variable",
            "ElementPath must be absolute (start with '/')",
        ),
        (
            {"and": [cmp("method", "EQ", "GET")], "or": []},
            "condition",
            "'and' must be the only key of its object",
        ),
        ({**cmp("method", "EQ", "GET"), "extra": 1}, "condition.extra", "unknown key 'extra'"),
    ],
)
def test_rejected_conditions(tree: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compile_condition(tree)
    assert (caught.value.field, caught.value.message) == (field, message)


def test_unknown_variable_message() -> None:
    with pytest.raises(ConfigError) as caught:
        compile_condition(cmp("cookie.session", "EQ", "x"))
    assert caught.value.message.startswith("unknown variable 'cookie.session' (use header.X")


def test_depth_is_bounded() -> None:
    tree: dict[str, Any] = cmp("method", "EQ", "GET")
    for _ in range(20):
        tree = {"not": tree}
    with pytest.raises(ConfigError, match="nested at most 16 deep"):
        compile_condition(tree)

"""json_transform: JMESPath reshaping of request, response and error bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from portway.policies.contract import GatewayError
from tests.policies.helpers import World, make_ctx, make_response
from tests.policies.test_mediation import rejected

ORDER = {
    "order": {
        "id": 7,
        "customer": {"name": "Ann", "email": "ann@example.com"},
        "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}],
    }
}
RESHAPE = (
    "{id: order.id, customer: order.customer.name, "
    "skus: order.items[?qty > `0`].sku, count: length(order.items)}"
)


async def transform(world: World, expression: str, body: bytes) -> tuple[int | None, Any]:
    ctx = make_ctx(method="POST", body=body, headers=[("Content-Length", "1")])
    reply = await world.one("json_transform", {"expression": expression}).on_request(ctx)
    if reply is not None:
        return reply.status, json.loads(reply.body)
    assert ctx.request.headers.get("Content-Length") is None
    assert ctx.request.headers.get("Content-Type") == "application/json"
    return None, json.loads(await ctx.request.body())


async def test_reshapes_the_request(world: World) -> None:
    assert await transform(world, RESHAPE, json.dumps(ORDER).encode()) == (
        None,
        {"id": 7, "customer": "Ann", "skus": ["a"], "count": 2},
    )


async def test_missing_parts_become_null(world: World) -> None:
    assert await transform(world, "{id: order.id, x: nothing.here}", b'{"order": {}}') == (
        None,
        {"id": None, "x": None},
    )
    assert await transform(world, "nothing", b"{}") == (None, None)


@pytest.mark.parametrize("body", [b"", b"{bad", b"\xff", b"[" * 300 + b"]" * 300])
async def test_invalid_json(world: World, body: bytes) -> None:
    status, answer = await transform(world, RESHAPE, body)
    assert (status, answer["error"]) == (400, "invalid_json")


async def test_a_long_chain_is_flat_not_deep(world: World) -> None:
    body = b'{"a": ' * 200 + b"1" + b"}" * 200
    assert await transform(world, "a" + ".a" * 199, body) == (None, 1)


async def test_a_type_error_from_the_data_is_400(world: World) -> None:
    status, answer = await transform(world, "length(order)", b'{"order": 5}')
    assert (status, answer["error"]) == (400, "transform_failed")
    assert "invalid type for value: 5" in answer["reason"]


async def test_responses_and_errors(world: World) -> None:
    pipeline = world.one("json_transform", {"expression": "{ok: ok}"}, phase="response")
    ctx = make_ctx()
    ctx.response = make_response(body=b'{"ok": true, "internal": "x"}')
    assert await pipeline.on_response(ctx) is None
    assert json.loads(await ctx.response.body()) == {"ok": True}
    ctx = make_ctx()
    ctx.response = make_response(body=b"<xml/>")
    reply = await pipeline.on_response(ctx)
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["error"]) == (502, "invalid_response")
    errors = world.one(
        "json_transform", {"expression": "{code: error, id: correlation_id}"}, phase="error"
    )
    ctx = make_ctx()
    ctx.error = GatewayError(502, "backend_unreachable", "no backend at 10.0.0.7")
    reply = await errors.on_error(ctx)
    assert reply is not None
    assert (reply.status, json.loads(reply.body)) == (
        502,
        {"code": "backend_unreachable", "id": "corr-123"},
    )


def test_config_rules() -> None:
    assert rejected("json_transform", {})[0] == "p.config.expression"
    field, message = rejected("json_transform", {"expression": "a.["})
    assert field == "p.config.expression"
    assert message.startswith("Invalid jmespath expression: Incomplete expression")
    assert rejected("json_transform", {"expression": "system('ls')"}) == (
        "p.config.expression",
        "unknown JMESPath function 'system'",
    )
    nested = {"expression": "{a: [foo.bar, eval(x)]}"}
    assert rejected("json_transform", nested)[1] == "unknown JMESPath function 'eval'"
    assert rejected("json_transform", {"expression": "`ls`"})[1].startswith("a `literal` must")
    for deep in ("(" * 1900 + "a" + ")" * 1900, "!" * 3900 + "a", "[" * 1999):
        assert rejected("json_transform", {"expression": deep}) == (
            "p.config.expression",
            "expression is nested deeper than 100 levels",
        )
    long = {"expression": "a" * 5000}
    assert rejected("json_transform", long)[0] == "p.config.expression"


@pytest.mark.parametrize(
    ("type_", "config"),
    [
        ("json_transform", {"expression": "a"}),
        ("json_to_xml", {}),
        ("xml_to_json", {}),
        (
            "xslt",
            {
                "stylesheet": '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"/>'
            },
        ),
    ],
)
def test_a_content_type_cannot_smuggle_a_header(type_: str, config: dict[str, Any]) -> None:
    field, message = rejected(type_, {**config, "content_type": "text/plain\r\nSet-Cookie: a=b"})
    assert field == "p.config.content_type"
    assert message.startswith("header values must not contain control characters")

"""redact: masking and removal in JSON bodies, XML bodies and headers, failing closed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from portway.policies.contract import GatewayError
from tests.policies.helpers import World, make_ctx, make_response
from tests.policies.test_mediation import rejected

CARD = {
    "card": {"number": "4111111111111111", "cvv": "123"},
    "items": [{"sku": "a", "secret": 123456}, {"sku": "b", "secret": {"x": 2}}],
    "note": "hi",
}


async def redact_request(
    world: World, config: dict[str, Any], body: bytes, headers: list[tuple[str, str]] | None = None
) -> tuple[bytes, Any]:
    ctx = make_ctx(method="POST", body=body, headers=headers or [("Content-Length", "1")])
    assert await world.one("redact", config).on_request(ctx) is None
    assert ctx.request.headers.get("Content-Length") is None
    return await ctx.request.body(), ctx


async def test_json_mask_keeps_the_last_characters(world: World) -> None:
    config = {"json_paths": ["$.card.number", "$.items[*].secret"], "keep_last": 4}
    body, _ = await redact_request(world, config, json.dumps(CARD).encode())
    out = json.loads(body)
    assert out["card"] == {"number": "****1111", "cvv": "123"}
    assert [i["secret"] for i in out["items"]] == ["****3456", "****"]  # objects whole
    assert out["note"] == "hi"


async def test_short_values_are_masked_whole(world: World) -> None:
    config = {"json_paths": ["$.card.cvv"], "keep_last": 4, "mask": "[hidden]"}
    body, _ = await redact_request(world, config, json.dumps(CARD).encode())
    assert json.loads(body)["card"]["cvv"] == "[hidden]"


async def test_json_remove_including_every_list_item(world: World) -> None:
    config = {"json_paths": ["$..secret", "$.items[0]", "$.card.cvv"], "action": "remove"}
    body, _ = await redact_request(world, config, json.dumps(CARD).encode())
    assert json.loads(body) == {
        "card": {"number": "4111111111111111"},
        "items": [{"sku": "b"}],
        "note": "hi",
    }


async def test_recursive_removal_of_everything(world: World) -> None:
    doc = {"a": [[1, 2], [3, [4, 5]]], "b": {"c": {"d": 1}}}
    config = {"json_paths": ["$..*"], "action": "remove"}
    body, _ = await redact_request(world, config, json.dumps(doc).encode())
    assert json.loads(body) == {}


async def test_a_path_that_matches_nothing_changes_nothing(world: World) -> None:
    body, _ = await redact_request(world, {"json_paths": ["$.nothing"]}, b'{"a": 1}')
    assert json.loads(body) == {"a": 1}


XML = (
    b'<?xml version="1.0"?><payment id="p1"><card number="4111111111111111">'
    b"<holder>Ann <b>Lee</b></holder><cvv>123</cvv></card><note>hi</note></payment>"
)


async def test_xml_mask_of_elements_and_attributes(world: World) -> None:
    config = {"element_paths": ["//card/@number", "/payment/card/holder"], "keep_last": 3}
    body, _ = await redact_request(world, config, XML)
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<payment id="p1">'
        b'<card number="****111"><holder>****Lee</holder><cvv>123</cvv></card>'
        b"<note>hi</note></payment>"
    )


async def test_xml_remove(world: World) -> None:
    config = {"element_paths": ["//cvv", "/payment/@id", "//card/@missing"], "action": "remove"}
    body, _ = await redact_request(world, config, XML)
    assert b"<cvv>" not in body
    assert b'id="p1"' not in body
    assert b"<holder>Ann <b>Lee</b></holder>" in body
    body, _ = await redact_request(world, {"element_paths": ["/payment"], "action": "remove"}, XML)
    assert body.endswith(b"<payment />")


async def test_headers_masked_or_removed(world: World) -> None:
    headers = [("Authorization", "Bearer abcdef"), ("X-Card", "1"), ("X-Card", "22")]
    _, ctx = await redact_request(world, {"headers": ["authorization", "x-card"]}, b"", headers)
    assert ctx.request.headers.get_all("Authorization") == ["****"]
    assert ctx.request.headers.get_all("X-Card") == ["****", "****"]
    _, ctx = await redact_request(
        world, {"headers": ["Authorization"], "action": "remove"}, b"", headers
    )
    assert ctx.request.headers.get("Authorization") is None
    assert ctx.request.headers.get_all("X-Card") == ["1", "22"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json {",
        b"[" * 300 + b"]" * 300,
        b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        b'{"card": {"number": "4111111111111111"}',
    ],
)
async def test_unreadable_bodies_fail_closed(world: World, body: bytes) -> None:
    config = {"json_paths": ["$.card.number"], "element_paths": ["//number"]}
    reply = await world.one("redact", config).on_request(make_ctx(method="POST", body=body))
    assert reply is not None
    assert reply.status == 400
    assert json.loads(reply.body)["error"] == "unreadable_body"


async def test_response_and_error_lists(world: World) -> None:
    config = {"json_paths": ["$.token"], "headers": ["Set-Cookie"], "action": "remove"}
    ctx = make_ctx()
    body = b'{"token": "t", "ok": true}'
    ctx.response = make_response(body=body, headers=[("Set-Cookie", "s")])
    assert await world.one("redact", config, phase="response").on_response(ctx) is None
    assert json.loads(await ctx.response.body()) == {"ok": True}
    assert ctx.response.headers.get("Set-Cookie") is None
    ctx = make_ctx()
    ctx.response = make_response(body=b"<html>")
    reply = await world.one("redact", config, phase="response").on_response(ctx)
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["error"]) == (502, "unreadable_response")
    ctx = make_ctx()
    ctx.error = GatewayError(502, "backend_unreachable", "no backend at 10.0.0.7:8080")
    errors = world.one("redact", {"json_paths": ["$.message"]}, phase="error")
    reply = await errors.on_error(ctx)
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["message"]) == (502, "****")


def test_config_rules() -> None:
    assert rejected("redact", {}) == (
        "p.config",
        "give at least one of json_paths, element_paths, headers",
    )
    assert rejected("redact", {"json_paths": ["a.b"]}) == (
        "p.config",
        "json_paths[0]: JSONPath must start with '$'",
    )
    assert rejected("redact", {"element_paths": ["//a[contains(., 'x')]"]})[0] == ("p.config")
    assert rejected("redact", {"headers": ["X-A\r\nX-B"]})[0] == "p.config.headers[0]"
    assert rejected("redact", {"headers": ["a"], "mask": "x\r\nSet-Cookie: a"}) == (
        "p.config.mask",
        "header values must not contain control characters (CR, LF, NUL ...) or characters "
        "outside Latin-1",
    )
    assert rejected("redact", {"headers": ["a"], "keep_last": 99})[0] == "p.config.keep_last"
    assert rejected("redact", {"headers": ["a"], "action": "hash"})[0] == "p.config.action"

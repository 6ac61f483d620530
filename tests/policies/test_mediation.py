from __future__ import annotations

import json
from typing import Any

import pytest

from portway.config.models import PolicySpec
from portway.errors import ConfigError
from portway.policies.registry import validate_policy_spec
from portway.policies.variables import compile_variable
from tests.policies.helpers import World, make_ctx, make_response


def rejected(type_: str, config: dict[str, Any]) -> tuple[str | None, str]:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="x", type=type_, config=config), "p")
    return caught.value.field, caught.value.message


# -- JSON Schema --

SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}},
        }
    },
}


async def test_valid_body_passes(world: World) -> None:
    pipeline = world.one("json_schema", {"schema": SCHEMA})
    assert await pipeline.on_request(make_ctx(body=b'{"items": [{"qty": 2}]}')) is None


async def test_failing_path_is_in_the_answer(world: World) -> None:
    pipeline = world.one("json_schema", {"schema": SCHEMA})
    reply = await pipeline.on_request(make_ctx(body=b'{"items": [{"qty": 2}, {"qty": 0}]}'))
    assert reply is not None
    assert reply.status == 400
    answer = json.loads(reply.body)
    assert answer["error"] == "schema_violation"
    assert answer["path"] == "$.items[1].qty"
    assert answer["reason"] == "0 is less than the minimum of 1"
    assert answer["correlation_id"] == "corr-123"


async def test_jsonpath_part_of_the_body(world: World) -> None:
    config = {"schema": {"type": "integer", "minimum": 1}, "jsonpath": "$.items[*].qty"}
    pipeline = world.one("json_schema", config)
    assert await pipeline.on_request(make_ctx(body=b'{"items": [{"qty": 2}]}')) is None
    reply = await pipeline.on_request(make_ctx(body=b'{"items": [{"qty": "2"}]}'))
    assert reply is not None
    assert json.loads(reply.body)["path"] == "$.items[0].qty"  # the concrete location
    missing = await pipeline.on_request(make_ctx(body=b'{"other": 1}'))
    assert missing is not None
    assert json.loads(missing.body)["reason"] == "the path matches nothing"


@pytest.mark.parametrize("body", [b"", b"{bad", b"\xff\xfe", b"[1, 2"])
async def test_invalid_json(world: World, body: bytes) -> None:
    reply = await world.one("json_schema", {"schema": SCHEMA}).on_request(make_ctx(body=body))
    assert reply is not None
    assert json.loads(reply.body)["error"] == "invalid_json"


async def test_remote_refs_are_never_fetched(world: World) -> None:
    schema = {"$ref": "https://attacker.example/schema.json"}
    pipeline = world.one("json_schema", {"schema": schema})
    reply = await pipeline.on_request(make_ctx(body=b"{}"))
    assert reply is not None
    assert reply.status == 500


async def test_response_validation(world: World) -> None:
    pipeline = world.one("json_schema", {"schema": SCHEMA}, phase="response")
    ctx = make_ctx()
    ctx.response = make_response(body=b'{"items": 5}')
    reply = await pipeline.on_response(ctx)
    assert reply is not None
    assert reply.status == 502
    assert json.loads(reply.body)["error"] == "invalid_response"


def test_schema_config_rules() -> None:
    assert rejected("json_schema", {"schema": {"type": "nope"}}) == (
        "p.config",
        "schema is not a valid JSON Schema at $.type: 'nope' is not valid under any of the "
        "given schemas",
    )
    assert rejected("json_schema", {"schema": {}, "jsonpath": "items"}) == (
        "p.config.jsonpath",
        "JSONPath must start with '$'",
    )
    assert rejected("json_schema", {}) == ("p.config.schema", "Field required")


# -- rewrites --


async def test_header_query_and_path_rewrites(world: World) -> None:
    config = {
        "request_headers": {
            "set": {"X-Consumer-Ip": "${client_ip}", "X-Req": "${correlation_id}"},
            "add": {"X-Tag": "a"},
            "remove": ["Cookie"],
            "rename": {"X-Old": "X-New"},
        },
        "query": {"set": {"v": "2"}, "remove": ["debug"], "rename": {"q": "search"}},
        "path": {"pattern": "^/orders/(\\d+)$", "replacement": "/v2/orders/\\1"},
    }
    pipeline = world.one("rewrite", config)
    ctx = make_ctx(
        headers=[("Cookie", "s=1"), ("X-Old", "o"), ("X-Tag", "z")],
        query=[("q", "shoes"), ("debug", "1"), ("v", "1")],
    )
    assert await pipeline.on_request(ctx) is None
    h = ctx.request.headers
    assert (h.get("X-Consumer-Ip"), h.get("X-Req"), h.get_all("X-Tag")) == (
        "192.0.2.10",
        "corr-123",
        ["z", "a"],
    )
    assert (h.get("Cookie"), h.get("X-Old"), h.get("X-New")) == (None, None, "o")
    assert ctx.request.query == [("search", "shoes"), ("v", "2")]
    assert ctx.request.path == "/v2/orders/42"


async def test_templates_never_inject_headers(world: World) -> None:
    pipeline = world.one("rewrite", {"request_headers": {"set": {"X-Copy": "${query.name}"}}})
    ctx = make_ctx(query=[("name", "x\r\nX-Admin: true")])
    assert await pipeline.on_request(ctx) is None
    assert ctx.request.headers.get("X-Copy") == "xX-Admin: true"
    assert ctx.request.headers.get("X-Admin") is None


async def test_path_rewrite_cannot_escape(world: World) -> None:
    config = {"path": {"pattern": "^/files/(.*)$", "replacement": "/static/\\1"}}
    pipeline = world.one("rewrite", config)
    for hostile in ("/files/../admin", "/files/a b", "/files//etc"):
        reply = await pipeline.on_request(make_ctx(path=hostile))
        assert reply is not None
        assert json.loads(reply.body)["error"] == "rewrite_failed"


async def test_response_header_rewrite(world: World) -> None:
    pipeline = world.one("rewrite", {"response_headers": {"remove": ["Server"]}}, phase="response")
    ctx = make_ctx()
    ctx.response = make_response(headers=[("Server", "leaky/1.0")])
    await pipeline.on_response(ctx)
    assert ctx.response.headers.get("Server") is None


def test_rewrite_config_rules() -> None:
    assert rejected("rewrite", {"request_headers": {"set": {"X-A": "a\r\nX-B: b"}}}) == (
        "p.config.request_headers.set",
        "header values must not contain control characters (CR, LF, NUL ...) "
        "or characters outside Latin-1",
    )
    assert rejected("rewrite", {"request_headers": {"set": {"Bad Name": "x"}}}) == (
        "p.config.request_headers.set",
        "'Bad Name' is not a valid header name",
    )
    assert rejected("rewrite", {"path": {"pattern": "^/a/(.*)$", "replacement": "/b/\\2"}}) == (
        "p.config.path",
        "replacement refers to group 2, the pattern has 1",
    )
    assert rejected("rewrite", {"query": {"set": {"a": "${body.$.x}"}}}) == (
        "p.config.query.set",
        "${body.$.x} reads the body; rewrites may not",
    )


# -- JSON <-> XML --


async def test_json_to_xml_request(world: World) -> None:
    pipeline = world.one("json_to_xml", {"root_element": "order", "declaration": False})
    body = (
        b'{"id": 7, "items": [{"sku": "a"}, {"sku": "b"}], "gift": true, "note": null, "1x": "<&>"}'
    )
    ctx = make_ctx(
        method="POST",
        body=body,
        headers=[("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    assert await pipeline.on_request(ctx) is None
    assert await ctx.request.body() == (
        b"<order><id>7</id><items><sku>a</sku></items><items><sku>b</sku></items>"
        b"<gift>true</gift><note /><_1x>&lt;&amp;&gt;</_1x></order>"
    )
    assert ctx.request.headers.get("Content-Type") == "application/xml; charset=utf-8"
    assert ctx.request.headers.get("Content-Length") is None


async def test_xml_to_json_response(world: World) -> None:
    pipeline = world.one("xml_to_json", {"keep_root": True}, phase="response")
    ctx = make_ctx()
    ctx.response = make_response(body=b'<order id="7"><item>a</item><item>b</item></order>')
    assert await pipeline.on_response(ctx) is None
    assert json.loads(await ctx.response.body()) == {"order": {"@id": "7", "item": ["a", "b"]}}
    assert ctx.response.headers.get("Content-Type") == "application/json"


async def test_xml_to_json_refuses_entities(world: World) -> None:
    pipeline = world.one("xml_to_json")
    hostile = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    reply = await pipeline.on_request(make_ctx(method="POST", body=hostile))
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["error"]) == (
        400,
        "invalid_xml",
    )


async def test_converting_an_error_answer(world: World) -> None:
    from portway.config.models import PolicyLists

    lists = PolicyLists(
        request=[PolicySpec(name="deny", type="ip_filter", config={"deny": ["0.0.0.0/0"]})],
        error=[PolicySpec(name="xml", type="json_to_xml", config={"root_element": "error"})],
    )
    reply = await world.pipeline(lists).on_request(make_ctx())
    assert reply is not None
    assert reply.content_type == "application/xml; charset=utf-8"
    assert b"<correlation_id>corr-123</correlation_id>" in reply.body


# -- mock --


async def test_mock_response(world: World) -> None:
    config = {"status": 201, "headers": {"X-Mock": "1"}, "json_body": {"ok": True}}
    reply = await world.one("mock_response", config).on_request(make_ctx())
    assert reply is not None
    assert (reply.status, reply.body, reply.content_type) == (
        201,
        b'{"ok": true}',
        "application/json",
    )
    assert ("X-Mock", "1") in reply.headers


async def test_mock_content_type_header_becomes_the_reply_type(world: World) -> None:
    config = {"headers": {"content-type": "text/csv", "X-A": "1"}, "body": "a,b"}
    reply = await world.one("mock_response", config).on_request(make_ctx())
    assert reply is not None
    assert reply.content_type == "text/csv"
    assert reply.headers == [("X-A", "1")]


def test_mock_config_rules() -> None:
    assert rejected("mock_response", {"body": "a", "json_body": {}}) == (
        "p.config",
        "set either body or json_body, not both",
    )
    assert rejected("mock_response", {"status": 600}) == (
        "p.config.status",
        "Input should be less than or equal to 599",
    )
    assert rejected("mock_response", {"headers": {"X-A": "1\r\nX-B: 2"}}) == (
        "p.config.headers",
        "header values must not contain control characters (CR, LF, NUL ...) "
        "or characters outside Latin-1",
    )


DEEP = b"[" * 100_000 + b"]" * 100_000
"""Deeper than Python's parser recurses."""
NESTED = b"[" * 300 + b"]" * 300
"""Parses, but deeper than a policy reads (``MAX_JSON_DEPTH``)."""


@pytest.mark.parametrize("body", [DEEP, NESTED], ids=["deeper-than-the-parser", "300-levels"])
async def test_deeply_nested_json_is_invalid_json_not_a_500(world: World, body: bytes) -> None:
    reply = await world.one("json_schema", {"schema": {"type": "array"}}).on_request(
        make_ctx(body=body)
    )
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["error"]) == (400, "invalid_json")
    converted = await world.one("json_to_xml", {}).on_request(
        make_ctx(body=body, headers=[("Content-Type", "application/json")])
    )
    assert converted is not None
    assert converted.status == 400
    assert await compile_variable("body.$[0]").resolve(make_ctx(body=body), 0.0) is None

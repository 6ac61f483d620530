"""script: CEL expressions that refuse, set headers and store variables — and hostile expressions
refused when saved or bounded when run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from portway.config.models import PolicyLists, PolicySpec
from portway.policies.contract import PolicyContext, Reply
from tests.policies.helpers import World, make_ctx, make_response
from tests.policies.test_mediation import rejected


async def run(world: World, config: dict[str, Any], ctx: PolicyContext) -> Reply | None:
    return await world.one("script", config).on_request(ctx)


async def test_deny_when_refuses_with_the_configured_status_and_message(world: World) -> None:
    config = {
        "inputs": {"qty": "body.$.qty"},
        "deny_when": "qty > 10 && !('x-vip' in request.headers)",
        "deny_status": 429,
        "deny_message": "too many at once",
    }
    assert await run(world, config, make_ctx("POST", body=b'{"qty": 3}')) is None
    reply = await run(world, config, make_ctx("POST", body=b'{"qty": 11}'))
    assert reply is not None
    answer = json.loads(reply.body)
    assert (reply.status, answer["error"], answer["message"]) == (
        429,
        "script_denied",
        "too many at once",
    )
    assert answer["correlation_id"] == "corr-123"
    vip = make_ctx("POST", body=b'{"qty": 11}', headers=[("X-VIP", "1")])
    assert await run(world, config, vip) is None


async def test_set_headers_and_variables_for_later_policies(world: World) -> None:
    script = PolicySpec(
        name="s",
        type="script",
        config={
            "inputs": {"tier": "header.X-Tier"},
            "set_variables": {"plan": "tier == 'gold' ? 'premium' : 'basic'"},
            "set_headers": {
                "X-Plan": "tier == 'gold' ? 'premium' : 'basic'",
                "X-Path-Len": "size(request.path)",
                "X-Drop": "null",
            },
        },
    )
    later = PolicySpec(
        name="only-premium",
        type="script",
        config={"inputs": {"plan": "var.plan"}, "deny_when": "plan != 'premium'"},
    )
    pipeline = world.pipeline(PolicyLists(request=[script, later]))
    ctx = make_ctx(headers=[("X-Tier", "gold"), ("X-Drop", "secret")])
    assert await pipeline.on_request(ctx) is None
    headers = ctx.request.headers
    assert (headers.get("x-plan"), headers.get("x-path-len")) == ("premium", "10")
    assert "x-drop" not in headers
    assert ctx.variables["plan"] == "premium"
    basic = await pipeline.on_request(make_ctx(headers=[("X-Tier", "silver")]))
    assert basic is not None
    assert basic.status == 403


async def test_response_list_sees_the_response(world: World) -> None:
    pipeline = world.one(
        "script",
        {"set_headers": {"X-Outcome": "response.status >= 500 ? 'bad' : 'good'"}},
        phase="response",
    )
    ctx = make_ctx()
    ctx.response = make_response(503)
    assert await pipeline.on_response(ctx) is None
    assert ctx.response is not None
    assert ctx.response.headers.get("x-outcome") == "bad"


async def test_a_failing_expression_denies_or_continues(world: World) -> None:
    config: dict[str, Any] = {"set_headers": {"X-A": "request.headers['x-missing']"}}
    reply = await run(world, config, make_ctx())
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["error"]) == (500, "script_failed")
    assert "x-missing" not in reply.body.decode()  # the reason stays in the worker's log
    world.services = None
    ctx = make_ctx()
    assert await run(world, {**config, "on_error": "continue"}, ctx) is None
    assert "x-a" not in ctx.request.headers


async def test_header_values_cannot_inject_lines(world: World) -> None:
    config = {"inputs": {"v": "query.v"}, "set_headers": {"X-Echo": "v"}}
    ctx = make_ctx(query=[("v", "a\r\nX-Admin: 1")])
    assert await run(world, config, ctx) is None
    assert ctx.request.headers.get("x-echo") == "aX-Admin: 1"
    assert "x-admin" not in ctx.request.headers


async def test_deny_when_must_be_boolean(world: World) -> None:
    reply = await run(world, {"deny_when": "request.path"}, make_ctx())
    assert reply is not None
    assert reply.status == 500


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({}, "p.config", "give deny_when, set_variables or set_headers"),
        ({"deny_when": "1 +"}, "p.config", "deny_when: not a valid CEL expression"),
        ({"deny_when": "nobody == 1"}, "p.config", "deny_when: unknown name 'nobody'"),
        ({"deny_when": "request.__class__ == 1"}, "p.config", "names starting with '_'"),
        ({"deny_when": "type(request) == map"}, "p.config", "function 'type' is not allowed"),
        (
            {"set_headers": {"X": "[0,1].reduce(r, i, 'x', r + r)"}},
            "p.config",
            "set_headers.X: function 'reduce' is not allowed",
        ),
        ({"deny_when": "(" * 40 + "true" + ")" * 40}, "p.config", "nested at most 12 deep"),
        ({"deny_when": "!" * 1500 + "true"}, "p.config", "nested too deeply"),
        ({"deny_when": "1" + " + 1" * 200}, "p.config", "at most 400 parts"),
        ({"deny_when": "true || " * 300 + "true"}, "p.config.deny_when", "at most 2000"),
        ({"deny_when": "request" + ".a" * 390 + " == 1"}, "p.config", "nested too deeply"),
        (
            {"deny_when": "[1].all(a, [1].all(b, [1].all(c, true)))"},
            "p.config",
            "nested at most 2 deep",
        ),
        ({"inputs": {"request": "header.X"}, "deny_when": "true"}, "p.config.inputs", "built in"),
        ({"inputs": {"a": "nope.x"}, "deny_when": "true"}, "p.config.inputs", "unknown variable"),
        ({"set_headers": {"Bad Name": "1"}}, "p.config.set_headers", "not a valid header name"),
        ({"set_headers": {"Host": "'evil'"}}, "p.config.set_headers", "the gateway's to set"),
        ({"set_variables": {"_portway.ran": "1"}}, "p.config.set_variables", "variable name"),
        ({"deny_when": "true", "deny_status": 200}, "p.config.deny_status", "400"),
    ],
)
def test_hostile_and_broken_configs_are_refused(
    config: dict[str, Any], field: str, message: str
) -> None:
    where, text = rejected("script", config)
    assert where == field
    assert message in text


@pytest.mark.parametrize(
    "expression",
    [
        "v * 1000000000",  # string repetition is no CEL operator here
        "[v] * 1000000000",
        "items.map(a, items.map(b, v + v + v + v))",  # grows past the produced-size budget
        "items.all(a, items.all(b, a + b >= 0))",  # 1e6 steps: past the step budget
        "v.matches('(a+)+$')",  # RE2: linear, no catastrophic backtracking
        "v.matches('(?<=a)')",  # not RE2: an evaluation error, not a crash
    ],
)
async def test_hostile_expressions_are_bounded_at_run_time(world: World, expression: str) -> None:
    config = {
        "inputs": {"v": "body.$.v", "items": "body.$.items"},
        "set_variables": {"out": expression},
        "on_error": "continue",
    }
    body = json.dumps({"v": "a" * 30000 + "b", "items": list(range(1000))}).encode()
    ctx = make_ctx("POST", body=body)
    assert await run(world, config, ctx) is None
    out = ctx.variables.get("out")
    assert out is None or out is False  # refused, or matched in linear time


async def test_the_deepest_allowed_expression_runs(world: World) -> None:
    # a member chain close to the depth limit evaluates (celpy recurses per tree level)
    depth = 140  # 290 tree levels of the 300 allowed
    document: dict[str, Any] = {"a": "found"}
    for _ in range(depth - 1):
        document = {"a": document}
    config = {"inputs": {"d": "body.$.d"}, "set_variables": {"out": "d" + ".a" * depth}}
    ctx = make_ctx("POST", body=json.dumps({"d": document}).encode())
    assert await run(world, config, ctx) is None
    assert ctx.variables["out"] == "found"


async def test_oversized_input_fails_the_script(world: World) -> None:
    config = {"inputs": {"v": "body.$.v"}, "deny_when": "size(v) > 0"}
    reply = await run(world, config, make_ctx("POST", body=json.dumps({"v": "a" * 70000}).encode()))
    assert reply is not None
    assert json.loads(reply.body)["error"] == "script_failed"

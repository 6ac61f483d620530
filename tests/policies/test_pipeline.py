from __future__ import annotations

import json
from typing import Any

import pytest

from portway.config.models import PolicyLists, PolicySpec
from portway.errors import DeploymentError
from portway.policies.contract import GatewayError, Reply
from portway.policies.mock_response import MockResponsePolicy
from portway.policies.resources import ErrorRule
from tests.policies.helpers import World, make_ctx, make_response


def p(name: str, type_: str, config: dict[str, Any] | None = None, **extra: Any) -> PolicySpec:
    return PolicySpec(name=name, type=type_, config=config or {}, **extra)


def tag(name: str, label: str | None = None) -> PolicySpec:
    """A rewrite that appends a label to a trail header: shows the order policies ran in."""
    rules = {"add": {"X-Trail": label or name}}
    return p(name, "rewrite", {"request_headers": rules, "response_headers": rules})


def deny_all(name: str = "deny") -> PolicySpec:
    return p(name, "ip_filter", {"deny": ["0.0.0.0/0", "::/0"]})


async def test_request_in_scope_order_response_reversed(world: World) -> None:
    group = PolicyLists(request=[tag("g")], response=[tag("g-out", "g")])
    proxy = PolicyLists(request=[tag("p1"), tag("p2")], response=[tag("p")])
    endpoint = PolicyLists(request=[tag("e")], response=[tag("e-out", "e")])
    pipeline = world.pipeline(group, proxy, endpoint)
    ctx = make_ctx()
    assert await pipeline.on_request(ctx) is None
    assert ctx.request.headers.get_all("X-Trail") == ["g", "p1", "p2", "e"]
    ctx.response = make_response()
    assert await pipeline.on_response(ctx) is None
    assert ctx.response.headers.get_all("X-Trail") == ["e", "p", "g"]


async def test_inactive_policies_are_left_out(world: World) -> None:
    pipeline = world.pipeline(
        PolicyLists(request=[deny_all().model_copy(update={"active": False})])
    )
    assert pipeline.steps["request"] == ()
    assert await pipeline.on_request(make_ctx()) is None


async def test_global_policies_by_reference(world: World) -> None:
    world.global_policies = {"block": deny_all("block")}
    ref = PolicySpec(name="use-block", type="ip_filter", global_ref="block")
    reply = await world.pipeline(PolicyLists(request=[ref])).on_request(make_ctx())
    assert reply is not None
    assert reply.status == 403
    world.global_policies = {}
    world.services = None
    with pytest.raises(DeploymentError, match="global policy 'block' does not exist"):
        world.pipeline(PolicyLists(request=[ref]))


async def test_condition_decides_whether_a_policy_runs(world: World) -> None:
    only_beta = {"variable": "header.X-Env", "operator": "EQ", "value": "beta"}
    pipeline = world.pipeline(
        PolicyLists(request=[deny_all().model_copy(update={"condition": only_beta})])
    )
    assert await pipeline.on_request(make_ctx()) is None
    reply = await pipeline.on_request(make_ctx(headers=[("X-Env", "beta")]))
    assert reply is not None
    assert reply.status == 403
    counters = pipeline.counters()["proxy.deny"]
    assert (counters["skipped"], counters["evaluated"], counters["denied"]) == (1, 1, 1)


async def test_shadow_mode_records_but_never_enforces(world: World) -> None:
    shadow = [
        deny_all().model_copy(update={"shadow": True}),
        p("strip", "rewrite", {"request_headers": {"remove": ["X-Keep"]}}, shadow=True),
        p("mock", "mock_response", {"status": 418}, shadow=True),
    ]
    pipeline = world.pipeline(PolicyLists(request=shadow))
    ctx = make_ctx(headers=[("X-Keep", "yes")])
    assert await pipeline.on_request(ctx) is None
    assert ctx.request.headers.get("X-Keep") == "yes"  # the shadow rewrite was undone
    assert ctx.log["shadow"] == [
        {"policy": "deny", "would": "deny", "status": 403, "code": "ip_denied"},
        {"policy": "mock", "would": "reply", "status": 418, "code": None},
    ]
    counters = pipeline.counters()
    assert counters["proxy.deny"]["shadow_denied"] == 1
    assert counters["proxy.deny"]["denied"] == 0


async def test_shadow_denial_undoes_changes_made_before_it(world: World) -> None:
    shadow_auth = p("key", "api_key", {}, shadow=True)
    pipeline = world.pipeline(PolicyLists(request=[shadow_auth]))
    ctx = make_ctx(headers=[("X-Consumer", "from-client")])
    assert await pipeline.on_request(ctx) is None
    # the policy removed the identity header before refusing; shadow mode puts it back
    assert ctx.request.headers.get("X-Consumer") == "from-client"
    assert ctx.log["shadow"][0]["code"] == "missing_credentials"


async def test_error_list_runs_and_error_carries_correlation_id(world: World) -> None:
    lists = PolicyLists(
        request=[deny_all()],
        error=[
            p("err-tag", "rewrite", {"response_headers": {"set": {"X-Error": "${correlation_id}"}}})
        ],
    )
    reply = await world.pipeline(lists).on_request(make_ctx())
    assert reply is not None
    assert json.loads(reply.body) == {
        "status": 403,
        "error": "ip_denied",
        "message": "your address is not allowed",
        "correlation_id": "corr-123",
    }
    headers = dict(reply.headers)
    assert headers["X-Error"] == "corr-123"
    assert "X-Correlation-Id" not in headers  # the worker adds it to every answer, once
    assert reply.content_type == "application/json"


async def test_error_precedence(world: World) -> None:
    world.make_services().error_rules = (
        ErrorRule("*", '<e code="$code" id="$correlation_id">$message</e>', "application/xml"),
    )
    policy_level = deny_all().model_copy(update={"messages": {"*": "policy says no ($code)"}})
    per_error = deny_all().model_copy(
        update={"messages": {"*": "policy says no", "ip_denied": "go away <$status>"}}
    )
    body = await world.pipeline(PolicyLists(request=[per_error])).on_request(make_ctx())
    assert body is not None
    assert body.body == b'<e code="ip_denied" id="corr-123">go away &lt;403&gt;</e>'
    reply = await world.pipeline(PolicyLists(request=[policy_level])).on_request(make_ctx())
    assert reply is not None
    assert reply.body == b'<e code="ip_denied" id="corr-123">policy says no (ip_denied)</e>'
    plain = await world.pipeline(PolicyLists(request=[deny_all()])).on_request(make_ctx())
    assert plain is not None
    assert plain.body == b'<e code="ip_denied" id="corr-123">your address is not allowed</e>'
    world.make_services().error_rules = ()
    default = await world.pipeline(PolicyLists(request=[deny_all()])).on_request(make_ctx())
    assert default is not None
    assert json.loads(default.body)["message"] == "your address is not allowed"


async def test_templates_cannot_inject_into_json(world: World) -> None:
    world.make_services().error_rules = (ErrorRule("*", '{"uri": "$request_uri"}'),)
    ctx = make_ctx(path='/x"}, "admin": true, "y": {"')
    reply = await world.pipeline(PolicyLists(request=[deny_all()])).on_request(ctx)
    assert reply is not None
    assert json.loads(reply.body) == {"uri": '/x"}, "admin": true, "y": {"'}


async def test_backend_errors_go_through_the_error_list(world: World) -> None:
    lists = PolicyLists(error=[p("friendly", "mock_response", {"status": 503, "body": "later"})])
    pipeline = world.pipeline(lists)
    ctx = make_ctx()
    ctx.error = GatewayError(502, "backend_unreachable", "no backend answered")
    reply = await pipeline.on_error(ctx)
    assert reply is not None
    assert (reply.status, reply.body) == (503, b"later")
    bare = world.pipeline(PolicyLists())
    ctx = make_ctx()
    ctx.error = GatewayError(502, "backend_unreachable", "no backend answered")
    reply = await bare.on_error(ctx)
    assert reply is not None
    assert json.loads(reply.body)["error"] == "backend_unreachable"


async def test_response_side_denial_renders_error(world: World) -> None:
    pipeline = world.pipeline(
        PolicyLists(response=[p("size", "size_limit", {"max_response_bytes": 3})])
    )
    ctx = make_ctx()
    assert await pipeline.on_request(ctx) is None
    ctx.response = make_response(body=b"too long")
    reply = await pipeline.on_response(ctx)
    assert reply is not None
    assert reply.status == 502
    assert json.loads(reply.body)["error"] == "response_too_large"


async def test_a_failing_policy_is_a_500_without_details(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = world.pipeline(PolicyLists(request=[p("m", "mock_response")]))

    async def boom(self: Any, ctx: Any) -> Reply | None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(MockResponsePolicy, "on_request", boom)
    reply = await pipeline.on_request(make_ctx())
    assert reply is not None
    assert reply.status == 500
    assert b"secret" not in reply.body
    assert json.loads(reply.body)["error"] == "policy_error"
    assert pipeline.counters()["proxy.m"]["errors"] == 1


async def test_counters_are_shared_through_services(world: World) -> None:
    pipeline = world.pipeline(PolicyLists(request=[tag("t")]), label="default/orders")
    await pipeline.on_request(make_ctx())
    await pipeline.on_request(make_ctx())
    snapshot = world.make_services().stats.snapshot()
    assert snapshot == [
        {
            "key": "default/orders|proxy",
            "scope": "proxy",
            "policy": "t",
            "evaluated": 2,
            "allowed": 2,
            "denied": 0,
            "errors": 0,
            "skipped": 0,
            "shadow_denied": 0,
        }
    ]


async def test_reply_headers_reach_short_circuit_replies(world: World) -> None:
    lists = PolicyLists(
        request=[
            p("cors", "cors", {"allowed_origins": ["https://app.example"]}),
            p("mock", "mock_response", {"json_body": {"ok": True}}),
        ]
    )
    reply = await world.pipeline(lists).on_request(
        make_ctx(headers=[("Origin", "https://app.example")])
    )
    assert reply is not None
    assert reply.body == b'{"ok": true}'
    assert ("Access-Control-Allow-Origin", "https://app.example") in reply.headers


async def test_transport_errors_reach_the_worker(world: World) -> None:
    from portway.http import BodyTooLarge

    async def too_large() -> bytes:
        raise BodyTooLarge("body over the limit")

    lists = PolicyLists(request=[p("schema", "json_schema", {"schema": {}}, shadow=True)])
    for pipeline in (world.pipeline(lists), world.one("json_schema", {"schema": {}})):
        ctx = make_ctx(method="POST")
        ctx.request.read_body = too_large
        with pytest.raises(BodyTooLarge):
            await pipeline.on_request(ctx)


async def test_computed_header_values_stay_latin1(world: World) -> None:
    pipeline = world.one("rewrite", {"request_headers": {"set": {"X-Q": "${query.q}"}}})
    ctx = make_ctx(query=[("q", "café 名前")])
    assert await pipeline.on_request(ctx) is None
    value = ctx.request.headers.get("X-Q")
    assert value == "café ??"
    assert value is not None
    value.encode("latin-1")

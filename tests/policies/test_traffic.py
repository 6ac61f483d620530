from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from portway.config.models import PolicyLists, PolicySpec
from portway.errors import ConfigError
from portway.policies.quota import period_bounds
from portway.policies.registry import validate_policy_spec
from tests.policies.helpers import World, make_ctx, make_response


def code_of(reply: Any) -> str:
    return str(json.loads(reply.body)["error"])


def rejected(type_: str, config: dict[str, Any]) -> tuple[str | None, str]:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="x", type=type_, config=config), "p")
    return caught.value.field, caught.value.message


def header(reply_or_ctx: Any, name: str) -> str | None:
    if hasattr(reply_or_ctx, "body") and isinstance(reply_or_ctx.headers, list):
        return dict(reply_or_ctx.headers).get(name)
    return None


# -- throttling --


async def test_fixed_window_limits_per_identity(world: World) -> None:
    pipeline = world.one("throttling", {"limit": 2, "interval_seconds": 60})
    for _ in range(2):
        assert await pipeline.on_request(make_ctx()) is None
    reply = await pipeline.on_request(make_ctx())
    assert reply is not None
    assert (reply.status, code_of(reply)) == (429, "rate_limited")
    headers = dict(reply.headers)
    assert headers["Retry-After"] == "60"
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"]) == ("2", "0")
    # another client has its own counter
    assert await pipeline.on_request(make_ctx(client_ip="192.0.2.99")) is None
    world.clock.advance(60)
    assert await pipeline.on_request(make_ctx()) is None


async def test_rate_headers_on_success(world: World) -> None:
    pipeline = world.one("throttling", {"limit": 5, "interval_seconds": 10})
    ctx = make_ctx()
    assert await pipeline.on_request(ctx) is None
    ctx.response = make_response()
    await pipeline.on_response(ctx)
    assert ctx.response.headers.get("X-RateLimit-Remaining") == "4"
    assert ctx.response.headers.get("X-RateLimit-Reset") == "10"
    quiet = world.one("throttling", {"limit": 5, "headers": False}, name="quiet")
    ctx = make_ctx()
    await quiet.on_request(ctx)
    ctx.response = make_response()
    await quiet.on_response(ctx)
    assert ctx.response.headers.get("X-RateLimit-Limit") is None


async def test_two_workers_share_the_limit_exactly(world: World) -> None:
    config = {"limit": 10, "identity": "header.X-Client"}
    worker_a = world.one("throttling", config)
    world.services = None
    worker_b = world.one("throttling", config)  # another pipeline over the same cache
    outcomes = []
    for i in range(16):
        pipeline = worker_a if i % 2 else worker_b
        outcomes.append(await pipeline.on_request(make_ctx(headers=[("X-Client", "c1")])) is None)
    assert outcomes.count(True) == 10


BATCHED = {"sync": "batched", "sync_interval_ms": 20, "identity": "header.X-Client"}


def client(name: str = "c1") -> Any:
    return make_ctx(headers=[("X-Client", name)])


async def test_batched_sync_alone_is_exact_and_reaches_the_shared_counter(world: World) -> None:
    batched = world.one("throttling", {**BATCHED, "limit": 5, "counter_name": "shared"})
    admitted = [await batched.on_request(client()) is None for _ in range(8)]
    assert admitted == [True] * 5 + [False] * 3
    await asyncio.sleep(0.2)  # a few sync intervals
    exact = world.one(
        "throttling", {"limit": 9, "identity": "header.X-Client", "counter_name": "shared"}
    )
    reply = await exact.on_request(client())  # the 9th request the shared counter sees
    assert reply is None
    reply = await exact.on_request(client())
    assert reply is not None
    assert reply.status == 429


async def test_batched_sync_overshoot_is_bounded_by_one_interval_of_the_other_worker(
    world: World,
) -> None:
    config = {**BATCHED, "limit": 10, "sync_interval_ms": 60_000}
    worker_a = world.one("throttling", config)
    world.services = None
    worker_b = world.one("throttling", config)  # another worker over the same cache
    outcomes = []
    for i in range(30):  # all within one interval: neither sees the other's local counts
        pipeline = worker_a if i % 2 else worker_b
        outcomes.append(await pipeline.on_request(client()) is None)
    # each admits up to the limit on its own view: at most what the other admitted beyond it
    assert 10 < outcomes.count(True) <= 10 + 10
    assert outcomes.count(True) == 19  # B saw 1 shared, A saw 2: 10 + 9


async def test_batched_sync_learns_the_other_workers_counts_at_each_flush(world: World) -> None:
    config = {**BATCHED, "limit": 10}
    worker_a = world.one("throttling", config)
    world.services = None
    worker_b = world.one("throttling", config)
    for _ in range(6):
        assert await worker_a.on_request(client()) is None
    assert await worker_b.on_request(client()) is None  # shared: 1 (A's first) + 1
    await asyncio.sleep(0.2)  # A flushed its 5 local counts: the shared counter holds 7
    world.clock.advance(0.05)  # B's view is older than one interval: its next request syncs
    results = [await worker_b.on_request(client()) is None for _ in range(5)]
    assert results == [True, True, True, False, False]
    other = [await worker_b.on_request(client("c2")) is None for _ in range(2)]
    assert other == [True, True]  # another identity has its own counter


async def test_batched_sync_keeps_counts_while_the_cache_is_down(world: World) -> None:
    config = {**BATCHED, "limit": 4, "counter_name": "shared", "on_store_unavailable": "fail"}
    pipeline = world.one("throttling", config)
    assert await pipeline.on_request(client()) is None  # learns the window from the cache
    world.cache.down = True
    assert await pipeline.on_request(client()) is None  # counted locally, the flush fails
    await asyncio.sleep(0.1)
    world.cache.down = False
    await asyncio.sleep(0.1)  # the next flush delivers the kept count
    exact = world.one(
        "throttling", {"limit": 3, "identity": "header.X-Client", "counter_name": "shared"}
    )
    assert await exact.on_request(client()) is None  # the 3rd
    assert await exact.on_request(client()) is not None


async def test_sync_must_be_exact_or_batched() -> None:
    assert rejected("throttling", {"limit": 1, "sync": "lazy"})[0] == "p.config.sync"
    assert rejected("throttling", {"limit": 1, "sync_interval_ms": 1})[0] == (
        "p.config.sync_interval_ms"
    )


async def test_sliding_window_weights_the_previous_window(world: World) -> None:
    pipeline = world.one("throttling", {"limit": 4, "interval_seconds": 60, "window": "sliding"})
    world.clock.now = 6000.0 * 60  # aligned to a window start
    for _ in range(4):
        assert await pipeline.on_request(make_ctx()) is None
    assert await pipeline.on_request(make_ctx()) is not None  # refused requests count too
    world.clock.advance(60 + 30)  # half way into the next window: 5 * 0.5 = 2.5 still count
    assert await pipeline.on_request(make_ctx()) is None  # 2.5 + 1
    reply = await pipeline.on_request(make_ctx())  # 2.5 + 2 > 4
    assert reply is not None
    assert reply.status == 429
    assert dict(reply.headers)["Retry-After"] == "30"


async def test_overrides_by_value_and_regex(world: World) -> None:
    config = {
        "limit": 1,
        "identity": "consumer",
        "overrides": [{"value": "gold", "limit": 3}, {"regex": "partner-.*", "limit": 0}],
    }
    pipeline = world.one("throttling", config)

    async def allowed(name: str) -> bool:
        ctx = make_ctx()
        ctx.consumer = name
        return await pipeline.on_request(ctx) is None

    assert [await allowed("gold") for _ in range(4)] == [True, True, True, False]
    assert [await allowed("partner-x") for _ in range(1)] == [False]
    assert [await allowed("basic") for _ in range(2)] == [True, False]


async def test_store_unavailable_is_an_explicit_choice(world: World) -> None:
    world.cache.down = True
    open_ = world.one("throttling", {"limit": 1, "on_store_unavailable": "continue"})
    assert await open_.on_request(make_ctx()) is None
    world.services = None
    closed = world.one("throttling", {"limit": 1, "on_store_unavailable": "fail"})
    reply = await closed.on_request(make_ctx())
    assert reply is not None
    assert (reply.status, code_of(reply)) == (503, "store_unavailable")


async def test_hostile_identities_are_hashed_into_keys(world: World) -> None:
    pipeline = world.one("throttling", {"limit": 1, "identity": "header.X-Id"})
    await pipeline.on_request(make_ctx(headers=[("X-Id", "a\nb" + "x" * 500)]))
    (key,) = world.cache.increments
    assert "\n" not in key
    assert len(key) < 200
    assert "sha256:" in key


def test_throttling_config_rules() -> None:
    assert rejected("throttling", {}) == ("p.config.limit", "Field required")
    assert rejected("throttling", {"limit": 1, "window": "rolling"}) == (
        "p.config.window",
        "Input should be 'fixed' or 'sliding'",
    )
    assert rejected("throttling", {"limit": 1, "interval_seconds": 0}) == (
        "p.config.interval_seconds",
        "Input should be greater than or equal to 1",
    )
    assert rejected("throttling", {"limit": 1, "overrides": [{"regex": "(", "limit": 1}]}) == (
        "p.config.overrides[0].regex",
        "not a regular expression: missing ), unterminated subpattern at position 0",
    )
    assert rejected("throttling", {"limit": 1, "identity": "cookie.x"})[0] == "p.config.identity"


# -- quota --


def ts(text: str, zone: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


@pytest.mark.parametrize(
    ("moment", "period", "period_id", "end"),
    [
        ("2026-03-04T12:30:00", "hour", "2026-03-04T12+0100", "2026-03-04T13:00:00"),
        ("2026-03-04T23:59:59", "day", "2026-03-04", "2026-03-05T00:00:00"),
        ("2026-03-04T10:00:00", "week", "2026-03-02", "2026-03-09T00:00:00"),
        ("2026-12-31T10:00:00", "month", "2026-12-01", "2027-01-01T00:00:00"),
        # the day DST starts in Paris has 23 hours
        ("2026-03-29T12:00:00", "day", "2026-03-29", "2026-03-30T00:00:00"),
    ],
)
def test_quota_periods_follow_the_time_zone(
    moment: str, period: Any, period_id: str, end: str
) -> None:
    zone = ZoneInfo("Europe/Paris")
    found_id, found_end = period_bounds(ts(moment, "Europe/Paris"), period, zone)
    assert (found_id, found_end) == (period_id, ts(end, "Europe/Paris"))


async def test_quota_per_local_day(world: World) -> None:
    world.clock.now = ts("2026-03-04T23:58:00", "Asia/Tokyo")
    pipeline = world.one("quota", {"limit": 2, "period": "day", "time_zone": "Asia/Tokyo"})
    assert await pipeline.on_request(make_ctx()) is None
    assert await pipeline.on_request(make_ctx()) is None
    reply = await pipeline.on_request(make_ctx())
    assert reply is not None
    assert (reply.status, code_of(reply)) == (429, "quota_exceeded")
    assert dict(reply.headers)["Retry-After"] == "120"
    world.clock.advance(121)  # a new day in Tokyo
    assert await pipeline.on_request(make_ctx()) is None


def test_quota_config_rules() -> None:
    assert rejected("quota", {"limit": 1, "time_zone": "Mars/Olympus"}) == (
        "p.config.time_zone",
        "unknown time zone 'Mars/Olympus'",
    )
    assert rejected("quota", {"limit": 1, "period": "year"}) == (
        "p.config.period",
        "Input should be 'hour', 'day', 'week' or 'month'",
    )


# -- client ban --


async def run(pipeline: Any, status: int, **ctx_args: Any) -> Any:
    ctx = make_ctx(**ctx_args)
    reply = await pipeline.on_request(ctx)
    if reply is not None:
        return reply
    ctx.response = make_response(status)
    await pipeline.on_response(ctx)
    return None


async def test_client_ban_after_errors(world: World) -> None:
    pipeline = world.one("client_ban", {"max_errors": 3, "window_seconds": 60, "ban_seconds": 120})
    for status in (200, 401, 404, 200):
        assert await run(pipeline, status) is None
    assert await run(pipeline, 403) is None  # third error: banned from now on
    reply = await run(pipeline, 200)
    assert reply is not None
    assert (reply.status, code_of(reply)) == (403, "client_banned")
    assert dict(reply.headers)["Retry-After"] == "120"
    assert await run(pipeline, 200, client_ip="192.0.2.77") is None  # others are not affected
    world.clock.advance(30)  # still inside the error window
    reply = await run(pipeline, 200)  # refusals during the ban do not extend it
    assert reply is not None
    assert dict(reply.headers)["Retry-After"] == "90"
    world.clock.advance(91)
    assert await run(pipeline, 200) is None


async def test_client_ban_counts_errors_from_other_policies(world: World) -> None:
    lists = PolicyLists(
        request=[
            PolicySpec(name="ban", type="client_ban", config={"max_errors": 2}),
            PolicySpec(name="key", type="api_key", config={}),
        ]
    )
    pipeline = world.pipeline(lists)
    for _ in range(2):
        reply = await pipeline.on_request(make_ctx(headers=[("X-Api-Key", "guess")]))
        assert reply is not None
        assert code_of(reply) == "invalid_credentials"
    reply = await pipeline.on_request(make_ctx(headers=[("X-Api-Key", "guess")]))
    assert reply is not None
    assert code_of(reply) == "client_banned"


async def test_client_ban_by_percentage(world: World) -> None:
    config = {"error_percent": 50, "min_requests": 4, "window_seconds": 60}
    pipeline = world.one("client_ban", config)
    assert await run(pipeline, 500) is None  # 1/1 but below min_requests
    assert await run(pipeline, 200) is None
    assert await run(pipeline, 200) is None
    assert await run(pipeline, 500) is None  # 2/4 = 50%: banned
    assert await run(pipeline, 200) is not None


def test_client_ban_config_rules() -> None:
    message = "set exactly one of max_errors and error_percent"
    assert rejected("client_ban", {}) == ("p.config", message)
    assert rejected("client_ban", {"max_errors": 1, "error_percent": 5}) == ("p.config", message)


# -- time restriction --

OFFICE = {
    "time_zone": "America/New_York",
    "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30"}],
}


@pytest.mark.parametrize(
    ("local", "allowed"),
    [
        ("2026-03-04T09:00:00", True),  # Wednesday
        ("2026-03-04T17:29:59", True),
        ("2026-03-04T17:30:00", False),
        ("2026-03-04T08:59:00", False),
        ("2026-03-07T12:00:00", False),  # Saturday
    ],
)
async def test_time_restriction_allow(world: World, local: str, allowed: bool) -> None:
    world.clock.now = ts(local, "America/New_York")
    reply = await world.one("time_restriction", OFFICE).on_request(make_ctx())
    assert (reply is None) is allowed
    if reply is not None:
        assert (reply.status, code_of(reply)) == (403, "outside_allowed_time")


@pytest.mark.parametrize(
    ("local", "denied"),
    [
        ("2026-03-06T23:00:00", True),  # Friday night
        ("2026-03-07T01:59:00", True),  # early Saturday belongs to Friday's window
        ("2026-03-07T02:00:00", False),
        ("2026-03-05T01:00:00", False),  # early Thursday: Wednesday has no window
    ],
)
async def test_time_restriction_deny_overnight(world: World, local: str, denied: bool) -> None:
    world.clock.now = ts(local, "UTC")
    config = {"mode": "deny", "windows": [{"days": ["fri"], "start": "22:00", "end": "02:00"}]}
    reply = await world.one("time_restriction", config).on_request(make_ctx())
    assert (reply is not None) is denied


def test_time_restriction_config_rules() -> None:
    window = {"start": "10:00", "end": "10:00"}
    assert rejected("time_restriction", {"windows": [window]}) == (
        "p.config.windows[0]",
        "start and end must differ",
    )
    assert rejected("time_restriction", {"windows": [{"start": "25:00", "end": "10:00"}]}) == (
        "p.config.windows[0].start",
        "must be HH:MM (00:00 to 24:00)",
    )
    assert rejected("time_restriction", {"windows": []}) == (
        "p.config.windows",
        "List should have at least 1 item after validation, not 0",
    )


# -- size limits --


async def test_request_size_limit(world: World) -> None:
    pipeline = world.one("size_limit", {"max_request_bytes": 10})
    assert await pipeline.on_request(make_ctx(method="POST", body=b"0123456789")) is None
    cases = [
        (make_ctx(method="POST", body=b"01234567890"), 413, "request_too_large"),
        (make_ctx(method="POST", headers=[("Content-Length", "999")]), 413, "request_too_large"),
        (
            make_ctx(method="POST", headers=[("Content-Length", "-1")]),
            400,
            "invalid_content_length",
        ),
        (
            make_ctx(method="POST", headers=[("Content-Length", "5"), ("Content-Length", "50")]),
            400,
            "invalid_content_length",
        ),
    ]
    for ctx, status, code in cases:
        reply = await pipeline.on_request(ctx)
        assert reply is not None
        assert (reply.status, code_of(reply)) == (status, code)


async def test_response_size_limit(world: World) -> None:
    pipeline = world.one("size_limit", {"max_response_bytes": 4}, phase="response")
    ctx = make_ctx()
    ctx.response = make_response(body=b"1234")
    assert await pipeline.on_response(ctx) is None
    ctx = make_ctx()
    ctx.response = make_response(body=b"12345")
    reply = await pipeline.on_response(ctx)
    assert reply is not None
    assert (reply.status, code_of(reply)) == (502, "response_too_large")


def test_size_limit_config_rules() -> None:
    assert rejected("size_limit", {}) == (
        "p.config",
        "set min_request_bytes, max_request_bytes or max_response_bytes",
    )
    assert rejected("size_limit", {"min_request_bytes": 11, "max_request_bytes": 10}) == (
        "p.config",
        "min_request_bytes must not exceed max_request_bytes",
    )
    assert rejected("size_limit", {"min_request_bytes": 0})[0] == "p.config.min_request_bytes"
    assert rejected("size_limit", {"min_request_bytes": "5"})[0] == "p.config.min_request_bytes"


async def test_request_min_size(world: World) -> None:
    pipeline = world.one("size_limit", {"min_request_bytes": 4, "max_request_bytes": 10})
    assert await pipeline.on_request(make_ctx(method="POST", body=b"1234")) is None
    declared = [("Content-Length", "4")]
    assert await pipeline.on_request(make_ctx(method="POST", headers=declared)) is None
    cases = [
        make_ctx(method="POST", body=b"123"),
        make_ctx(method="POST", headers=[("Content-Length", "3")]),
        make_ctx(method="POST", headers=[("Content-Length", "0")]),
        make_ctx(method="GET"),  # no body at all is below any minimum
    ]
    for ctx in cases:
        reply = await pipeline.on_request(ctx)
        assert reply is not None
        assert (reply.status, code_of(reply)) == (400, "request_too_small")
        assert "min_request_bytes" in json.loads(reply.body)["message"]
    # a malformed length is still refused as such, never taken as a small body
    ctx = make_ctx(method="POST", headers=[("Content-Length", "3x")])
    reply = await pipeline.on_request(ctx)
    assert reply is not None
    assert code_of(reply) == "invalid_content_length"
    reply = await pipeline.on_request(make_ctx(method="POST", body=b"01234567890"))
    assert reply is not None
    assert code_of(reply) == "request_too_large"


# -- per-consumer limits from the grant --


async def test_grant_limits_apply_to_authenticated_consumers(world: World) -> None:
    from portway.config.revision import GrantQuota, GrantSnapshot, GrantThrottle
    from tests.policies.helpers import consumer

    grant = GrantSnapshot(
        api="orders", throttling=GrantThrottle(limit=1, interval=10), quota=GrantQuota(limit=2)
    )
    world.consumers = [consumer("gold", grants=[grant]), consumer("plain")]
    throttle = world.one("throttling", {"limit": 100})
    quota = world.one("quota", {"limit": 100}, name="q")

    async def allowed(pipeline: Any, name: str) -> bool:
        ctx = make_ctx()
        ctx.consumer = name
        return await pipeline.on_request(ctx) is None

    assert [await allowed(throttle, "gold") for _ in range(2)] == [True, False]
    assert [await allowed(throttle, "plain") for _ in range(2)] == [True, True]
    world.clock.advance(10)  # the grant's interval, not the policy's 60 s
    assert await allowed(throttle, "gold")
    assert [await allowed(quota, "gold") for _ in range(3)] == [True, True, False]
    world.services = None
    ignoring = world.one("quota", {"limit": 100, "use_grant_limits": False}, name="q2")
    assert [await allowed(ignoring, "gold") for _ in range(3)] == [True, True, True]

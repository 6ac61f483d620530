from __future__ import annotations

from typing import Any

import pytest

from portway.config.models import PolicySpec
from portway.errors import ConfigError
from portway.policies.registry import validate_policy_spec
from tests.policies.helpers import World, make_ctx, make_response


async def exchange(
    pipeline: Any,
    backend: list[int],
    *,
    status: int = 200,
    response_headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
    length: bool = True,
    **ctx_args: Any,
) -> tuple[int, bytes, dict[str, str]]:
    """One request through the pipeline; ``backend`` counts the backend calls."""
    ctx = make_ctx(**ctx_args)
    reply = await pipeline.on_request(ctx)
    if reply is not None:
        return reply.status, reply.body, dict(reply.headers)
    backend.append(1)
    body = b'{"n": %d}' % len(backend)
    framing = (("Content-Length", str(len(body))),) if length else ()
    ctx.response = make_response(status, body, (*response_headers, *framing))
    await pipeline.on_response(ctx)
    return ctx.response.status, await ctx.response.body(), dict(ctx.response.headers.items())


async def test_hit_after_miss_and_expiry(world: World) -> None:
    pipeline = world.one("response_cache", {"ttl_seconds": 30})
    calls: list[int] = []
    status, body, headers = await exchange(pipeline, calls)
    assert (body, headers["X-Cache"]) == (b'{"n": 1}', "MISS")
    world.clock.advance(10)
    status, body, headers = await exchange(pipeline, calls)
    assert (status, body, headers["X-Cache"], headers["Age"]) == (200, b'{"n": 1}', "HIT", "10")
    assert len(calls) == 1
    world.clock.advance(21)
    _, body, _ = await exchange(pipeline, calls)
    assert body == b'{"n": 2}'


async def test_key_separates_paths_queries_and_methods(world: World) -> None:
    pipeline = world.one("response_cache", {"key_variables": ["header.X-Tenant"]})
    calls: list[int] = []
    await exchange(pipeline, calls, query=[("a", "1"), ("b", "2")])
    await exchange(pipeline, calls, query=[("b", "2"), ("a", "1")])  # same key, sorted
    assert len(calls) == 1
    await exchange(pipeline, calls, query=[("a", "2")])
    await exchange(pipeline, calls, path="/orders/43")
    await exchange(pipeline, calls, headers=[("X-Tenant", "t2")])
    await exchange(pipeline, calls, method="POST")
    await exchange(pipeline, calls, method="POST")  # POST is not cached by default
    assert len(calls) == 6


@pytest.mark.parametrize(
    ("request_headers", "response_headers", "status"),
    [
        ((("Cache-Control", "no-store"),), (), 200),
        ((), (("Cache-Control", "no-store"),), 200),
        ((), (("Cache-Control", "private, max-age=60"),), 200),
        ((), (("Cache-Control", "max-age=0"),), 200),
        ((), (("Set-Cookie", "session=1"),), 200),
        ((), (("Vary", "*"),), 200),
        ((), (), 500),
    ],
)
async def test_responses_that_are_not_stored(
    world: World, request_headers: Any, response_headers: Any, status: int
) -> None:
    pipeline = world.one("response_cache")
    calls: list[int] = []
    for _ in range(2):
        await exchange(
            pipeline,
            calls,
            status=status,
            headers=request_headers,
            response_headers=response_headers,
        )
    assert len(calls) == 2


async def test_bodies_of_unknown_length_are_not_buffered(world: World) -> None:
    pipeline = world.one("response_cache", {"max_body_bytes": 100})
    calls: list[int] = []
    for _ in range(2):
        await exchange(pipeline, calls, length=False)  # chunked: never read just to cache it
    assert len(calls) == 2
    for _ in range(2):
        await exchange(pipeline, calls, response_headers=(("Content-Length", "999"),))
    assert len(calls) == 4


async def test_request_no_cache_bypasses_the_lookup(world: World) -> None:
    pipeline = world.one("response_cache")
    calls: list[int] = []
    await exchange(pipeline, calls)
    _, _, headers = await exchange(pipeline, calls, headers=[("Cache-Control", "no-cache")])
    assert headers["X-Cache"] == "BYPASS"
    assert len(calls) == 2


async def test_vary_makes_a_second_level_key(world: World) -> None:
    pipeline = world.one("response_cache")
    calls: list[int] = []
    vary = (("Vary", "Accept-Language"), ("Content-Type", "application/json"))
    await exchange(pipeline, calls, headers=[("Accept-Language", "fr")], response_headers=vary)
    await exchange(pipeline, calls, headers=[("Accept-Language", "de")], response_headers=vary)
    _, body, headers = await exchange(
        pipeline, calls, headers=[("Accept-Language", "fr")], response_headers=vary
    )
    assert (len(calls), body, headers["X-Cache"]) == (2, b'{"n": 1}', "HIT")


async def test_distributed_storage_is_shared_by_workers(world: World) -> None:
    config = {"storage": "distributed"}
    worker_a = world.one("response_cache", config)
    world.services = None
    worker_b = world.one("response_cache", config)
    calls: list[int] = []
    await exchange(worker_a, calls)
    _, _, headers = await exchange(worker_b, calls)
    assert headers["X-Cache"] == "HIT"
    assert len(calls) == 1
    assert world.local_cache.sets == []


async def test_cache_outage_means_misses_not_errors(world: World) -> None:
    pipeline = world.one("response_cache")
    world.local_cache.down = True
    calls: list[int] = []
    status, _, _ = await exchange(pipeline, calls)
    status, _, _ = await exchange(pipeline, calls)
    assert status == 200
    assert len(calls) == 2


def test_response_cache_config_rules() -> None:
    def rejected(config: dict[str, Any]) -> tuple[str | None, str]:
        with pytest.raises(ConfigError) as caught:
            validate_policy_spec(PolicySpec(name="c", type="response_cache", config=config), "p")
        return caught.value.field, caught.value.message

    assert rejected({"key_variables": ["body.$.id"]}) == (
        "p.config.key_variables",
        "'body.$.id' reads the body; cache keys may not",
    )
    assert rejected({"storage": "disk"}) == (
        "p.config.storage",
        "Input should be 'local' or 'distributed'",
    )
    assert rejected({"ttl_seconds": 0}) == (
        "p.config.ttl_seconds",
        "Input should be greater than or equal to 1",
    )

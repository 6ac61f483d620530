"""cache_invalidation: writes that succeed make the response cache miss — for the whole API or
for one invalidation key — and nothing else does (reads, failed writes, other keys, other APIs).
On the embedded cache here; tests/e2e/test_call_policies_e2e.py runs it on Redis and Hazelcast
across two workers."""

from __future__ import annotations

from typing import Any

import pytest

from portway.config.models import PolicyLists, PolicySpec
from portway.policies.pipeline import CompiledPipeline
from tests.policies.helpers import World
from tests.policies.test_mediation import rejected
from tests.policies.test_response_cache import exchange

CACHE = PolicySpec(
    name="cache",
    type="response_cache",
    config={"storage": "distributed", "invalidation_key": "${path}"},
)


def pipeline(world: World, invalidation: dict[str, Any], api: str = "orders") -> CompiledPipeline:
    spec = PolicySpec(name="inval", type="cache_invalidation", config=invalidation)
    return world.pipeline(PolicyLists(request=[CACHE, spec]), label=f"default/{api}")


async def cached(world: World, pipe: CompiledPipeline, path: str, calls: list[int]) -> str:
    _, _, headers = await exchange(pipe, calls, path=path)
    return headers["X-Cache"]


async def test_a_write_to_one_key_invalidates_that_key_only(world: World) -> None:
    pipe = pipeline(world, {"scope": "key", "key": "${path}"})
    calls: list[int] = []
    assert await cached(world, pipe, "/orders/1", calls) == "MISS"
    assert await cached(world, pipe, "/orders/2", calls) == "MISS"
    assert await cached(world, pipe, "/orders/1", calls) == "HIT"
    await exchange(pipe, calls, method="PUT", path="/orders/1")
    assert await cached(world, pipe, "/orders/1", calls) == "MISS"
    assert await cached(world, pipe, "/orders/2", calls) == "HIT"  # another key
    assert await cached(world, pipe, "/orders/1", calls) == "HIT"  # cached again


async def test_scope_api_invalidates_every_key(world: World) -> None:
    pipe = pipeline(world, {"scope": "api", "methods": ["DELETE"]})
    calls: list[int] = []
    for path in ("/orders/1", "/orders/2"):
        await cached(world, pipe, path, calls)
    await exchange(pipe, calls, method="POST", path="/orders/9")  # not a chosen method
    assert await cached(world, pipe, "/orders/1", calls) == "HIT"
    await exchange(pipe, calls, method="DELETE", path="/orders/9")
    assert await cached(world, pipe, "/orders/1", calls) == "MISS"
    assert await cached(world, pipe, "/orders/2", calls) == "MISS"
    # the tokens live in both caches: this worker's local one and the shared one
    assert any(key.startswith("rcache:gen:") for key, _ in world.local_cache.sets)
    assert any(key.startswith("rcache:gen:") for key, _ in world.cache.sets)


async def test_a_failed_write_changes_nothing(world: World) -> None:
    pipe = pipeline(world, {"scope": "key", "key": "${path}"})
    calls: list[int] = []
    await cached(world, pipe, "/orders/1", calls)
    await exchange(pipe, calls, method="PUT", path="/orders/1", status=500)
    assert await cached(world, pipe, "/orders/1", calls) == "HIT"
    lenient = pipeline(world, {"scope": "key", "key": "${path}", "only_success": False})
    await exchange(lenient, calls, method="PUT", path="/orders/1", status=500)
    assert await cached(world, pipe, "/orders/1", calls) == "MISS"


async def test_hostile_keys_cannot_reach_another_api(world: World) -> None:
    orders = pipeline(world, {"scope": "key", "key": "${header.X-Key}"})
    billing = pipeline(world, {"scope": "key", "key": "${header.X-Key}"}, api="billing")
    calls: list[int] = []
    await cached(world, orders, "/orders/1", calls)
    # the group is hashed under the API's own prefix: no spelling of a key names orders' entries
    for key in ("/orders/1", "default/orders:/orders/1", "*", "", "rcache:gen:default/orders"):
        await exchange(
            billing, calls, method="PUT", path="/x", api="billing", headers=[("X-Key", key)]
        )
    assert await cached(world, orders, "/orders/1", calls) == "HIT"


async def test_an_unreachable_cache_neither_serves_nor_fails(world: World) -> None:
    pipe = pipeline(world, {"scope": "api"})
    calls: list[int] = []
    await cached(world, pipe, "/orders/1", calls)
    world.cache.down = True
    status, _, headers = await exchange(pipe, calls, path="/orders/1")
    assert status == 200
    assert "X-Cache" not in headers  # no token: no lookup, no store
    status, _, _ = await exchange(pipe, calls, method="PUT", path="/orders/1")
    assert status == 200  # the write's answer is not changed


@pytest.mark.parametrize(
    ("type_", "config", "field", "message"),
    [
        ("cache_invalidation", {"scope": "key"}, "p.config", "scope key needs a key"),
        ("cache_invalidation", {"key": "${path}"}, "p.config", "scope api takes no key"),
        ("cache_invalidation", {"scope": "all"}, "p.config.scope", "'api' or 'key'"),
        ("cache_invalidation", {"methods": ["BREW"]}, "p.config.methods", "unknown HTTP method"),
        (
            "cache_invalidation",
            {"scope": "key", "key": "${body.$.id}"},
            "p.config.key",
            "reads the body",
        ),
        ("cache_invalidation", {"scope": "key", "key": "${nope}"}, "p.config.key", "unknown"),
        ("response_cache", {"invalidation_key": "${xml./a}"}, "p.config.invalidation_key", "body"),
    ],
)
def test_bad_configs_are_refused(
    type_: str, config: dict[str, Any], field: str, message: str
) -> None:
    where, text = rejected(type_, config)
    assert where == field
    assert message in text

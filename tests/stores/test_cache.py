"""The cache contract, run in-process, on Redis and on Hazelcast."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from portway.errors import StoreUnavailable
from portway.stores.cache import Cache, open_cache
from portway.stores.cache_hazelcast import HazelcastCache
from portway.stores.cache_local import LocalCache
from portway.stores.cache_redis import RedisCache
from tests.stores.conftest import hazelcast_url, redis_url, servers, unique
from tests.support.servers import (
    HAZELCAST_CLUSTER,
    Server,
    closed_port,
    hazelcast_server,
    silent_listener,
)

ROOT = Path(__file__).resolve().parents[2]


async def eventually_gone(cache: Cache, key: str, limit: float = 10.0) -> None:
    """TTLs are the engine's to enforce (Hazelcast rounds to seconds): wait, bounded."""
    deadline = time.monotonic() + limit
    while await cache.get(key) is not None:
        assert time.monotonic() < deadline, f"{key} still present after {limit}s"
        await asyncio.sleep(0.1)


async def test_get_set_delete(cache: Cache) -> None:
    assert await cache.get("k") is None
    await cache.set("k", b"\x00\xffbinary")
    assert await cache.get("k") == b"\x00\xffbinary"
    await cache.set("k", b"again")
    assert await cache.get("k") == b"again"
    await cache.delete("k")
    assert await cache.get("k") is None
    await cache.delete("never-set")  # no error


async def test_values_expire_after_their_ttl(cache: Cache) -> None:
    await cache.set("short", b"v", ttl=0.5)
    await cache.set("long", b"v", ttl=300)
    await cache.set("forever", b"v")
    assert await cache.get("short") == b"v"
    await eventually_gone(cache, "short")
    assert await cache.get("long") == b"v"
    assert await cache.get("forever") == b"v"


async def test_set_without_ttl_clears_an_earlier_ttl(cache: Cache) -> None:
    await cache.set("k", b"v1", ttl=0.5)
    await cache.set("k", b"v2")
    await cache.set("probe", b"p", ttl=0.5)
    await eventually_gone(cache, "probe")
    assert await cache.get("k") == b"v2"


async def test_increment_counts_within_a_window(cache: Cache) -> None:
    first = await cache.increment("hits", window=60)
    assert first.count == 1
    assert 0 < first.reset_after <= 60
    assert (await cache.increment("hits", window=60, amount=5)).count == 6
    assert (await cache.increment("other", window=60)).count == 1
    assert (await cache.increment("hits", window=60)).count == 7


async def test_a_new_window_starts_from_zero(cache: Cache) -> None:
    await cache.increment("w", window=0.5)
    assert (await cache.increment("w", window=0.5)).count == 2
    await asyncio.sleep(0.7)
    fresh = await cache.increment("w", window=0.5)
    assert fresh.count == 1


async def test_delete_resets_a_counter(cache: Cache) -> None:
    await cache.increment("c", window=60, amount=3)
    await cache.delete("c")
    assert (await cache.increment("c", window=60)).count == 1


async def test_concurrent_increments_are_atomic(cache: Cache) -> None:
    results = await asyncio.gather(*[cache.increment("hot", window=60) for _ in range(100)])
    assert sorted(r.count for r in results) == list(range(1, 101))


async def test_concurrent_increments_of_several_counters_each_get_their_own_count(
    cache: Cache,
) -> None:
    # one event-loop turn: Redis coalesces these into one call per counter (amounts summed)
    calls = [("a", 1), ("b", 1), ("a", 1), ("c", 5)] * 25
    results = await asyncio.gather(
        *[cache.increment(key, window=60, amount=amount) for key, amount in calls]
    )

    def counts(key: str) -> list[int]:
        return sorted(r.count for (k, _), r in zip(calls, results, strict=True) if k == key)

    assert counts("a") == list(range(1, 51))
    assert counts("b") == list(range(1, 26))
    assert counts("c") == list(range(5, 126, 5))
    assert all(0 < r.reset_after <= 60 for r in results)
    peeks = await asyncio.gather(*[cache.increment(k, window=60, amount=0) for k in "abc"])
    assert [p.count for p in peeks] == [50, 25, 125]


async def test_compare_and_set(cache: Cache) -> None:
    assert await cache.compare_and_set("token", None, b"v1")
    assert not await cache.compare_and_set("token", None, b"other")
    assert not await cache.compare_and_set("token", b"wrong", b"other")
    assert await cache.get("token") == b"v1"
    assert await cache.compare_and_set("token", b"v1", b"v2")
    assert await cache.get("token") == b"v2"


async def test_compare_and_set_with_ttl_expires(cache: Cache) -> None:
    assert await cache.compare_and_set("a", None, b"1", ttl=0.5)
    await cache.set("b", b"1")
    assert await cache.compare_and_set("b", b"1", b"2", ttl=0.5)
    await eventually_gone(cache, "a")
    await eventually_gone(cache, "b")
    assert await cache.compare_and_set("a", None, b"again")


async def test_concurrent_compare_and_set_has_one_winner(cache: Cache) -> None:
    await cache.set("leader", b"none")
    wins = await asyncio.gather(
        *[cache.compare_and_set("leader", b"none", f"w{i}".encode()) for i in range(20)]
    )
    assert wins.count(True) == 1
    winner = wins.index(True)
    assert await cache.get("leader") == f"w{winner}".encode()


async def test_bad_durations_are_refused(cache: Cache) -> None:
    with pytest.raises(ValueError, match="ttl must be positive"):
        await cache.set("k", b"v", ttl=0)
    with pytest.raises(ValueError, match="window must be positive"):
        await cache.increment("k", window=-1)


async def test_the_local_cache_is_bounded() -> None:
    cache = LocalCache(max_entries=10)
    for i in range(100):
        await cache.set(f"k{i}", b"v")
        await cache.increment(f"c{i}", window=60)
    assert await cache.get("k0") is None
    assert await cache.get("k99") == b"v"
    assert (await cache.increment("c99", window=60)).count == 2
    assert (await cache.increment("c0", window=60)).count == 1  # evicted, started again


# --- counter accuracy across processes ----------------------------------------------------------

PROCESSES, CLIENTS, ATTEMPTS, LIMIT = 4, 16, 8, 300


def run_workers(url: str) -> list[dict[str, Any]]:
    key = unique("limit-")
    argv = [
        sys.executable,
        "-m",
        "tests.stores.counter_worker",
        url,
        key,
        str(CLIENTS),
        str(ATTEMPTS),
        str(LIMIT),
        "300",
    ]
    procs = [
        subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:  # release them together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=90)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs)
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


@servers
@pytest.mark.parametrize("backend", ["redis", "hazelcast"])
def test_processes_times_clients_admit_exactly_the_limit(
    backend: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(backend)
    # a generous per-call timeout: this test is about atomicity, not about the fault path
    url = (redis_url if backend == "redis" else hazelcast_url)(server, timeout="20")
    results = run_workers(url)
    total = PROCESSES * CLIENTS * ATTEMPTS
    assert [r["errors"] for r in results] == [[]] * PROCESSES
    counts = sorted(c for r in results for c in r["counts"])
    assert counts == list(range(1, total + 1))  # every increment got its own count
    assert sum(r["admitted"] for r in results) == LIMIT


# --- faults ---------------------------------------------------------------------------------------


def unreachable(kind: str, port: int, timeout: str = "0.3") -> Cache:
    if kind == "redis":
        return open_cache(f"redis://127.0.0.1:{port}/0?timeout={timeout}")
    return open_cache(
        f"hazelcast://127.0.0.1:{port}/{HAZELCAST_CLUSTER}?timeout={timeout}&connect_timeout=1"
    )


@pytest.mark.parametrize("listener", [closed_port, silent_listener])
@pytest.mark.parametrize("kind", ["redis", "hazelcast"])
async def test_an_unreachable_cache_is_unavailable_within_the_timeout(
    kind: str, listener: Any
) -> None:
    with listener() as port:
        cache = unreachable(kind, port)
        async with asyncio.timeout(15):  # a hang fails here, not at the suite's timeout
            with pytest.raises(StoreUnavailable):
                await cache.open()
        await cache.close()


@servers
@pytest.mark.parametrize("backend", ["redis", "hazelcast"])
async def test_a_frozen_server_times_out_each_call_then_recovers(
    backend: str, request: pytest.FixtureRequest
) -> None:
    server: Server = request.getfixturevalue(backend)
    url = (redis_url if backend == "redis" else hazelcast_url)(server, timeout="0.5")
    cache = open_cache(url)
    await cache.open()
    await cache.set("k", b"v")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: cache.get("k"),
        lambda: cache.increment("c", window=60),
        lambda: cache.compare_and_set("k", b"v", b"w"),
    ]
    server.freeze()
    try:
        for call in calls:
            async with asyncio.timeout(10):
                with pytest.raises(StoreUnavailable):
                    await call()
    finally:
        server.thaw()
    deadline = time.monotonic() + 30
    while True:  # the client reconnects on its own
        try:
            assert await cache.get("k") in (b"v", b"w")
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    await cache.close()


def test_cache_urls() -> None:
    assert isinstance(open_cache("local://?max_entries=5"), LocalCache)
    assert isinstance(open_cache("redis://h:1/2?timeout=0.2&prefix=x:"), RedisCache)
    hz = open_cache("hazelcast://a:5701,b:5702/prod?map=m&timeout=0.5")
    assert isinstance(hz, HazelcastCache)
    with pytest.raises(ValueError, match="not one of local, redis, hazelcast"):
        open_cache("memcached://x")
    with pytest.raises(ValueError, match="timeout='x' is not a number"):
        open_cache("redis://h?timeout=x")


@servers
async def test_hazelcast_opens_a_new_client_after_the_old_one_gave_up_on_the_cluster(
    tmp_path: Path,
) -> None:
    """The client reconnects for ``connect_timeout`` seconds, then shuts itself down; a member
    that comes back later must be used again (the lab's drill 5 found workers that never did)."""
    server = hazelcast_server(tmp_path)
    with server:
        url = f"hazelcast://127.0.0.1:{server.port}/{HAZELCAST_CLUSTER}?timeout=0.5"
        cache = open_cache(url + "&connect_timeout=1")
        await cache.open()
        deadline = time.monotonic() + 30
        while True:  # a fresh member's first map call can take longer than 0.5 s on a busy host
            try:
                await cache.set("k", b"v")
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the member never answered"
        server.stop()
        assert isinstance(cache, HazelcastCache)
        deadline = time.monotonic() + 30
        while cache._client.lifecycle_service.is_running():  # its retries end after 1 s
            assert time.monotonic() < deadline, "the client never gave up"
            await asyncio.sleep(0.2)
        async with asyncio.timeout(5):
            with pytest.raises(StoreUnavailable):
                await cache.get("k")
        server.start()  # the same port; a new member, empty
        deadline = time.monotonic() + 60
        while True:
            try:
                await cache.set("k", b"back")
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the cache never used the member again"
                await asyncio.sleep(0.2)
        assert await cache.get("k") == b"back"
        await cache.close()

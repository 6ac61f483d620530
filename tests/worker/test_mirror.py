"""Traffic mirroring through a real gateway: copies reach the mirror, sampled; a mirror that
hangs, refuses or cannot take the body never changes the client's answer; counters say what
happened (asserted by status and counters, never by time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from portway.policies.factory import route_pipelines
from portway.policies.resources import PolicyServices
from portway.stores.cache_local import LocalCache
from tests.http.support import raw_server
from tests.worker.support import Gateway, api, backends, gateway, revision
from tests.worker.test_traffic_split import within
from tests.worker.test_upstreams import dead_url


def mirrored_api(backend: str, mirror: dict[str, Any]) -> Any:
    return api("svc", "/svc", [backend], traffic={"mirror": mirror})


def counts(gw: Gateway) -> dict[str, int]:
    return gw.shared.mirror_stats.snapshot().get("default/svc", {})


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_the_mirror_gets_a_copy_of_each_request_and_its_answer_is_discarded() -> None:
    async with backends("real", "mirror") as (real, mirror):
        mirror.status = 500  # the mirror's answer never reaches the client
        rev = revision(mirrored_api(real.url, {"url": mirror.url + "/copy"}))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            for index in range(10):
                response = await client.post(f"{gw.url}/svc/orders?n={index}", content=b"x" * 100)
                assert response.status_code == 200
                assert response.headers["x-backend"] == "real"
            await until(lambda: counts(gw).get("mirrored") == 10, "10 mirrored")
            assert counts(gw) == {"mirrored": 10, "dropped": 0, "failed": 0}
    assert len(real.seen) == 10
    assert sorted(r.target for r in mirror.seen) == sorted(
        f"/copy/orders?n={i}".encode() for i in range(10)
    )
    assert mirror.bodies == [b"x" * 100] * 10
    host = dict(mirror.seen[0].headers)[b"host"]
    assert host == f"127.0.0.1:{mirror.port}".encode()


async def test_only_the_sampled_share_is_mirrored() -> None:
    async with backends("real", "mirror") as (real, mirror):
        rev = revision(mirrored_api(real.url, {"url": mirror.url, "percent": 30}))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            for _ in range(600):
                assert (await client.get(f"{gw.url}/svc/x")).status_code == 200
            await until(lambda: len(mirror.seen) == counts(gw).get("mirrored"), "copies settle")
            done = counts(gw)
    assert within(done["mirrored"], 600, 0.3), done
    assert done["dropped"] == done["failed"] == 0


async def test_a_hanging_mirror_neither_slows_nor_fails_the_client() -> None:
    accepted = 0

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        await reader.readuntil(b"\r\n\r\n")
        accepted += 1
        await asyncio.sleep(3600)

    async with backends("real") as (real,), raw_server(hang) as port:
        mirror = {"url": f"http://127.0.0.1:{port}", "max_in_flight": 2, "timeout": 300}
        async with gateway(revision(mirrored_api(real.url, mirror))) as gw:
            async with httpx.AsyncClient() as client:
                statuses = [(await client.get(f"{gw.url}/svc/x")).status_code for _ in range(30)]
            assert statuses == [200] * 30
            # two copies hang in flight, every later one is dropped instead of queued
            assert counts(gw) == {"mirrored": 0, "dropped": 28, "failed": 0}
            runtime = gw.handler.runtime
            assert runtime is not None
            sender = runtime.upstreams[0].mirror
            assert sender is not None
            assert sender.in_flight == 2
            await until(lambda: accepted == 2, "the mirror holds two copies")
    assert len(real.seen) == 30


async def test_a_refusing_mirror_counts_failures_and_the_client_is_served() -> None:
    async with backends("real") as (real,):
        rev = revision(mirrored_api(real.url, {"url": dead_url()}))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            for _ in range(20):
                response = await client.post(f"{gw.url}/svc/x", content=b"body")
                assert response.status_code == 200
            await until(lambda: counts(gw).get("failed") == 20, "20 failed copies")
            assert counts(gw) == {"mirrored": 0, "dropped": 0, "failed": 20}


async def test_a_mirror_that_resets_mid_answer_counts_as_failed() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    async with backends("real") as (real,), raw_server(reset) as port:
        rev = revision(mirrored_api(real.url, {"url": f"http://127.0.0.1:{port}"}))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            for _ in range(5):
                assert (await client.get(f"{gw.url}/svc/x")).status_code == 200
            await until(lambda: counts(gw).get("failed") == 5, "5 failed copies")


async def test_bodies_beyond_the_mirror_limit_are_dropped_and_still_reach_the_backend() -> None:
    async with backends("real", "mirror") as (real, mirror):
        rev = revision(mirrored_api(real.url, {"url": mirror.url, "max_body_bytes": 1000}))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            big = b"b" * 500_000
            response = await client.post(f"{gw.url}/svc/x", content=big)
            assert response.status_code == 200
            assert response.json()["body_length"] == len(big)

            async def chunks() -> Any:
                yield b"c" * 600
                yield b"c" * 600

            streamed = await client.post(f"{gw.url}/svc/x", content=chunks())
            assert streamed.status_code == 200
            assert streamed.json()["body_length"] == 1200
            small = await client.post(f"{gw.url}/svc/x", content=b"s" * 1000)
            assert small.status_code == 200
            await until(lambda: counts(gw).get("mirrored") == 1, "the small body mirrored")
            assert counts(gw) == {"mirrored": 1, "dropped": 2, "failed": 0}
    assert real.bodies == [big, b"c" * 1200, b"s" * 1000]
    assert mirror.bodies == [b"s" * 1000]


async def test_mirror_with_a_policy_pipeline_sees_the_rewritten_request() -> None:
    async with backends("real", "mirror") as (real, mirror):
        svc = api(
            "svc",
            "/svc",
            [real.url],
            traffic={"mirror": {"url": mirror.url}},
            policies={
                "request": [
                    {
                        "name": "tag",
                        "type": "rewrite",
                        "config": {"request_headers": {"set": {"X-Tagged": "yes"}}},
                    }
                ]
            },
        )
        services = PolicyServices(environment="test", cache=LocalCache(), local_cache=LocalCache())
        async with gateway(revision(svc), pipelines=route_pipelines(services)) as gw:
            async with httpx.AsyncClient() as client:
                response = await client.post(f"{gw.url}/svc/x", content=b"payload")
                assert response.status_code == 200
            await until(lambda: counts(gw).get("mirrored") == 1, "one copy")
    copied = dict(mirror.seen[0].headers)
    assert copied[b"x-tagged"] == b"yes"
    assert mirror.bodies == [b"payload"]

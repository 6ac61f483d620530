"""Balancing, retries and failover, passive and active health, circuit breakers, DNS cache."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import httpx
import pytest

from portway.worker.dns import DnsCache
from tests.http.support import raw_server
from tests.worker.support import api, backends, gateway, revision


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def spread(url: str, count: int, headers: dict[str, str] | None = None) -> Counter[str]:
    got: Counter[str] = Counter()
    async with httpx.AsyncClient() as client:
        for _ in range(count):
            r = await client.get(url, headers=headers)
            assert r.status_code == 200, r.text
            got[r.headers["x-backend"]] += 1
    return got


async def test_round_robin() -> None:
    async with backends("a", "b", "c") as bs:
        rev = revision(api("svc", "/", [b.url for b in bs]))
        async with gateway(rev) as gw:
            assert await spread(f"{gw.url}/x", 30) == {"a": 10, "b": 10, "c": 10}


async def test_smooth_weighted_round_robin() -> None:
    async with backends("a", "b", "c") as bs:
        urls = [{"url": b.url, "weight": w} for b, w in zip(bs, (1, 2, 3), strict=True)]
        rev = revision(api("svc", "/", urls, balancing="weighted_round_robin"))
        async with gateway(rev) as gw:
            assert await spread(f"{gw.url}/x", 60) == {"a": 10, "b": 20, "c": 30}


async def test_random_uses_every_address() -> None:
    async with backends("a", "b") as bs:
        rev = revision(api("svc", "/", [b.url for b in bs], balancing="random"))
        async with gateway(rev) as gw:
            got = await spread(f"{gw.url}/x", 200)
    assert set(got) == {"a", "b"}


async def test_ip_hash_is_sticky() -> None:
    async with backends("a", "b", "c") as bs:
        rev = revision(api("svc", "/", [b.url for b in bs], balancing="ip_hash"))
        async with gateway(rev) as gw:
            got = await spread(f"{gw.url}/x", 20)
    assert len(got) == 1


async def test_least_connections_avoids_the_busy_address() -> None:
    async with backends("a", "b") as (a, b):
        rev = revision(api("svc", "/", [a.url, b.url], balancing="least_connections"))
        async with gateway(rev) as gw, httpx.AsyncClient(timeout=10) as client:
            slow = asyncio.create_task(client.get(f"{gw.url}/slow"))
            while a.hits("/slow") + b.hits("/slow") == 0:
                await asyncio.sleep(0.01)
            busy = "a" if a.hits("/slow") else "b"
            got = await spread(f"{gw.url}/x", 6)
            assert busy not in got
            assert (await slow).status_code == 200


async def test_retry_goes_to_another_address_and_dead_one_is_ejected() -> None:
    async with backends("a") as (a,):
        rev = revision(
            api(
                "svc",
                "/",
                [dead_url(), a.url],
                connection={"retries": 1, "retry_delay": {"initial": 0}},
                passive_health={"max_failures": 2, "eject_seconds": 60},
            )
        )
        async with gateway(rev) as gw:
            got = await spread(f"{gw.url}/x", 10)
            assert got == {"a": 10}
            runtime = gw.handler.runtime
            assert runtime is not None
            dead = runtime.upstreams[0].primaries[0]
            assert dead.ejected_until > 0


async def test_failover_addresses_are_used_in_order() -> None:
    async with backends("first", "second") as (first, second):
        rev = revision(
            api(
                "svc",
                "/",
                [
                    dead_url(),
                    {"url": dead_url(), "kind": "failover"},
                    {"url": first.url, "kind": "failover"},
                    {"url": second.url, "kind": "failover"},
                ],
                connection={"retries": 0, "failover_retries": 0, "retry_delay": {"initial": 0}},
            )
        )
        async with gateway(rev) as gw:
            assert await spread(f"{gw.url}/x", 3) == {"first": 3}


async def test_non_idempotent_request_is_not_resent_after_it_was_sent() -> None:
    attempts = 0

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        await reader.readuntil(b"\r\n\r\n")
        attempts += 1
        writer.transport.abort()

    async with raw_server(drop) as port:
        url = f"http://127.0.0.1:{port}"
        rev = revision(api("svc", "/", [url, url], connection={"retries": 2}))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            r = await client.post(f"{gw.url}/x", content=b"pay once")
            assert r.status_code == 502
            assert attempts == 1
            r = await client.get(f"{gw.url}/x")
            assert r.status_code == 502
            assert attempts == 1 + 3  # GET is idempotent: first try + 2 retries


async def test_no_healthy_address_is_503() -> None:
    rev = revision(
        api(
            "svc",
            "/",
            [dead_url()],
            connection={"retries": 0},
            passive_health={"max_failures": 1, "eject_seconds": 60},
        )
    )
    async with gateway(rev) as gw, httpx.AsyncClient() as client:
        assert (await client.get(f"{gw.url}/")).status_code == 502
        r = await client.get(f"{gw.url}/")
    assert r.status_code == 503
    assert r.json()["error"] == "no_healthy_upstream"


async def test_circuit_breaker_opens_then_half_opens() -> None:
    async with backends("a") as (a,):
        a.status = 500
        rev = revision(
            api(
                "svc",
                "/",
                [a.url],
                passive_health={"enabled": False},
                circuit_breaker={
                    "enabled": True,
                    "threshold_count": 3,
                    "min_requests": 3,
                    "sleep_window": 0.3,
                },
            )
        )
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            for _ in range(3):
                assert (await client.get(f"{gw.url}/x")).status_code == 500
            r = await client.get(f"{gw.url}/x")
            assert r.status_code == 503
            assert a.hits() == 3
            a.status = 200
            while (await client.get(f"{gw.url}/x")).status_code == 503:
                await asyncio.sleep(0.05)
            assert a.hits() == 4  # exactly one trial request went through
            assert (await client.get(f"{gw.url}/x")).status_code == 200


async def test_active_health_checks_take_an_address_out_and_back() -> None:
    async with backends("a", "b") as (a, b):
        rev = revision(
            api(
                "svc",
                "/",
                [a.url, b.url],
                health_check={
                    "enabled": True,
                    "path": "/health",
                    "interval": 0.05,
                    "timeout": 0.05,
                    "unhealthy_threshold": 2,
                    "healthy_threshold": 2,
                },
            )
        )
        async with gateway(rev) as gw:
            runtime = gw.handler.runtime
            assert runtime is not None
            address_a = runtime.upstreams[0].primaries[0]
            a.health_status = 503
            while address_a.healthy:
                await asyncio.sleep(0.02)
            assert await spread(f"{gw.url}/x", 6) == {"b": 6}
            a.health_status = 200
            while not address_a.healthy:
                await asyncio.sleep(0.02)
            assert set(await spread(f"{gw.url}/x", 6)) == {"a", "b"}


async def test_dns_cache_resolves_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    calls = 0
    real = loop.getaddrinfo

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "getaddrinfo", counting)
    cache = DnsCache()
    first = await cache.resolve("localhost", 80, ttl=60)
    assert ("127.0.0.1", 80) in first or ("::1", 80) in first
    await asyncio.gather(*(cache.resolve("localhost", 80, ttl=60) for _ in range(5)))
    assert calls == 1
    assert await cache.resolve("127.0.0.1", 80, ttl=60) == [("127.0.0.1", 80)]
    assert calls == 1
    await cache.resolve("localhost", 81, ttl=0)
    await cache.resolve("localhost", 81, ttl=0)
    assert calls == 3


async def test_backend_by_host_name_goes_through_dns() -> None:
    async with backends("a") as (a,):
        rev = revision(api("svc", "/", [f"http://localhost:{a.port}"]))
        async with gateway(rev) as gw:
            assert await spread(f"{gw.url}/x", 2) == {"a": 2}
        assert a.seen[0].header(b"host") == f"localhost:{a.port}".encode()

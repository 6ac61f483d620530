"""Bounded input on the worker: slow request bodies are cut (408) and release their backend
connection; one client address cannot hold more than its share of connections (503 and close).

Real sockets against a real gateway and a real backend; small configured limits, observable
outcomes awaited with a bounded poll, no timing assertions."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable

import pytest

from portway.cli import build_parser, worker_platform
from portway.errors import ConfigError
from portway.http import ServerLimits
from portway.http._server import client_key
from portway.worker.settings import LimitSettings, WorkerSettings, server_limits
from tests.support.servers import missing_capability
from tests.worker.support import Backend, api, backends, gateway, revision

PATIENCE = 15.0  # an upper bound for an outcome to become observable, never asserted on


async def eventually(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + PATIENCE
    while not check():
        assert loop.time() < give_up, f"never observed: {what}"
        await asyncio.sleep(0.02)


def settings(**limits: object) -> WorkerSettings:
    return WorkerSettings(
        host="127.0.0.1", port=0, processes=1, limits=LimitSettings.model_validate(limits)
    )


@contextlib.asynccontextmanager
async def trickle(port: int, path: str, length: int) -> AsyncIterator[asyncio.StreamReader]:
    """A client that announces ``length`` body bytes and sends one byte every 20 ms (far within
    any idle gap configured here) until the gateway stops reading or the body is done."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: {length}\r\n\r\n".encode())

    async def feed() -> None:
        for _ in range(length):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.02)

    feeder = asyncio.create_task(feed())
    try:
        yield reader
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await feeder
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def answer_of(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(65536), PATIENCE)


def backend_connections(backend: Backend) -> int:
    assert backend.server is not None
    return backend.server.connections


@pytest.mark.parametrize(
    "limits",
    [
        # the total deadline alone (the idle gap and the rate would never trigger)
        {"body_timeout": 60.0, "body_deadline": 0.5, "min_body_rate": 0},
        # the minimum rate alone (50 bytes/s is far below it; no total deadline)
        {"body_timeout": 0.5, "body_deadline": None, "min_body_rate": 100_000},
    ],
    ids=["deadline", "min-rate"],
)
async def test_a_slow_body_is_cut_with_408_and_releases_the_backend(
    limits: dict[str, object],
) -> None:
    async with backends("b") as (backend,):
        rev = revision(api("up", "/up", [backend.url]))
        async with gateway(rev, settings=settings(**limits)) as gw:
            async with trickle(gw.port, "/up/upload", 100_000) as reader:
                # the request reached the backend, which now waits for the body
                await eventually(lambda: backend_connections(backend) == 1, "backend connected")
                answer = await answer_of(reader)
                assert answer.startswith(b"HTTP/1.1 408 "), answer
                assert b"request_timeout" in answer
                assert b"connection: close" in answer.lower()
                # the half-written backend connection was closed, not pooled
                await eventually(
                    lambda: backend_connections(backend) == 0, "backend connection released"
                )
            # the gateway still serves: a fresh, complete request goes through
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"POST /up/ok HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nok")
            assert (await answer_of(reader)).startswith(b"HTTP/1.1 200 ")
            writer.close()


async def test_a_body_within_the_limits_is_not_cut() -> None:
    limits = {"body_timeout": 0.5, "body_deadline": 30.0, "min_body_rate": 1000}
    async with backends("b") as (backend,):
        rev = revision(api("up", "/up", [backend.url]))
        async with gateway(rev, settings=settings(**limits)) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            body = b"y" * 200_000
            writer.write(
                b"POST /up/big HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            for start in range(0, len(body), 20_000):
                writer.write(body[start : start + 20_000])
                await writer.drain()
            answer = await answer_of(reader)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            writer.close()
            assert backend.bodies[-1] == body


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_one_client_address_cannot_hold_more_than_its_cap_of_connections() -> None:
    if not os.path.isdir("/proc/self/fd"):
        missing_capability("counting open connections needs /proc/self/fd")
    cap = 5
    opened = 60
    async with backends("b") as (backend,):
        rev = revision(api("up", "/up", [backend.url]))
        async with gateway(rev, settings=settings(max_connections_per_client=cap)) as gw:
            baseline = open_fds()
            clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
            try:
                for _ in range(opened):
                    clients.append(await asyncio.open_connection("127.0.0.1", gw.port))
                # the worker holds at most `cap` of them: the process's descriptors are our
                # `opened` client sockets plus the worker's accepted ones
                await eventually(
                    lambda: open_fds() - baseline - opened <= cap, "refused connections closed"
                )
                assert gw.server.connections == cap
                # the first `cap` connections are served; the others were told 503 and closed
                for reader, writer in clients[:cap]:
                    writer.write(b"GET /up/x HTTP/1.1\r\nHost: gw\r\n\r\n")
                    assert (await answer_of(reader)).startswith(b"HTTP/1.1 200 ")
                for reader, _ in clients[cap:]:
                    answer = await answer_of(reader)
                    assert answer.startswith(b"HTTP/1.1 503 "), answer
                    assert b"connection: close" in answer.lower()
                    assert await answer_of(reader) == b""  # closed by the worker
            finally:
                for _, writer in clients:
                    writer.close()
            # closing frees the address's share: a new connection is served again
            await eventually(lambda: gw.server.connections == 0, "held connections closed")
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"GET /up/y HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert (await answer_of(reader)).startswith(b"HTTP/1.1 200 ")
            writer.close()


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # a dual-stack socket's IPv4 client
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # same /64: the same client
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_connections_are_counted_per_ipv4_address_or_ipv6_64(host: str, key: str) -> None:
    assert client_key(host) == key


def test_limits_reach_the_server_and_are_validated() -> None:
    limits = server_limits(
        LimitSettings(body_deadline=None, min_body_rate=0, max_connections_per_client=None)
    )
    assert limits == ServerLimits(
        body_deadline=None, min_body_rate=0, max_connections_per_client=None
    )
    for bad in (
        {"body_deadline": 0},
        {"min_body_rate": -1},
        {"max_connections_per_client": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LimitSettings.model_validate(bad)


def test_portway_worker_flags_set_the_limits() -> None:
    base = ["worker", "--environment", "prod", "--manager", "http://m:8080"]
    defaults = worker_platform(build_parser().parse_args(base))[1].limits
    assert defaults == LimitSettings()
    _, given = worker_platform(
        build_parser().parse_args(
            [
                *base,
                "--max-connections-per-client",
                "0",
                "--body-deadline",
                "0",
                "--min-body-rate",
                "0",
            ]
        )
    )
    assert server_limits(given.limits) == ServerLimits(
        max_connections_per_client=None, body_deadline=None, min_body_rate=0
    )
    with pytest.raises(ConfigError, match="min_body_rate"):
        worker_platform(build_parser().parse_args([*base, "--min-body-rate", "-5"]))

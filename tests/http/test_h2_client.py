"""The HTTP/2 upstream pool against Portway's own HTTP/2 server: multiplexing, stream limits,
trailers, and a backend that shuts down gracefully (GOAWAY) while a stream is in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from portway.http import (
    ConnectError,
    H2ConnectionPool,
    H2Limits,
    Request,
    Response,
    UpstreamDisconnected,
    serve,
)
from tests.http.support import running, text


async def test_many_requests_share_one_connection_within_the_stream_limit() -> None:
    running_now = 0
    peak = 0
    connections: set[tuple[str, int]] = set()

    async def handler(request: Request) -> Response:
        nonlocal running_now, peak
        connections.add(request.client)
        running_now += 1
        peak = max(peak, running_now)
        await asyncio.sleep(0.05)
        running_now -= 1
        return text(200, request.path.encode())

    async with running(handler, http2=H2Limits(max_concurrent_streams=5)) as server:
        pool = H2ConnectionPool("127.0.0.1", server.port)
        try:

            async def one(i: int) -> bytes:
                response = await pool.request("GET", b"/%d" % i, [(b"host", b"a")])
                return await response.read_all()

            bodies = await asyncio.gather(*(one(i) for i in range(20)))
        finally:
            await pool.close()
    assert bodies == [b"/%d" % i for i in range(20)]
    assert len(connections) == 1
    assert peak == 5  # the backend's MAX_CONCURRENT_STREAMS, waited for, never exceeded


async def test_a_streamed_request_body_and_response() -> None:
    async def handler(request: Request) -> Response:
        body = await request.body.read_all()

        async def chunks() -> AsyncIterator[bytes]:
            yield body

        return Response(200, [], chunks(), trailers=list(request.body.trailers))

    async def upload() -> AsyncIterator[bytes]:
        yield b"abc"

    async with running(handler, http2=H2Limits()) as server:
        pool = H2ConnectionPool("127.0.0.1", server.port)
        try:
            response = await pool.request("POST", b"/", [(b"host", b"a")], upload())
            body = await response.read_all()
        finally:
            await pool.close()
    assert body == b"abc"
    assert response.trailers == []  # a plain iterable carries no trailers


async def test_a_backend_draining_with_goaway_still_answers_the_open_stream() -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return text(200, b"finished")

    server = await serve(slow, "127.0.0.1", 0, http2=H2Limits())
    pool = H2ConnectionPool("127.0.0.1", server.port)
    try:
        pending = asyncio.create_task(pool.request("GET", b"/", [(b"host", b"a")]))
        await asyncio.sleep(0.2)
        closing = asyncio.create_task(server.close(grace=10))
        await asyncio.sleep(0.2)  # the GOAWAY arrives while the stream is open
        release.set()
        response = await pending
        assert await response.read_all() == b"finished"
        await closing
        with pytest.raises((ConnectError, UpstreamDisconnected)):
            await pool.request("GET", b"/", [(b"host", b"a")])
    finally:
        await pool.close()

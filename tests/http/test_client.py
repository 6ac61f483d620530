"""The upstream client against hand-written servers: framing variants, interim answers, stale
kept-alive connections, timeouts and early answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from portway.http import (
    ConnectError,
    ConnectionPool,
    InvalidResponse,
    UpstreamDisconnected,
    UpstreamTimeout,
)
from tests.http.support import raw_server

HOST = [(b"host", b"upstream")]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            head += await reader.readexactly(int(line.split(b":")[1]))
    return head


async def test_interim_answers_close_delimited_body_and_reuse() -> None:
    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with raw_server(server) as port:
        pool = ConnectionPool("127.0.0.1", port)
        first = await pool.request("GET", b"/1", HOST)
        assert (first.status, await first.read_all()) == (200, b"ok")
        assert pool.idle == 1
        second = await pool.request("GET", b"/2", HOST)
        assert second.content_length is None
        assert await second.read_all() == b"until the end"
        await asyncio.sleep(0.01)
        assert pool.idle == 0
        await pool.close()


async def test_stale_kept_alive_connection_is_replaced_for_idempotent_requests() -> None:
    connections = 0

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # keep-alive was announced, but the next request on this connection finds it closing
        await read_request(reader)
        writer.transport.abort()

    async with raw_server(server) as port:
        pool = ConnectionPool("127.0.0.1", port)
        assert (await pool.request("GET", b"/", HOST)).status == 200
        r = await pool.request("GET", b"/", HOST)
        assert r.status == 200
        assert connections == 2
        with pytest.raises(UpstreamDisconnected) as stale:
            await pool.request("POST", b"/", HOST, b"body")
        assert stale.value.stale
        await pool.close()


async def test_timeouts_by_phase() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(10)

    async with raw_server(silent) as port:
        pool = ConnectionPool("127.0.0.1", port)
        r = await pool.request("GET", b"/", HOST, read_timeout=0.2)
        with pytest.raises(UpstreamTimeout) as read:
            await r.read_all()
        assert read.value.phase == "read"
        await pool.close()

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1):
            writer.write(b"")  # progress on the wire but never an answer
            await asyncio.sleep(0.01)

    async with raw_server(never) as port:
        pool = ConnectionPool("127.0.0.1", port)
        with pytest.raises(UpstreamTimeout) as total:
            await pool.request("GET", b"/", HOST, read_timeout=5, total_timeout=0.2)
        assert total.value.phase == "total"
        await pool.close()


async def test_connect_refused_and_invalid_response() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool = ConnectionPool("127.0.0.1", port)
    with pytest.raises(ConnectError) as refused:
        await pool.request("GET", b"/", HOST)
    assert refused.value.request_sent is False

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx")
        await writer.drain()

    async with raw_server(garbage) as port:
        pool = ConnectionPool("127.0.0.1", port)
        with pytest.raises(InvalidResponse):
            await pool.request("GET", b"/", HOST)
        await pool.close()


async def test_streamed_chunked_upload_and_early_answer() -> None:
    received: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head
        received.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"defg"

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0)

    async with raw_server(server) as port:
        pool = ConnectionPool("127.0.0.1", port)
        r = await pool.request("POST", b"/", HOST, parts())
        assert await r.read_all() == b"done"
        assert received == [b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"]
        early = await pool.request("POST", b"/", HOST, endless(), read_timeout=5)
        assert early.status == 413
        await pool.close()

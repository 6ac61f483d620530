"""Helpers for protocol tests: raw sockets, tiny upstreams and a response reader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httptools

from portway.http import Handler, Request, Response, Server, ServerLimits, serve


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Collector:
    def __init__(self) -> None:
        self.responses: list[RawResponse] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.responses.append(
            RawResponse(self.parser.get_status_code(), self._headers, b"".join(self._body))
        )
        self._headers = []
        self._body = []


def parse_responses(data: bytes, head: bool = False) -> list[RawResponse]:
    """Every complete response in ``data`` (a 100 Continue counts as one)."""
    collector = _Collector()
    parser = httptools.HttpResponseParser(collector)
    collector.parser = parser
    with contextlib.suppress(httptools.HttpParserError, httptools.HttpParserUpgrade):
        parser.feed_data(data)
    return collector.responses


async def exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, half-close, return everything until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def send_only(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes without half-closing; read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def running(
    handler: Handler, limits: ServerLimits | None = None, **kwargs: object
) -> AsyncIterator[Server]:
    server = await serve(handler, "127.0.0.1", 0, limits=limits, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        await server.close(2.0)


def text(status: int, body: bytes) -> Response:
    return Response(status, [(b"content-type", b"text/plain")], body)


async def echo(request: Request) -> Response:
    """Echo method, target, selected headers and body."""
    body = await request.body.read_all()
    return text(200, b"%s %s %d\n" % (request.method.encode(), request.target, len(body)) + body)


RawServer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(callback: RawServer) -> AsyncIterator[int]:
    """A hand-written upstream (for misbehaving backends); its connections close on exit."""
    tasks: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.add(writer)
        try:
            await callback(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        for writer in list(writers):
            writer.close()
        await asyncio.sleep(0.01)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)

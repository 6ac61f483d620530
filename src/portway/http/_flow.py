"""Flow control pieces the HTTP/1.1 and HTTP/2 protocols share: write backpressure (the
transport's pause/resume turned into an awaitable drain) and, for HTTP/2, a body flow that returns
flow-control credit to the peer only while the body's reader keeps up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h2.connection


class WriteFlow:
    """Mixed into an ``asyncio.Protocol``: ``pause_writing``/``resume_writing`` and a drain that
    waits while the transport's write buffer is above its high-water mark."""

    _write_paused = False
    _drain_waiter: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        self._drain_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _writable(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._write_paused:
            return
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = loop.create_future()
        await waiter

    def _fail_drain(self, exc: Exception) -> None:
        """The connection is gone: a writer waiting for the drain gets ``exc``."""
        waiter = self._drain_waiter
        self._drain_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
            waiter.exception()  # mark retrieved: a writer may not be waiting any more


class WindowFlow:
    """The ``Flow`` of an HTTP/2 stream's incoming body: received bytes are acknowledged (a
    WINDOW_UPDATE) at once unless the body's buffer is full, then when its reader has caught up.
    The memory per stream stays at the flow-control window plus the body's high-water mark."""

    __slots__ = ("_acknowledge", "_paused", "_pending", "_stream_id")

    def __init__(self, acknowledge: Callable[[int, int], None], stream_id: int) -> None:
        self._acknowledge = acknowledge
        self._stream_id = stream_id
        self._paused = False
        self._pending = 0

    def received(self, length: int) -> None:
        if self._paused:
            self._pending += length
        else:
            self._acknowledge(self._stream_id, length)

    def pause_feeding(self) -> None:
        self._paused = True

    def resume_feeding(self) -> None:
        self._paused = False
        if self._pending:
            pending, self._pending = self._pending, 0
            self._acknowledge(self._stream_id, pending)

    def on_consumer_wait(self) -> None:
        pass


class FrameWriter:
    """Writes what an ``h2`` connection has queued, once per event-loop turn: the HEADERS, DATA
    and trailer frames a response produces in one turn leave in one ``write`` (one system call)
    instead of one each."""

    __slots__ = ("_conn", "_loop", "_scheduled", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: h2.connection.H2Connection) -> None:
        self._loop = loop
        self._conn = conn
        self._scheduled = False
        self.transport: asyncio.Transport | None = None

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.now)

    def now(self) -> None:
        """Write what is queued at once (before closing the transport)."""
        self._scheduled = False
        data = self._conn.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

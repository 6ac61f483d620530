"""A byte stream that a protocol feeds and one consumer reads, with backpressure.

The producer (a protocol's ``data_received``) calls ``feed``/``finish``/``fail``; the consumer
awaits ``read``. When more than ``high_water`` bytes wait unread, the producer's transport stops
reading (``pause``) until the consumer has caught up below half of it (``resume``): memory per
stream stays bounded whatever the speed of either side.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

from portway.http._errors import BodyTooLarge

DEFAULT_HIGH_WATER = 256 * 1024


class Flow(Protocol):
    """What a stream asks of the protocol that feeds it."""

    def pause_feeding(self) -> None: ...

    def resume_feeding(self) -> None: ...

    def on_consumer_wait(self) -> None: ...


class Body:
    """A message body (or an upgraded byte stream) as chunks; ``b""`` marks the end."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_error",
        "_finished",
        "_flow",
        "_high",
        "_limit",
        "_paused",
        "_waiter",
        "length",
        "received",
        "trailers",
    )

    def __init__(
        self,
        flow: Flow | None,
        length: int | None = None,
        *,
        high_water: int = DEFAULT_HIGH_WATER,
        limit: int | None = None,
    ) -> None:
        self._flow = flow
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._finished = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._high = high_water
        self._limit = limit
        self.length = length
        """Declared length (Content-Length), ``None`` for chunked or close-delimited bodies."""
        self.received = 0
        """Bytes fed so far."""
        self.trailers: list[tuple[bytes, bytes]] = []
        """Trailer fields (chunked HTTP/1.1, HTTP/2), filled in by the producer before
        ``finish``; a proxy sends them after the body."""

    # -- producer side -------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._finished or self._error is not None:
            return
        self.received += len(data)
        if self._limit is not None and self.received > self._limit:
            self.fail(BodyTooLarge(f"body exceeds {self._limit} bytes"))
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._high and not self._paused and self._flow is not None:
            self._paused = True
            self._flow.pause_feeding()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def finish(self) -> None:
        self._finished = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self._finished and not self._chunks:
            return
        if self._error is None:
            self._error = exc
            self._chunks.clear()
            self._buffered = 0
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- consumer side -------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Every byte has arrived (some may still wait to be read)."""
        return self._finished

    @property
    def exhausted(self) -> bool:
        """Every byte has arrived and been read."""
        return self._finished and not self._chunks

    @property
    def waiting(self) -> bool:
        """The consumer is blocked waiting for the producer."""
        return self._waiter is not None

    async def read(self) -> bytes:
        """The next chunk, ``b""`` at the end; raises the producer's error if it failed."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= self._high // 2:
                    self._paused = False
                    if self._flow is not None:
                        self._flow.resume_feeding()
                return chunk
            if self._error is not None:
                raise self._error
            if self._finished:
                return b""
            if self._paused:
                self._paused = False
                if self._flow is not None:
                    self._flow.resume_feeding()
            self._waiter = asyncio.get_running_loop().create_future()
            if self._flow is not None:
                self._flow.on_consumer_wait()
            waiter = self._waiter
            if waiter is not None:
                try:
                    await waiter
                finally:
                    self._waiter = None

    def take(self) -> bytes | None:
        """The whole remaining body without waiting, or ``None`` when not all of it has arrived
        or trailers follow it (the body must then stream for them to be sent after it)."""
        if not self._finished or self._error is not None or self.trailers:
            return None
        if not self._chunks:
            return b""
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return data

    async def read_all(self, limit: int | None = None) -> bytes:
        """The whole remaining body; ``BodyTooLarge`` past ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if limit is not None and size > limit:
                raise BodyTooLarge(f"body exceeds {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk


def empty_body() -> Body:
    """A finished body with no bytes."""
    body = Body(None, 0)
    body._finished = True
    return body


# fields a trailer section must not carry (RFC 9110 6.5.1): framing, routing, authentication
FORBIDDEN_TRAILERS = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"upgrade",
        b"authorization",
        b"content-type",
        b"content-encoding",
        b"cache-control",
        b"expect",
    }
)


def last_chunk(trailers: list[tuple[bytes, bytes]] | None) -> bytes:
    """The end of a chunked HTTP/1.1 body with its trailer section (forbidden fields and fields
    with CR/LF dropped)."""
    if not trailers:
        return b"0\r\n\r\n"
    parts = [b"0\r\n"]
    for name, value in trailers:
        lname = name.lower()
        if lname in FORBIDDEN_TRAILERS or b"\r" in value or b"\n" in value or b"\n" in name:
            continue
        parts += (lname, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)

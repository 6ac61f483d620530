"""The upstream HTTP/1.1 client: keep-alive connection pools with streaming in both directions.

A ``ConnectionPool`` talks to one upstream address (host and port, optionally TLS with SNI). It
keeps up to ``max_idle`` idle connections (most recently used first, so a few stay warm and the
rest expire). A connection goes back to the pool as soon as its response has fully arrived, even
while the caller still reads buffered body chunks. A watchdog per pool, ticking only while
exchanges are in progress, enforces the read timeout (time without progress in either direction)
and the total timeout (until the response headers) by comparing timestamps, so the hot path never
creates or cancels timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar, cast

import httptools

from portway.http._body import Body, empty_body, last_chunk
from portway.http._errors import (
    ConnectError,
    InvalidResponse,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamTimeout,
)
from portway.http._flow import WriteFlow
from portway.http._messages import Headers, Stream

Resolver = Callable[[str, int], Awaitable[list[tuple[str, int]]]]
"""Turns a host and port into addresses to try in order (e.g. a DNS cache)."""

_NO_BODY_LENGTH_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
P = TypeVar("P", bound=asyncio.Protocol)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


class Exchange(Protocol):
    """What a response asks of the connection (HTTP/1.1) or stream (HTTP/2) that carries it."""

    @property
    def transport(self) -> asyncio.Transport | None: ...

    async def drain(self) -> None: ...

    def abort_exchange(self) -> None: ...

    @property
    def fresh_connect_ms(self) -> float:
        """How long opening the connection took when this exchange opened it, else 0."""
        ...


class UpstreamResponse:
    """A response whose headers have arrived; the body streams through ``read``/``async for``."""

    __slots__ = (
        "_conn",
        "body",
        "chunked",
        "connect_ms",
        "content_length",
        "headers",
        "http_version",
        "keep_alive",
        "status",
        "upgraded",
    )

    def __init__(
        self,
        conn: Exchange,
        status: int,
        headers: Headers,
        body: Body,
        http_version: str,
        content_length: int | None,
        chunked: bool,
        keep_alive: bool,
    ) -> None:
        self._conn: Exchange | None = conn
        self.status = status
        self.headers = headers
        """Header fields in order, names lower-cased."""
        self.body = body
        self.http_version = http_version
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.upgraded: Body | None = None
        self.connect_ms = conn.fresh_connect_ms
        """How long opening its connection took; 0 for a kept-alive connection."""

    @property
    def trailers(self) -> Headers:
        """Trailer fields (chunked HTTP/1.1, HTTP/2), filled in when the body has ended."""
        return self.body.trailers

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def read(self) -> bytes:
        return await self.body.read()

    async def read_all(self, limit: int | None = None) -> bytes:
        return await self.body.read_all(limit)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        body = self.body
        while chunk := await body.read():
            yield chunk

    def stream(self) -> Stream:
        """The raw connection after a 101 answer (the connection leaves the pool for good)."""
        conn = self._conn
        if self.status != 101 or conn is None or conn.transport is None or self.upgraded is None:
            raise InvalidResponse("not an upgraded response")
        self._conn = None
        return Stream(conn.transport, self.upgraded, conn.drain)

    def close(self) -> None:
        """Give up on the rest of the body: the connection is closed unless it already came back
        to the pool with the whole response."""
        conn = self._conn
        self._conn = None
        if conn is not None and not self.body.complete:
            conn.abort_exchange()

    async def aclose(self) -> None:
        self.close()


class UpstreamProtocol(WriteFlow, asyncio.Protocol):
    """One connection to an upstream server, used for one exchange at a time."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._loop = pool._loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        # the exchange in progress
        self._future: asyncio.Future[UpstreamResponse] | None = None
        self._response: UpstreamResponse | None = None
        self._headers: Headers = []
        self._body: Body | None = None
        self._head = False
        self._bytes_seen = 0
        self._reusable = False
        self._request_done = True
        self._send_task: asyncio.Task[None] | None = None
        self._activity = 0.0
        self._read_timeout = 0.0
        self._headers_deadline = 0.0
        self._close_delimited = False
        self._discard = False
        self._in_use = False
        self._reused = False
        self.connect_ms = 0.0
        """How long opening this connection took (DNS, TCP and TLS)."""

    # -- connection events -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        self._pool._unwatch(self)
        self._fail_drain(UpstreamDisconnected("upstream closed the connection"))
        if self._body is not None:
            if self._close_delimited:
                self._body.finish()
            else:
                self._body.fail(UpstreamDisconnected("upstream closed mid-response"))
            self._body = None
        if self._response is not None and self._response.upgraded is not None:
            self._response.upgraded.finish()
        future = self._future
        if future is not None and not future.done():
            error = UpstreamDisconnected("upstream closed the connection before answering")
            error.stale = self._reused and self._bytes_seen == 0
            future.set_exception(error)
        self._finish_exchange()

    def eof_received(self) -> bool | None:
        if self._response is not None and self._response.upgraded is not None:
            self._response.upgraded.finish()
            return True
        return None

    async def drain(self) -> None:
        if self.closed:
            raise UpstreamDisconnected("upstream connection closed")
        await self._writable(self._loop)

    # Flow (response bodies and upgraded streams)
    def pause_feeding(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_feeding(self) -> None:
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self._activity = self._loop.time()
            self.transport.resume_reading()

    def on_consumer_wait(self) -> None:
        return None

    # -- parsing ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is not None and response.upgraded is not None:
            response.upgraded.feed(data)
            return
        if self._discard:
            return
        if self._future is None and self._body is None:
            # bytes nobody asked for: the connection cannot be trusted any more
            self._reusable = False
            self.close()
            return
        self._bytes_seen += len(data)
        self._activity = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            response = self._response
            if response is not None and response.status == 101:
                upgraded = Body(self, None)
                rest = data[int(exc.args[0]) :]
                if rest:
                    upgraded.feed(rest)
                response.upgraded = upgraded
                self._detach()
            else:
                self._error(InvalidResponse("unexpected upgrade from upstream"))
        except httptools.HttpParserError as exc:
            self._error(InvalidResponse(f"invalid response from upstream: {exc}"))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._body is None or self._response is None:
            self._headers.append((name.lower(), value))
        else:
            self._body.trailers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        headers = self._headers
        self._headers = []
        if 100 <= status < 200 and status != 101:
            return  # interim answer (100 Continue, 103 Early Hints): wait for the final one
        content_length: int | None = None
        chunked = False
        for name, value in headers:
            if name == b"content-length":
                content_length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
        keep = parser.should_keep_alive()
        no_body = self._head or status == 204 or status == 304 or status == 101
        if no_body:
            body = empty_body()
            if self._head:
                self._discard = True  # llhttp would wait for the announced body
                keep = False
        else:
            body = Body(self, content_length)
            self._body = body
            self._close_delimited = content_length is None and not chunked
            if self._close_delimited:
                keep = False
        self._reusable = keep
        response = UpstreamResponse(
            self,
            status,
            headers,
            body,
            parser.get_http_version(),
            content_length,
            chunked,
            keep,
        )
        self._response = response
        future = self._future
        self._future = None
        if future is not None and not future.done():
            future.set_result(response)
        if self._head:
            self._finish_exchange()

    def on_body(self, data: bytes) -> None:
        body = self._body
        if body is not None:
            body.feed(data)

    def on_message_complete(self) -> None:
        if self._response is None or self._discard:
            return  # the end of an interim answer
        body = self._body
        self._body = None
        if body is not None:
            body.finish()
        if self._response.status != 101:
            self._finish_exchange()

    # -- exchanges -------------------------------------------------------------------------

    async def exchange(
        self,
        method: str,
        target: bytes,
        headers: Headers,
        body: bytes | AsyncIterable[bytes] | None,
        content_length: int | None,
        read_timeout: float,
        total_timeout: float | None,
        reused: bool,
    ) -> UpstreamResponse:
        transport = self.transport
        if transport is None or self.closed:
            raise UpstreamDisconnected("connection closed", request_sent=False)
        loop = self._loop
        self._reused = reused
        self._in_use = True
        self._head = method == "HEAD"
        self._bytes_seen = 0
        self._response = None
        self._headers = []
        self._discard = False
        self._close_delimited = False
        self._reusable = False
        future: asyncio.Future[UpstreamResponse] = loop.create_future()
        self._future = future
        parts = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        now = loop.time()
        self._activity = now
        self._read_timeout = read_timeout
        self._headers_deadline = now + total_timeout if total_timeout else 0.0
        first = min(read_timeout, total_timeout) if total_timeout else read_timeout
        self._pool._watch(self, first)
        if body is None or isinstance(body, bytes):
            if body:
                parts.append(b"content-length: %d\r\n\r\n" % len(body))
                parts.append(body)
            elif method not in _NO_BODY_LENGTH_METHODS:
                parts.append(b"content-length: 0\r\n\r\n")
            else:
                parts.append(b"\r\n")
            self._request_done = True
            transport.write(b"".join(parts))
        else:
            if content_length is not None:
                parts.append(b"content-length: %d\r\n\r\n" % content_length)
            else:
                parts.append(b"transfer-encoding: chunked\r\n\r\n")
            self._request_done = False
            transport.write(b"".join(parts))
            self._send_task = loop.create_task(self._send_body(body, content_length is None))
        try:
            return await future
        except asyncio.CancelledError:
            self.abort_exchange()
            raise
        except UpstreamError:
            self.abort_exchange()
            raise

    async def _send_body(self, body: AsyncIterable[bytes], chunked: bool) -> None:
        transport = self.transport
        assert transport is not None
        try:
            async for chunk in body:
                if not chunk:
                    continue
                if self.closed:
                    return
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                self._activity = self._loop.time()
                if self._write_paused:
                    await self.drain()
            if chunked and not self.closed:
                transport.write(last_chunk(body.trailers if isinstance(body, Body) else None))
            self._request_done = True
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # the request body failed (client gone, too large, too slow): nothing to reuse
            self._error(exc if isinstance(exc, Exception) else UpstreamDisconnected(str(exc)))
        finally:
            self._send_task = None
            if self._request_done and self._response is not None and self._body is None:
                self._finish_exchange()

    def check_deadlines(self, now: float) -> None:
        """Called by the pool's watchdog while an exchange is in progress."""
        if self.closed or not self._in_use:
            return
        if self._future is not None and self._headers_deadline and now >= self._headers_deadline:
            self._error(UpstreamTimeout("upstream did not answer in time", phase="total"))
        elif self._read_paused:
            self._activity = now  # the reader is behind, not the upstream
        elif now - self._activity >= self._read_timeout:
            self._error(UpstreamTimeout("upstream read timed out", phase="read"))

    def _error(self, exc: BaseException) -> None:
        future = self._future
        self._future = None
        if future is not None and not future.done():
            future.set_exception(exc)
        if self._body is not None:
            self._body.fail(exc)
            self._body = None
        self._reusable = False
        self.close()
        self._finish_exchange()

    def abort_exchange(self) -> None:
        self._reusable = False
        self.close()
        self._finish_exchange()

    @property
    def fresh_connect_ms(self) -> float:
        return 0.0 if self._reused else self.connect_ms

    def _finish_exchange(self) -> None:
        if not self._in_use:
            return
        if not self._request_done:
            if self._send_task is not None and self._response is not None and self._body is None:
                # the whole answer came before the request body was sent: stop sending
                self._send_task.cancel()
                self._reusable = False
            elif not self.closed:
                return  # wait for the request body to be sent
        self._in_use = False
        self._pool._unwatch(self)
        self._future = None
        self._pool._release(self, self._reusable and not self.closed and not self._discard)

    def _detach(self) -> None:
        """The connection becomes a raw stream owned by the response: out of the pool for good."""
        self._reusable = False
        self._in_use = False
        self._pool._unwatch(self)
        self._future = None
        self._pool._forget(self)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Dialer:
    """Where a pool connects: host and port, optionally TLS with SNI, within ``connect_timeout``
    to the first of ``resolve``'s addresses that answers."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 5.0,
        resolve: Resolver | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl
        self._server_hostname = server_hostname or host if ssl is not None else None
        self.connect_timeout = connect_timeout
        self._resolve = resolve
        self.active = 0
        """Exchanges in progress (for least-connections balancing)."""
        self.closed = False

    async def _dial(self, factory: Callable[[], P]) -> P:
        """A new connection (``UpstreamTimeout`` past ``connect_timeout``, ``ConnectError`` when
        no address accepts)."""
        host, port = self.host, self.port
        loop = asyncio.get_running_loop()
        resolve = self._resolve
        addresses = await resolve(host, port) if resolve is not None else [(host, port)]
        if not addresses:
            raise ConnectError(f"no address for {host}")
        last: Exception | None = None
        for address, address_port in addresses:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _, protocol = await loop.create_connection(
                        factory,
                        address,
                        address_port,
                        ssl=self._ssl,
                        server_hostname=self._server_hostname,
                    )
            except TimeoutError as exc:
                raise UpstreamTimeout(
                    f"connecting to {host}:{port} timed out", phase="connect", request_sent=False
                ) from exc
            except (OSError, ssl_module.SSLError) as exc:
                last = exc
                continue
            return protocol
        raise ConnectError(f"cannot connect to {host}:{port}: {last}") from last


class ConnectionPool(Dialer):
    """Keep-alive connections to one upstream address."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        max_idle: int = 64,
        connect_timeout: float = 5.0,
        idle_timeout: float = 60.0,
        resolve: Resolver | None = None,
    ) -> None:
        super().__init__(
            host,
            port,
            ssl=ssl,
            server_hostname=server_hostname,
            connect_timeout=connect_timeout,
            resolve=resolve,
        )
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # bound on use
        self._idle: deque[UpstreamProtocol] = deque()
        self._all: set[UpstreamProtocol] = set()
        self._watched: set[UpstreamProtocol] = set()
        self._tick = 0.5
        self._ticker: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def request(
        self,
        method: str,
        target: bytes,
        headers: Headers,
        body: bytes | AsyncIterable[bytes] | None = None,
        *,
        content_length: int | None = None,
        read_timeout: float = 30.0,
        total_timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send one request (``headers`` must include Host) and return once the response headers
        arrived. A ``bytes`` body gets a Content-Length; an iterable body is chunked unless
        ``content_length`` is given. A reused connection that turns out to be closed is replaced
        by a fresh one when the body can be sent again."""
        if self.closed:
            raise ConnectError("the connection pool is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self.active += 1
        try:
            conn, reused = await self._acquire()
            try:
                return await conn.exchange(
                    method,
                    target,
                    headers,
                    body,
                    content_length,
                    read_timeout,
                    total_timeout,
                    reused,
                )
            except UpstreamDisconnected as exc:
                # a kept-alive connection the upstream closed meanwhile: safe to send again
                # only when the method is idempotent and the body can be replayed
                replayable = body is None or isinstance(body, bytes)
                if not (exc.stale and replayable and method in IDEMPOTENT_METHODS):
                    raise
            conn = await self._connect()
            return await conn.exchange(
                method, target, headers, body, content_length, read_timeout, total_timeout, False
            )
        finally:
            self.active -= 1

    async def _acquire(self) -> tuple[UpstreamProtocol, bool]:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn, True
        return await self._connect(), False

    async def _connect(self) -> UpstreamProtocol:
        began = self._loop.time()
        protocol = await self._dial(functools.partial(UpstreamProtocol, self))
        self._all.add(protocol)
        protocol.connect_ms = round((self._loop.time() - began) * 1000, 3)
        return protocol

    def _release(self, conn: UpstreamProtocol, reusable: bool) -> None:
        if reusable and not self.closed and len(self._idle) < self.max_idle:
            now = self._loop.time()
            conn.idle_since = now
            idle = self._idle
            while idle and now - idle[0].idle_since > self.idle_timeout:
                idle.popleft().close()
            idle.append(conn)
        else:
            conn.close()

    def _watch(self, conn: UpstreamProtocol, timeout: float) -> None:
        self._watched.add(conn)
        tick = min(0.5, max(0.01, timeout / 4))
        if tick < self._tick:
            self._tick = tick
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None
        if self._ticker is None:
            self._ticker = self._loop.call_later(self._tick, self._on_tick)

    def _unwatch(self, conn: UpstreamProtocol) -> None:
        self._watched.discard(conn)

    def _on_tick(self) -> None:
        self._ticker = None
        if not self._watched:
            return
        now = self._loop.time()
        for conn in list(self._watched):
            conn.check_deadlines(now)
        if self._watched:
            self._ticker = self._loop.call_later(self._tick, self._on_tick)

    def _forget(self, conn: UpstreamProtocol) -> None:
        self._all.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    async def close(self) -> None:
        """Close idle connections now; busy ones close when their exchange ends."""
        self.closed = True
        while self._idle:
            self._idle.pop().close()
        if self._ticker is not None and not self._watched:
            self._ticker.cancel()
            self._ticker = None
        await asyncio.sleep(0)

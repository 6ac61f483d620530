"""The upstream HTTP/2 client: one multiplexed connection per address (h2c with prior knowledge on
plain TCP, ALPN ``h2`` under TLS), for backends that speak HTTP/2 only, such as gRPC servers.

``H2ConnectionPool.request`` has the signature of ``ConnectionPool.request`` and returns the same
``UpstreamResponse``; its ``trailers`` hold the trailer fields once the body has ended. Request
bodies stream within the backend's flow-control window; response bodies are acknowledged only as
the caller reads them, so backpressure holds in both directions. When the connection reaches the
backend's stream limit, new requests wait for a free stream; a connection that received GOAWAY
finishes its streams and the next request opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterable
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from portway.http._body import FORBIDDEN_TRAILERS, Body
from portway.http._client import Dialer, Resolver, UpstreamResponse
from portway.http._errors import (
    ConnectError,
    InvalidResponse,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamTimeout,
)
from portway.http._flow import FrameWriter, WindowFlow, WriteFlow
from portway.http._messages import Headers

_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"te",
        b"content-length",
    }
)
_WINDOW = 1 << 20
_GOAWAY_FRAME = 0x7


class _Exchange:
    """One stream: what ``UpstreamResponse`` calls back into, and where events land."""

    __slots__ = (
        "_conn",
        "body",
        "flow",
        "response",
        "stream_id",
        "transport",
        "window_waiter",
    )

    def __init__(self, conn: _H2ClientProtocol, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.transport: asyncio.Transport | None = None
        self.flow = WindowFlow(conn.acknowledge, stream_id)
        self.body = Body(self.flow)
        self.response: asyncio.Future[tuple[int, Headers]] = conn.loop.create_future()
        self.window_waiter: asyncio.Future[None] | None = None

    async def drain(self) -> None:
        await self._conn.drain()

    def fail(self, exc: UpstreamError) -> None:
        if not self.response.done():
            self.response.set_exception(exc)
            self.response.exception()
        self.body.fail(exc)
        self.wake(exc)

    def wake(self, exc: BaseException | None = None) -> None:
        waiter = self.window_waiter
        if waiter is not None:
            self.window_waiter = None
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)
                    waiter.exception()

    def abort_exchange(self) -> None:
        """The caller gave up on the response: reset the stream."""
        self._conn.reset(self.stream_id)

    @property
    def fresh_connect_ms(self) -> float:
        """Streams share a multiplexed connection; its opening is not charged to one of them."""
        return 0.0


class _H2ClientProtocol(WriteFlow, asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, max_streams: int) -> None:
        self.loop = loop
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self._out = FrameWriter(loop, self.h2)
        self.transport: asyncio.Transport | None = None
        self.exchanges: dict[int, _Exchange] = {}
        self.closed = False
        self.goaway = False
        self._incoming = b""
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        """Requests waiting for a stream below the limit, first come first served."""
        self._max_streams = max_streams

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self._out.transport = cast(asyncio.Transport, transport)
        codes = h2.settings.SettingCodes
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                codes.ENABLE_PUSH: 0,
                codes.INITIAL_WINDOW_SIZE: _WINDOW,
                codes.MAX_HEADER_LIST_SIZE: 256 * 1024,
            },
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW * 4)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for exchange in list(self.exchanges.values()):
            exchange.fail(UpstreamDisconnected("the backend closed the connection"))
        self.exchanges.clear()
        self._fail_drain(UpstreamDisconnected("the backend closed the connection"))
        self._notify()

    def _notify(self) -> None:
        """A stream ended (or the connection did): let waiting requests look again."""
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        if self.closed:
            raise UpstreamDisconnected("the backend closed the connection")
        await self._writable(self.loop)

    def flush(self) -> None:
        self._out.schedule()

    @property
    def usable(self) -> bool:
        return not self.closed and not self.goaway

    def _without_goaway(self, data: bytes) -> bytes:
        """``data`` minus GOAWAY frames, which are handled here: h2 accepts no frame after a
        GOAWAY, while the streams the backend still answers (up to its last stream id) need
        theirs. Partial frames wait for the next read."""
        buffer = self._incoming + data if self._incoming else data
        view = memoryview(buffer)
        kept: list[bytes] = []
        start = pos = 0
        while len(buffer) - pos >= 9:
            length = int.from_bytes(view[pos : pos + 3], "big")
            if length > self.h2.max_inbound_frame_size:
                self._incoming = b""
                return buffer  # h2 refuses it as it is
            end = pos + 9 + length
            if end > len(buffer):
                break
            if buffer[pos + 3] == _GOAWAY_FRAME:
                kept.append(buffer[start:pos])
                start = end
                payload = view[pos + 9 : end]
                last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                self._on_goaway(last, int.from_bytes(payload[4:8], "big"))
            pos = end
        kept.append(buffer[start:pos])
        self._incoming = buffer[pos:]
        return b"".join(kept)

    def _on_goaway(self, last_stream_id: int, code: int) -> None:
        self.goaway = True
        for sid, each in list(self.exchanges.items()):
            if sid > last_stream_id or code:
                self.exchanges.pop(sid, None)
                error = UpstreamDisconnected(
                    f"the backend ended the stream (GOAWAY {code})",
                    request_sent=sid <= last_stream_id,  # above it: never processed
                )
                each.fail(error)
        self._notify()
        if not self.exchanges and self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        data = self._without_goaway(data)
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._out.now()
            for each in list(self.exchanges.values()):
                each.fail(InvalidResponse(f"HTTP/2 protocol error from the backend: {exc}"))
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            stream_id = cast(int | None, getattr(event, "stream_id", None))
            exchange = self.exchanges.get(stream_id) if stream_id else None
            if isinstance(event, h2.events.ResponseReceived):
                if exchange is not None:
                    self._on_response(exchange, event.headers)
            elif isinstance(event, h2.events.DataReceived):
                length = event.flow_controlled_length
                if exchange is None:
                    self.acknowledge(stream_id or 0, length)
                else:
                    exchange.body.feed(event.data)
                    exchange.flow.received(length)
            elif isinstance(event, h2.events.TrailersReceived):
                if exchange is not None:
                    exchange.body.trailers[:] = event.headers
            elif isinstance(event, h2.events.StreamEnded):
                if exchange is not None:
                    self.exchanges.pop(exchange.stream_id, None)
                    if not exchange.response.done():
                        exchange.fail(InvalidResponse("the backend ended the stream early"))
                    exchange.body.finish()
                    self._notify()
            elif isinstance(event, h2.events.StreamReset):
                if exchange is not None:
                    self.exchanges.pop(exchange.stream_id, None)
                    code = event.error_code
                    exchange.fail(UpstreamDisconnected(f"the backend reset the stream ({code})"))
                    self._notify()
            elif isinstance(event, h2.events.WindowUpdated):
                if exchange is not None:
                    exchange.wake()
                elif not stream_id:
                    for each in self.exchanges.values():
                        each.wake()
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                for each in self.exchanges.values():
                    each.wake()
        self.flush()
        if self.goaway and not self.exchanges and self.transport is not None:
            self.transport.close()  # the backend said GOAWAY and its last stream has ended

    def _on_response(self, exchange: _Exchange, headers: list[tuple[bytes, bytes]]) -> None:
        status = 0
        fields: Headers = []
        for name, value in headers:
            if name == b":status":
                status = int(value)
            elif name[:1] != b":":
                fields.append((name, value))
        if not exchange.response.done():
            exchange.response.set_result((status, fields))

    def acknowledge(self, stream_id: int, length: int) -> None:
        if self.closed or not length:
            return
        try:
            self.h2.acknowledge_received_data(length, stream_id)
        except h2.exceptions.ProtocolError:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.increment_flow_control_window(length)
        self.flush()

    def reset(self, stream_id: int) -> None:
        exchange = self.exchanges.pop(stream_id, None)
        if exchange is None or self.closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        exchange.fail(UpstreamDisconnected("the stream was cancelled"))
        self.flush()
        self._notify()

    async def open_stream(self, headers: Headers, end_stream: bool) -> _Exchange:
        while True:
            if not self.usable:
                raise UpstreamDisconnected("the backend connection closes", request_sent=False)
            limit = min(self._max_streams, self.h2.remote_settings.max_concurrent_streams)
            if len(self.exchanges) < limit:
                break
            waiter = self.loop.create_future()
            self._slot_waiters.append(waiter)
            await waiter
        stream_id = self.h2.get_next_available_stream_id()
        exchange = _Exchange(self, stream_id)
        self.exchanges[stream_id] = exchange
        self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        self.flush()
        return exchange

    async def send_body(self, exchange: _Exchange, body: bytes | AsyncIterable[bytes]) -> None:
        try:
            if isinstance(body, bytes):
                await self._send_data(exchange, body)
            else:
                async for chunk in body:
                    if chunk:
                        await self._send_data(exchange, chunk)
            if exchange.stream_id in self.exchanges or not exchange.body.complete:
                trailers = body.trailers if isinstance(body, Body) else None
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    if trailers:
                        fields = [(n, v) for n, v in trailers if n not in FORBIDDEN_TRAILERS]
                        self.h2.send_headers(exchange.stream_id, fields, end_stream=True)
                    else:
                        self.h2.end_stream(exchange.stream_id)
                self.flush()
        except UpstreamError:
            pass
        except asyncio.CancelledError:
            self.reset(exchange.stream_id)
            raise
        except Exception as exc:
            # the client side of the body failed (disconnect, too large, too slow)
            self.reset(exchange.stream_id)
            exchange.fail(UpstreamDisconnected(f"the request body failed: {exc}"))

    async def _send_data(self, exchange: _Exchange, data: bytes) -> None:
        view = memoryview(data)
        h2conn = self.h2
        while view:
            if self.closed or exchange.stream_id not in self.exchanges:
                raise UpstreamDisconnected("the stream ended before the request body was sent")
            window = h2conn.local_flow_control_window(exchange.stream_id)
            if window <= 0:
                exchange.window_waiter = self.loop.create_future()
                await exchange.window_waiter
                continue
            size = min(window, h2conn.max_outbound_frame_size, len(view))
            h2conn.send_data(exchange.stream_id, view[:size].tobytes())
            view = view[size:]
            self.flush()
            if self._write_paused:
                await self.drain()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection()
            self._out.now()
            self.transport.close()


class H2ConnectionPool(Dialer):
    """HTTP/2 to one upstream address over one multiplexed connection. A TLS ``ssl`` context
    must offer ALPN ``h2``; a server that does not select it is refused (``ConnectError``)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        max_streams: int = 100,
        connect_timeout: float = 5.0,
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
        self.max_streams = max_streams
        self._conn: _H2ClientProtocol | None = None
        self._connecting: asyncio.Future[_H2ClientProtocol] | None = None

    @property
    def idle(self) -> int:
        conn = self._conn
        return 1 if conn is not None and conn.usable and not conn.exchanges else 0

    async def _connection(self) -> _H2ClientProtocol:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            conn = await self._connect(loop)
        except BaseException as exc:
            self._connecting.set_exception(exc)
            self._connecting.exception()
            self._connecting = None
            raise
        old, self._conn = self._conn, conn
        if old is not None and not old.exchanges:
            old.close()
        self._connecting.set_result(conn)
        self._connecting = None
        return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _H2ClientProtocol:
        protocol = await self._dial(functools.partial(_H2ClientProtocol, loop, self.max_streams))
        transport = protocol.transport
        assert transport is not None
        if self._ssl is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                transport.close()
                raise ConnectError(f"{self.host}:{self.port} does not offer HTTP/2 (ALPN h2)")
        return protocol

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
        """Send one request (``headers`` must include Host, sent as ``:authority``) and return once
        the response headers arrived; ``total_timeout`` (or ``read_timeout``) bounds that wait."""
        if self.closed:
            raise ConnectError("the connection pool is closed")
        self.active += 1
        try:
            return await self._request(
                method, target, headers, body, content_length, read_timeout, total_timeout
            )
        finally:
            self.active -= 1

    async def _request(
        self,
        method: str,
        target: bytes,
        headers: Headers,
        body: bytes | AsyncIterable[bytes] | None,
        content_length: int | None,
        read_timeout: float,
        total_timeout: float | None,
    ) -> UpstreamResponse:
        authority = b""
        fields: Headers = []
        for name, value in headers:
            lname = name.lower()
            if lname == b"host":
                authority = value
            elif lname not in _DROP:
                fields.append((lname, value))
        if isinstance(body, bytes):
            content_length = len(body)
        if content_length is not None:
            fields.append((b"content-length", b"%d" % content_length))
        scheme = b"https" if self._ssl is not None else b"http"
        out: Headers = [
            (b":method", method.encode("ascii")),
            (b":scheme", scheme),
            (b":authority", authority or self.host.encode("idna")),
            (b":path", target),
            (b"te", b"trailers"),
            *fields,
        ]
        no_body = body is None or body == b""
        conn = await self._connection()
        try:
            exchange = await conn.open_stream(out, end_stream=no_body)
        except UpstreamDisconnected:
            conn = await self._connection()
            exchange = await conn.open_stream(out, end_stream=no_body)
        sender: asyncio.Task[None] | None = None
        if not no_body:
            assert body is not None
            sender = asyncio.get_running_loop().create_task(conn.send_body(exchange, body))
        try:
            async with asyncio.timeout(total_timeout or read_timeout):
                status, fields = await exchange.response
        except TimeoutError:
            conn.reset(exchange.stream_id)
            if sender is not None:
                sender.cancel()
            raise UpstreamTimeout("no response headers in time", phase="response headers") from None
        except BaseException:
            conn.reset(exchange.stream_id)
            if sender is not None:
                sender.cancel()
            raise
        length: int | None = None
        for name, value in fields:
            if name == b"content-length" and value.isdigit():
                length = int(value)
        return UpstreamResponse(
            exchange,
            status,
            fields,
            exchange.body,
            "2",
            length,
            False,
            True,
        )

    async def close(self) -> None:
        self.closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None

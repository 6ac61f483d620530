"""The HTTP/1.1 server protocol: httptools parsing, strict framing rules, keep-alive, pipelining,
streaming bodies with backpressure, upgrades, limits, timeouts and graceful drain.

One asyncio ``Protocol`` per connection. Requests of a connection are answered strictly in order by
one task at a time; a pipelined request waits in a short queue (reading pauses when it is full).
Timeouts are enforced by one watchdog per server that visits every connection on a tick, so the hot
path never creates or cancels timers.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ipaddress
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

import httptools

from portway.http._body import Body, empty_body, last_chunk
from portway.http._errors import ClientDisconnected, ClientError
from portway.http._flow import WriteFlow
from portway.http._h2server import PREFACE, H2ServerProtocol, is_preface_start
from portway.http._helpers import HOST_RE, connection_ends
from portway.http._limits import H2Limits, ServerLimits, check_body_progress
from portway.http._messages import Handler, Headers, Outcome, Request, Response, Stream

log = logging.getLogger("portway.http")

_STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus
}
_METHODS: dict[bytes, str] = {}
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})
_SPECIAL = frozenset(
    {b"content-length", b"transfer-encoding", b"host", b"expect", b"upgrade", b"connection"}
)
_EMPTY = empty_body()

# why a connection's reading is paused (a bit mask: reading resumes when all are clear)
_P_BODY = 1
_P_PIPELINE = 2
_P_DONE = 4

# what the connection's deadline guards
_D_NONE = 0
_D_IDLE = 1
_D_HEADERS = 2

ErrorRenderer = Callable[[int, str], tuple[Headers, bytes]]


def _plain_error(status: int, reason: str) -> tuple[Headers, bytes]:
    body = f"{status} {reason}\n".encode()
    return [(b"content-type", b"text/plain; charset=utf-8")], body


class _Reject(Exception):
    """Raised inside parser callbacks: answer ``status`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def client_key(host: str) -> str:
    """What the per-client connection cap counts by: the IPv4 address, or an IPv6 address's /64
    (one subscriber usually owns a whole /64); an IPv4-mapped IPv6 address counts as its IPv4."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))


class _State:
    """What every connection of one listener shares."""

    __slots__ = (
        "connections",
        "draining",
        "empty",
        "handler",
        "limits",
        "loop",
        "per_client",
        "render_error",
        "scheme",
        "tick",
        "watchdog",
    )

    def __init__(
        self,
        handler: Handler,
        limits: ServerLimits,
        scheme: str,
        render_error: ErrorRenderer,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.scheme = scheme
        self.render_error = render_error
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpServerProtocol | H2ServerProtocol] = set()
        self.per_client: dict[str, int] = {}
        self.draining = False
        self.empty = asyncio.Event()
        self.empty.set()
        smallest = min(
            limits.header_timeout,
            limits.body_timeout,
            limits.keepalive_timeout,
            limits.body_deadline or limits.body_timeout,
        )
        self.tick = max(0.05, min(1.0, smallest / 4))
        self.watchdog: asyncio.TimerHandle | None = self.loop.call_later(self.tick, self._on_tick)

    def _on_tick(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            conn._check_deadline(now)
        self.watchdog = self.loop.call_later(self.tick, self._on_tick)

    def admit(self, conn: HttpServerProtocol | H2ServerProtocol, key: str) -> bool:
        """Count a new connection in, unless the listener or its client is at the limit."""
        limits = self.limits
        if len(self.connections) >= limits.max_connections or self.draining:
            return False
        per_client = self.per_client
        held = per_client.get(key, 0)
        cap = limits.max_connections_per_client
        if cap is not None and held >= cap:
            return False
        per_client[key] = held + 1
        self.connections.add(conn)
        self.empty.clear()
        return True

    def replace(self, old: HttpServerProtocol, new: H2ServerProtocol) -> None:
        """``new`` carries on ``old``'s connection (counted once, as before)."""
        self.connections.discard(old)
        self.connections.add(new)

    def discard(self, conn: HttpServerProtocol | H2ServerProtocol, key: str) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        left = self.per_client[key] - 1
        if left:
            self.per_client[key] = left
        else:
            del self.per_client[key]
        if not self.connections:
            self.empty.set()


class HttpServerProtocol(WriteFlow, asyncio.Protocol):
    """One client connection."""

    def __init__(self, state: _State) -> None:
        self._state = state
        self._limits = state.limits
        self._loop = state.loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._client: tuple[str, int] = ("", 0)
        self._client_key = ""
        self._server: tuple[str, int] = ("", 0)
        self._scheme = state.scheme
        self._peer_cert: dict[str, Any] | None = None
        # the message being parsed
        self._url = b""
        self._headers: Headers = []
        self._header_bytes = 0
        self._header_count = 0
        self._raw_header_bytes = 0
        self._in_headers = False
        self._cl: bytes | None = None
        self._te: bytes | None = None
        self._host: bytes | None = None
        self._host_count = 0
        self._expect: bytes | None = None
        self._upgrade: bytes | None = None
        self._reparse_after_upgrade = False
        self._body: Body | None = None
        self._body_activity = 0.0
        self._body_started = 0.0
        self._expect_body: Body | None = None
        # answering
        self._queue: deque[Request | _Reject] = deque()
        self._task: asyncio.Task[None] | None = None
        self._upgrade_body: Body | None = None
        self._response_started = False
        self._sent = 0  # bytes of the current response written so far
        self._completed = False  # the current response went out whole
        self._failed = False
        self._eof = False
        self._closed = False
        self._paused = 0
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._deadline_kind = _D_NONE

    # -- connection events -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        state = self._state
        self._client, self._server, self._peer_cert = connection_ends(transport)
        self._client_key = client_key(self._client[0])
        if not state.admit(self, self._client_key):
            self._closed = True
            headers, body = state.render_error(503, "too many connections")
            self._write_simple(503, headers, body)
            transport.close()
            return
        self._set_deadline(_D_HEADERS, self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._state.discard(self, self._client_key)
        self._deadline_kind = _D_NONE
        if self._body is not None:
            self._body.fail(ClientDisconnected("client closed the connection"))
        if self._upgrade_body is not None:
            self._upgrade_body.finish()
        self._fail_drain(ClientDisconnected("client closed the connection"))
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    def eof_received(self) -> bool:
        self._eof = True
        if self._failed and self._task is None:
            return False
        if self._upgrade_body is not None:
            self._upgrade_body.finish()
            return True
        if self._body is not None:
            self._body.fail(ClientDisconnected("client closed its side before the body ended"))
        # keep the write side open while an answer is due
        return self._task is not None or bool(self._queue)

    async def _drain(self) -> None:
        if self._closed:
            raise ClientDisconnected("client closed the connection")
        await self._writable(self._loop)

    # -- reading ---------------------------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self._paused and self._transport is not None:
            self._transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self._transport is not None and not self._closed:
            self._transport.resume_reading()

    # Flow (for request bodies and upgraded streams)
    def pause_feeding(self) -> None:
        self._pause(_P_BODY)

    def resume_feeding(self) -> None:
        self._resume(_P_BODY)

    def on_consumer_wait(self) -> None:
        now = self._body_activity = self._loop.time()
        expect = self._expect_body
        if expect is not None:
            self._expect_body = None
            if not self._response_started and not expect.complete and self._transport:
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self._body_started = now  # the client was told to wait until now

    def data_received(self, data: bytes) -> None:
        if self._upgrade_body is not None:
            self._upgrade_body.feed(data)
            return
        if self._failed:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_parser_upgrade(data, int(exc.args[0]))
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                self._fail(cause.status, cause.reason)
            else:
                self._fail(400, str(exc) or "malformed request")
            return
        if self._in_headers:
            self._raw_header_bytes += len(data)
            limits = self._limits
            if self._raw_header_bytes > limits.max_header_bytes + limits.max_url_bytes + 65536:
                self._fail(431, "request header block too large")

    def _on_parser_upgrade(self, data: bytes, offset: int) -> None:
        rest = data[offset:]
        if self._reparse_after_upgrade:
            # an Upgrade we do not tunnel (h2c, ...): carry on as plain HTTP/1.1
            self._reparse_after_upgrade = False
            self._parser = httptools.HttpRequestParser(self)
            if rest:
                self.data_received(rest)
            return
        body = Body(self, None, high_water=self._limits.high_water)
        if rest:
            body.feed(rest)
        self._upgrade_body = body

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._header_count = 0
        self._raw_header_bytes = 0
        self._in_headers = True
        self._cl = self._te = self._host = self._expect = self._upgrade = None
        self._host_count = 0
        if self._deadline_kind != _D_HEADERS:
            self._set_deadline(_D_HEADERS, self._limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_url_bytes:
            raise _Reject(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self._limits
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > limits.max_header_bytes:
            raise _Reject(431, "request header fields too large")
        if not self._in_headers:
            body = self._body
            if body is not None:  # a trailer field: kept with the body it ends
                body.trailers.append((name.lower(), value))
            return
        self._header_count += 1
        if self._header_count > limits.max_headers:
            raise _Reject(431, "too many request header fields")
        lname = name.lower()
        if lname in _SPECIAL:
            if lname == b"content-length":
                if self._cl is not None:
                    raise _Reject(400, "duplicate Content-Length")
                self._cl = value
            elif lname == b"transfer-encoding":
                if self._te is not None:
                    raise _Reject(400, "duplicate Transfer-Encoding")
                self._te = value
            elif lname == b"host":
                self._host_count += 1
                self._host = value
            elif lname == b"expect":
                self._expect = value
            elif lname == b"upgrade":
                self._upgrade = value
        self._headers.append((lname, value))

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._deadline_kind = _D_NONE
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _Reject(505 if version >= "2" else 400, "unsupported HTTP version")
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = _METHODS.setdefault(raw_method, raw_method.decode("ascii"))
        if method == "CONNECT":
            raise _Reject(405, "CONNECT is not supported")
        # framing: exactly one way to know where the body ends
        te = self._te
        cl = self._cl
        if te is not None:
            if cl is not None:
                raise _Reject(400, "both Content-Length and Transfer-Encoding")
            if version == "1.0":
                raise _Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
            if te.strip().lower() != b"chunked":
                raise _Reject(400, "unsupported Transfer-Encoding")
        limits = self._limits
        length: int | None = None
        if cl is not None:
            length = int(cl)  # llhttp accepted digits only
            if limits.max_body_bytes is not None and length > limits.max_body_bytes:
                raise _Reject(413, "request body too large")
        # target and host
        url = self._url
        host = self._host
        if self._host_count > 1:
            raise _Reject(400, "more than one Host header")
        if url[:1] != b"/":
            if url == b"*" and method == "OPTIONS":
                pass
            elif url[:7].lower() == b"http://" or url[:8].lower() == b"https://":
                rest = url.split(b"://", 1)[1]
                cut = len(rest)
                for sep in (b"/", b"?"):
                    idx = rest.find(sep)
                    if idx != -1 and idx < cut:
                        cut = idx
                host = rest[:cut]
                url = rest[cut:] or b"/"
                if url[:1] == b"?":
                    url = b"/" + url
            else:
                raise _Reject(400, "invalid request target")
        elif host is None and version == "1.1":
            raise _Reject(400, "missing Host header")
        if host is None:
            host = b""
        elif not HOST_RE.fullmatch(host):
            raise _Reject(400, "invalid Host header")
        expect_continue = False
        if self._expect is not None:
            if self._expect.strip().lower() != b"100-continue":
                raise _Reject(417, "unsupported Expect")
            expect_continue = version == "1.1"
        upgrade: bytes | None = None
        has_body = te is not None or (length is not None and length > 0)
        if parser.should_upgrade():
            token = (self._upgrade or b"").strip().lower()
            if token == b"websocket" and method == "GET" and not has_body:
                upgrade = b"websocket"
            elif has_body:
                raise _Reject(400, "an Upgrade request with a body")
            else:
                self._reparse_after_upgrade = True
        if has_body:
            body = Body(self, length, high_water=limits.high_water, limit=limits.max_body_bytes)
            self._body = body
            self._body_activity = self._body_started = self._loop.time()
            if expect_continue:
                self._expect_body = body
        else:
            body = _EMPTY
        request = Request(
            method,
            url,
            self._headers,
            body,
            host=host.lower().decode("ascii"),
            http_version=version,
            keep_alive=parser.should_keep_alive(),
            client=self._client,
            server=self._server,
            scheme=self._scheme,
            tls_peer_cert=self._peer_cert,
            upgrade=upgrade,
            expect_continue=expect_continue,
        )
        if self._task is None:
            self._task = self._loop.create_task(self._run(request))
        else:
            self._queue.append(request)
            if len(self._queue) >= limits.max_pipelined:
                self._pause(_P_PIPELINE)

    def on_body(self, data: bytes) -> None:
        body = self._body
        if body is not None:
            body.feed(data)
            self._body_activity = self._loop.time()

    def on_message_complete(self) -> None:
        body = self._body
        if body is not None:
            self._body = None
            body.finish()

    # -- failures and deadlines ------------------------------------------------------------

    def _fail(self, status: int, reason: str) -> None:
        """A request that cannot be parsed: answer it in turn, then close; read nothing more."""
        self._failed = True
        self._pause(_P_DONE)
        self._deadline_kind = _D_NONE
        if self._body is not None:
            self._body.fail(ClientError(reason))
            self._body = None
        if self._task is None:
            self._write_error(status, reason)
            self._close_lingering()
        else:
            self._queue.append(_Reject(status, reason))

    def _set_deadline(self, kind: int, seconds: float) -> None:
        self._deadline_kind = kind
        self._deadline = self._loop.time() + seconds

    def _check_deadline(self, now: float) -> None:
        kind = self._deadline_kind
        if kind != _D_NONE and now >= self._deadline:
            self._deadline_kind = _D_NONE
            if kind == _D_IDLE:
                self._close()
            else:
                self._fail(408, "request header timeout")
            return
        body = self._body
        if body is not None and body.waiting:
            check_body_progress(body, self._limits, now, self._body_activity, self._body_started)

    def _begin_drain(self) -> None:
        if self._task is None and not self._queue and not self._in_headers:
            self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _close_lingering(self) -> None:
        """Close without losing the answer when unread request bytes may still arrive: a plain
        close with unread input makes the kernel send RST, which can drop the response."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._failed = True
        self._upgrade_body = None
        self._resume(_P_BODY | _P_PIPELINE | _P_DONE)
        if transport.can_write_eof():
            transport.write_eof()
        self._loop.call_later(2.0, self._close)

    # -- answering -------------------------------------------------------------------------

    async def _run(self, item: Request | _Reject) -> None:
        try:
            while True:
                if isinstance(item, _Reject):
                    self._response_started = False
                    self._write_error(item.status, item.reason)
                    self._close_lingering()
                    return
                keep = await self._respond(item)
                if not keep or self._closed:
                    if item.body.complete or self._closed:
                        self._close()
                    else:
                        self._close_lingering()
                    return
                if not self._queue:
                    break
                item = self._queue.popleft()
                if self._paused & _P_PIPELINE and len(self._queue) < self._limits.max_pipelined:
                    self._resume(_P_PIPELINE)
        finally:
            self._task = None
        if self._eof or self._state.draining:
            self._close()
        elif not self._in_headers:
            self._set_deadline(_D_IDLE, self._limits.keepalive_timeout)

    async def _respond(self, request: Request) -> bool:
        self._response_started = False
        try:
            response = await self._state.handler(request)
        except asyncio.CancelledError:
            raise
        except ClientDisconnected:
            return False
        except ClientError as exc:
            self._write_error(exc.status, str(exc) or "bad request")
            return False
        except Exception:
            log.exception("handler failed for %r", request)
            self._write_error(500, "internal error")
            return False
        try:
            return await self._send(request, response)
        except asyncio.CancelledError:
            raise
        except ClientDisconnected:
            return False
        except ClientError as exc:
            # the handler's body iterator failed on the request side (e.g. a too large body)
            if not self._response_started:
                self._write_error(exc.status, str(exc) or "bad request")
            return False
        except Exception:
            log.exception("sending the response failed for %r", request)
            if not self._response_started:
                self._write_error(500, "internal error")
            return False

    def _write_error(self, status: int, reason: str) -> None:
        if self._transport is None or self._transport.is_closing() or self._response_started:
            return
        headers, body = self._state.render_error(status, reason)
        self._write_simple(status, headers, body)

    def _write_simple(self, status: int, headers: Headers, body: bytes) -> None:
        parts = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d Error\r\n" % status]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        parts.append(body)
        assert self._transport is not None
        self._response_started = True
        self._transport.write(b"".join(parts))

    async def _send(self, request: Request, response: Response) -> bool:
        self._sent = 0
        self._completed = False
        try:
            status = response.status
            parts, keep = self._head(request, response)
            if status == 101:
                return await self._send_upgrade(request, response, parts)
            body = response.body
            no_body = request.method == "HEAD" or status < 200 or status == 204 or status == 304
            if isinstance(body, bytes):
                return await self._send_bytes(request, response, body, parts, keep, no_body)
            framing = _announce_framing(request, response, parts, no_body)
            if framing is _Framing.NO_BODY:
                await _aclose(body)
                self._write(b"".join(_end_head(parts, keep and _request_read(request), request)))
                self._completed = True
                return keep and _request_read(request)
            if framing is _Framing.UNTIL_CLOSE:
                keep = False
            return await self._send_stream(request, response, body, parts, keep, framing)
        finally:
            # run once, then dropped: a callback that holds the response (a traffic record's)
            # must not keep the two alive as a reference cycle
            finish, response.on_finish = response.on_finish, None
            if finish is not None:
                try:
                    finish(Outcome(response.status, self._sent, self._completed))
                except Exception:
                    log.exception("on_finish callback failed")

    def _head(self, request: Request, response: Response) -> tuple[list[bytes], bool]:
        """The status line and the response's own header lines (framing headers dropped: the
        server frames the body itself), and whether the connection may stay open."""
        status = response.status
        keep = (
            request.keep_alive and not self._state.draining and not (self._eof and not self._queue)
        )
        if request.upgrade is not None and status != 101:
            keep = False  # the parser treated the rest of the connection as upgraded
        parts: list[bytes] = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status]
        if response.checked:
            for name, value in response.headers:
                parts += (name, b": ", value, b"\r\n")
            return parts, keep
        is_upgrade = status == 101
        for name, value in response.headers:
            if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
                raise ValueError(f"invalid response header {name!r}")
            if not is_upgrade:
                lname = name.lower()
                if lname in _FRAMING:
                    if lname == b"connection" and b"close" in value.lower():
                        keep = False
                    continue
            parts += (name, b": ", value, b"\r\n")
        return parts, keep

    def _write(self, data: bytes) -> None:
        assert self._transport is not None
        self._response_started = True
        self._transport.write(data)
        self._sent += len(data)

    async def _send_bytes(
        self,
        request: Request,
        response: Response,
        body: bytes,
        parts: list[bytes],
        keep: bool,
        no_body: bool,
    ) -> bool:
        """A body held in memory: head and body leave in one write."""
        status = response.status
        if not no_body:
            parts.append(b"content-length: %d\r\n" % len(body))
        elif status != 204 and status >= 200:
            length = response.content_length
            if length is None and body:
                length = len(body)
            if length is not None:
                parts.append(b"content-length: %d\r\n" % length)
        keep = keep and _request_read(request)
        _end_head(parts, keep, request)
        if not no_body and body:
            parts.append(body)
        self._write(b"".join(parts))
        if self._write_paused:
            await self._drain()
        self._completed = True
        return keep

    async def _send_stream(
        self,
        request: Request,
        response: Response,
        body: Any,
        head: list[bytes] | None,
        keep: bool,
        framing: _Framing,
    ) -> bool:
        """A streamed body framed by ``framing``; the head waits for the first chunk, so small
        bodies leave in one write."""
        length = response.content_length
        remaining = length if length is not None else -1
        head_keep = keep
        iterator = body.__aiter__()
        try:
            async for chunk in iterator:
                if not chunk:
                    continue
                if framing is _Framing.LENGTH:
                    if len(chunk) > remaining:
                        chunk = chunk[:remaining]
                    remaining -= len(chunk)
                if head is not None:
                    head_keep = keep and _request_read(request)
                    _end_head(head, head_keep, request)
                    if framing is _Framing.CHUNKED:
                        head += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
                    else:
                        head.append(chunk)
                    data = b"".join(head)
                    head = None
                elif framing is _Framing.CHUNKED:
                    data = b"%x\r\n%b\r\n" % (len(chunk), chunk)
                else:
                    data = chunk
                self._write(data)
                if self._write_paused:
                    await self._drain()
                if framing is _Framing.LENGTH and remaining == 0:
                    break
        finally:
            await _aclose(iterator)
        if head is not None:  # an empty body
            head_keep = keep and _request_read(request)
            _end_head(head, head_keep, request)
            if framing is _Framing.CHUNKED:
                head.append(last_chunk(response.trailers))
            self._write(b"".join(head))
            self._completed = framing is not _Framing.LENGTH or remaining == 0
            return head_keep and self._completed
        if framing is _Framing.CHUNKED:
            self._write(last_chunk(response.trailers))
        elif framing is _Framing.LENGTH and remaining != 0:
            return False  # shorter than announced: the client must see the connection end
        if self._write_paused:
            await self._drain()
        self._completed = True
        return head_keep and _request_read(request)

    async def _send_upgrade(self, request: Request, response: Response, parts: list[bytes]) -> bool:
        transport = self._transport
        assert transport is not None
        upgrade_body = self._upgrade_body
        if response.tunnel is None or request.upgrade is None or upgrade_body is None:
            raise ValueError("a 101 response needs an Upgrade request and a tunnel")
        parts.append(b"\r\n")
        self._response_started = True
        transport.write(b"".join(parts))
        self._deadline_kind = _D_NONE
        stream = Stream(transport, upgrade_body, self._drain)
        try:
            await response.tunnel(stream)
        finally:
            stream.close()
        return False


class _Framing(enum.Enum):
    """How a streamed response body is delimited on the wire."""

    NO_BODY = "no body"  # HEAD, 1xx, 204, 304: the head alone
    LENGTH = "content-length"  # a known length: the body is cut at the announced length
    CHUNKED = "chunked"  # HTTP/1.1, unknown length
    UNTIL_CLOSE = "until close"  # HTTP/1.0, unknown length: the connection's end delimits it


def _announce_framing(
    request: Request, response: Response, parts: list[bytes], no_body: bool
) -> _Framing:
    """Chooses the framing of a streamed body and appends the header line announcing it."""
    length = response.content_length
    status = response.status
    if no_body:
        if length is not None and status != 204 and status >= 200:
            parts.append(b"content-length: %d\r\n" % length)
        return _Framing.NO_BODY
    if length is not None:
        parts.append(b"content-length: %d\r\n" % length)
        return _Framing.LENGTH
    if request.http_version == "1.1":
        parts.append(b"transfer-encoding: chunked\r\n")
        return _Framing.CHUNKED
    return _Framing.UNTIL_CLOSE


def _request_read(request: Request) -> bool:
    """Whether the request's body has been read to its end (else the connection cannot be
    reused: the rest of the body would be taken for the next request)."""
    return request.body.complete or request.body is _EMPTY


def _end_head(parts: list[bytes], keep: bool, request: Request) -> list[bytes]:
    parts.append(_connection_header(keep, request.http_version))
    return parts


class _NegotiatingProtocol(HttpServerProtocol):
    """HTTP/1.1 unless the client opens HTTP/2: ALPN ``h2`` under TLS, or the connection preface
    as the first bytes on a plain listener (h2c with prior knowledge). The connection is then
    handed to an ``H2ServerProtocol`` on the same transport."""

    def __init__(self, state: _State, h2_limits: H2Limits) -> None:
        super().__init__(state)
        self._h2_limits = h2_limits
        self._sniff = True
        self._early = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or self._closed:
            return
        self._sniff = False
        if ssl_object.selected_alpn_protocol() == "h2":
            self._switch(b"")

    def data_received(self, data: bytes) -> None:
        if self._sniff:
            early = self._early + data
            if is_preface_start(early):
                if len(early) < len(PREFACE):
                    self._early = early
                else:
                    self._switch(early)
                return
            self._sniff = False
            self._early = b""
            data = early
        HttpServerProtocol.data_received(self, data)

    def _switch(self, early: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._sniff = False
        self._closed = True  # this HTTP/1.1 side is done; the H2 protocol owns the transport
        self._deadline_kind = _D_NONE
        protocol = H2ServerProtocol(self._state, self._h2_limits)
        self._state.replace(self, protocol)
        transport.set_protocol(protocol)
        protocol.start(transport, self._client_key, early)


def _connection_header(keep: bool, version: str) -> bytes:
    if not keep:
        return b"connection: close\r\n\r\n"
    if version == "1.0":
        return b"connection: keep-alive\r\n\r\n"
    return b"\r\n"


async def _aclose(body: object) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("closing a response body failed", exc_info=True)


class Server:
    """A listening HTTP/1.1 server (one or more sockets sharing a handler and limits)."""

    def __init__(self, state: _State, servers: list[asyncio.Server]) -> None:
        self._state = state
        self._servers = servers
        self._port = int(servers[0].sockets[0].getsockname()[1]) if servers[0].sockets else 0

    @property
    def sockets(self) -> list[Any]:
        return [sock for server in self._servers for sock in server.sockets]

    @property
    def port(self) -> int:
        """The port of the first socket (useful after binding port 0)."""
        return self._port

    @property
    def connections(self) -> int:
        return len(self._state.connections)

    @property
    def draining(self) -> bool:
        return self._state.draining

    async def close(self, grace: float = 30.0) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace`` seconds (idle
        keep-alive connections close at once, busy ones after their current response), then
        abort whatever is left."""
        state = self._state
        state.draining = True
        for server in self._servers:
            server.close()
        for conn in list(state.connections):
            conn._begin_drain()
        if state.connections:
            try:
                await asyncio.wait_for(state.empty.wait(), grace)
            except TimeoutError:
                for conn in list(state.connections):
                    if conn._transport is not None:
                        conn._transport.abort()
        if state.watchdog is not None:
            state.watchdog.cancel()
            state.watchdog = None
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)


async def serve(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    sock: Any = None,
    ssl: ssl_module.SSLContext | None = None,
    limits: ServerLimits | None = None,
    reuse_port: bool = False,
    backlog: int = 1024,
    render_error: ErrorRenderer | None = None,
    http2: H2Limits | None = None,
) -> Server:
    """Listen on ``host:port`` (or ``sock``) and answer every request with ``handler``.

    ``render_error(status, reason) -> (headers, body)`` shapes the answers the server gives by
    itself (malformed requests, limits, last-resort 500s). With ``http2`` the listener also
    speaks HTTP/2 (ALPN ``h2`` when ``ssl`` offers it, h2c with prior knowledge otherwise).
    """
    loop = asyncio.get_running_loop()
    state = _State(
        handler,
        limits or ServerLimits(),
        "https" if ssl is not None else "http",
        render_error or _plain_error,
    )
    factory: Callable[[], HttpServerProtocol]
    if http2 is None:
        factory = functools.partial(HttpServerProtocol, state)
    else:
        factory = functools.partial(_NegotiatingProtocol, state, http2)
    if sock is not None:
        server = await loop.create_server(factory, sock=sock, ssl=ssl, backlog=backlog)
    else:
        server = await loop.create_server(
            factory,
            host,
            port,
            ssl=ssl,
            reuse_port=reuse_port or None,
            backlog=backlog,
        )
    return Server(state, [server])

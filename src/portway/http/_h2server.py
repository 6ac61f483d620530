"""The HTTP/2 server protocol: the ``h2`` library's state machine under the same uvloop transport.

One ``H2ServerProtocol`` per connection (ALPN ``h2`` on TLS, or h2c with prior knowledge on a
plain listener). Every stream becomes the same ``Request`` an HTTP/1.1 connection produces
(``http_version == "2"``) and is answered by the same handler in its own task, so routing,
policies, logging and metrics do not know which protocol carried a request.

Defences beyond what ``h2`` enforces itself (frame sizes, CONTINUATION backlog, HPACK table size,
header-list size with ``ENHANCE_YOUR_CALM``):

- handler tasks are counted by the server, not by the stream state: a stream the client resets
  still counts until its task has ended, so rapid reset (CVE-2023-44487) cannot run more handlers
  than ``max_concurrent_streams``; streams beyond it are refused (``REFUSED_STREAM``), and a
  client resetting more than ``max_resets`` streams per ``window`` seconds gets
  ``GOAWAY ENHANCE_YOUR_CALM``;
- SETTINGS and PING frames past ``max_control_frames`` per window: ``GOAWAY ENHANCE_YOUR_CALM``
  (settings and ping floods make the server queue acknowledgements);
- request bodies are acknowledged (WINDOW_UPDATE) only while their reader keeps up, so the
  memory per stream stays at the window plus ``high_water``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hyperframe.frame

from portway.http._body import FORBIDDEN_TRAILERS, Body
from portway.http._errors import ClientDisconnected, ClientError
from portway.http._flow import FrameWriter, WindowFlow, WriteFlow
from portway.http._helpers import HOST_RE, connection_ends
from portway.http._limits import H2Limits, check_body_progress
from portway.http._messages import Headers, Outcome, Request, Response

if TYPE_CHECKING:
    from portway.http._server import _State

log = logging.getLogger("portway.http.h2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# connection-specific fields HTTP/2 forbids (RFC 9113 8.2.2); the server writes framing itself
_CONNECTION_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def is_preface_start(data: bytes) -> bool:
    """``data`` is (the beginning of) the HTTP/2 client connection preface."""
    n = min(len(data), len(PREFACE))
    return data[:n] == PREFACE[:n]


class _StreamState:
    __slots__ = ("activity", "body", "ended", "flow", "started", "task", "watched", "window_waiter")

    def __init__(self, body: Body, flow: WindowFlow, now: float) -> None:
        self.body = body
        self.flow = flow
        self.started = self.activity = now
        """When the stream opened, and when its body last made progress."""
        self.watched = False
        """The handler has been seen waiting for the body (the slow-body clock runs)."""
        self.task: asyncio.Task[None] | None = None
        self.window_waiter: asyncio.Future[None] | None = None
        self.ended = False
        """The client reset the stream or the connection went away."""


class H2ServerProtocol(WriteFlow, asyncio.Protocol):
    """One HTTP/2 client connection (an ``asyncio.Protocol``)."""

    def __init__(self, state: _State, limits: H2Limits) -> None:
        self._state = state
        self._limits = limits
        self._server_limits = state.limits
        self._loop = state.loop
        self._transport: asyncio.Transport | None = None
        self._client: tuple[str, int] = ("", 0)
        self._server: tuple[str, int] = ("", 0)
        self._client_key = ""
        self._peer_cert: dict[str, Any] | None = None
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            normalize_inbound_headers=True,
            validate_outbound_headers=True,
            normalize_outbound_headers=True,
        )
        self._h2 = h2.connection.H2Connection(config=config)
        self._out = FrameWriter(self._loop, self._h2)
        self._streams: dict[int, _StreamState] = {}
        self._tasks = 0
        self._closed = False
        self._goaway_sent = False
        self._draining = False
        self._window_start = 0.0
        self._resets = 0
        self._control_frames = 0
        self._idle_since = 0.0

    # -- connection events -----------------------------------------------------------------

    def start(self, transport: asyncio.Transport, client_key: str, early: bytes = b"") -> None:
        """Take over ``transport`` (already admitted under ``client_key``)."""
        self._transport = self._out.transport = transport
        self._client_key = client_key
        self._client, self._server, self._peer_cert = connection_ends(transport)
        limits = self._limits
        self._h2.local_settings = _settings(limits, limits.max_concurrent_streams)
        # enforce our own header-list limit from the first frame, before the client acknowledges
        self._h2.decoder.max_header_list_size = limits.max_header_list_size
        self._h2.decoder.max_allowed_table_size = limits.header_table_size
        self._h2.initiate_connection()
        # The SETTINGS frame sent advertises max_concurrent_streams. h2 itself answers a stream
        # past its own limit with a connection error, where RFC 9113 5.1.2 asks for a stream
        # error: h2 keeps a hard ceiling above it, and _on_request refuses the streams between
        # the two (REFUSED_STREAM).
        ceiling = max(2 * limits.max_concurrent_streams, limits.max_concurrent_streams + 100)
        self._h2.local_settings = _settings(limits, ceiling)
        connection_window = limits.initial_window_size * 4
        self._h2.increment_flow_control_window(connection_window - 65535)
        self._window_start = self._idle_since = self._loop.time()
        self._flush()
        if early:
            self.data_received(early)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._state.discard(self, self._client_key)
        self._fail_drain(ClientDisconnected("client closed the connection"))
        for stream in self._streams.values():
            self._end_stream_state(stream)
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()  # as on HTTP/1.1: the handler stops with its client

    def eof_received(self) -> bool:
        return False

    async def _drain(self) -> None:
        if self._closed:
            raise ClientDisconnected("client closed the connection")
        await self._writable(self._loop)

    def _flush(self) -> None:
        self._out.schedule()

    # -- server hooks (the listener's watchdog and drain) ----------------------------------

    def _check_deadline(self, now: float) -> None:
        if self._closed:
            return
        for stream in self._streams.values():
            body = stream.body
            if not body.waiting:
                continue
            if not stream.watched:
                # the clock starts when the handler first waits, as on HTTP/1.1
                stream.watched = True
                stream.activity = max(stream.activity, now)
            check_body_progress(body, self._server_limits, now, stream.activity, stream.started)
        if not self._streams and now - self._idle_since > self._server_limits.keepalive_timeout:
            self._goaway(h2.errors.ErrorCodes.NO_ERROR)

    def _begin_drain(self) -> None:
        """Graceful shutdown: GOAWAY at once, the open streams still answered, then close. h2
        allows no frame after a GOAWAY it knows of, so this one is written past it."""
        if self._closed or self._draining or self._goaway_sent:
            return
        if not self._streams:
            self._goaway(h2.errors.ErrorCodes.NO_ERROR)
            return
        self._draining = True
        self._out.now()
        self._write_goaway(h2.errors.ErrorCodes.NO_ERROR)

    def _write_goaway(self, code: int) -> None:
        last = self._h2.highest_inbound_stream_id or 0
        goaway = hyperframe.frame.GoAwayFrame(0, last_stream_id=last, error_code=code)
        if self._transport is not None:
            self._transport.write(goaway.serialize())

    def _goaway(self, code: int) -> None:
        """End the connection now: GOAWAY with ``code``, then close (open streams are lost)."""
        if not self._goaway_sent:
            self._goaway_sent = True
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection(error_code=code)
        self._out.now()
        if self._transport is not None:
            self._transport.close()

    # -- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closed or self._goaway_sent:
            return
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("HTTP/2 protocol error from %s: %s", self._client, exc)
            self._goaway_sent = True  # h2 has queued its GOAWAY
            if _is_compression_error(exc):
                # RFC 9113 4.3: a header block that cannot be decoded is a COMPRESSION_ERROR
                self._h2.data_to_send()
                self._write_goaway(h2.errors.ErrorCodes.COMPRESSION_ERROR)
            self._goaway(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self._on_data(event)
            elif isinstance(event, h2.events.RequestReceived):
                self._on_request(event)
            elif isinstance(event, h2.events.StreamEnded):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.body.finish()
            elif isinstance(event, h2.events.StreamReset):
                self._on_reset(event.stream_id, bool(event.remote_reset))
            elif isinstance(event, h2.events.WindowUpdated):
                self._on_window(event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.body.trailers[:] = event.headers
                    stream.body.finish()
            elif isinstance(event, h2.events.RemoteSettingsChanged | h2.events.PingReceived):
                self._count_control()
                self._on_window(0)
            elif isinstance(event, h2.events.ConnectionTerminated):
                # the client goes away; h2 sends nothing after a GOAWAY, so its open streams end
                self._goaway(h2.errors.ErrorCodes.NO_ERROR)
                return
            if self._goaway_sent:
                return
        self._flush()

    def _new_window(self, now: float) -> None:
        if now - self._window_start > self._limits.window:
            self._window_start = now
            self._resets = 0
            self._control_frames = 0

    def _count_control(self) -> None:
        self._new_window(self._loop.time())
        self._control_frames += 1
        if self._control_frames > self._limits.max_control_frames:
            log.warning("SETTINGS/PING flood from %s: closing", self._client)
            self._goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self._draining:
            self._reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        if self._tasks >= self._limits.max_concurrent_streams:
            # reset streams whose handlers still run count here (rapid reset)
            self._reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        method = target = authority = b""
        headers: Headers = []
        cookies: list[bytes] = []
        header_bytes = 0
        for name, value in cast(Iterable[tuple[bytes, bytes]], event.headers):
            header_bytes += len(name) + len(value) + 32
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    target = value
                elif name == b":authority":
                    authority = value
                continue
            if name == b"cookie":
                cookies.append(value)  # may arrive split; one field again below
                continue
            if name == b"host" and not authority:
                authority = value
            headers.append((name, value))
        if cookies:
            # RFC 9113 8.2.3: split cookie fields are joined for HTTP/1.1 and the policies
            headers.append((b"cookie", b"; ".join(cookies)))
        limits = self._server_limits
        if len(headers) > limits.max_headers or header_bytes > limits.max_header_bytes:
            self._answer_simple(stream_id, 431, "request header fields too large")
            return
        if len(target) > limits.max_url_bytes:
            self._answer_simple(stream_id, 414, "request target too long")
            return
        if not HOST_RE.fullmatch(authority):
            self._answer_simple(stream_id, 400, "invalid :authority or Host")
            return
        if method == b"CONNECT" or not target.startswith(b"/"):
            self._answer_simple(stream_id, 405, "CONNECT and non-origin targets are not served")
            return
        length: int | None = None
        for name, value in headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
                break
        too_large = limits.max_body_bytes is not None and (length or 0) > limits.max_body_bytes
        if too_large:
            self._answer_simple(stream_id, 413, "request body too large")
            return
        flow = WindowFlow(self._acknowledge, stream_id)
        body = Body(flow, length, high_water=limits.high_water, limit=limits.max_body_bytes)
        if event.stream_ended is not None:
            body.finish()
        request = Request(
            method.decode("ascii", "replace"),
            target,
            headers,
            body,
            host=authority.decode("latin-1").lower(),
            http_version="2",
            keep_alive=True,
            client=self._client,
            server=self._server,
            scheme=self._state.scheme,
            tls_peer_cert=self._peer_cert,
        )
        stream = _StreamState(body, flow, self._loop.time())
        self._streams[stream_id] = stream
        self._tasks += 1
        stream.task = self._loop.create_task(self._run(stream_id, stream, request))

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        length = event.flow_controlled_length
        stream = self._streams.get(stream_id)
        if stream is None or stream.body.complete:
            # a stream we refused or answered already: keep the connection window open
            self._acknowledge(stream_id, length)
            return
        data = event.data
        stream.body.feed(data)
        stream.activity = self._loop.time()
        stream.flow.received(length)
        if event.stream_ended is not None:
            stream.body.finish()

    def _on_reset(self, stream_id: int, remote: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._end_stream_state(stream)
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()
        if remote:
            self._new_window(self._loop.time())
            self._resets += 1
            if self._resets > self._limits.max_resets:
                log.warning("rapid stream resets from %s: closing", self._client)
                self._goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)

    def _on_window(self, stream_id: int) -> None:
        if stream_id:
            stream = self._streams.get(stream_id)
            targets = [stream] if stream is not None else []
        else:
            targets = list(self._streams.values())
        for stream in targets:
            waiter = stream.window_waiter
            if waiter is not None:
                stream.window_waiter = None
                if not waiter.done():
                    waiter.set_result(None)

    def _end_stream_state(self, stream: _StreamState) -> None:
        stream.ended = True
        stream.body.fail(ClientDisconnected("the client reset the stream"))
        waiter = stream.window_waiter
        if waiter is not None:
            stream.window_waiter = None
            if not waiter.done():
                waiter.set_exception(ClientDisconnected("the client reset the stream"))
                waiter.exception()

    def _acknowledge(self, stream_id: int, length: int) -> None:
        if self._closed or not length:
            return
        try:
            self._h2.acknowledge_received_data(length, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            # the stream is gone: the connection window still needs the bytes back
            try:
                self._h2.increment_flow_control_window(length)
            except h2.exceptions.ProtocolError:
                return
        self._flush()

    def _reset(self, stream_id: int, code: int) -> None:
        try:
            self._h2.reset_stream(stream_id, error_code=code)
        except h2.exceptions.ProtocolError:
            return
        self._flush()

    # -- answering -------------------------------------------------------------------------

    def _answer_simple(self, stream_id: int, status: int, reason: str) -> None:
        headers, body = self._state.render_error(status, reason)
        try:
            self._h2.send_headers(
                stream_id,
                [(b":status", b"%d" % status), *headers, (b"content-length", b"%d" % len(body))],
            )
            self._h2.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.ProtocolError:
            self._reset(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self._flush()

    async def _run(self, stream_id: int, stream: _StreamState, request: Request) -> None:
        try:
            await self._respond(stream_id, stream, request)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks -= 1
            self._streams.pop(stream_id, None)
            if not stream.body.complete and not stream.ended and not self._closed:
                # answered before the body ended: tell the client to stop sending it
                self._reset(stream_id, h2.errors.ErrorCodes.NO_ERROR)
            if not self._streams:
                self._idle_since = self._loop.time()
                if self._draining and self._transport is not None:
                    self._out.now()
                    self._transport.close()

    async def _respond(self, stream_id: int, stream: _StreamState, request: Request) -> None:
        try:
            response = await self._state.handler(request)
        except ClientDisconnected:
            return
        except ClientError as exc:
            self._answer_simple(stream_id, exc.status, str(exc) or "bad request")
            return
        except Exception:
            log.exception("handler failed for %r", request)
            self._answer_simple(stream_id, 500, "internal error")
            return
        sent = 0
        completed = False
        started = False
        try:
            sent, started = await self._send(stream_id, stream, request, response)
            completed = True
        except (ClientDisconnected, asyncio.CancelledError):
            pass
        except ClientError as exc:
            if not started:
                self._answer_simple(stream_id, exc.status, str(exc) or "bad request")
            else:
                self._reset(stream_id, h2.errors.ErrorCodes.CANCEL)
        except Exception:
            log.exception("sending the response failed for %r", request)
            if not started:
                self._answer_simple(stream_id, 500, "internal error")
            else:
                self._reset(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        finally:
            # run once, then dropped: a callback that holds the response (a traffic record's)
            # must not keep the two alive as a reference cycle
            finish, response.on_finish = response.on_finish, None
            if finish is not None:
                try:
                    finish(Outcome(response.status, sent, completed))
                except Exception:
                    log.exception("on_finish callback failed")

    async def _send(
        self, stream_id: int, stream: _StreamState, request: Request, response: Response
    ) -> tuple[int, bool]:
        status = response.status
        if status < 200 or response.tunnel is not None:
            raise ValueError("HTTP/2 streams answer with a final status and no tunnel")
        headers: Headers = [(b":status", b"%d" % status)]
        for name, value in response.headers:
            lname = name.lower()
            if lname in _CONNECTION_FIELDS or lname == b"content-length":
                continue
            if lname == b"te" and value.lower() != b"trailers":
                continue
            headers.append((lname, value))
        body = response.body
        no_body = request.method == "HEAD" or status == 204 or status == 304
        length = response.content_length
        if isinstance(body, bytes):
            if not no_body and body:
                length = len(body)
            elif not no_body:
                length = None if response.trailers is None else length
        if length is not None and status != 204 and status != 304:
            headers.append((b"content-length", b"%d" % length))
        h2conn = self._h2
        if no_body or (isinstance(body, bytes) and not body and response.trailers is None):
            if not isinstance(body, bytes):
                await _aclose(body)
            h2conn.send_headers(stream_id, headers, end_stream=True)
            self._flush()
            return 0, True
        h2conn.send_headers(stream_id, headers)
        self._flush()
        sent = 0
        if isinstance(body, bytes):
            sent = await self._send_data(stream_id, stream, body)
        else:
            iterator = body.__aiter__()
            try:
                async for chunk in iterator:
                    if chunk:
                        sent += await self._send_data(stream_id, stream, chunk)
            finally:
                await _aclose(iterator)
        fields = [(n.lower(), v) for n, v in response.trailers or ()]
        fields = [(n, v) for n, v in fields if n not in FORBIDDEN_TRAILERS]
        if fields:
            h2conn.send_headers(stream_id, fields, end_stream=True)
        else:
            h2conn.end_stream(stream_id)
        self._flush()
        return sent, True

    async def _send_data(self, stream_id: int, stream: _StreamState, data: bytes) -> int:
        h2conn = self._h2
        view = memoryview(data)
        while view:
            if stream.ended or self._closed:
                raise ClientDisconnected("the client reset the stream")
            window = h2conn.local_flow_control_window(stream_id)
            if window <= 0:
                waiter = stream.window_waiter = self._loop.create_future()
                await waiter
                continue
            size = min(window, h2conn.max_outbound_frame_size, len(view))
            h2conn.send_data(stream_id, view[:size].tobytes())
            view = view[size:]
            self._flush()
            if self._write_paused:
                await self._drain()
        return len(data)


def _settings(limits: H2Limits, max_streams: int) -> h2.settings.Settings:
    codes = h2.settings.SettingCodes
    return h2.settings.Settings(
        client=False,
        initial_values={
            codes.MAX_CONCURRENT_STREAMS: max_streams,
            codes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
            codes.MAX_FRAME_SIZE: limits.max_frame_size,
            codes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            codes.HEADER_TABLE_SIZE: limits.header_table_size,
            codes.ENABLE_PUSH: 0,
        },
    )


def _is_compression_error(exc: h2.exceptions.ProtocolError) -> bool:
    """h2 reports an undecodable header block as PROTOCOL_ERROR; an oversized one (an HPACK bomb)
    is a DenialOfServiceError answered ENHANCE_YOUR_CALM and stays so."""
    if isinstance(exc, h2.exceptions.DenialOfServiceError):
        return False
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, hpack.HPACKError)


async def _aclose(body: object) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("closing a response body failed", exc_info=True)

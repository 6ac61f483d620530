"""HTTP/2 on the server: h2c with prior knowledge, ALPN h2 under TLS, the same Request for the
handler, flow control, trailers, and the malformed-framing and attack corpus (each answered with
the right GOAWAY or RST_STREAM while the server keeps serving)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import hpack
import httpx
import pytest
import trustme

from portway.http import (
    H2ConnectionPool,
    H2Limits,
    Request,
    Response,
    ServerLimits,
    serve,
    server_tls_context,
)
from portway.http._h2server import PREFACE
from tests.http.corpus import (
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GET,
    GOAWAY,
    H2_MALFORMED,
    HEADERS,
    PING,
    POST,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    block,
    frame,
    request,
)
from tests.http.support import echo, running, text


@dataclass
class Frame:
    kind: int
    flags: int
    stream: int
    payload: bytes
    fields: list[tuple[bytes, bytes]]
    """A HEADERS frame's decoded fields."""

    @property
    def error_code(self) -> int:
        data = self.payload[4:8] if self.kind == GOAWAY else self.payload[:4]
        return int.from_bytes(data, "big")


class Peer:
    """A raw HTTP/2 client connection: sends any bytes, reads frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames: list[Frame] = []
        self.closed = False
        self._buffer = b""
        self._decoder = hpack.Decoder()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, port: int, *, preface: bool = True) -> AsyncIterator[Peer]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        if preface:
            peer.send(PREFACE + frame(SETTINGS, 0, 0))
        try:
            yield peer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def until(self, kind: int, stream: int | None = None, timeout: float = 10) -> Frame:
        """The first frame of ``kind`` (on ``stream``), reading as needed; AssertionError when
        the connection closes without it or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for item in self.frames[seen:]:
                if item.kind == kind and (stream is None or item.stream == stream):
                    return item
            seen = len(self.frames)
            if self.closed:
                raise AssertionError(f"closed without frame {kind}: {self.frames}")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), deadline - loop.time())
            except (TimeoutError, ConnectionError):
                data = b""
                if loop.time() >= deadline:
                    raise AssertionError(f"no frame {kind} in time: {self.frames}") from None
            if not data:
                self.closed = True
            self._buffer += data
            while len(self._buffer) >= 9:
                length = int.from_bytes(self._buffer[:3], "big")
                if len(self._buffer) < 9 + length:
                    break
                head, self._buffer = self._buffer[:9], self._buffer[9:]
                payload, self._buffer = self._buffer[:length], self._buffer[length:]
                stream_id = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                decoded = self._decoder.decode(payload, raw=True) if head[3] == HEADERS else []
                fields = [(bytes(n), bytes(v)) for n, v in decoded]
                self.frames.append(Frame(head[3], head[4], stream_id, payload, fields))


H2 = H2Limits()


async def still_serving(port: int) -> None:
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        r = await client.get(f"http://127.0.0.1:{port}/next")
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"


# -- serving ----------------------------------------------------------------------------------


async def test_h2c_prior_knowledge_gives_the_handler_the_same_request() -> None:
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        body = await request.body.read_all()
        return text(201, b"got %d" % len(body))

    client = httpx.AsyncClient(http1=False, http2=True)
    async with running(handler, http2=H2) as server, client:
        r = await client.post(
            f"http://127.0.0.1:{server.port}/p/a?q=1",
            content=b"z" * 200_000,
            headers={"x-test": "yes"},
        )
    assert r.http_version == "HTTP/2"
    assert r.status_code == 201
    assert r.text == "got 200000"
    request = seen[0]
    assert request.http_version == "2"
    assert request.method == "POST"
    assert request.target == b"/p/a?q=1"
    assert request.path == "/p/a"
    assert request.query == "q=1"
    assert request.host == f"127.0.0.1:{server.port}"
    assert request.header(b"x-test") == b"yes"
    assert all(not name.startswith(b":") for name, _ in request.headers)
    assert request.scheme == "http"


async def test_http11_keeps_working_on_an_h2c_listener() -> None:
    async with running(echo, http2=H2) as server, httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{server.port}/one")
    assert r.http_version == "HTTP/1.1"
    assert r.text.startswith("GET /one 0")


async def test_without_http2_the_preface_is_refused_as_http11() -> None:
    async with running(echo) as server, Peer.connect(server.port) as peer:
        data = await asyncio.wait_for(peer.reader.read(), 10)
    assert data.startswith(b"HTTP/1.1 400")


async def test_alpn_h2_on_the_tls_listener(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    pem = tmp_path / "cert.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = server_tls_context(str(pem), http2=True)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with running(echo, ssl=context, http2=H2) as server:
        url = f"https://localhost:{server.port}/tls"
        async with httpx.AsyncClient(http2=True, verify=client_context) as client:
            r2 = await client.get(url)
        async with httpx.AsyncClient(verify=client_context) as client:
            r1 = await client.get(url)
    assert r2.http_version == "HTTP/2"
    assert r2.text.startswith("GET /tls 0")
    assert r1.http_version == "HTTP/1.1"


async def test_large_response_respects_the_client_window() -> None:
    """4 MiB through a client whose windows are the 64 KiB defaults: the server must wait for
    WINDOW_UPDATEs instead of overrunning them (h2 on the client side would fail the stream)."""

    async def big(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"b" * 65536

        return Response(200, [], chunks())

    async with running(big, http2=H2) as server:
        pool = H2ConnectionPool("127.0.0.1", server.port)
        try:
            response = await pool.request("GET", b"/big", [(b"host", b"a")])
            body = await response.read_all()
        finally:
            await pool.close()
    assert len(body) == 64 * 65536


async def test_trailers_go_out_after_the_body_and_request_trailers_come_in() -> None:
    got: list[list[tuple[bytes, bytes]]] = []

    async def handler(request: Request) -> Response:
        await request.body.read_all()
        got.append(list(request.body.trailers))

        async def chunks() -> AsyncIterator[bytes]:
            yield b"part"

        return Response(200, [], chunks(), trailers=[(b"x-checksum", b"abc")])

    async with running(handler, http2=H2) as server, Peer.connect(server.port) as peer:
        peer.send(request(1, end=False, fields=POST))
        peer.send(frame(DATA, 0, 1, b"body"))
        peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block((b"x-sum", b"42"))))
        first = await peer.until(HEADERS, 1)
        data = await peer.until(DATA, 1)
        peer.frames.remove(first)
        trailer = await peer.until(HEADERS, 1)
    assert data.payload == b"part"
    assert trailer.flags & END_STREAM
    assert trailer.fields == [(b"x-checksum", b"abc")]
    assert got == [[(b"x-sum", b"42")]]


# -- the malformed-framing corpus ------------------------------------------------------------


# cases whose frames open a valid request before the fault
VALID_REQUEST_FIRST = {
    "stream-id-goes-back",
    "frame-larger-than-max-frame-size",
    "content-length-mismatch",
    "headers-after-end-stream",
    "data-after-end-stream",
}


@pytest.mark.parametrize("name", sorted(H2_MALFORMED))
async def test_malformed_http2_is_answered_and_the_server_keeps_serving(name: str) -> None:
    payload, kind, code = H2_MALFORMED[name]
    calls: list[Request] = []

    async def handler(request: Request) -> Response:
        calls.append(request)
        await request.body.read_all()
        return text(200, b"ok")

    async with running(handler, http2=H2) as server:
        async with Peer.connect(server.port) as peer:
            peer.send(payload)
            answer = await peer.until(GOAWAY if kind == "GOAWAY" else RST_STREAM)
        assert answer.error_code == code, (name, answer)
        if name not in VALID_REQUEST_FIRST:
            assert calls == []  # nothing malformed reaches the application
        await still_serving(server.port)


async def test_a_bad_preface_is_not_http2() -> None:
    async with running(echo, http2=H2) as server, Peer.connect(server.port, preface=False) as peer:
        peer.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        data = await asyncio.wait_for(peer.reader.read(), 10)
        assert data.startswith(b"HTTP/1.1 400")
        await still_serving(server.port)


# -- attacks ----------------------------------------------------------------------------------


class Gate:
    """A handler that blocks until released, counting how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started = 0
        self.release = asyncio.Event()

    async def __call__(self, request: Request) -> Response:
        self.running += 1
        self.started += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
            return text(200, b"ok")
        finally:
            self.running -= 1


async def test_streams_beyond_the_limit_are_refused() -> None:
    gate = Gate()
    async with running(gate, http2=H2Limits(max_concurrent_streams=3)) as server:
        async with Peer.connect(server.port) as peer:
            peer.send(b"".join(request(s) for s in (1, 3, 5, 7, 9)))
            refused = await peer.until(RST_STREAM, 7)
            assert refused.error_code == REFUSED_STREAM
            assert (await peer.until(RST_STREAM, 9)).error_code == REFUSED_STREAM
            gate.release.set()
            for stream in (1, 3, 5):
                assert (await peer.until(HEADERS, stream)).flags & END_HEADERS
        await still_serving(server.port)
    assert gate.peak == 3


async def test_rapid_reset_cannot_outrun_the_handler_limit() -> None:
    """CVE-2023-44487: open and reset streams at once, far more than the stream limit. Handlers
    of reset streams still count until they end; past ``max_resets`` the client gets GOAWAY."""
    gate = Gate()
    limits = H2Limits(max_concurrent_streams=10, max_resets=100)
    async with running(gate, http2=limits) as server:
        async with Peer.connect(server.port) as peer:
            burst = b"".join(
                request(s) + frame(RST_STREAM, 0, s, CANCEL.to_bytes(4, "big"))
                for s in range(1, 2 * 1000, 2)
            )
            peer.send(burst)
            goaway = await peer.until(GOAWAY)
        assert goaway.error_code == ENHANCE_YOUR_CALM
        gate.release.set()
        await still_serving(server.port)
    assert gate.peak <= 10
    assert gate.started <= 101


async def test_settings_flood_is_stopped() -> None:
    async with running(echo, http2=H2Limits(max_control_frames=50)) as server:
        async with Peer.connect(server.port) as peer:
            peer.send(frame(SETTINGS, 0, 0) * 500)
            goaway = await peer.until(GOAWAY)
        assert goaway.error_code == ENHANCE_YOUR_CALM
        await still_serving(server.port)


async def test_ping_flood_is_stopped() -> None:
    async with running(echo, http2=H2Limits(max_control_frames=50)) as server:
        async with Peer.connect(server.port) as peer:
            peer.send(frame(PING, 0, 0, b"\x00" * 8) * 500)
            goaway = await peer.until(GOAWAY)
        assert goaway.error_code == ENHANCE_YOUR_CALM
        await still_serving(server.port)


async def test_continuation_flood_is_stopped() -> None:
    """Header fragments without END_HEADERS, forever: the server must not buffer them all."""
    async with running(echo, http2=H2) as server:
        async with Peer.connect(server.port) as peer:
            peer.send(frame(HEADERS, END_STREAM, 1, block(*GET)))
            peer.send(frame(CONTINUATION, 0, 1, block((b"x-a", b"b" * 100))) * 1000)
            goaway = await peer.until(GOAWAY)
        assert goaway.error_code != 0
        await still_serving(server.port)


async def test_hpack_bomb_is_stopped_at_the_header_list_limit() -> None:
    """One 4000-byte field in the dynamic table, then referenced hundreds of times: a few bytes
    on the wire, megabytes decoded. The decoder stops at ``max_header_list_size``."""
    entry = b"\x40" + bytes([6]) + b"x-bomb" + b"\x7f" + (4000 - 127).to_bytes(2, "little")
    # a literal with incremental indexing; value length 4000 in HPACK's 7-bit prefix integer form
    value_length = _hpack_int(4000, 7)
    entry = b"\x40" + bytes([6]) + b"x-bomb" + value_length + b"v" * 4000
    refs = b"\xbe" * 500  # indexed field 62: the entry just added
    async with running(echo, http2=H2) as server:
        async with Peer.connect(server.port) as peer:
            peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(*GET) + entry + refs))
            goaway = await peer.until(GOAWAY)
        assert goaway.error_code == ENHANCE_YOUR_CALM
        await still_serving(server.port)


async def test_body_larger_than_the_limit_is_refused_per_stream() -> None:
    async def handler(request: Request) -> Response:
        body = await request.body.read_all()
        return text(200, b"%d" % len(body))

    limits = ServerLimits(max_body_bytes=1000)
    client = httpx.AsyncClient(http1=False, http2=True)
    async with running(handler, limits=limits, http2=H2) as server, client:
        r = await client.post(f"http://127.0.0.1:{server.port}/", content=b"x" * 5000)
        ok = await client.post(f"http://127.0.0.1:{server.port}/", content=b"x" * 10)
    assert r.status_code == 413
    assert ok.text == "10"


def _hpack_int(value: int, prefix: int) -> bytes:
    """HPACK's prefix integer with a zero first byte pattern (RFC 7541 5.1)."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([value])
    out = bytes([limit])
    value -= limit
    while value >= 128:
        out += bytes([(value & 0x7F) | 0x80])
        value >>= 7
    return out + bytes([value])


async def test_a_stalled_request_body_is_answered_408() -> None:
    async def handler(request: Request) -> Response:
        body = await request.body.read_all()
        return text(200, b"%d" % len(body))

    limits = ServerLimits(body_timeout=0.3)
    async with running(handler, limits=limits, http2=H2) as server:
        async with Peer.connect(server.port) as peer:
            peer.send(request(1, end=False, fields=POST) + frame(DATA, 0, 1, b"start"))
            answer = await peer.until(HEADERS, 1)
        assert (b":status", b"408") in answer.fields
        await still_serving(server.port)


async def test_an_invalid_authority_is_refused_per_stream() -> None:
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        return text(200, b"ok")

    bad = (*GET[:3], (b":authority", b"a/b@c"))
    async with running(handler, http2=H2) as server:
        async with Peer.connect(server.port) as peer:
            peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(*bad)))
            answer = await peer.until(HEADERS, 1)
        assert (b":status", b"400") in answer.fields
        assert seen == []
        await still_serving(server.port)


async def test_drain_answers_open_streams_after_goaway_and_refuses_new_ones() -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return text(200, b"late")

    server = await serve(slow, "127.0.0.1", 0, http2=H2)
    async with Peer.connect(server.port) as peer:
        peer.send(request(1))
        await asyncio.sleep(0.2)
        closing = asyncio.create_task(server.close(grace=10))
        goaway = await peer.until(GOAWAY)
        assert goaway.error_code == 0
        assert int.from_bytes(goaway.payload[:4], "big") == 1  # last stream it will answer
        peer.send(request(3))
        refused = await peer.until(RST_STREAM, 3)
        assert refused.error_code == REFUSED_STREAM
        release.set()
        answer = await peer.until(DATA, 1)
        assert answer.payload == b"late"
        await closing


async def test_a_client_goaway_ends_the_connection() -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return text(200, b"late")

    async with running(slow, http2=H2) as server:
        async with Peer.connect(server.port) as peer:
            peer.send(request(1))
            await asyncio.sleep(0.1)
            peer.send(frame(GOAWAY, 0, 0, b"\x00" * 8))
            goaway = await peer.until(GOAWAY)
            assert goaway.error_code == 0
            with pytest.raises(AssertionError, match="closed without"):
                await peer.until(DATA, 1)
        release.set()
        await still_serving(server.port)


async def test_split_cookie_fields_reach_the_handler_as_one() -> None:
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        return text(200, b"ok")

    async with running(handler, http2=H2) as server, Peer.connect(server.port) as peer:
        peer.send(request(1, (b"cookie", b"a=1"), (b"x-other", b"o"), (b"cookie", b"b=2")))
        await peer.until(HEADERS, 1)
    assert [v for k, v in seen[0].headers if k == b"cookie"] == [b"a=1; b=2"]

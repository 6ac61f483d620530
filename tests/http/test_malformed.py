"""The malformed-request corpus: hand-written smuggling cases and hypothesis-generated input.

The server must never crash, never hand an ambiguous request to the application, answer with the
right status and close, and keep serving other connections."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portway.http import Request, Response, ServerLimits
from portway.http._server import HttpServerProtocol, _State
from portway.worker.errors import render_protocol_error
from tests.http.corpus import SMUGGLING
from tests.http.support import exchange, parse_responses, running, text


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, bytes]] = []

    async def __call__(self, request: Request) -> Response:
        body = await request.body.read_all()
        self.seen.append((request.method, request.target, body))
        return text(200, b"ok")


@pytest.mark.parametrize("name", sorted(SMUGGLING))
async def test_smuggling_vector_is_refused_and_closed(name: str) -> None:
    raw, status = SMUGGLING[name]
    recorder = Recorder()
    async with running(recorder) as server:
        data = await exchange(server.port, raw)
        assert data.startswith(b"HTTP/1.1 %d" % status), data[:200]
        assert data.count(b"HTTP/1.1 ") == 1  # nothing after the refusal: closed
        assert b"connection: close" in data
        assert recorder.seen == []
        # and the server keeps serving
        ok = await exchange(server.port, b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("name", sorted(SMUGGLING))
async def test_smuggling_after_a_valid_request_answers_the_valid_one_only(name: str) -> None:
    raw, status = SMUGGLING[name]
    recorder = Recorder()
    async with running(recorder) as server:
        data = await exchange(server.port, b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n" + raw)
    responses = parse_responses(data)
    assert [r.status for r in responses] == [200, status]
    assert [t for _, t, _ in recorder.seen] == [b"/first"]


async def test_refused_requests_through_the_gateway_never_reach_the_backend() -> None:
    from tests.worker.support import api, gateway, revision

    backend = Recorder()
    async with running(backend) as upstream:
        rev = revision(api("svc", "/", [f"http://127.0.0.1:{upstream.port}"]))
        async with gateway(rev) as gw:
            for name, (raw, status) in SMUGGLING.items():
                data = await exchange(gw.port, raw)
                assert data.startswith(b"HTTP/1.1 %d" % status), name
                assert b'"correlation_id"' in data, name
    assert backend.seen == []


# -- hypothesis: generated input fed straight into the protocol -----------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, parts: list[bytes]) -> None:
        for part in parts:
            self.written += part

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 80)}.get(name, default)


LINES = [
    b"GET / HTTP/1.1",
    b"POST /p HTTP/1.1",
    b"GET / HTTP/1.0",
    b"PUT /x?y=1 HTTP/1.1",
    b"HEAD / HTTP/1.1",
    b"GET http://h/abs HTTP/1.1",
    b"G ET / HTTP/1.1",
    b"GET  / HTTP/1.1",
]
HEADERS = [
    b"Host: a",
    b"Host: b",
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"Content-Length: 5",
    b"Content-Length: 3, 3",
    b"Content-Length : 3",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding : chunked",
    b"Transfer-Encoding:\tchunked",
    b" Transfer-Encoding: chunked",
    b"Connection: close",
    b"Connection: keep-alive, Upgrade",
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"X-A: a\x00",
    b"X-A: \xff",
    b"X-A:",
]
BODIES = [b"", b"abc", b"0\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\n", b"3;x=y\r\nabc\r\n0\r\n\r\n", b"zz"]
EOLS = [b"\r\n", b"\n", b"\r", b"\r\n "]


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    eol = st.sampled_from(EOLS)
    out = [draw(st.sampled_from(LINES)), draw(eol)]
    for header in draw(st.lists(st.sampled_from(HEADERS), max_size=6)):
        out += [header, draw(eol)]
    out.append(draw(eol))
    out.append(draw(st.sampled_from(BODIES)))
    return b"".join(out)


streams = st.one_of(
    st.lists(messages(), min_size=1, max_size=3).map(b"".join),
    st.binary(max_size=300),
    st.lists(messages(), min_size=1, max_size=2)
    .map(b"".join)
    .flatmap(
        lambda data: st.tuples(st.just(data), st.integers(0, len(data)), st.binary(max_size=4)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
        )
    ),
)


def _feed(data: bytes, split: int) -> tuple[FakeTransport, Recorder]:
    async def run() -> tuple[FakeTransport, Recorder]:
        recorder = Recorder()
        state = _State(recorder, ServerLimits(), "http", render_protocol_error)
        try:
            protocol = HttpServerProtocol(state)
            transport = FakeTransport()
            protocol.connection_made(transport)  # type: ignore[arg-type]
            for piece in (data[:split], data[split:]):
                if piece and not transport.closing:
                    protocol.data_received(piece)
                    for _ in range(5):
                        await asyncio.sleep(0)
            protocol.eof_received()
            for _ in range(10):
                await asyncio.sleep(0)
            protocol.connection_lost(None)
            await asyncio.sleep(0)
        finally:
            if state.watchdog is not None:
                state.watchdog.cancel()
        return transport, recorder

    return asyncio.run(run())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams, split=st.integers(0, 400))
def test_generated_input_never_crashes_nor_passes_ambiguity(data: bytes, split: int) -> None:
    transport, recorder = _feed(data, min(split, len(data)))
    written = bytes(transport.written)
    # every answer is a well-formed response
    if written:
        assert written.startswith(b"HTTP/1.1 ")
        assert all(
            r.status in (100, 200, 400, 405, 413, 417, 431, 505) for r in parse_responses(written)
        )
    for method, target, _ in recorder.seen:
        assert method in {"GET", "POST", "PUT", "HEAD"}
        assert target.startswith(b"/")
    # an accepted request never carried two framings or a forbidden coding
    lowered = data.lower()
    if b"content-length" in lowered and b"transfer-encoding" in lowered:
        for _, _, body in recorder.seen:
            assert body in (b"", b"abc", b"zz", b"0\r\n", b"ab", b"abc\r\n")


async def test_the_server_keeps_serving_during_a_flood_of_garbage() -> None:
    recorder = Recorder()
    async with running(recorder) as server:
        garbage = [
            b"\x00\xff" * 50,
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\r\n\r\n\r\n",
            b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n",
        ] * 10
        results = await asyncio.gather(
            *(exchange(server.port, g) for g in garbage),
            exchange(server.port, b"GET /good HTTP/1.1\r\nHost: a\r\n\r\n"),
            return_exceptions=True,
        )
    good = results[-1]
    assert isinstance(good, bytes)
    assert good.startswith(b"HTTP/1.1 200")
    assert [t for _, t, _ in recorder.seen] == [b"/good"]

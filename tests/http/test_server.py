"""The server protocol through real sockets with raw bytes: framing, keep-alive, pipelining,
100-continue, HEAD/204/304, limits, timeouts, the last-resort guard and graceful drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from portway.http import Request, Response, ServerLimits
from tests.http.support import echo, exchange, parse_responses, running, send_only, text


async def test_keep_alive_and_pipelining_answer_in_order() -> None:
    order: list[str] = []

    async def handler(request: Request) -> Response:
        # the first request is the slowest: answers must still come in order
        if request.path == "/1":
            await asyncio.sleep(0.05)
        order.append(request.path)
        return text(200, request.path.encode())

    async with running(handler) as server:
        raw = b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(1, 6))
        data = await exchange(server.port, raw)
    bodies = [r.body for r in parse_responses(data)]
    assert bodies == [b"/1", b"/2", b"/3", b"/4", b"/5"]
    assert order == ["/1", "/2", "/3", "/4", "/5"]


async def test_chunked_request_and_streamed_chunked_response() -> None:
    async def handler(request: Request) -> Response:
        body = await request.body.read_all()

        async def chunks() -> AsyncIterator[bytes]:
            for part in (body, b"-", body):
                yield part

        return Response(200, [], chunks())

    async with running(handler) as server:
        data = await exchange(
            server.port,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
    assert b"transfer-encoding: chunked" in data
    (response,) = parse_responses(data)
    assert response.body == b"abcde-abcde"


async def test_content_length_streamed_response() -> None:
    async def handler(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"hello "
            yield b"world"

        return Response(200, [], chunks(), content_length=11)

    async with running(handler) as server:
        data = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    (response,) = parse_responses(data)
    assert response.header(b"content-length") == b"11"
    assert response.body == b"hello world"


async def test_http10_close_delimited_and_keep_alive() -> None:
    async def handler(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"streamed"

        if request.path == "/stream":
            return Response(200, [], chunks())
        return text(200, b"ok")

    async with running(handler) as server:
        data = await exchange(server.port, b"GET /stream HTTP/1.0\r\n\r\n")
        assert data.endswith(b"\r\n\r\nstreamed")
        assert b"transfer-encoding" not in data
        data = await exchange(
            server.port,
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        )
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert b"connection: keep-alive" in data


async def test_head_204_304_have_no_body() -> None:
    async def handler(request: Request) -> Response:
        status = int(request.path[1:])
        return Response(status, [(b"etag", b'"x"')], b"" if status != 200 else b"body")

    async with running(handler) as server:
        data = await exchange(
            server.port,
            b"HEAD /200 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /204 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /304 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /200 HTTP/1.1\r\nHost: a\r\n\r\n",
        )
    heads = data.split(b"HTTP/1.1 ")[1:]
    assert heads[0].startswith(b"200")
    assert b"content-length: 4" in heads[0]
    assert heads[0].endswith(b"\r\n\r\n")  # HEAD: length announced, no body
    assert heads[1].startswith(b"204")
    assert b"content-length" not in heads[1]
    assert heads[2].startswith(b"304")
    assert heads[2].endswith(b"\r\n\r\n")
    assert heads[3].endswith(b"\r\n\r\nbody")


async def test_expect_100_continue_sent_when_the_body_is_read() -> None:
    async with running(echo) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        writer.close()


async def test_expect_100_continue_not_sent_when_refused_early() -> None:
    async def refuse(request: Request) -> Response:
        return text(401, b"no")

    async with running(refuse) as server:
        data = await send_only(
            server.port,
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
    assert data.startswith(b"HTTP/1.1 401")
    assert b"100 Continue" not in data
    assert b"connection: close" in data


async def test_unknown_expectation_is_417() -> None:
    async with running(echo) as server:
        data = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 417")


@pytest.mark.parametrize(
    ("limits", "request_bytes", "status"),
    [
        (
            ServerLimits(max_url_bytes=300),
            b"GET /" + b"a" * 400 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
            414,
        ),
        (
            ServerLimits(max_header_bytes=2048),
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n",
            431,
        ),
        (
            ServerLimits(max_headers=10),
            b"GET / HTTP/1.1\r\nHost: a\r\n"
            + b"".join(b"X-%d: v\r\n" % i for i in range(20))
            + b"\r\n",
            431,
        ),
        (
            ServerLimits(max_body_bytes=100),
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n" + b"x" * 101,
            413,
        ),
        (
            ServerLimits(max_body_bytes=100),
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"40\r\n"
            + b"x" * 64
            + b"\r\n"
            + b"40\r\n"
            + b"x" * 64
            + b"\r\n0\r\n\r\n",
            413,
        ),
    ],
    ids=["url-414", "header-bytes-431", "header-count-431", "content-length-413", "chunked-413"],
)
async def test_limits(limits: ServerLimits, request_bytes: bytes, status: int) -> None:
    async with running(echo, limits) as server:
        data = await exchange(server.port, request_bytes)
    assert data.startswith(b"HTTP/1.1 %d" % status)
    assert b"connection: close" in data


async def test_huge_header_line_sent_in_pieces_is_431_without_buffering_it() -> None:
    async with running(echo, ServerLimits(max_header_bytes=4096, max_url_bytes=1024)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ")
        try:
            for _ in range(200):
                writer.write(b"y" * 4096)
                await writer.drain()
        except ConnectionError:
            pass
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert data.startswith(b"HTTP/1.1 431")


async def test_slow_headers_get_408_and_close() -> None:
    async with running(echo, ServerLimits(header_timeout=0.3)) as server:
        data = await send_only(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert data.startswith(b"HTTP/1.1 408")


async def test_slow_body_gets_408() -> None:
    async with running(echo, ServerLimits(body_timeout=0.3)) as server:
        data = await send_only(
            server.port, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"
        )
    assert data.startswith(b"HTTP/1.1 408")


async def test_idle_keep_alive_connection_is_closed() -> None:
    async with running(echo, ServerLimits(keepalive_timeout=0.3)) as server:
        data = await send_only(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    (response,) = parse_responses(data)
    assert response.status == 200


async def test_max_connections_answers_503() -> None:
    async with running(echo, ServerLimits(max_connections=2)) as server:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        data = await send_only(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 503")
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.05)
        data = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200")


async def test_handler_exception_is_500_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("secret stack detail")
        return text(200, b"fine")

    async with running(broken) as server:
        data = await exchange(server.port, b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 500")
        assert b"secret" not in data
        data = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200")
    assert "secret stack detail" in caplog.text


async def test_failure_after_the_response_started_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def half(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"partial"
            raise RuntimeError("mid-stream")

        return Response(200, [], chunks())

    async with running(half) as server:
        data = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    assert b"partial" in data
    assert not data.endswith(b"0\r\n\r\n")  # no terminating chunk: the client sees a truncation
    assert "mid-stream" in caplog.text


async def test_graceful_drain_finishes_in_flight_requests() -> None:
    started = asyncio.Event()

    async def slow(request: Request) -> Response:
        started.set()
        await asyncio.sleep(0.3)
        return text(200, b"done")

    async with running(slow) as server:
        task = asyncio.create_task(exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        await started.wait()
        await server.close(grace=10)
        data = await task
        assert data.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in data
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", server.port)


async def test_drain_deadline_aborts_stuck_requests() -> None:
    started = asyncio.Event()

    async def stuck(request: Request) -> Response:
        started.set()
        await asyncio.sleep(60)
        return text(200, b"never")

    async with running(stuck) as server:
        task = asyncio.create_task(exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        await started.wait()
        await server.close(grace=0.2)
        assert server.connections == 0
        try:
            data = await task
        except ConnectionError:
            data = b""
        assert not data.startswith(b"HTTP/1.1 200")


async def test_response_header_injection_is_refused() -> None:
    async def inject(request: Request) -> Response:
        return Response(200, [(b"x-evil", b"a\r\nset-cookie: x=1")], b"")

    async with running(inject) as server:
        data = await exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500")
    assert b"set-cookie" not in data

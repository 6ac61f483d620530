"""Chunked HTTP/1.1 trailers: received with the body they end, sent after the body, kept by the
upstream client and through the gateway; framing fields are never accepted as trailers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from portway.http import ConnectionPool, Request, Response
from tests.http.support import exchange, raw_server, running
from tests.worker.support import api, gateway, revision

CHUNKED_WITH_TRAILERS = (
    b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n"
    b"4\r\nbody\r\n0\r\nx-sum: 42\r\nauthorization: Bearer late\r\n\r\n"
)


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_server_reads_request_trailers_and_sends_response_trailers() -> None:
    seen: list[tuple[bytes, list[tuple[bytes, bytes]]]] = []

    async def handler(request: Request) -> Response:
        body = await request.body.read_all()
        seen.append((body, list(request.body.trailers)))
        trailers = [(b"x-checksum", b"abc"), (b"content-length", b"1"), (b"x-bad", b"a\r\nb")]
        return Response(200, [], one_chunk(b"answer"), trailers=trailers)

    async with running(handler) as server:
        data = await exchange(server.port, CHUNKED_WITH_TRAILERS)
    assert seen == [(b"body", [(b"x-sum", b"42"), (b"authorization", b"Bearer late")])]
    assert data.endswith(b"6\r\nanswer\r\n0\r\nx-checksum: abc\r\n\r\n")  # framing fields dropped


async def test_client_keeps_response_trailers() -> None:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx-note: done\r\n\r\n"
        )
        await writer.drain()
        await reader.read()

    async with raw_server(upstream) as port:
        pool = ConnectionPool("127.0.0.1", port)
        try:
            response = await pool.request("GET", b"/", [(b"host", b"a")])
            body = await response.read_all()
        finally:
            await pool.close()
    assert body == b"abc"
    assert response.trailers == [(b"grpc-status", b"0"), (b"x-note", b"done")]


async def test_trailers_cross_the_gateway_both_ways() -> None:
    got: list[list[tuple[bytes, bytes]]] = []

    async def backend(request: Request) -> Response:
        body = await request.body.read_all()
        got.append(list(request.body.trailers))
        return Response(200, [], one_chunk(body.upper()), trailers=[(b"x-answer-sum", b"7")])

    async with running(backend) as upstream:
        rev = revision(api("t", "/", [f"http://127.0.0.1:{upstream.port}"]))
        async with gateway(rev) as gw:
            data = await exchange(gw.port, CHUNKED_WITH_TRAILERS)
    assert got == [[(b"x-sum", b"42")]]  # a credential is not accepted as a trailer downstream
    assert b"\r\n4\r\nBODY\r\n0\r\nx-answer-sum: 7\r\n\r\n" in data


async def test_a_framing_field_in_request_trailers_is_refused() -> None:
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        await request.body.read_all()
        return Response(200, [], b"")

    raw = CHUNKED_WITH_TRAILERS.replace(b"authorization: Bearer late", b"content-length: 9")
    async with running(handler) as server:
        data = await exchange(server.port, raw)
    assert data.startswith(b"HTTP/1.1 400")

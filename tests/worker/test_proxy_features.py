"""Proxy behaviour end to end: headers, error mapping, HEAD/chunked/100-continue, WebSocket
tunnels, keep-alive to backends and the atomic revision swap."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from portway.worker.settings import WorkerSettings
from tests.http.support import exchange, parse_responses, raw_server
from tests.worker.support import api, backends, gateway, revision, seen_header


async def test_hop_by_hop_headers_are_removed_both_ways() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/svc", [b.url]))
        async with gateway(rev) as gw:
            data = await exchange(
                gw.port,
                b"GET /svc/x HTTP/1.1\r\nHost: gw\r\nConnection: X-Secret, close\r\n"
                b"X-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
                b"Proxy-Authorization: Basic eA==\r\nUpgrade: h2c\r\nX-Kept: k\r\n\r\n",
            )
    (response,) = parse_responses(data)
    seen = json.loads(response.body)
    names = {k for k, _ in seen["headers"]}
    for dropped in ("connection", "x-secret", "keep-alive", "te", "proxy-authorization", "upgrade"):
        assert dropped not in names
    assert seen_header(seen, "x-kept") == "k"


async def test_backend_hop_by_hop_headers_are_removed() -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nConnection: X-Back\r\nX-Back: v\r\nKeep-Alive: timeout=5\r\n"
            b"X-Kept: k\r\nContent-Length: 2\r\n\r\nok"
        )
        await writer.drain()
        writer.close()

    async with raw_server(backend) as port:
        rev = revision(api("svc", "/", [f"http://127.0.0.1:{port}"]))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            r = await client.get(f"{gw.url}/")
    assert r.status_code == 200
    assert r.text == "ok"
    assert "x-back" not in r.headers
    assert "keep-alive" not in r.headers
    assert r.headers["x-kept"] == "k"


async def test_forwarded_headers_trusted_only_from_configured_proxies() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        incoming = {
            "X-Forwarded-For": "1.2.3.4",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "public.example",
            "Via": "1.1 lb",
        }
        trusted = WorkerSettings(host="127.0.0.1", port=0, trusted_proxies=["127.0.0.0/8"])
        async with gateway(rev, settings=trusted) as gw, httpx.AsyncClient() as client:
            seen = (await client.get(f"{gw.url}/", headers=incoming)).json()
        assert seen_header(seen, "x-forwarded-for") == "1.2.3.4, 127.0.0.1"
        assert seen_header(seen, "x-forwarded-proto") == "https"
        assert seen_header(seen, "x-forwarded-host") == "public.example"
        assert seen_header(seen, "via") == "1.1 lb, 1.1 portway"
        untrusted = WorkerSettings(host="127.0.0.1", port=0, trusted_proxies=["10.0.0.0/8"])
        async with gateway(rev, settings=untrusted) as gw, httpx.AsyncClient() as client:
            seen = (await client.get(f"{gw.url}/", headers=incoming)).json()
        assert seen_header(seen, "x-forwarded-for") == "127.0.0.1"
        assert seen_header(seen, "x-forwarded-proto") == "http"
        assert seen_header(seen, "x-forwarded-host") == f"127.0.0.1:{gw.port}"


async def test_invalid_incoming_correlation_id_is_replaced() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            r = await client.get(f"{gw.url}/", headers={"X-Correlation-ID": "bad id!" * 30})
    cid = r.headers["x-correlation-id"]
    assert len(cid) == 32
    assert seen_header(r.json(), "x-correlation-id") == cid


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _error(gw_url: str, path: str = "/") -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(gw_url + path)


async def test_connection_refused_is_502() -> None:
    rev = revision(api("svc", "/", [f"http://127.0.0.1:{_unused_port()}"]))
    async with gateway(rev) as gw:
        r = await _error(gw.url)
    assert r.status_code == 502
    body = r.json()
    assert body["error"] == "bad_gateway"
    assert body["correlation_id"] == r.headers["x-correlation-id"]
    assert set(body) == {"error", "message", "correlation_id"}


async def test_invalid_response_is_502() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        writer.close()

    async with raw_server(garbage) as port:
        rev = revision(api("svc", "/", [f"http://127.0.0.1:{port}"], connection={"retries": 0}))
        async with gateway(rev) as gw:
            r = await _error(gw.url)
    assert r.status_code == 502


async def test_read_timeout_is_504() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)
        writer.close()

    async with raw_server(silent) as port:
        rev = revision(
            api(
                "svc",
                "/",
                [f"http://127.0.0.1:{port}"],
                connection={"read_timeout": 0.3, "retries": 0},
            )
        )
        async with gateway(rev) as gw:
            r = await _error(gw.url)
    assert r.status_code == 504
    assert r.json()["error"] == "gateway_timeout"


async def test_maintenance_is_503_without_calling_the_backend() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url], maintenance=True))
        async with gateway(rev) as gw:
            r = await _error(gw.url)
    assert r.status_code == 503
    assert r.json()["error"] == "maintenance"
    assert b.hits() == 0


async def test_no_worker_configuration_is_503_and_control_prefix_is_reserved() -> None:
    async with gateway() as gw:
        r = await _error(gw.url, "/anything")
        assert r.status_code == 503
        r = await _error(gw.url, "/_portway/health")
        assert r.status_code == 404


async def test_control_handler_gets_reserved_paths() -> None:
    from portway.http import Request, Response

    async def control(request: Request) -> Response:
        return Response(200, [], b"control " + request.target)

    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        async with gateway(rev, control=control) as gw:
            r = await _error(gw.url, "/_portway/status")
            assert r.text == "control /_portway/status"
            r = await _error(gw.url, "/_portwayx")
            assert r.status_code == 200
            assert r.json()["backend"] == "b"


async def test_head_and_keep_alive_after_it() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        async with gateway(rev) as gw:
            data = await exchange(
                gw.port,
                b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n",
            )
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: " in head
    assert body.startswith(b"HTTP/1.1 200")
    assert b'"target": "/y"' in body


async def test_chunked_both_ways_and_large_stream() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        async with gateway(rev) as gw:
            data = await exchange(
                gw.port,
                b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            )
            (response,) = parse_responses(data)
            assert json.loads(response.body)["body_length"] == 11
            assert b.bodies[-1] == b"hello world"
            async with httpx.AsyncClient() as client:
                r = await client.get(f"{gw.url}/stream/{5 * 1024 * 1024 + 7}")
    assert r.status_code == 200
    assert r.headers["transfer-encoding"] == "chunked"
    assert len(r.content) == 5 * 1024 * 1024 + 7


async def test_expect_100_continue_through_the_gateway() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        async with gateway(rev) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(
                b"PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim.startswith(b"HTTP/1.1 100")
            writer.write(b"data")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            writer.close()
    assert b.bodies == [b"data"]
    assert b.seen[0].header(b"expect") is None


async def test_upstream_connections_are_kept_alive() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            for _ in range(20):
                assert (await client.get(f"{gw.url}/x")).status_code == 200
            assert b.server is not None
            assert b.server.connections == 1


async def test_websocket_is_tunnelled() -> None:
    from portway.http import Request, Response, Stream, serve

    async def ws_backend(request: Request) -> Response:
        assert request.upgrade == b"websocket"
        key = request.header(b"sec-websocket-key") or b""

        async def tunnel(stream: Stream) -> None:
            while data := await stream.read():
                await stream.write(data)

        return Response(
            101,
            [
                (b"connection", b"Upgrade"),
                (b"upgrade", b"websocket"),
                (b"sec-websocket-accept", b"accept-" + key),
            ],
            tunnel=tunnel,
        )

    upstream = await serve(ws_backend, "127.0.0.1", 0)
    try:
        rev = revision(api("svc", "/ws", [f"http://127.0.0.1:{upstream.port}"]))
        async with gateway(rev) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(
                b"GET /ws/chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\nSec-WebSocket-Key: k1\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101")
            assert b"sec-websocket-accept: accept-k1" in head.lower()
            assert b"upgrade: websocket" in head.lower()
            for message in (b"one", b"two" * 10000):
                writer.write(message)
                expected = message
                got = b""
                while len(got) < len(expected):
                    data = await asyncio.wait_for(reader.read(65536), 5)
                    assert data, "tunnel closed"
                    got += data
                assert got == expected
            writer.close()
    finally:
        await upstream.close(1)


async def test_swap_under_load_fails_no_request_and_closes_the_old_runtime() -> None:
    async with backends("one", "two") as (one, two):
        rev1 = revision(api("svc", "/", [one.url]), number=1)
        rev2 = revision(api("svc", "/", [two.url]), number=2)
        async with gateway(rev1) as gw:
            statuses: list[int] = []
            names: list[str] = []
            stop = asyncio.Event()

            async def client_loop() -> None:
                async with httpx.AsyncClient() as client:
                    while not stop.is_set():
                        r = await client.post(f"{gw.url}/x", content=b"p" * 1000)
                        statuses.append(r.status_code)
                        names.append(r.json()["backend"])

            clients = [asyncio.create_task(client_loop()) for _ in range(8)]
            runtimes = []
            for i in range(20):
                await asyncio.sleep(0.02)
                runtimes.append(await gw.deploy(rev2 if i % 2 == 0 else rev1))
            stop.set()
            await asyncio.gather(*clients)
            for runtime in runtimes[:-1]:
                assert await runtime.wait_idle(5)
            await asyncio.sleep(0.1)
            assert all(r.closed for r in runtimes[:-1])
            assert not runtimes[-1].closed
    assert statuses
    assert set(statuses) == {200}
    assert set(names) == {"one", "two"}


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_client_disconnect_does_not_disturb_others(method: str) -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        async with gateway(rev) as gw:
            _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(
                f"{method} /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n".encode()
            )
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.transport.abort()
            async with httpx.AsyncClient() as client:
                r = await client.get(f"{gw.url}/fine")
            assert r.status_code == 200

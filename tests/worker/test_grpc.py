"""gRPC through a real worker: a grpcio server behind it, a grpcio client in front of it.

The worker speaks h2c to the client (``http2.enabled``) and to the backend (``http2: true`` on the
backend address). Messages are raw bytes (no protobuf needed: grpcio passes bytes through when a
method has no serializers)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from portway.http import H2ConnectionPool, UpstreamResponse
from portway.stores.traffic import TrafficRecord
from portway.worker.process_stores import open_worker_stores
from portway.worker.settings import WorkerSettings
from tests.worker.support import Gateway, api, gateway, revision

SERVICE = "test.Echo"


class EchoService:
    """What the backend's methods saw, for assertions."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.cancelled = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        self.server: grpc.Server | None = None

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.metadata.append(dict(context.invocation_metadata()))
        context.set_trailing_metadata((("x-served-by", "echo"),))
        return b"echo:" + request

    def server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        count = int(request)
        for i in range(count):
            yield b"%d:" % i + b"x" * 1000

    def client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        total = 0
        parts = 0
        for message in requests:
            total += len(message)
            parts += 1
        return b"%d messages, %d bytes" % (parts, total)

    def bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for message in requests:
            yield message.upper()

    def fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_trailing_metadata((("x-reason", "missing"),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: caf\u00e9")
        raise AssertionError("abort returns never")

    def slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and context.is_active():
            time.sleep(0.02)
        if not context.is_active():
            self.cancelled.set()
        return b"late"

    def hold(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.held.set()
        self.release.wait(10)
        return b"released"

    def handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
                "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
                "Hold": grpc.unary_unary_rpc_method_handler(self.hold),
            },
        )


@pytest.fixture
def echo() -> Iterator[tuple[EchoService, int]]:
    service = EchoService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((service.handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    service.server = server
    server.start()
    try:
        yield service, port
    finally:
        server.stop(0)


def settings() -> WorkerSettings:
    return WorkerSettings.model_validate(
        {"host": "127.0.0.1", "port": 0, "processes": 1, "http2": {"enabled": True}}
    )


def grpc_api(backend_port: int, **fields: Any) -> Any:
    return api(
        "grpc",
        f"/{SERVICE}",
        [{"url": f"http://127.0.0.1:{backend_port}", "http2": True}],
        strip_base_path=False,
        **fields,
    )


async def call(gw: Gateway, kind: str, method: str, request: Any, **kwargs: Any) -> Any:
    """One grpcio call through the gateway, in a thread (grpcio's sync API blocks)."""

    def run() -> Any:
        with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
            stub = getattr(channel, kind)(f"/{SERVICE}/{method}")
            result = stub(request, **kwargs)
            if kind in ("unary_stream", "stream_stream"):
                return list(result)
            return result

    return await asyncio.to_thread(run)


async def raw_call(
    gw: Gateway, method: str, headers: list[tuple[bytes, bytes]]
) -> tuple[UpstreamResponse, bytes]:
    """One call with Portway's own HTTP/2 client: the answer as it is on the wire (and no
    client-side deadline)."""
    pool = H2ConnectionPool("127.0.0.1", gw.port)
    try:
        raw = await pool.request(
            "POST",
            f"/{SERVICE}/{method}".encode(),
            [(b"host", b"gw"), (b"content-type", b"application/grpc"), *headers],
            b"\x00\x00\x00\x00\x01x",  # one uncompressed message of one byte
            total_timeout=10,
        )
        return raw, await raw.read_all()
    finally:
        await pool.close()


async def test_unary_call_with_metadata_and_trailers(echo: tuple[EchoService, int]) -> None:
    service, port = echo
    async with gateway(revision(grpc_api(port)), settings=settings()) as gw:

        def run() -> tuple[bytes, Any]:
            with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
                stub = channel.unary_unary(f"/{SERVICE}/Unary")
                answer, rpc = stub.with_call(b"hello", metadata=(("x-client", "c1"),), timeout=10)
                return answer, rpc.trailing_metadata()

        answer, trailing = await asyncio.to_thread(run)
    assert answer == b"echo:hello"
    assert ("x-served-by", "echo") in list(trailing)
    assert service.metadata[0]["x-client"] == "c1"
    assert "127.0.0.1" in service.metadata[0]["x-forwarded-for"]


async def test_server_streaming(echo: tuple[EchoService, int]) -> None:
    _, port = echo
    async with gateway(revision(grpc_api(port)), settings=settings()) as gw:
        messages = await call(gw, "unary_stream", "ServerStream", b"500", timeout=30)
    assert len(messages) == 500
    assert messages[0].startswith(b"0:")
    assert messages[-1].startswith(b"499:")


async def test_client_streaming_beyond_the_flow_control_windows(
    echo: tuple[EchoService, int],
) -> None:
    _, port = echo
    chunk = b"y" * 64 * 1024
    async with gateway(revision(grpc_api(port)), settings=settings()) as gw:
        # 64 MiB: many times every window on both hops, so backpressure must work to get through
        answer = await call(gw, "stream_unary", "ClientStream", iter([chunk] * 1024), timeout=60)
    assert answer == b"1024 messages, %d bytes" % (1024 * len(chunk))


async def test_bidirectional_streaming_ping_pong(echo: tuple[EchoService, int]) -> None:
    _, port = echo
    async with gateway(revision(grpc_api(port)), settings=settings()) as gw:

        def run() -> list[bytes]:
            # the next message is sent only after the answer to the previous one arrived: the
            # worker must relay each message at once in both directions
            import queue

            outbox: queue.Queue[bytes | None] = queue.Queue()
            outbox.put(b"m0")

            def requests() -> Iterator[bytes]:
                while (item := outbox.get()) is not None:
                    yield item

            answers: list[bytes] = []
            with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
                stub = channel.stream_stream(f"/{SERVICE}/Bidi")
                for answer in stub(requests(), timeout=30):
                    answers.append(answer)
                    outbox.put(b"m%d" % len(answers) if len(answers) < 20 else None)
            return answers

        answers = await asyncio.to_thread(run)
    assert answers == [b"M%d" % i for i in range(20)]


async def test_backend_status_and_message_reach_the_client(echo: tuple[EchoService, int]) -> None:
    _, port = echo
    async with gateway(revision(grpc_api(port)), settings=settings()) as gw:
        with pytest.raises(grpc.RpcError) as info:
            await call(gw, "unary_unary", "Fail", b"", timeout=10)
    error: Any = info.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no such thing: caf\u00e9"
    assert ("x-reason", "missing") in list(error.trailing_metadata())


async def test_policy_denial_is_a_grpc_status_not_a_json_body(
    echo: tuple[EchoService, int], tmp_path: Any
) -> None:
    service, port = echo
    deny = {"request": [{"name": "deny", "type": "ip_filter", "config": {"deny": ["127.0.0.0/8"]}}]}
    stores = await open_worker_stores("test", "local://", None, tmp_path / "spool")
    try:
        rev = revision(grpc_api(port, policies=deny))
        async with gateway(rev, settings=settings(), pipelines=stores.pipelines) as gw:
            records: list[TrafficRecord] = []
            gw.handler.traffic = records.append
            with pytest.raises(grpc.RpcError) as info:
                await call(gw, "unary_unary", "Unary", b"x", timeout=10)
            # and the raw answer is trailers-only: HTTP 200, the status in the only header block
            raw, body = await raw_call(gw, "Unary", [])
    finally:
        await stores.close()
    error: Any = info.value
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert service.metadata == []
    assert raw.status == 200
    assert raw.header(b"content-type") == b"application/grpc"
    assert raw.header(b"grpc-status") == b"7"
    assert raw.header(b"x-correlation-id")
    assert body == b""
    assert raw.trailers == []
    # logs and records count the call as denied, not as the 200 that carries the gRPC status
    assert [r["status"] for r in records] == [403, 403]
    assert all(r.get("error") for r in records)


async def test_no_route_is_unimplemented(echo: tuple[EchoService, int]) -> None:
    _, port = echo
    async with gateway(revision(grpc_api(port)), settings=settings()) as gw:

        def run() -> Any:
            with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
                return channel.unary_unary("/other.Service/Call")(b"", timeout=10)

        with pytest.raises(grpc.RpcError) as info:
            await asyncio.to_thread(run)
    error: Any = info.value
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_unreachable_backend_is_unavailable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    async with gateway(revision(grpc_api(dead)), settings=settings()) as gw:
        with pytest.raises(grpc.RpcError) as info:
            await call(gw, "unary_unary", "Unary", b"x", timeout=10)
    error: Any = info.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_grpc_timeout_is_enforced_by_the_worker(echo: tuple[EchoService, int]) -> None:
    """A client that does not give up itself still gets DEADLINE_EXCEEDED from the worker at the
    deadline it announced, and the backend sees the call cancelled."""
    service, port = echo
    async with gateway(revision(grpc_api(port)), settings=settings()) as gw:
        raw, _ = await raw_call(gw, "Slow", [(b"grpc-timeout", b"300m")])
        assert raw.status == 200
        assert raw.header(b"grpc-status") == b"4"
        # the backend got the deadline too and its call ended
        assert await asyncio.to_thread(service.cancelled.wait, 10)


async def test_malformed_grpc_timeout_is_invalid_argument(echo: tuple[EchoService, int]) -> None:
    _, port = echo
    async with gateway(revision(grpc_api(port)), settings=settings()) as gw:
        raw, _ = await raw_call(gw, "Unary", [(b"grpc-timeout", b"soon")])
    assert raw.header(b"grpc-status") == b"3"
    assert b"grpc-timeout" in (raw.header(b"grpc-message") or b"")


async def test_streaming_through_a_policy_pipeline(
    echo: tuple[EchoService, int], tmp_path: Any
) -> None:
    """An allowing pipeline leaves streaming calls intact (headers policy, body untouched)."""
    _, port = echo
    allow = {
        "request": [{"name": "allow", "type": "ip_filter", "config": {"allow": ["127.0.0.0/8"]}}]
    }
    stores = await open_worker_stores("test", "local://", None, tmp_path / "spool")
    try:
        rev = revision(grpc_api(port, policies=allow))
        async with gateway(rev, settings=settings(), pipelines=stores.pipelines) as gw:
            messages = await call(gw, "unary_stream", "ServerStream", b"50", timeout=30)
            answer = await call(
                gw, "stream_unary", "ClientStream", iter([b"a" * 10] * 30), timeout=30
            )
    finally:
        await stores.close()
    assert len(messages) == 50
    assert answer == b"30 messages, 300 bytes"


async def test_a_graceful_backend_stop_finishes_the_call_in_flight(
    echo: tuple[EchoService, int],
) -> None:
    """grpcio's stop(grace) sends GOAWAY and finishes its running calls: the worker relays the
    answer of the call in flight instead of failing it."""
    service, port = echo
    assert service.server is not None
    async with gateway(revision(grpc_api(port)), settings=settings()) as gw:
        pending = asyncio.create_task(call(gw, "unary_unary", "Hold", b"", timeout=20))
        assert await asyncio.to_thread(service.held.wait, 10)
        stopped = service.server.stop(grace=10)
        await asyncio.sleep(0.5)  # the GOAWAY reaches the worker while the call runs
        service.release.set()
        assert await pending == b"released"
        assert await asyncio.to_thread(stopped.wait, 10)

"""Building revisions and a running gateway for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from portway.compile.routes import PipelineFactory, no_pipeline
from portway.config.models import ApiProxy
from portway.config.revision import DeployedApi, EnvironmentRevision
from portway.http import Handler, Request, Response, Server, serve
from portway.worker.errors import render_protocol_error
from portway.worker.proxy import GatewayHandler
from portway.worker.runtime import Runtime, compile_runtime
from portway.worker.settings import WorkerSettings, h2_limits, server_limits
from portway.worker.traffic import TrafficShared


def api(
    name: str, base_path: str, backends: Sequence[str | dict[str, Any]], **fields: Any
) -> ApiProxy:
    return ApiProxy.model_validate(
        {
            "name": name,
            "base_path": base_path,
            "backends": [{"url": b} if isinstance(b, str) else b for b in backends],
            **fields,
        }
    )


def revision(*apis: ApiProxy, number: int = 1) -> EnvironmentRevision:
    return EnvironmentRevision(
        environment="test",
        revision=number,
        created_at=datetime.now(UTC),
        apis=[DeployedApi(api=a, api_revision=1) for a in apis],
    )


class Gateway:
    def __init__(self, handler: GatewayHandler, server: Server, settings: WorkerSettings) -> None:
        self.handler = handler
        self.server = server
        self.settings = settings
        self.shared = TrafficShared()
        """The sticky-cookie key and mirror counters, kept across ``deploy`` as a worker does."""

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def deploy(
        self, rev: EnvironmentRevision, pipelines: PipelineFactory = no_pipeline
    ) -> Runtime:
        runtime = compile_runtime(rev, self.settings, pipelines, self.shared)
        await runtime.start()
        self.handler.swap(runtime)
        return runtime


@contextlib.asynccontextmanager
async def gateway(
    rev: EnvironmentRevision | None = None,
    *,
    settings: WorkerSettings | None = None,
    control: Handler | None = None,
    pipelines: PipelineFactory = no_pipeline,
) -> AsyncIterator[Gateway]:
    settings = settings or WorkerSettings(host="127.0.0.1", port=0, processes=1)
    handler = GatewayHandler(control=control)
    server = await serve(
        handler,
        "127.0.0.1",
        0,
        limits=server_limits(settings.limits),
        render_error=render_protocol_error,
        http2=h2_limits(settings.http2),
    )
    gw = Gateway(handler, server, settings)
    if rev is not None:
        await gw.deploy(rev, pipelines)
    try:
        yield gw
    finally:
        await server.close(2.0)
        await handler.close(2.0)


class Backend:
    """A real upstream (``portway.http`` server) with a few behaviours chosen by path:
    ``/status/N``, ``/slow``, ``/stream/N`` (N bytes, chunked), ``/health``; anything else echoes
    the request as JSON. It counts the requests it saw."""

    def __init__(self, name: str = "backend") -> None:
        self.name = name
        self.seen: list[Request] = []
        self.bodies: list[bytes] = []
        self.health_status = 200
        self.status = 200
        self.server: Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, path_prefix: str = "/") -> int:
        return sum(1 for r in self.seen if r.path.startswith(path_prefix))

    async def __call__(self, request: Request) -> Response:
        if request.path == "/health":
            return Response(self.health_status, [], b"health")
        self.seen.append(request)
        body = await request.body.read_all()
        self.bodies.append(body)
        if request.path.startswith("/status/"):
            return Response(int(request.path.split("/")[2]), [], b"status")
        if request.path == "/slow":
            await asyncio.sleep(2)
        if request.path.startswith("/stream/"):
            size = int(request.path.split("/")[2])

            async def chunks() -> AsyncIterator[bytes]:
                block = b"s" * 65536
                left = size
                while left > 0:
                    yield block[: min(left, len(block))]
                    left -= len(block)

            return Response(200, [(b"x-backend", self.name.encode())], chunks())
        payload = {
            "backend": self.name,
            "method": request.method,
            "target": request.target.decode(),
            "headers": [[k.decode(), v.decode("latin-1")] for k, v in request.headers],
            "body_length": len(body),
        }
        return Response(
            self.status,
            [(b"content-type", b"application/json"), (b"x-backend", self.name.encode())],
            json.dumps(payload).encode(),
        )


@contextlib.asynccontextmanager
async def backends(*names: str) -> AsyncIterator[list[Backend]]:
    started: list[Backend] = []
    try:
        for name in names:
            backend = Backend(name)
            backend.server = await serve(backend, "127.0.0.1", 0)
            started.append(backend)
        yield started
    finally:
        for backend in started:
            if backend.server is not None:
                await backend.server.close(1.0)


def seen_header(payload: dict[str, Any], name: str) -> str | None:
    for key, value in payload["headers"]:
        if key == name:
            return str(value)
    return None

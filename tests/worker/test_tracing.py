"""OpenTelemetry tracing through a real worker and a real backend, exported over OTLP/HTTP to a
test receiver that decodes the real protobuf (opentelemetry-proto)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from portway.config import log_format
from portway.http import Request, Response, Server, serve
from portway.stores.traffic import TrafficRecord
from portway.worker.process_stores import open_worker_stores
from portway.worker.settings import WorkerSettings
from portway.worker.tracing import Tracing
from tests.support.logs import lines_of, restore_logging
from tests.worker.support import api, backends, gateway, revision, seen_header

__all__ = ["restore_logging"]  # the fixture

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP traces endpoint: keeps every decoded span."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.content_types: set[str] = set()
        self.server: Server | None = None

    async def __call__(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/v1/traces":
            return Response(404, [], b"")
        self.content_types.add((request.header(b"content-type") or b"").decode())
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body.read_all())
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(scope.spans)
        return Response(200, [(b"content-type", b"application/x-protobuf")], b"")

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/v1/traces"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    found.server = await serve(found, "127.0.0.1", 0)
    yield found
    await found.server.close(1.0)


def attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = (
            [v.string_value for v in value.array_value.values]
            if kind == "array_value"
            else getattr(value, kind)
        )
    return out


async def test_traceparent_is_continued_propagated_and_exported(
    receiver: Receiver, capfd: pytest.CaptureFixture[str], restore_logging: None, tmp_path: Path
) -> None:
    log_format.configure("info", "json")
    policies = {
        "request": [{"name": "limit", "type": "ip_filter", "config": {"allow": ["127.0.0.1/32"]}}],
        "response": [
            {
                "name": "stamp",
                "type": "rewrite",
                "config": {"response_headers": {"set": {"X-Stamp": "1"}}},
            }
        ],
    }
    tracing = await asyncio.to_thread(Tracing, receiver.url, "w-t", "test")
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url], policies=policies))
        stores = await open_worker_stores("test", "local://", None, tmp_path / "spool")
        try:
            async with gateway(rev, pipelines=stores.pipelines) as gw:
                gw.handler.tracing = tracing

                def logged(record: TrafficRecord) -> None:
                    logging.getLogger("portway.test").warning("recorded %s", record["id"])

                gw.handler.traffic = logged
                async with httpx.AsyncClient() as client:
                    answer = await client.get(
                        gw.url + "/items",
                        headers={
                            "traceparent": f"00-{TRACE}-{PARENT}-01",
                            "X-Correlation-ID": "cid-traced",
                        },
                    )
                    fresh = await client.get(gw.url + "/other")  # no traceparent: a new trace
        finally:
            await stores.close()
    assert answer.status_code == fresh.status_code == 200
    assert await asyncio.to_thread(tracing.flush)
    await asyncio.to_thread(tracing.close)
    assert receiver.content_types == {"application/x-protobuf"}
    ours = [s for s in receiver.spans if s.trace_id.hex() == TRACE]
    by_name = {s.name: s for s in ours}
    assert set(by_name) == {"GET gateway", "pipeline.request", "pipeline.response", "backend"}
    server = by_name["GET gateway"]
    assert server.parent_span_id.hex() == PARENT  # continues the client's trace
    for name in ("pipeline.request", "pipeline.response", "backend"):
        assert by_name[name].parent_span_id == server.span_id
    assert attributes(server)["portway.correlation_id"] == "cid-traced"  # the client's
    assert attributes(server)["portway.id"] != "cid-traced"  # the record's, the worker's own
    assert attributes(server)["http.response.status_code"] == 200
    assert attributes(by_name["pipeline.request"])["portway.policies"] == ["limit"]
    assert attributes(by_name["backend"])["portway.backend_status"] == 200
    # the backend saw the backend span as its parent, in the same trace
    sent = seen_header(answer.json(), "traceparent")
    assert sent == f"00-{TRACE}-{by_name['backend'].span_id.hex()}-01"
    other = [s for s in receiver.spans if s.trace_id.hex() != TRACE]
    assert {s.name for s in other} >= {"GET gateway", "backend"}
    assert all(len(s.trace_id) == 16 for s in other)
    # the log lines of each request carry its trace id
    lines = [x for x in lines_of(capfd.readouterr().err) if x["logger"] == "portway.test"]
    assert len(lines) == 2
    assert lines[0]["correlation_id"] == "cid-traced"
    assert lines[0]["trace_id"] == TRACE
    assert lines[1]["trace_id"] == other[0].trace_id.hex()


async def test_without_tracing_a_traceparent_passes_through_unchanged() -> None:
    sent = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
    async with (
        backends("b") as (b,),
        gateway(revision(api("svc", "/", [b.url]))) as gw,
        httpx.AsyncClient() as client,
    ):
        answer = await client.get(gw.url + "/x", headers=sent)
    assert seen_header(answer.json(), "traceparent") == f"00-{TRACE}-{PARENT}-01"


@pytest.mark.parametrize("url", ["ftp://collector/v1/traces", "collector:4318", "http:// x"])
def test_a_tracing_endpoint_must_be_an_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="tracing_endpoint"):
        WorkerSettings(host="127.0.0.1", port=0, processes=1, tracing_endpoint=url)

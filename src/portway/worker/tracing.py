"""OpenTelemetry tracing of the worker (opentelemetry-sdk), off unless ``tracing_endpoint`` is set.

With an OTLP/HTTP endpoint (``http://collector:4318/v1/traces``), each proxied request gets:

- a server span ``{METHOD} {api}``, the child of the client's W3C ``traceparent`` when one came
  (a malformed one is ignored: a new trace starts), with the correlation id, API, status and
  consumer as attributes;
- ``pipeline.request`` / ``pipeline.response`` spans for the time spent in policy hooks, with
  the policies that ran and the one that denied;
- a ``backend`` client span from the first try to the end of the response, whose context is
  sent to the backend as ``traceparent`` (replacing the client's), with retries, failovers,
  the address and its status.

Spans are exported in batches by the SDK's background thread. The trace id is in every log line
the request causes (``portway.config.log_format``). Without an endpoint nothing of this runs, and
a client's ``traceparent`` passes to the backend unchanged like any other header.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from portway.config.log_format import TRACE_ID
from portway.http import Headers, Request

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from portway.worker.traffic_record import RequestNote

_TRACE_HEADERS = (b"traceparent", b"tracestate")
_SERVER_SPAN_FIELDS = (
    "id",
    "correlation_id",
    "api",
    "environment",
    "consumer",
    "error",
    "revision",
    "worker",
)
"""The traffic record's fields a request's server span carries (as ``portway.FIELD``)."""


class Tracing:
    def __init__(self, endpoint: str, worker_id: str, environment: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = TracerProvider(
            resource=Resource.create(
                {
                    "service.name": "portway-worker",
                    "service.instance.id": worker_id,
                    "deployment.environment": environment,
                }
            )
        )
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self.tracer = self._provider.get_tracer("portway.worker")
        self._propagator = TraceContextTextMapPropagator()

    def start(self, request: Request, started: float) -> Span:
        """The request's server span (``started``: epoch seconds of its arrival)."""
        from opentelemetry.trace import SpanKind

        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in request.headers
            if name in _TRACE_HEADERS
        }
        context = self._propagator.extract(carrier) if carrier else None
        span = self.tracer.start_span(
            f"{request.method} gateway",
            context=context,
            kind=SpanKind.SERVER,
            start_time=int(started * 1e9),
            attributes={"http.request.method": request.method, "url.path": request.path},
        )
        TRACE_ID.set(format(span.get_span_context().trace_id, "032x"))
        return span

    def backend(self, server: Span, headers: Headers) -> Span:
        """Start the backend span and put its context in ``headers`` (in place)."""
        from opentelemetry.trace import SpanKind, set_span_in_context

        span = self.tracer.start_span(
            "backend", context=set_span_in_context(server), kind=SpanKind.CLIENT
        )
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=set_span_in_context(span))
        headers[:] = [(n, v) for n, v in headers if n not in _TRACE_HEADERS]
        for name, value in carrier.items():
            headers.append((name.encode("latin-1"), value.encode("latin-1")))
        return span

    def finish(self, note: RequestNote, record: dict[str, Any]) -> None:
        """End the request's spans from what its traffic record says."""
        from opentelemetry.trace import Status, StatusCode, set_span_in_context

        server = note.span
        if server is None:
            return
        now_ns = time.time_ns()
        offset = note.started - note.monotonic  # monotonic seconds -> epoch seconds
        context = set_span_in_context(server)
        for name, began, ended in note.hooks or ():
            span = self.tracer.start_span(
                name, context=context, start_time=int((began + offset) * 1e9)
            )
            if record.get("policies"):
                span.set_attribute("portway.policies", list(record["policies"]))
            if record.get("denied_by"):
                span.set_attribute("portway.denied_by", str(record["denied_by"]))
            span.end(end_time=int((ended + offset) * 1e9))
        backend = note.backend_span
        if backend is not None:
            for key in ("retries", "failovers", "backend", "backend_status", "circuit"):
                if key in record:
                    backend.set_attribute(f"portway.{key}", record[key])
            if record.get("backend_status", 0) >= 500 or "backend_status" not in record:
                backend.set_status(Status(StatusCode.ERROR))
            backend.end(end_time=now_ns)
        for key in _SERVER_SPAN_FIELDS:
            if key in record:
                server.set_attribute(f"portway.{key}", record[key])
        status = int(record.get("status", 0))
        server.set_attribute("http.response.status_code", status)
        if status >= 500:
            server.set_status(Status(StatusCode.ERROR))
        server.end(end_time=now_ns)

    def flush(self, timeout_ms: int = 10_000) -> bool:
        return self._provider.force_flush(timeout_ms)

    def close(self) -> None:
        self._provider.shutdown()

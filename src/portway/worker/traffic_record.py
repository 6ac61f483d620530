"""The traffic record of one request: what happened to it, built once when its response is sent.

The proxy fills a ``RequestNote`` as the request goes (only when a traffic log is configured, so
a worker without one does no bookkeeping); ``traffic_record`` turns it into one flat dict.
The four regions of an exchange and what each records:

- request from the client: ``method``, ``path``, ``client_ip``, ``forwarded_for`` (the
  ``X-Forwarded-For`` that arrived), ``request_bytes`` (body bytes received);
- request to the backend: ``backend`` (the address that answered), ``backend_path`` (the target
  sent, query included), ``backend_request_bytes``, ``retries`` (tries after the first),
  ``failovers`` (tries on failover addresses), ``circuit`` (that address's breaker state);
- response from the backend: ``backend_status``, ``backend_response_bytes`` (body bytes read),
  ``connect_ms`` (0 on a kept-alive connection), ``first_byte_ms`` (last try sent → response
  headers), ``backend_ms`` (first try → response sent: the backend's body streams through);
- response to the client: ``status``, ``response_bytes`` (bytes written), ``total_ms`` (request
  arrival → response sent), ``error`` (the gateway's error code, or ``client_disconnected``).

Plus which: ``id`` (the worker's, unique per request) and ``correlation_id`` (the client's
``X-Correlation-ID`` when valid, else the id); who and where: ``environment``, ``revision``,
``worker``, ``project``, ``api``, ``endpoint``, ``consumer``, ``credential`` (a credential id,
never the secret); and the pipeline:
``pipeline_ms`` (time in policy hooks), ``policies`` (those that ran), ``denied_by``, ``shadow``
(verdicts of shadow-mode policies), ``variables`` (what ``log`` policies chose, masked by the
API's capture rules).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from portway.http import Headers, Outcome, Request, Response, UpstreamResponse
from portway.policies.contract import PolicyContext
from portway.stores.traffic import TrafficRecord
from portway.worker.capture import CaptureRules
from portway.worker.errors import new_correlation_id
from portway.worker.upstream import SendTrace

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from portway.worker.runtime import Runtime
    from portway.worker.tracing import Tracing


class RequestNote:
    """What the proxy learnt about one request, for its traffic record (only when logging)."""

    __slots__ = (
        "api",
        "backend",
        "backend_body",
        "backend_headers",
        "backend_request_bytes",
        "backend_response_body",
        "backend_span",
        "backend_target",
        "capture",
        "client_body",
        "client_headers",
        "correlation_id",
        "ctx",
        "endpoint",
        "error",
        "hooks",
        "monotonic",
        "pipeline_s",
        "project",
        "record_id",
        "send",
        "span",
        "started",
        "tracing",
        "upstream",
        "worker",
    )

    def __init__(self, started: float, monotonic: float, worker: str) -> None:
        self.started = started
        self.monotonic = monotonic
        self.worker = worker
        self.correlation_id = ""
        """The request's correlation id: the client's (when valid) or the gateway's."""
        self.record_id = ""
        """The record's id, unique per request: the correlation id when the gateway made it."""
        self.api: str | None = None
        self.project: str | None = None
        self.endpoint: str | None = None
        self.backend: str | None = None
        self.backend_target: bytes | None = None
        self.backend_request_bytes: int | None = None
        """Set when the policies replaced the body; otherwise what the client sent."""
        self.ctx: PolicyContext | None = None
        self.send = SendTrace()
        self.upstream: UpstreamResponse | None = None
        self.pipeline_s = 0.0
        self.capture: CaptureRules | None = None
        """The API's capture rules, once the request is routed."""
        self.client_headers: Headers | None = None
        self.client_body: bytes | None = None
        self.backend_headers: Headers | None = None
        self.backend_body: bytes | None = None
        self.backend_response_body: bytes | None = None
        self.error: str | None = None
        self.tracing: Tracing | None = None
        self.span: Span | None = None
        """The request's server span (tracing on)."""
        self.backend_span: Span | None = None
        self.hooks: list[tuple[str, float, float]] | None = None
        """Policy hook phases as (span name, monotonic start, end) when tracing."""
        """The gateway's error code on a route without policies (``ctx.error`` otherwise)."""

    def routed(self, rules: CaptureRules, request: Request) -> None:
        self.capture = rules
        if rules.request.headers or rules.bodies:  # before the policies change them
            self.client_headers = list(request.headers)

    def sent(self, headers: Headers, payload: object) -> None:
        """What went to the backend (kept only for the regions the API captures)."""
        rules = self.capture
        if rules is not None and (rules.backend_request.headers or rules.bodies):
            self.backend_headers = headers
        if self.tracing is not None and self.span is not None:
            self.backend_span = self.tracing.backend(self.span, headers)
        if isinstance(payload, bytes):
            self.backend_body = payload
            if self.client_body is None and self.backend_request_bytes is None:
                self.client_body = payload


_second: tuple[int, str] = (-1, "")


def iso_utc(seconds: float) -> str:
    """The epoch time ``seconds`` as ISO 8601 in UTC with microseconds, e.g.
    ``2026-12-03T08:09:13.584222+00:00`` (``datetime.isoformat`` but for the microseconds, always
    written), the date and time of day formatted once per second."""
    global _second
    whole = int(seconds)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((seconds - whole) * 1_000_000):06d}+00:00"


def _ms(seconds: float) -> float:
    """Milliseconds to the microsecond. (Not ``round(seconds * 1000, 3)``: rounding to decimal
    places formats the number as text and parses it back, ~5x the cost; a record has four.)"""
    return round(seconds * 1_000_000) / 1000


def traffic_record(
    runtime: Runtime, request: Request, note: RequestNote, response: Response, outcome: Outcome
) -> TrafficRecord:
    now = time.monotonic()
    forwarded: list[str] = []
    for name, value in request.headers:
        if name == b"x-forwarded-for":
            forwarded.append(value.decode("latin-1"))
    request_bytes = request.body.received
    rid = note.record_id or new_correlation_id()
    record: TrafficRecord = {
        "id": rid,
        "correlation_id": note.correlation_id or rid,
        "timestamp": iso_utc(note.started),
        "environment": runtime.revision.environment,
        "revision": runtime.number,
        "worker": note.worker,
        "method": request.method,
        "path": request.path,
        "client_ip": (
            note.ctx.client_ip if note.ctx is not None else runtime.trusted.client_ip(request)
        ),
        "request_bytes": request_bytes,
        "status": outcome.status,
        "response_bytes": outcome.bytes_sent,
        "total_ms": _ms(now - note.monotonic),
    }
    if forwarded:
        record["forwarded_for"] = ", ".join(forwarded)
    if note.error is not None:
        record["error"] = note.error
    if not outcome.completed:
        record["error"] = "client_disconnected"
    if note.api is not None:
        record["api"] = note.api
        record["project"] = note.project or ""
    if note.endpoint is not None:
        record["endpoint"] = note.endpoint
    send = note.send
    if send.started:
        record["retries"] = send.retries
        record["failovers"] = send.failovers
        if send.circuit is not None:
            record["circuit"] = send.circuit
        if note.backend_target is not None:
            target = note.backend_target.decode("ascii", "replace")
            record["backend_path"] = target if note.capture is None else note.capture.target(target)
        record["backend_request_bytes"] = (
            request_bytes if note.backend_request_bytes is None else note.backend_request_bytes
        )
    if note.backend is not None:
        record["backend"] = note.backend
    upstream = note.upstream
    if upstream is not None:
        record["backend_status"] = upstream.status
        record["backend_response_bytes"] = upstream.body.received
        record["connect_ms"] = send.connect_ms
        record["first_byte_ms"] = _ms(send.first_byte - send.last_try)
        record["backend_ms"] = _ms(now - send.started)
    ctx = note.ctx
    if ctx is not None:
        record["pipeline_ms"] = _ms(note.pipeline_s)
        if ctx.consumer:
            record["consumer"] = ctx.consumer
        credential = ctx.variables.get("credential_id")
        if isinstance(credential, str):
            record["credential"] = credential
        if ctx.error is not None:
            record["error"] = ctx.error.code
        log = ctx.log
        if log.get("policies"):
            record["policies"] = log["policies"]
        if log.get("denied_by"):
            record["denied_by"] = log["denied_by"]
        if log.get("shadow"):
            record["shadow"] = log["shadow"]
        logged = log.get("variables")
        if logged and note.capture is not None:
            headers = note.client_headers if note.client_headers is not None else request.headers
            record["variables"] = note.capture.mask_logged(logged, headers, request.query)
    rules = note.capture
    if rules is not None and rules.details:
        detail = _detail(rules, request, note, response)
        if detail:
            record["detail"] = detail
    return record


def _content_type(headers: Headers | None) -> str | None:
    for name, value in headers or ():
        if name.lower() == b"content-type":
            return value.decode("latin-1")
    return None


def _detail(
    rules: CaptureRules, request: Request, note: RequestNote, response: Response
) -> dict[str, Any]:
    """The captured regions, masked (``portway.worker.capture``): headers and query first, so
    the values they mask are masked in every body too."""
    secrets: set[str] = set(rules.secret_values)
    regions: dict[str, dict[str, Any]] = {}
    bodies: list[tuple[dict[str, Any], bytes | None, str | None]] = []
    client = note.client_headers
    upstream = note.upstream
    sent = note.backend_headers
    if rules.request.headers or rules.request.body or rules.query:
        region = regions["request"] = {}
        if rules.request.headers and client is not None:
            region["headers"] = rules.headers(client, secrets)
        if rules.query:
            region["query"] = rules.query_pairs(request.query, secrets)
        if rules.request.body:
            bodies.append((region, note.client_body, _content_type(client or request.headers)))
    if note.send.started and (rules.backend_request.headers or rules.backend_request.body):
        region = regions["backend_request"] = {}
        if rules.backend_request.headers and sent is not None:
            region["headers"] = rules.headers(sent, secrets)
        if rules.backend_request.body:
            bodies.append((region, note.backend_body, _content_type(sent or request.headers)))
    if upstream is not None and (rules.backend_response.headers or rules.backend_response.body):
        region = regions["backend_response"] = {}
        if rules.backend_response.headers:
            region["headers"] = rules.headers(upstream.headers, secrets)
        if rules.backend_response.body:
            bodies.append((region, note.backend_response_body, _content_type(upstream.headers)))
    if rules.response.headers or rules.response.body:
        region = regions["response"] = {}
        if rules.response.headers:
            region["headers"] = rules.headers(response.headers, secrets)
        if rules.response.body:
            body = response.body if isinstance(response.body, bytes) else None
            bodies.append((region, body, _content_type(response.headers)))
    if bodies:  # credentials of every region are masked in every body
        for headers in (client, sent, upstream.headers if upstream else None, response.headers):
            if headers is not None:
                rules.headers(headers, secrets)
        rules.query_pairs(request.query, secrets)
    for region, data, content_type in bodies:
        region["body"] = rules.body(data, content_type, secrets)
    return regions

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

Plus who and where: ``environment``, ``revision``, ``worker``, ``project``, ``api``, ``endpoint``,
``consumer``, ``credential`` (a credential id, never the secret); and the pipeline:
``pipeline_ms`` (time in policy hooks), ``policies`` (those that ran), ``denied_by``, ``shadow``
(verdicts of shadow-mode policies).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from portway.http import Outcome, Request, Response, UpstreamResponse
from portway.policies.api import PolicyContext
from portway.stores.traffic import TrafficRecord
from portway.worker.errors import new_correlation_id
from portway.worker.upstream import SendTrace

if TYPE_CHECKING:
    from portway.worker.runtime import Runtime


class RequestNote:
    """What the proxy learnt about one request, for its traffic record (only when logging)."""

    __slots__ = (
        "api",
        "backend",
        "backend_request_bytes",
        "backend_target",
        "ctx",
        "endpoint",
        "error",
        "monotonic",
        "pipeline_s",
        "project",
        "send",
        "started",
        "upstream",
        "worker",
    )

    def __init__(self, started: float, monotonic: float, worker: str) -> None:
        self.started = started
        self.monotonic = monotonic
        self.worker = worker
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
        self.error: str | None = None
        """The gateway's error code on a route without policies (``ctx.error`` otherwise)."""


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def traffic_record(
    runtime: Runtime, request: Request, note: RequestNote, response: Response, outcome: Outcome
) -> TrafficRecord:
    now = time.monotonic()
    cid = b""
    forwarded: list[str] = []
    for name, value in response.headers:
        if name.lower() == b"x-correlation-id":
            cid = value
            break
    for name, value in request.headers:
        if name == b"x-forwarded-for":
            forwarded.append(value.decode("latin-1"))
    request_bytes = request.body.received
    record: TrafficRecord = {
        "id": cid.decode("ascii", "replace") or new_correlation_id(),
        "timestamp": datetime.fromtimestamp(note.started, UTC).isoformat(),
        "environment": runtime.revision.environment,
        "revision": runtime.number,
        "worker": note.worker,
        "method": request.method,
        "path": request.path,
        "client_ip": runtime.trusted.client_ip(request),
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
            record["backend_path"] = note.backend_target.decode("ascii", "replace")
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
    return record

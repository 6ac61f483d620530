"""Traffic analytics aggregates and the request search."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from portway.config.management.common import Answer, Number


class ConsumerCount(Answer):
    consumer: str
    count: int


class BucketLatency(Answer):
    """Latency percentiles (``total_ms``) of one bucket's requests."""

    p50: float
    p95: float
    p99: float


class BucketCount(Answer):
    start: str
    count: int
    errors: Annotated[int, Field(description="requests answered with status >= 400")]
    latency_ms: Annotated[
        BucketLatency | None,
        Field(description="null when no request in the bucket carried a latency"),
    ]


class TrafficAnalytics(Answer):
    total: int
    by_status: Annotated[dict[str, int], Field(description="requests by HTTP status")]
    by_api: dict[str, int]
    top_consumers: list[ConsumerCount]
    latency_ms: Annotated[
        dict[str, float],
        Field(
            description="p50, p90, p95 and p99 over the whole range; {} when no request carried a "
            "latency"
        ),
    ]
    buckets: list[BucketCount]


class TrafficRecordView(Answer):
    """One request as the worker recorded it (``portway.worker.traffic_record`` documents each
    field); a record carries only the fields that applied to it. The log stores keep fields they
    do not know, so a record may carry more (``extra``: shown as stored)."""

    model_config = ConfigDict(extra="allow")

    id: Annotated[str, Field(description="the record's id: the worker's, unique per request")]
    correlation_id: Annotated[
        str | None,
        Field(
            description="the request's X-Correlation-ID: the client's when valid, else the id "
            "(absent from records written before 2026-12-03, whose id was their correlation id)"
        ),
    ] = None
    timestamp: Annotated[str, Field(description="ISO 8601, UTC")]
    environment: str | None = None
    revision: int | None = None
    worker: str | None = None
    project: str | None = None
    api: str | None = None
    endpoint: str | None = None
    consumer: str | None = None
    credential: Annotated[str | None, Field(description="a credential id, never the secret")] = None
    method: str | None = None
    path: str | None = None
    client_ip: str | None = None
    forwarded_for: str | None = None
    request_bytes: int | None = None
    backend: str | None = None
    backend_path: str | None = None
    backend_request_bytes: int | None = None
    retries: int | None = None
    failovers: int | None = None
    circuit: str | None = None
    backend_status: int | None = None
    backend_response_bytes: int | None = None
    connect_ms: Number | None = None
    first_byte_ms: Number | None = None
    backend_ms: Number | None = None
    status: int | None = None
    response_bytes: int | None = None
    total_ms: Number | None = None
    error: str | None = None
    pipeline_ms: Number | None = None
    policies: list[str] | None = None
    denied_by: str | None = None
    shadow: Annotated[
        list[dict[str, Any]] | None,
        Field(description="what report-only policies would have done: policy, would, status, code"),
    ] = None
    variables: Annotated[
        dict[str, str] | None,
        Field(description="values log policies wrote, masked in the worker"),
    ] = None
    detail: Annotated[
        dict[str, Any] | None,
        Field(description="captured headers, query and bodies per region, masked in the worker"),
    ] = None


class RequestPage(Answer):
    items: Annotated[list[TrafficRecordView], Field(description="newest first")]
    next_cursor: Annotated[
        str | None, Field(description="pass as ?cursor= for the next page; null on the last")
    ]

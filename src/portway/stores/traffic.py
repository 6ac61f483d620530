"""The traffic log interface: append request records in batches, query aggregates.

A record is one request through a worker (see ``TrafficRecord``). ``write`` is idempotent by the
record's ``id``: writing the same batch twice stores each record once, which is what lets the
shipper retry after a failure without duplicating anything. The id is the worker's, unique per
request; the ``correlation_id`` may be the client's, which a client can send on any number of
requests (each still gets a record of its own). Records written before 2026-12-03 have no
``correlation_id``: their id was it, so a correlation-id search matches either field.

Backends are chosen by URL with ``open_traffic_sink``:

- ``sqlite:///var/portway/traffic.db?retention_days=30`` — embedded (``traffic_sqlite``);
- ``elasticsearch://host:9200,host2:9200?stream=portway-traffic&retention=30d`` (or ``http://`` /
  ``https://`` URLs) — ``traffic_elasticsearch``, which documents its options;
- forwarding sinks, which keep nothing to query (workers only): ``syslog+tcp://`` /
  ``syslog+tls://`` (``traffic_syslog``), ``webhook+https://`` / ``webhook+http://``
  (``traffic_http``), ``kafka://`` / ``kafka+ssl://`` (``traffic_kafka``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypedDict
from urllib.parse import urlsplit


class TrafficRecord(TypedDict, total=False):
    """One request; ``portway.worker.traffic_record`` documents what each field means."""

    id: str  # unique per request (made by the worker)
    correlation_id: str  # the client's X-Correlation-ID when valid, else the id
    timestamp: str  # ISO 8601, UTC
    environment: str
    revision: int
    worker: str
    project: str
    api: str
    endpoint: str
    consumer: str
    credential: str  # a credential id, never the secret
    # request from the client
    method: str
    path: str
    client_ip: str
    forwarded_for: str
    request_bytes: int
    # request to the backend
    backend: str
    backend_path: str
    backend_request_bytes: int
    retries: int
    failovers: int
    circuit: str
    # response from the backend
    backend_status: int
    backend_response_bytes: int
    connect_ms: float
    first_byte_ms: float
    backend_ms: float
    # response to the client
    status: int
    response_bytes: int
    total_ms: float
    error: str
    # the pipeline
    pipeline_ms: float
    policies: list[str]
    denied_by: str
    shadow: list[dict[str, Any]]  # {policy, would: deny|reply|error, status, code}
    variables: dict[str, str]  # written by log policies, masked in the worker
    detail: dict[str, Any]  # captured headers/query/bodies per region, masked in the worker


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    start: datetime
    end: datetime
    bucket_seconds: int = 60
    environment: str | None = None
    api: str | None = None
    consumer: str | None = None
    top_n: int = 10


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Find individual requests, newest first. ``status_min``/``status_max`` are inclusive;
    ``cursor`` is the ``next_cursor`` of the previous page (opaque)."""

    start: datetime
    end: datetime
    correlation_id: str | None = None
    environment: str | None = None
    api: str | None = None
    consumer: str | None = None
    status_min: int | None = None
    status_max: int | None = None
    min_total_ms: float | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    records: list[TrafficRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    count: int
    errors: int
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p95, p99; {} when none


@dataclass(frozen=True, slots=True)
class AnalyticsResult:
    total: int
    by_status: dict[int, int] = field(default_factory=dict)
    by_api: dict[str, int] = field(default_factory=dict)
    top_consumers: list[tuple[str, int]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p95, p99
    buckets: list[Bucket] = field(default_factory=list)


class TrafficWriter(Protocol):
    """The write side of a traffic sink: what the worker's shipper needs."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, records: Sequence[TrafficRecord]) -> None: ...


class TrafficSink(Protocol):
    async def open(self) -> None:
        """Connect and install what the engine needs (tables, index template, lifecycle)."""

    async def close(self) -> None: ...

    async def write(self, records: Sequence[TrafficRecord]) -> None:
        """Store a batch; idempotent by ``id``; raises ``StoreUnavailable`` when unreachable."""

    async def query(self, query: AnalyticsQuery) -> AnalyticsResult: ...

    async def search(self, query: SearchQuery) -> SearchPage:
        """Records matching every given filter, ordered by (timestamp, id) descending."""


def open_traffic_sink(url: str) -> TrafficSink:
    """Build a sink from a URL (see the module docstring); call ``await sink.open()`` next."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from portway.stores.traffic_sqlite import SqliteTrafficSink

        return SqliteTrafficSink.from_url(url)
    if scheme in ("elasticsearch", "elasticsearch+https", "http", "https"):
        from portway.stores.traffic_elasticsearch import ElasticsearchTrafficSink

        return ElasticsearchTrafficSink.from_url(url)
    if scheme in ("syslog+tcp", "syslog+tls"):
        from portway.stores.traffic_syslog import SyslogTrafficSink

        return SyslogTrafficSink.from_url(url)
    if scheme in ("webhook+http", "webhook+https"):
        from portway.stores.traffic_http import HttpTrafficSink

        return HttpTrafficSink.from_url(url)
    if scheme in ("kafka", "kafka+ssl"):
        from portway.stores.traffic_kafka import KafkaTrafficSink

        return KafkaTrafficSink.from_url(url)
    raise ValueError(
        f"traffic sink URL scheme {scheme!r} is not one of sqlite, elasticsearch, "
        "syslog+tcp, syslog+tls, webhook+http, webhook+https, kafka, kafka+ssl"
    )

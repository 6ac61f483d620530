"""Prometheus metrics of a worker, on their own listener (``metrics_port``), never the public one.

Off unless ``metrics_port`` is set. Then ``run_worker_server`` points ``PROMETHEUS_MULTIPROC_DIR``
at a fresh directory (the operator's own, emptied, when the variable is already set) before any
process imports ``prometheus_client``, serves the aggregate of every process's files on
``metrics_host:metrics_port`` from the supervising process, and marks a dead process's files so
its live gauges disappear. Each serving process:

- counts every request from its traffic record (built once per request, shared with the traffic
  log): requests by API and status class, latency histograms (gateway total and backend), upstream
  errors, retries and failovers;
- samples every ``SAMPLE_SECONDS`` what is state rather than event: breaker states and pool usage
  per backend address, the revision served, requests in flight, the traffic shipper's queue,
  spool and delivery counts, the policies' verdict counters and the traffic mirrors' counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portway.stores.traffic import TrafficRecord

if TYPE_CHECKING:
    from portway.policies.resources import PolicyStats
    from portway.stores.shipper import Shipper
    from portway.worker.proxy import GatewayHandler

log = logging.getLogger("portway.worker")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_SECONDS = 2.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
UPSTREAM_ERRORS = frozenset({"bad_gateway", "gateway_timeout", "no_healthy_upstream"})
BREAKER_STATES = ("closed", "open", "half_open")
VERDICTS = ("allowed", "denied", "errors", "skipped", "shadow_denied")


def prepare_directory() -> Path | None:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory; returns it when it was made here
    (to be removed at exit), None when the operator's own was emptied."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return None
    made = Path(tempfile.mkdtemp(prefix="portway-metrics-"))
    os.environ[MULTIPROC_ENV] = str(made)
    return made


def process_gone(pid: int) -> None:
    """Drop the live gauges of a process that exited."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def remove_directory(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class WorkerMetrics:
    """One process's metrics (values live in its files under ``PROMETHEUS_MULTIPROC_DIR``)."""

    def __init__(self, environment: str) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.environment = environment
        self.requests = Counter(
            "portway_requests", "Requests answered", ["environment", "api", "status_class"]
        )
        self.latency = Histogram(
            "portway_request_duration_seconds",
            "Request arrival to response sent",
            ["environment", "api"],
            buckets=LATENCY_BUCKETS,
        )
        self.backend_latency = Histogram(
            "portway_backend_duration_seconds",
            "First backend try to response sent",
            ["environment", "api"],
            buckets=LATENCY_BUCKETS,
        )
        self.upstream_errors = Counter(
            "portway_upstream_errors", "Requests failed by the backend", ["api", "error"]
        )
        self.retries = Counter("portway_upstream_retries", "Backend tries after the first", ["api"])
        self.failovers = Counter(
            "portway_upstream_failovers", "Backend tries on failover addresses", ["api"]
        )
        self.breaker = Gauge(
            "portway_circuit_breaker_state",
            "1 for the breaker's current state (any process)",
            ["api", "backend", "state"],
            multiprocess_mode="livemax",
        )
        self.pool_active = Gauge(
            "portway_upstream_connections_active",
            "Backend exchanges in progress",
            ["api", "backend"],
            multiprocess_mode="livesum",
        )
        self.pool_idle = Gauge(
            "portway_upstream_connections_idle",
            "Kept-alive backend connections",
            ["api", "backend"],
            multiprocess_mode="livesum",
        )
        self.revision = Gauge(
            "portway_revision_served",
            "Environment revision served (the oldest across processes)",
            ["environment"],
            multiprocess_mode="livemin",
        )
        self.inflight = Gauge(
            "portway_requests_in_flight", "Requests being served", multiprocess_mode="livesum"
        )
        self.verdicts = Counter(
            "portway_policy_verdicts", "Policy outcomes", ["scope_key", "policy", "verdict"]
        )
        self.shipper_queued = Gauge(
            "portway_traffic_records_queued",
            "Records waiting in memory or in flight",
            multiprocess_mode="livesum",
        )
        self.shipper_spooled = Gauge(
            "portway_traffic_records_spooled",
            "Records waiting on disk",
            multiprocess_mode="livesum",
        )
        self.shipper_delivered = Counter(
            "portway_traffic_records_delivered", "Records stored by the log sink"
        )
        self.shipper_dropped = Counter(
            "portway_traffic_records_dropped", "Records lost (queue and spool full)"
        )
        self.shipper_rejected = Counter(
            "portway_traffic_records_rejected", "Records the log sink refused"
        )
        self.mirror = Counter(
            "portway_mirror_requests",
            "Request copies to an API's mirror: mirrored (answered), dropped (not sent), failed",
            ["api", "outcome"],
        )
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._seen: dict[tuple[str, ...], int] = {}

    def observe(self, record: TrafficRecord) -> None:
        """Count one request (the traffic hook; cheap: cached label children)."""
        api = record.get("api", "")
        status = record.get("status", 0)
        key = (api, status // 100)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(self.environment, api, f"{status // 100}xx"),
                self.latency.labels(self.environment, api),
            )
        children[0].inc()
        children[1].observe(record.get("total_ms", 0.0) / 1000)
        backend_ms = record.get("backend_ms")
        if backend_ms is not None:
            self.backend_latency.labels(self.environment, api).observe(backend_ms / 1000)
        retries = record.get("retries")
        if retries:
            self.retries.labels(api).inc(retries)
            failovers = record.get("failovers")
            if failovers:
                self.failovers.labels(api).inc(failovers)
        error = record.get("error")
        if error in UPSTREAM_ERRORS:
            self.upstream_errors.labels(api, error).inc()

    def _grow(self, counter: Any, key: tuple[str, ...], total: int) -> None:
        """Counters from cumulative totals: add what grew since the last sample."""
        before = self._seen.get(key, 0)
        if total > before:
            counter.inc(total - before)
        self._seen[key] = total

    def sample(
        self, handler: GatewayHandler, stats: PolicyStats | None, shipper: Shipper | None
    ) -> None:
        runtime = handler.runtime
        if runtime is not None:
            self.revision.labels(self.environment).set(runtime.number)
            self.inflight.set(runtime.inflight)
            for upstream in runtime.upstreams:
                for address in upstream.addresses:
                    labels = (upstream.api.name, address.url)
                    self.pool_active.labels(*labels).set(address.pool.active)
                    self.pool_idle.labels(*labels).set(address.pool.idle)
                    if address.breaker is not None:
                        for state in BREAKER_STATES:
                            self.breaker.labels(*labels, state).set(
                                1 if address.breaker.state == state else 0
                            )
            for api, counts in runtime.shared.mirror_stats.snapshot().items():
                for outcome, total in counts.items():
                    child = self.mirror.labels(api, outcome)
                    self._grow(child, ("mirror", api, outcome), total)
        if stats is not None:
            for row in stats.snapshot():
                for verdict in VERDICTS:
                    key = (str(row["key"]), str(row["policy"]), verdict)
                    self._grow(self.verdicts.labels(*key), ("verdict", *key), int(row[verdict]))
        if shipper is not None:
            s = shipper.stats()
            self.shipper_queued.set(s.queued + s.in_flight)
            self.shipper_spooled.set(s.spooled)
            self._grow(self.shipper_delivered, ("delivered",), s.delivered)
            self._grow(self.shipper_dropped, ("dropped",), s.dropped)
            self._grow(self.shipper_rejected, ("rejected",), s.rejected)


def attach(
    handler: GatewayHandler,
    environment: str,
    stats: PolicyStats | None,
    shipper: Shipper | None,
    on_shutdown: list[Callable[[], Awaitable[None]]],
) -> WorkerMetrics:
    """Count this process's requests and sample its state until shutdown. The traffic hook
    becomes the metrics' and then the shipper's: the record is built once for both."""
    metrics = WorkerMetrics(environment)
    ship = handler.traffic
    observe = metrics.observe
    if ship is None:
        handler.traffic = observe
    else:

        def both(record: TrafficRecord) -> None:
            observe(record)
            ship(record)

        handler.traffic = both

    async def sampler() -> None:
        while True:
            try:
                metrics.sample(handler, stats, shipper)
            except Exception:  # a sample must never stop the sampler
                log.exception("metrics sample failed")
            await asyncio.sleep(SAMPLE_SECONDS)

    task = asyncio.get_running_loop().create_task(sampler())

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    on_shutdown.append(stop)
    return metrics

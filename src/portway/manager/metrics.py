"""Prometheus metrics of the manager, on their own listener (``metrics_port``; off when unset).

- management API requests by method, route template and status class, with a latency histogram
  (an ASGI middleware, installed only when metrics are on);
- deployments: pushes per environment and their per-worker outcome (a ``Deployer`` hook);
- sampled every ``SAMPLE_SECONDS`` from the worker registry: workers by environment and state,
  workers in sync, each worker's last convergence time, each environment's current revision.

Its own registry (not prometheus_client's global one), served like a worker's
(``portway.telemetry.listener.MetricsListener``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from portway.manager.context import Services

log = logging.getLogger("portway.manager")

SAMPLE_SECONDS = 2.0
STATES = ("up", "down", "unreachable", "unknown")


class ManagerMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.api_requests = Counter(
            "portway_manager_api_requests",
            "Management API requests",
            ["method", "route", "status_class"],
            registry=r,
        )
        self.api_latency = Histogram(
            "portway_manager_api_request_duration_seconds",
            "Management API request duration",
            ["route"],
            registry=r,
        )
        self.deploys = Counter(
            "portway_manager_deploys",
            "Revisions pushed to an environment",
            ["environment"],
            registry=r,
        )
        self.pushes = Counter(
            "portway_manager_deploy_pushes",
            "Per-worker push outcomes",
            ["environment", "outcome"],
            registry=r,
        )
        self.workers = Gauge(
            "portway_manager_workers", "Workers by state", ["environment", "state"], registry=r
        )
        self.in_sync = Gauge(
            "portway_manager_workers_in_sync",
            "Live workers serving the desired revision",
            ["environment"],
            registry=r,
        )
        self.converge = Gauge(
            "portway_manager_worker_converge_seconds",
            "Desired revision set to served, last time",
            ["environment", "worker"],
            registry=r,
        )
        self.revision = Gauge(
            "portway_manager_environment_revision",
            "Current revision of each environment",
            ["environment"],
            registry=r,
        )

    def pushed(self, environment: str, results: list[dict[str, Any]]) -> None:
        """The ``Deployer`` hook: one push of a revision and its per-worker results."""
        self.deploys.labels(environment).inc()
        for result in results:
            outcome = "success" if result.get("success") else "failure"
            self.pushes.labels(environment, outcome).inc()

    async def sample(self, services: Services) -> None:
        registry = services.registry
        now = datetime.now(UTC)
        docs = await registry.workers()
        environments = {str(d.data.get("environment")) for d in docs}
        desired: dict[str, int | None] = {}
        for env in sorted(environments):
            current = await services.deployer.current(env)
            desired[env] = current.revision if current is not None else None
            if current is not None:
                self.revision.labels(env).set(current.revision)
        counts = {(env, state): 0 for env in environments for state in STATES}
        synced = dict.fromkeys(environments, 0)
        self.converge.clear()
        for doc in docs:
            env = str(doc.data.get("environment"))
            view = registry.view(doc, desired[env], now)
            counts[(env, view["state"])] = counts.get((env, view["state"]), 0) + 1
            synced[env] += bool(view["in_sync"])
            if view["converge_seconds"] is not None:
                self.converge.labels(env, doc.id).set(view["converge_seconds"])
        for (env, state), n in counts.items():
            self.workers.labels(env, state).set(n)
        for env, n in synced.items():
            self.in_sync.labels(env).set(n)

    async def sample_forever(self, services: Services) -> None:
        while True:
            try:
                await self.sample(services)
            except Exception:  # the store may be down: try again next time
                log.exception("metrics sample failed")
            await asyncio.sleep(SAMPLE_SECONDS)


class ApiRequestMetrics:
    """ASGI middleware counting management API requests by route template (never the raw path,
    which would make one series per resource name)."""

    def __init__(self, app: ASGIApp, metrics: ManagerMetrics, prefix: str) -> None:
        self.app = app
        self.metrics = metrics
        self.prefix = prefix
        """The management API's prefix, which its routes' own templates leave out."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = getattr(scope.get("route"), "path", None)
            prefix = self.prefix
            if template is None:
                template = "unmatched"
            elif scope.get("path", "").startswith(prefix) and not template.startswith(prefix):
                template = prefix + template
            self.metrics.api_requests.labels(
                scope.get("method", ""), template, f"{status // 100}xx"
            ).inc()
            self.metrics.api_latency.labels(template).observe(time.monotonic() - started)

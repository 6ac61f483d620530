"""What a worker serves for one revision: the compiled routing table (``portway.compile``, the
same compilation the manager checks a revision with), the upstreams with their pools, and the
active health checkers. Built once per revision by ``compile_runtime``; immutable afterwards except
for health state and counters."""

from __future__ import annotations

import asyncio
import functools
import ssl

from portway.compile.routes import PipelineFactory, compile_routes, no_pipeline
from portway.compile.routes import Route as CompiledRoute
from portway.compile.routing import Router
from portway.config.backend_tls import backend_tls_context
from portway.config.models import ApiProxy
from portway.config.revision import EnvironmentRevision
from portway.errors import DeploymentError
from portway.worker.capture import CaptureRules
from portway.worker.dns import DnsCache
from portway.worker.headers import TrustedProxies
from portway.worker.health import HealthChecker
from portway.worker.settings import WorkerSettings
from portway.worker.traffic import TrafficShared
from portway.worker.upstream import PoolCache, Upstream

Route = CompiledRoute[Upstream]
"""One API proxy, or one endpoint of it, as this worker serves it."""


class Runtime:
    """Everything one revision needs at request time."""

    def __init__(
        self,
        revision: EnvironmentRevision,
        router: Router[Route],
        upstreams: list[Upstream],
        settings: WorkerSettings,
        pools: PoolCache | None = None,
        shared: TrafficShared | None = None,
    ) -> None:
        self.revision = revision
        self.router = router
        self.upstreams = upstreams
        self._pools = pools
        self.settings = settings
        self.shared = shared or TrafficShared()
        """The process's sticky-cookie key and mirror counters (outlive this revision)."""
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.via = settings.via.encode("ascii")
        self.max_body = settings.limits.max_body_bytes
        self._checkers = [HealthChecker(u) for u in upstreams]
        self.inflight = 0
        self._idle: asyncio.Event | None = None
        self.started = False
        self.closed = False
        environment = revision.environment
        self.capture = {
            (d.api.project, d.api.name): CaptureRules(d.api, environment, revision.secret_values)
            for d in revision.apis
        }
        """Each API's capture and masking rules for traffic records."""

    @property
    def number(self) -> int:
        return self.revision.revision

    async def start(self) -> None:
        """Start the active health checks."""
        if not self.started:
            self.started = True
            for checker in self._checkers:
                checker.start()

    def enter(self) -> None:
        self.inflight += 1

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, grace: float | None = None) -> bool:
        """Wait until no request uses this runtime; ``False`` if ``grace`` seconds ran out first."""
        if self.inflight == 0:
            return True
        if self._idle is None or self._idle.is_set():
            self._idle = asyncio.Event()  # one event shared by every waiter of this busy period
        idle = self._idle
        try:
            async with asyncio.timeout(grace):
                await idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the health checks and close the upstream pools."""
        if self.closed:
            return
        self.closed = True
        for checker in self._checkers:
            await checker.close()
        for upstream in self.upstreams:
            if upstream.mirror is not None:
                await upstream.mirror.close()
        if self._pools is not None:
            await self._pools.close()


def compile_runtime(
    revision: EnvironmentRevision,
    settings: WorkerSettings | None = None,
    pipeline_factory: PipelineFactory = no_pipeline,
    shared: TrafficShared | None = None,
) -> Runtime:
    """Compile a revision for serving. Raises ``DeploymentError`` when it cannot be served.
    ``shared`` carries the process's sticky-cookie key and mirror counters across revisions."""
    settings = settings or WorkerSettings()
    shared = shared or TrafficShared()
    pools = PoolCache(
        DnsCache(), functools.lru_cache(maxsize=None)(_tls_context), settings.pool_idle_timeout
    )

    upstreams: list[Upstream] = []

    def upstream_for(api: ApiProxy) -> Upstream:
        upstreams.append(Upstream(api, pools, shared))
        return upstreams[-1]

    router = compile_routes(revision, pipeline_factory, upstream_for)
    try:
        return Runtime(revision, router, upstreams, settings, pools, shared)
    except ValueError as exc:  # a capture masking rule (JSONPath, XPath) that does not compile
        raise DeploymentError(f"capture rules do not compile: {exc}") from exc


def _tls_context(verify: bool, ca_file: str | None, http2: bool) -> ssl.SSLContext:
    return backend_tls_context(verify, ca_file, http2)

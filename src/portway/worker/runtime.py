"""What a worker serves for one revision: the compiled routing table, the upstreams with their
pools, and the active health checkers. Built once per revision by ``compile_runtime``; immutable
afterwards except for health state and counters."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from portway.config.backend_tls import backend_tls_context
from portway.config.models import ApiProxy, Endpoint
from portway.config.revision import EnvironmentRevision
from portway.errors import ConfigError, DeploymentError
from portway.policies.api import NO_PIPELINE, Pipeline
from portway.worker.capture import CaptureRules
from portway.worker.dns import DnsCache
from portway.worker.headers import TrustedProxies
from portway.worker.health import HealthChecker
from portway.worker.routing import EndpointMount, Mount, Router
from portway.worker.settings import WorkerSettings
from portway.worker.upstream import PoolCache, Upstream

PipelineFactory = Callable[[ApiProxy, Endpoint | None, EnvironmentRevision], Pipeline]
"""The one seam where the runtime asks for a route's compiled policy pipeline."""


def no_pipeline(
    api: ApiProxy, endpoint: Endpoint | None, revision: EnvironmentRevision
) -> Pipeline:
    return NO_PIPELINE


@dataclass(slots=True, frozen=True)
class Route:
    """One API proxy, or one endpoint of it, as the proxy serves it."""

    api: ApiProxy
    endpoint: Endpoint | None
    pipeline: Pipeline
    upstream: Upstream | None
    """``None`` only for an API in maintenance without backends."""


def _mount_key(base_path: str) -> str:
    return "/".join("{}" if s.startswith("{") else s for s in base_path.split("/"))


def _check_conflicts(revision: EnvironmentRevision) -> None:
    seen: dict[tuple[str, str], list[tuple[str, frozenset[str]]]] = {}
    for deployed in revision.apis:
        api = deployed.api
        methods = frozenset(api.methods)
        for host in api.hosts or ["*any*"]:
            key = (host, _mount_key(api.base_path))
            for other, other_methods in seen.get(key, []):
                if not methods or not other_methods or methods & other_methods:
                    where = "any host" if host == "*any*" else host
                    raise DeploymentError(
                        f"APIs {other!r} and {api.project}/{api.name!r} both serve "
                        f"{api.base_path} on {where}"
                    )
            seen.setdefault(key, []).append((f"{api.project}/{api.name}", methods))


def _mounts(
    revision: EnvironmentRevision, route_for: Callable[[ApiProxy, Endpoint | None], Route]
) -> list[Mount[Route]]:
    mounts: list[Mount[Route]] = []
    for deployed in revision.apis:
        api = deployed.api
        endpoints = [
            EndpointMount(ep.path, frozenset(ep.methods), route_for(api, ep))
            for ep in api.endpoints
        ]
        mounts.append(
            Mount(
                api.base_path,
                route_for(api, None),
                hosts=api.hosts,
                methods=frozenset(api.methods),
                endpoints=endpoints,
                fallthrough=api.endpoint_fallthrough,
            )
        )
    return mounts


def compile_router(revision: EnvironmentRevision) -> Router[Route]:
    """The routing table of a revision without upstreams (the manager's compile check):
    raises ``DeploymentError`` when two APIs claim the same host, base path and method."""
    _check_conflicts(revision)

    def route_for(api: ApiProxy, endpoint: Endpoint | None) -> Route:
        return Route(api, endpoint, NO_PIPELINE, None)

    return Router(_mounts(revision, route_for))


class Runtime:
    """Everything one revision needs at request time."""

    def __init__(
        self,
        revision: EnvironmentRevision,
        router: Router[Route],
        upstreams: list[Upstream],
        settings: WorkerSettings,
        pools: PoolCache | None = None,
    ) -> None:
        self.revision = revision
        self.router = router
        self.upstreams = upstreams
        self._pools = pools
        self.settings = settings
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
            (d.api.project, d.api.name): CaptureRules(d.api, environment) for d in revision.apis
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
        if self._pools is not None:
            await self._pools.close()


def compile_runtime(
    revision: EnvironmentRevision,
    settings: WorkerSettings | None = None,
    pipeline_factory: PipelineFactory = no_pipeline,
) -> Runtime:
    """Compile a revision for serving. Raises ``DeploymentError`` when it cannot be served."""
    settings = settings or WorkerSettings()
    _check_conflicts(revision)
    pools = PoolCache(
        DnsCache(), functools.lru_cache(maxsize=None)(_tls_context), settings.pool_idle_timeout
    )
    upstreams: dict[int, Upstream] = {}

    def route_for(api: ApiProxy, endpoint: Endpoint | None) -> Route:
        upstream = upstreams.get(id(api))
        if upstream is None and api.backends:
            try:
                upstream = Upstream(api, pools)
            except ConfigError as exc:
                raise DeploymentError(f"API {api.name!r}: {exc}") from exc
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise DeploymentError(f"API {api.name!r}: backends: {exc}") from exc
            upstreams[id(api)] = upstream
        try:
            pipeline = pipeline_factory(api, endpoint, revision)
        except DeploymentError:
            raise
        except (ValueError, KeyError) as exc:
            where = f"{api.name}{endpoint.path if endpoint else ''}"
            raise DeploymentError(f"{where}: policies do not compile: {exc}") from exc
        return Route(api, endpoint, pipeline, upstream)

    router = Router(_mounts(revision, route_for))
    try:
        return Runtime(revision, router, list(upstreams.values()), settings, pools)
    except ValueError as exc:  # a capture masking rule (JSONPath, XPath) that does not compile
        raise DeploymentError(f"capture rules do not compile: {exc}") from exc


def _tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    return backend_tls_context(verify, ca_file)

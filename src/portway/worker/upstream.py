"""The backend addresses of one API: pools, balancing, passive health, circuit breakers, retries.

``Upstream.send`` picks an available primary address with the API's balancer and sends the
request. Transport failures are retried (after a backoff) on another primary when the request
may be sent again: always when it never left (connect errors), otherwise only for idempotent
methods (or when ``retry_non_idempotent``) and a body that can be replayed. When the primaries
are exhausted or none is available, the failover addresses are tried in their configured order.

With ``traffic`` settings (``portway.worker.traffic``) the API has several backend groups, each
with its own primaries, failovers and balancer; ``choose`` says which group (and which address,
for sticky sessions) a request goes to, and ``send`` keeps to that group.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterable, Callable
from urllib.parse import urlsplit

from portway.config.models import (
    DEFAULT_GROUP,
    ApiProxy,
    Backend,
    BackendKind,
    Balancing,
    ConnectionSettings,
)
from portway.http import (
    IDEMPOTENT_METHODS,
    ConnectionPool,
    H2ConnectionPool,
    Headers,
    UpstreamError,
    UpstreamResponse,
)
from portway.http.target import check_forward_path
from portway.worker.balancing import make_balancer
from portway.worker.breaker import Breaker
from portway.worker.dns import DnsCache
from portway.worker.traffic import (
    Choice,
    Group,
    MirrorSender,
    TrafficRouter,
    TrafficShared,
    rendezvous,
)

Pool = ConnectionPool | H2ConnectionPool
"""HTTP/1.1 keep-alive connections, or one multiplexed HTTP/2 connection (``Backend.http2``)."""

PoolFactory = Callable[[Backend, ConnectionSettings], Pool]
"""Gives the connection pool of a backend address (shared by the APIs that use the same address
with the same connection settings)."""


class PoolCache:
    """One pool per (address, TLS and pool settings) in a runtime."""

    def __init__(
        self,
        dns: DnsCache,
        tls_context: Callable[[bool, str | None, bool], ssl.SSLContext],
        idle_timeout: float,
    ) -> None:
        self._dns = dns
        self._tls_context = tls_context
        self._idle_timeout = idle_timeout
        self.pools: dict[tuple[object, ...], Pool] = {}

    def __call__(self, backend: Backend, conn: ConnectionSettings) -> Pool:
        parts = urlsplit(backend.url)
        https = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if https else 80)
        key = (
            https,
            host,
            port,
            conn.tls_verify if https else None,
            conn.ca_bundle if https else None,
            conn.pool_size,
            conn.connect_timeout,
            conn.dns_ttl,
            backend.http2,
        )
        pool = self.pools.get(key)
        if pool is not None:
            return pool
        ssl_context = (
            self._tls_context(conn.tls_verify, conn.ca_bundle, backend.http2) if https else None
        )
        resolve = self._dns.resolver(conn.dns_ttl)
        if backend.http2:
            pool = H2ConnectionPool(
                host,
                port,
                ssl=ssl_context,
                server_hostname=host if https else None,
                connect_timeout=conn.connect_timeout,
                resolve=resolve,
            )
        else:
            pool = ConnectionPool(
                host,
                port,
                ssl=ssl_context,
                server_hostname=host if https else None,
                max_idle=conn.pool_size,
                connect_timeout=conn.connect_timeout,
                idle_timeout=self._idle_timeout,
                resolve=resolve,
            )
        self.pools[key] = pool
        return pool

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()


class SendTrace:
    """What ``Upstream.send`` did for one request, filled only when a caller asks (traffic log):
    tries after the first, tries on failover addresses, the answering address's breaker state,
    and the timings of the last try (monotonic seconds; ``connect_ms`` is 0 on a kept-alive
    connection)."""

    __slots__ = (
        "circuit",
        "connect_ms",
        "failovers",
        "first_byte",
        "last_try",
        "retries",
        "started",
    )

    def __init__(self) -> None:
        self.retries = 0
        self.failovers = 0
        self.circuit: str | None = None
        self.started = 0.0
        self.last_try = 0.0
        self.first_byte = 0.0
        self.connect_ms = 0.0


class NoHealthyUpstream(Exception):
    """Every address of the API is unhealthy, ejected or behind an open circuit breaker."""


class Address:
    """One backend address with its pool and health state."""

    __slots__ = (
        "backend",
        "base_path",
        "breaker",
        "current_weight",
        "ejected_until",
        "failures",
        "healthy",
        "host_header",
        "kind",
        "pool",
        "url",
        "weight",
    )

    def __init__(self, backend: Backend, pool: Pool, breaker: Breaker | None) -> None:
        parts = urlsplit(backend.url)
        self.backend = backend
        self.url = backend.url
        self.kind = backend.kind
        self.weight = backend.weight
        self.current_weight = 0
        self.pool = pool
        self.breaker = breaker
        self.base_path = parts.path.rstrip("/").encode("ascii")
        default_port = 443 if parts.scheme == "https" else 80
        hostname = parts.hostname or ""
        shown = f"[{hostname}]" if ":" in hostname else hostname
        self.host_header = (
            shown if (parts.port or default_port) == default_port else f"{shown}:{parts.port}"
        ).encode("ascii")
        self.healthy = True
        """Active health checks' verdict."""
        self.failures = 0
        """Consecutive failures (passive health)."""
        self.ejected_until = 0.0

    @property
    def active(self) -> int:
        return self.pool.active

    def available(self, now: float) -> bool:
        if not self.healthy or self.ejected_until > now:
            return False
        return self.breaker is None or self.breaker.allows(now)

    def __repr__(self) -> str:
        return f"<Address {self.url}>"


class Upstream:
    """All addresses of one API proxy."""

    def __init__(
        self, api: ApiProxy, pool_for: PoolFactory, shared: TrafficShared | None = None
    ) -> None:
        self.api = api
        self._loop: asyncio.AbstractEventLoop | None = None
        conn = api.connection
        self.connection: ConnectionSettings = conn
        self._passive = api.passive_health
        self._error_statuses = frozenset(conn.error_statuses)
        self.default = self._group(DEFAULT_GROUP, api.backends, api.balancing, pool_for)
        self.groups = {DEFAULT_GROUP: self.default}
        for group in api.traffic.groups:
            self.groups[group.name] = self._group(
                group.name, group.backends, group.balancing, pool_for
            )
        self.primaries = self.default.primaries
        self.failovers = self.default.failovers
        self.addresses = [
            a for group in self.groups.values() for a in group.primaries + group.failovers
        ]
        """Every address of every group (health checks, metrics)."""
        traffic = api.traffic
        shared = shared or TrafficShared()
        self.traffic = TrafficRouter(api, self.groups, shared) if traffic.routes_requests else None
        """Chooses a group and address per request; ``None`` when the API has one group and
        no sticky sessions (the default group's balancer alone decides)."""
        self.mirror: MirrorSender | None = None
        if traffic.mirror is not None:
            mirror = Backend(url=traffic.mirror.url)
            self.mirror = MirrorSender(
                traffic.mirror,
                Address(mirror, pool_for(mirror, conn), None),
                f"{api.project}/{api.name}",
                shared.mirror_stats,
            )

    def _group(
        self, name: str, backends: list[Backend], balancing: Balancing, pool_for: PoolFactory
    ) -> Group:
        api = self.api
        primaries: list[Address] = []
        failovers: list[Address] = []
        for backend in backends:
            breaker = Breaker(api.circuit_breaker) if api.circuit_breaker.enabled else None
            address = Address(backend, pool_for(backend, self.connection), breaker)
            (primaries if backend.kind == BackendKind.PRIMARY else failovers).append(address)
        return Group(name, primaries, failovers, make_balancer(balancing))

    def choose(self, headers: Headers, client_ip: str) -> Choice | None:
        """Where a request goes (``send(choice=...)``); ``None`` without traffic settings."""
        traffic = self.traffic
        return None if traffic is None else traffic.choose(headers, client_ip)

    def is_error(self, status: int) -> bool:
        if self._error_statuses:
            return status in self._error_statuses
        return status >= 500

    def record(self, address: Address, ok: bool, now: float) -> None:
        if ok:
            address.failures = 0
        else:
            address.failures += 1
            passive = self._passive
            if passive.enabled and address.failures >= passive.max_failures:
                address.ejected_until = now + passive.eject_seconds
                address.failures = 0
        if address.breaker is not None:
            address.breaker.record(ok, now)

    def _pick(
        self, client_ip: str, tried: list[Address], now: float, choice: Choice | None
    ) -> Address | None:
        group = self.default if choice is None else choice.group
        primaries = group.primaries
        if choice is not None:
            pinned = choice.pinned
            if pinned is not None and pinned not in tried and pinned.available(now):
                return pinned
        if len(primaries) == 1:
            only = primaries[0]
            return only if only.available(now) else None
        candidates = [a for a in primaries if a not in tried and a.available(now)]
        if not candidates:
            candidates = [a for a in primaries if a.available(now)]
            if not candidates:
                return None
        if choice is not None and choice.hash_key is not None:
            return candidates[rendezvous(candidates, choice.hash_key)]
        return candidates[group.balancer.pick(candidates, client_ip)]

    def _delay(self, retry: int, conn: ConnectionSettings) -> float:
        delay = conn.retry_delay
        if delay.kind == "fixed":
            return min(delay.initial, delay.maximum)
        return min(delay.initial * delay.multiplier ** (retry - 1), delay.maximum)

    async def send(
        self,
        method: str,
        path: bytes,
        headers: Headers,
        body: bytes | AsyncIterable[bytes] | None,
        *,
        content_length: int | None,
        client_ip: str,
        trace: SendTrace | None = None,
        choice: Choice | None = None,
        connection: ConnectionSettings | None = None,
    ) -> tuple[UpstreamResponse, Address]:
        """Send with balancing, retries and failover inside the chosen group (``choose``; the
        default group without one); ``path`` includes the query string; ``connection``: an
        endpoint's timeouts and retries in place of the API's. Raises ``BadTarget`` for a path
        that could climb above a backend's base path."""
        check_forward_path(path)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        conn = self.connection if connection is None else connection
        replayable = body is None or isinstance(body, bytes)
        may_resend = replayable and (method in IDEMPOTENT_METHODS or conn.retry_non_idempotent)
        tried: list[Address] = []
        last: UpstreamError | None = None
        attempt = 0
        plan: list[Address | None] = [None] * (1 + conn.retries)
        for failover in (self.default if choice is None else choice.group).failovers:
            plan.extend([failover] * (1 + conn.failover_retries))
        for fixed in plan:
            now = loop.time()
            if fixed is None:
                address = self._pick(client_ip, tried, now, choice)
                if address is None:
                    continue  # no primary left: go on with the failovers
            else:
                address = fixed
                if not address.available(now):
                    continue
            if attempt:
                await asyncio.sleep(self._delay(attempt, conn))
            if trace is not None:
                trace.last_try = time.monotonic()
                if not attempt:
                    trace.started = trace.last_try
                trace.retries = attempt
                trace.failovers += fixed is not None
                trace.circuit = None if address.breaker is None else address.breaker.state
            attempt += 1
            tried.append(address)
            if address.breaker is not None:
                address.breaker.on_attempt()
            target = address.base_path + path if address.base_path else path
            if target[:1] != b"/":
                target = b"/" + target
            try:
                response = await address.pool.request(
                    method,
                    target,
                    [(b"host", address.host_header), *headers],
                    body,
                    content_length=content_length,
                    read_timeout=conn.read_timeout,
                    total_timeout=conn.total_timeout,
                )
            except UpstreamError as exc:
                self.record(address, False, loop.time())
                last = exc
                if exc.request_sent and not may_resend:
                    raise
                continue
            self.record(address, not self.is_error(response.status), loop.time())
            if trace is not None:
                trace.first_byte = time.monotonic()
                trace.connect_ms = response.connect_ms
                if address.breaker is not None:
                    trace.circuit = address.breaker.state
            return response, address
        if last is not None:
            raise last
        raise NoHealthyUpstream(f"no healthy address for {self.api.name}")

"""``portway worker``: one gateway worker of one environment.

Each process builds its handler in ``setup``: the data plane (``GatewayHandler``), the control
endpoints and the config sync with the manager. The sync joins the environment before the worker
listens, so a worker started for an environment the manager does not know exits at once with an
error naming it. With several processes (``--processes N``, SO_REUSEPORT) each process is its own
registry entry (``ID/0``, ``ID/1`` …) and they share the on-disk revision: a process that receives
a push writes the new revision, and its siblings, which watch that file, install it straight away.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import ssl
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from portway.cluster.signing import read_secret
from portway.cluster.transport import plain_http_refusal
from portway.config.revision import EnvironmentRevision
from portway.errors import ClusterError, DeploymentError
from portway.http import Handler, Request, server_tls_context
from portway.worker import metrics
from portway.worker.control import ControlHandler
from portway.worker.errors import new_correlation_id
from portway.worker.headers import incoming_correlation_id
from portway.worker.proxy import GatewayHandler
from portway.worker.runtime import compile_runtime
from portway.worker.server import WorkerProcess, run_worker_server
from portway.worker.services import open_worker_stores
from portway.worker.settings import LimitSettings, TlsSettings, WorkerSettings
from portway.worker.sync import ConfigSync, ManagerUnreachable, SyncSettings
from portway.worker.tracing import Tracing

log = logging.getLogger("portway.worker")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    environment: str
    manager_url: str
    host: str = "0.0.0.0"
    port: int | None = 8080
    """Plain HTTP listener; ``None`` with only ``https_port``."""
    processes: int = 0
    https_port: int | None = None
    redirect_port: int | None = None
    public_https_port: int | None = None
    tls: TlsSettings | None = None
    trusted_proxies: list[str] = field(default_factory=list)
    drain_timeout: float = 30.0
    worker_id: str | None = None
    advertise_url: str | None = None
    secret_file: Path = Path("var/portway/cluster.secret")
    state_dir: Path = Path("var/portway/worker")
    poll_interval: float = 5.0
    logs_url: str = "sqlite:///var/portway/traffic.db"
    """Where traffic records go: ``sqlite:///path`` or ``elasticsearch://host:9200``."""
    cache_url: str = "local://"
    """Counters and cached responses: ``local://`` (per process), ``redis://``, ``hazelcast://``."""
    limits: LimitSettings = field(default_factory=LimitSettings)
    """Limits applied to every client connection."""
    cluster_ca: Path | None = None
    """Pinned CA bundle the ``https://`` manager's certificate must chain to."""
    insecure_cluster: bool = False
    """Allow a plain ``http://`` manager URL that is not loopback."""
    settings: WorkerSettings | None = None
    """Every listener and limit setting (from ``portway.yaml``); when None, built from
    ``host``, ``port`` and ``processes``."""

    def base_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{self.port or self.https_port}"

    def advertised(self) -> str:
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        if self.port is None:
            return f"https://{host}:{self.https_port}"
        return f"http://{host}:{self.port}"

    def listener_settings(self) -> WorkerSettings:
        """The listener settings (``settings`` when given); raises ``pydantic.ValidationError``
        on a bad combination."""
        if self.settings is not None:
            return self.settings
        return WorkerSettings(
            host=self.host,
            port=self.port,
            https_port=self.https_port,
            redirect_port=self.redirect_port,
            public_https_port=self.public_https_port,
            tls=self.tls,
            trusted_proxies=self.trusted_proxies,
            drain_timeout=self.drain_timeout,
            processes=self.processes or os.cpu_count() or 1,
            limits=self.limits,
        )


def _correlation_id(request: Request) -> str:
    return incoming_correlation_id(request) or new_correlation_id()


async def setup(options: WorkerOptions, secret: bytes, process: WorkerProcess) -> Handler:
    """Build one process's handler; raises ``ClusterError`` when it must not serve at all."""
    handler = GatewayHandler()
    settings = process.settings
    stores = await open_worker_stores(
        options.environment,
        options.cache_url,
        options.logs_url,
        options.state_dir / f"spool-{process.index}",
    )
    shipper = stores.shipper
    assert shipper is not None
    handler.traffic = shipper.submit

    async def apply(revision: EnvironmentRevision) -> None:
        runtime = compile_runtime(revision, settings, stores.pipelines)
        await runtime.start()
        handler.swap(runtime)

    def counters() -> dict[str, Any]:
        runtime = handler.runtime
        return {
            "process": process.index,
            "inflight": runtime.inflight if runtime else 0,
            "policies": stores.services.stats.snapshot(),
            "traffic_log": asdict(shipper.stats()),
        }

    several = settings.processes > 1
    sync = ConfigSync(
        SyncSettings(
            manager_url=options.manager_url,
            environment=options.environment,
            worker_id=f"{options.base_id()}/{process.index}" if several else options.base_id(),
            advertise_url=options.advertised(),
            secret=secret,
            state_dir=options.state_dir,
            ca_file=options.cluster_ca,
            poll_interval=options.poll_interval,
            watch_disk=several,
        ),
        apply,
        counters,
    )

    def status() -> dict[str, Any]:
        return {
            "worker_id": sync.settings.worker_id,
            "environment": options.environment,
            "served_revision": sync.state.served_revision,
            "last_error": sync.state.last_error,
            "started_at": sync.state.started_at.isoformat(),
            "counters": counters(),
        }

    handler.worker_id = sync.settings.worker_id
    if settings.metrics_port is not None:
        metrics.attach(
            handler, options.environment, stores.services.stats, shipper, process.on_shutdown
        )
    if settings.tracing_endpoint is not None:
        handler.tracing = tracing = Tracing(
            settings.tracing_endpoint, handler.worker_id, options.environment
        )

        async def stop_tracing() -> None:
            await asyncio.to_thread(tracing.close)  # flushes what is left

        process.on_shutdown.append(stop_tracing)
    handler.control = ControlHandler(secret, sync, status, _correlation_id)
    await sync.join()
    sync.start_reporting()
    process.on_shutdown.append(stores.close)
    process.on_shutdown.append(sync.close)
    process.on_shutdown.append(handler.close)
    return handler


async def _preflight(options: WorkerOptions, secret: bytes) -> None:
    """Refuse to start for an unknown environment or a wrong secret, before any process spawns.
    A manager that cannot be reached is fine: the worker serves its cached revision."""
    probe = ConfigSync(
        SyncSettings(
            manager_url=options.manager_url,
            environment=options.environment,
            worker_id=options.base_id(),
            advertise_url=options.advertised(),
            secret=secret,
            state_dir=options.state_dir,
            ca_file=options.cluster_ca,
        ),
        _refuse,
    )
    try:
        await probe.environment_info()
    except ManagerUnreachable as exc:
        log.warning("%s; starting from the cached revision", exc)
    finally:
        await probe.close()


async def _refuse(revision: EnvironmentRevision) -> None:
    raise AssertionError("the preflight probe installs nothing")


def run(options: WorkerOptions) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status (2 when the worker may not start)."""
    refusal = plain_http_refusal(options.manager_url, insecure=options.insecure_cluster)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    try:
        settings = options.listener_settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "worker"
            print(f"error: {where}: {error['msg']}", file=sys.stderr)
        return 2
    if settings.tls is not None:
        tls = settings.tls
        try:  # the files are read again per process; an unreadable one is refused here, once
            server_tls_context(
                tls.cert_file,
                tls.key_file,
                client_ca_file=tls.client_ca_file,
                require_client_cert=tls.require_client_cert,
            )
        except (OSError, ssl.SSLError) as exc:
            print(f"error: tls: {tls.cert_file}: {exc}", file=sys.stderr)
            return 2
    try:
        secret = read_secret(options.secret_file)
    except (OSError, ValueError) as exc:
        print(f"error: cluster secret {options.secret_file}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_preflight(options, secret))
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return run_worker_server(functools.partial(setup, options, secret), settings)
    except (ClusterError, DeploymentError) as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2

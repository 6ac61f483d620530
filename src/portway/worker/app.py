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
import socket
import ssl
import sys
from dataclasses import asdict
from typing import Any

from portway.cluster.signing import read_secret
from portway.cluster.transport import plain_http_refusal
from portway.config.platform import WorkerConfig
from portway.config.revision import EnvironmentRevision
from portway.errors import ClusterError, DeploymentError
from portway.http import Handler, Request, server_tls_context
from portway.worker import metrics
from portway.worker.control import ControlHandler
from portway.worker.errors import new_correlation_id
from portway.worker.headers import incoming_correlation_id
from portway.worker.process_stores import open_worker_stores
from portway.worker.proxy import GatewayHandler
from portway.worker.runtime import compile_runtime
from portway.worker.server import WorkerProcess, run_worker_server
from portway.worker.sync import ConfigSync, ManagerUnreachable, SyncSettings
from portway.worker.tracing import Tracing
from portway.worker.traffic import TrafficShared, sticky_key

log = logging.getLogger("portway.worker")


def _base_id(worker: WorkerConfig) -> str:
    return worker.worker_id or f"{socket.gethostname()}-{worker.port or worker.https_port}"


def _advertised(worker: WorkerConfig) -> str:
    if worker.advertise_url:
        return worker.advertise_url.rstrip("/")
    host = worker.host if worker.host not in ("0.0.0.0", "::", "") else socket.gethostname()
    if worker.port is None:
        return f"https://{host}:{worker.https_port}"
    return f"http://{host}:{worker.port}"


def _sync_settings(
    environment: str, worker: WorkerConfig, secret: bytes, worker_id: str, **extra: Any
) -> SyncSettings:
    assert worker.manager_url is not None  # settled: see ``run``
    assert worker.state_dir is not None
    return SyncSettings(
        manager_url=worker.manager_url,
        environment=environment,
        worker_id=worker_id,
        advertise_url=_advertised(worker),
        secret=secret,
        state_dir=worker.state_dir,
        ca_file=worker.cluster_ca,
        **extra,
    )


def _correlation_id(request: Request) -> str:
    return incoming_correlation_id(request) or new_correlation_id()


async def setup(
    environment: str, worker: WorkerConfig, secret: bytes, process: WorkerProcess
) -> Handler:
    """Build one process's handler; raises ``ClusterError`` when it must not serve at all."""
    handler = GatewayHandler()
    settings = process.settings
    assert worker.state_dir is not None  # settled: see ``run``
    stores = await open_worker_stores(
        environment, worker.cache, worker.logs, worker.state_dir / f"spool-{process.index}"
    )
    shipper = stores.shipper
    assert shipper is not None
    handler.traffic = shipper.submit
    shared = TrafficShared(sticky_key(secret, environment))

    async def apply(revision: EnvironmentRevision) -> None:
        runtime = compile_runtime(revision, settings, stores.pipelines, shared)
        await runtime.start()
        handler.swap(runtime)

    def counters() -> dict[str, Any]:
        runtime = handler.runtime
        return {
            "process": process.index,
            "inflight": runtime.inflight if runtime else 0,
            "policies": stores.services.stats.snapshot(),
            "traffic_log": asdict(shipper.stats()),
            "mirror": shared.mirror_stats.snapshot(),
        }

    several = settings.processes > 1
    base_id = _base_id(worker)
    sync = ConfigSync(
        _sync_settings(
            environment,
            worker,
            secret,
            f"{base_id}/{process.index}" if several else base_id,
            poll_interval=worker.poll_interval,
            watch_disk=several,
        ),
        apply,
        counters,
    )

    def status() -> dict[str, Any]:
        return {
            "worker_id": sync.settings.worker_id,
            "environment": environment,
            "served_revision": sync.state.served_revision,
            "last_error": sync.state.last_error,
            "started_at": sync.state.started_at.isoformat(),
            "counters": counters(),
        }

    handler.worker_id = sync.settings.worker_id
    if settings.metrics_port is not None:
        metrics.attach(handler, environment, stores.services.stats, shipper, process.on_shutdown)
    if settings.tracing_endpoint is not None:
        handler.tracing = tracing = Tracing(
            settings.tracing_endpoint, handler.worker_id, environment
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


async def _preflight(environment: str, worker: WorkerConfig, secret: bytes) -> None:
    """Refuse to start for an unknown environment or a wrong secret, before any process spawns.
    A manager that cannot be reached is fine: the worker serves its cached revision."""
    probe = ConfigSync(_sync_settings(environment, worker, secret, _base_id(worker)), _refuse)
    try:
        await probe.environment_info()
    except ManagerUnreachable as exc:
        log.warning("%s; starting from the cached revision", exc)
    finally:
        await probe.close()


async def _refuse(revision: EnvironmentRevision) -> None:
    raise AssertionError("the preflight probe installs nothing")


def run(environment: str, worker: WorkerConfig) -> int:
    """Serve ``environment`` until SIGTERM/SIGINT; returns the exit status (2 when the worker may
    not start). ``worker`` is the environment's section of the platform file with ``manager_url``,
    ``logs``, ``secret_file`` and ``state_dir`` settled (``PlatformConfig.settled_worker``)."""
    unsettled = [
        name
        for name in ("manager_url", "logs", "secret_file", "state_dir")
        if getattr(worker, name) is None
    ]
    if unsettled:
        missing = ", ".join(unsettled)
        print(f"portway: error: workers.{environment}: {missing} not set", file=sys.stderr)
        return 2
    assert worker.manager_url is not None
    assert worker.secret_file is not None
    refusal = plain_http_refusal(worker.manager_url, insecure=worker.insecure_cluster)
    if refusal is not None:
        print(f"portway: error: {refusal}", file=sys.stderr)
        return 2
    settings = worker
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
            print(f"portway: error: tls: {tls.cert_file}: {exc}", file=sys.stderr)
            return 2
    try:
        secret = read_secret(worker.secret_file)
    except (OSError, ValueError) as exc:
        print(f"portway: error: cluster secret {worker.secret_file}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_preflight(environment, worker, secret))
    except ClusterError as exc:
        print(f"portway: error: {exc}", file=sys.stderr)
        return 2
    try:
        return run_worker_server(functools.partial(setup, environment, worker, secret), settings)
    except (ClusterError, DeploymentError) as exc:
        log.error("%s", exc)
        print(f"portway: error: {exc}", file=sys.stderr)
        return 2

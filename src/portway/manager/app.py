"""The manager's ASGI application and its process entry point."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from portway.cluster.signing import ReplayGuard, load_or_create_secret
from portway.manager import cluster_api, json_body, problems, routes, web_ui
from portway.manager.access import Access
from portway.manager.addresses import BackendPolicy
from portway.manager.alerts.service import Alerts
from portway.manager.analytics import Analytics
from portway.manager.auth import LoginGuard, bootstrap_admin
from portway.manager.body_limits import BodyCaps, BodyLimit
from portway.manager.catalog import Catalog
from portway.manager.consumers import Consumers
from portway.manager.context import Services
from portway.manager.deployments import Deployer
from portway.manager.metrics import ApiRequestMetrics, ManagerMetrics
from portway.manager.registry import Liveness, WorkerRegistry
from portway.manager.sealing import Keyring, SealedStore, load_keyring
from portway.manager.settings import ManagerSettings
from portway.manager.signing_keys import SigningKeys
from portway.manager.worker_client import WorkerClient
from portway.stores.config_store import ConfigStore, open_config_store
from portway.telemetry.listener import MetricsListener

log = logging.getLogger("portway.manager")


async def build_services(settings: ManagerSettings, store: SealedStore) -> Services:
    secret = load_or_create_secret(settings.secret_file)
    catalog = Catalog(
        store,
        BackendPolicy(
            deny=settings.backend_deny_cidrs,
            allow=settings.backend_allow_cidrs,
            own=[(settings.host, settings.port)],
        ),
    )
    consumers = Consumers(store)
    registry = WorkerRegistry(store, Liveness(settings.report_interval, settings.down_after))
    client = WorkerClient(
        secret,
        settings.push_timeout,
        probe_timeout=min(settings.push_timeout, 5.0),
        ca_file=settings.cluster_ca_file,
    )
    signing_keys = SigningKeys(store, catalog)
    deployer = Deployer(
        store,
        catalog,
        registry,
        client,
        settings.push_timeout,
        consumers=consumers.snapshot,
        signing_keys=signing_keys.snapshot,
    )
    guard = LoginGuard(
        max_user_failures=settings.login_max_failures_user,
        max_ip_failures=settings.login_max_failures_ip,
        window=settings.login_window,
        lockout=settings.login_lockout,
        base_delay=settings.login_failure_delay,
        max_delay=settings.login_failure_delay_max,
    )
    analytics = Analytics(settings.logs)
    access = Access(store, guard, settings.session_ttl)
    alerts = Alerts(
        settings,
        store,
        registry,
        analytics,
        catalog.desired_revisions,
        lambda: store.keyring,
        catalog.backends.refusal,
    )
    return Services(
        settings,
        store,
        secret,
        catalog,
        registry,
        deployer,
        client,
        consumers,
        guard,
        analytics,
        access,
        alerts,
        signing_keys,
    )


async def _bootstrap(settings: ManagerSettings, store: ConfigStore) -> None:
    """Create the first admin on an empty store; hand its credentials over once, in a 0600 file."""
    created = await bootstrap_admin(store)
    if created is None:
        return
    username, password, token = created
    if settings.bootstrap_file is None:
        log.warning(
            "first admin %r created; no bootstrap_file set, its credentials are lost", username
        )
        return
    settings.bootstrap_file.parent.mkdir(parents=True, exist_ok=True)
    partial = settings.bootstrap_file.with_name(settings.bootstrap_file.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"username": username, "password": password, "token": token}, handle)
    os.replace(partial, settings.bootstrap_file)  # a reader sees the whole file or none
    log.warning(
        "first admin %r created; credentials written once to %s", username, settings.bootstrap_file
    )


async def probe_workers(services: Services) -> None:
    """The manager's health checks: probe every registered worker each ``probe_interval``."""
    while True:
        await asyncio.sleep(services.settings.effective_probe_interval)
        try:
            await services.registry.probe_all(services.client)
        except Exception:
            log.exception("probing workers failed")


def create_app(settings: ManagerSettings, store: ConfigStore | None = None) -> FastAPI:
    keyring: list[Keyring] = []
    metrics = ManagerMetrics() if settings.metrics_port is not None else None
    config_store = SealedStore(store or open_config_store(settings.store), lambda: keyring[0])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keyring.append(load_keyring(settings.data_dir))
        await config_store.open()
        resealed = await config_store.reseal()
        if resealed:
            log.warning("re-sealed the policy secrets of %d stored documents", resealed)
        services = await build_services(settings, config_store)
        app.state.services = services
        await _bootstrap(settings, config_store)
        await services.deployer.records.reconcile()
        services.alerts.start()
        background = []
        if settings.effective_probe_interval > 0:
            background.append(asyncio.create_task(probe_workers(services), name="portway-probes"))
        listener = None
        if metrics is not None:
            services.deployer.on_push.append(metrics.pushed)
            background.append(asyncio.create_task(metrics.sample_forever(services)))
            listener = MetricsListener(
                settings.metrics_host, settings.metrics_port or 0, metrics.registry
            )
            app.state.metrics_port = listener.port
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, listener.port)
        try:
            yield
        finally:
            if listener is not None:
                await asyncio.to_thread(listener.close)
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await services.alerts.close()
            await services.client.close()
            await services.analytics.close()
            await config_store.close()

    app = FastAPI(
        title="Portway management API",
        version="1",
        description="Configuration, deployments, consumers and access control of Portway. "
        "Authenticate with a personal access token (`Authorization: Bearer pwt_…`) or a "
        "browser session from `POST /api/v1/auth/login`.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served by web_ui with local assets
        redoc_url=None,
        lifespan=lifespan,
    )
    json_body.install(app)  # innermost: the body cap below runs before any parsing
    # inside the correlation middleware (installed next), so a 413 carries the request's id
    app.add_middleware(
        BodyLimit,
        caps=BodyCaps(
            api=settings.max_body_bytes,
            imports=settings.max_import_body_bytes,
            cluster=settings.max_cluster_body_bytes,
        ),
    )
    problems.install(app)
    app.state.replay_guard = ReplayGuard()
    app.add_middleware(cluster_api.SignedAnswers)
    app.include_router(routes.router)
    app.include_router(cluster_api.router)
    if metrics is not None:
        app.add_middleware(
            ApiRequestMetrics, metrics=metrics, prefix=routes.router.prefix
        )  # outermost: counts every answer
    web_ui.install(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("OK")

    return app


def run(settings: ManagerSettings) -> None:
    """Serve the manager until interrupted."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # uvicorn logs through the root handler: Portway's format and level
        access_log=False,
        server_header=False,
        lifespan="on",
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
    )
    uvicorn.Server(config).run()

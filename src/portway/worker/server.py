"""Listeners and processes of a worker: plain HTTP, HTTPS (TLS termination) and the HTTP->HTTPS
redirect, on N processes sharing the ports through SO_REUSEPORT, with a graceful drain on
SIGTERM/SIGINT and a certificate reload on SIGHUP (forwarded to every process)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from portway.config import log_format
from portway.http import Handler, Server, redirect_to_https, serve, server_tls_context
from portway.telemetry.listener import MetricsListener
from portway.worker import metrics
from portway.worker.certificates import CertificateReloader
from portway.worker.errors import render_protocol_error
from portway.worker.settings import WorkerSettings, h2_limits, server_limits

log = logging.getLogger("portway.worker.server")


@dataclass
class Listeners:
    """The running listeners of one process, by name: ``http``, ``https``, ``redirect``."""

    servers: dict[str, Server]
    certificates: CertificateReloader | None = None
    """Reloads the HTTPS listener's certificate (SIGHUP, file change); ``None`` without TLS."""

    def port(self, name: str = "http") -> int:
        return self.servers[name].port

    async def close(self, grace: float = 30.0) -> None:
        """Stop accepting everywhere, then drain all listeners together up to ``grace`` seconds."""
        if self.certificates is not None:
            await self.certificates.close()
        await asyncio.gather(*(server.close(grace) for server in self.servers.values()))


async def start_listeners(handler: Handler, settings: WorkerSettings) -> Listeners:
    """Start the listeners ``settings`` ask for in the running loop (port 0 picks a free port)."""
    limits = server_limits(settings.limits)
    http2 = h2_limits(settings.http2)
    servers: dict[str, Server] = {}
    certificates: CertificateReloader | None = None
    common = {
        "limits": limits,
        "reuse_port": settings.reuse_port,
        "backlog": settings.backlog,
        "render_error": render_protocol_error,
    }
    try:
        if settings.port is not None:
            servers["http"] = await serve(
                handler,
                settings.host,
                settings.port,
                http2=http2,
                **common,  # type: ignore[arg-type]
            )
        if settings.https_port is not None:
            tls = settings.tls
            assert tls is not None
            context = server_tls_context(
                tls.cert_file,
                tls.key_file,
                client_ca_file=tls.client_ca_file,
                require_client_cert=tls.require_client_cert,
                http2=http2 is not None,
            )
            certificates = CertificateReloader(context, tls)
            servers["https"] = await serve(
                handler,
                settings.host,
                settings.https_port,
                ssl=context,
                http2=http2,
                **common,  # type: ignore[arg-type]
            )
            if settings.redirect_port is not None:
                public = settings.public_https_port or servers["https"].port
                servers["redirect"] = await serve(
                    redirect_to_https(public),
                    settings.host,
                    settings.redirect_port,
                    **common,  # type: ignore[arg-type]
                )
    except BaseException:
        for server in servers.values():
            await server.close(0)
        raise
    if certificates is not None:
        certificates.start()
    return Listeners(servers, certificates)


@dataclass
class WorkerProcess:
    """What ``setup`` gets in each worker process."""

    index: int
    settings: WorkerSettings
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Called (last added first) after the listeners drained."""
    on_started: list[Callable[[Listeners], None]] = field(default_factory=list)
    """Called once the listeners accept connections."""
    listeners: Listeners | None = None


Setup = Callable[[WorkerProcess], Awaitable[Handler]]
"""Builds the process's handler (config sync, runtime, control endpoints). With more than one
process it must be a module-level function: each process is a fresh interpreter."""


async def serve_worker(
    setup: Setup,
    settings: WorkerSettings,
    index: int = 0,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one worker process until SIGTERM/SIGINT (or ``stop``), then drain and shut down."""
    loop = asyncio.get_running_loop()
    process = WorkerProcess(index, settings)
    handler = await setup(process)
    # the start-up object graph (modules, the first compiled revision) lives as long as the
    # process: keep it out of the cyclic collector's full passes, which would stall requests
    gc.collect()
    gc.freeze()
    listeners = await start_listeners(handler, settings)
    process.listeners = listeners
    for announce in process.on_started:
        announce(listeners)
    stop = stop or asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    certificates = listeners.certificates
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(
            signal.SIGHUP,
            certificates.reload
            if certificates is not None
            else lambda: log.info("SIGHUP: no TLS certificate to reload"),
        )
    if certificates is not None:
        # a SIGHUP that came while this process started was ignored (``_child``): the files say
        # whether it would have changed anything
        certificates.check()
    log.info(
        "worker process %d listening on %s",
        index,
        {name: server.port for name, server in listeners.servers.items()},
    )
    try:
        await stop.wait()
    finally:
        await listeners.close(settings.drain_timeout)
        for callback in reversed(process.on_shutdown):
            try:
                await callback()
            except Exception:
                log.exception("shutdown callback failed")


def _child(setup: Setup, settings_json: str, index: int) -> None:
    import uvloop

    # a reload request forwarded before the loop installed its handler must not kill us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log_format.configure()  # the parent's level and format, exported to its environment
    settings = WorkerSettings.model_validate_json(settings_json)
    uvloop.run(serve_worker(setup, settings, index))


def _reserve_ports(settings: WorkerSettings) -> tuple[WorkerSettings, list[socket.socket]]:
    """Turn port 0 into one concrete port that every process can bind with SO_REUSEPORT."""
    held: list[socket.socket] = []
    update: dict[str, int] = {}
    for name in ("port", "https_port", "redirect_port"):
        if getattr(settings, name) == 0:
            sock = socket.socket(
                socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM
            )
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((settings.host, 0))
            held.append(sock)
            update[name] = sock.getsockname()[1]
    return settings.model_copy(update=update), held


def run_worker_server(setup: Setup, settings: WorkerSettings) -> int:
    """Blocking entry point of ``portway worker``: ``settings.processes`` processes serve the same
    ports. One process runs in this interpreter; more are spawned and supervised (a crashed one
    is restarted; SIGTERM/SIGINT drain them all). Returns the exit status.
    With ``metrics_port`` this process also serves every process's metrics
    (``portway.worker.metrics``)."""
    if settings.metrics_port is None:
        return _run_processes(setup, settings, None)
    folder = metrics.prepare_directory()
    try:
        listener = MetricsListener(settings.metrics_host, settings.metrics_port)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, listener.port)
        try:
            return _run_processes(setup, settings, metrics.process_gone)
        finally:
            listener.close()
    finally:
        metrics.remove_directory(folder)


def _run_processes(
    setup: Setup, settings: WorkerSettings, on_exit: Callable[[int], None] | None
) -> int:
    if settings.processes == 1:
        import uvloop

        uvloop.run(serve_worker(setup, settings))
        return 0
    settings, held = _reserve_ports(settings)
    context = multiprocessing.get_context("spawn")
    # only the listener settings travel (``settings`` may be a platform file's WorkerConfig)
    payload = settings.model_dump_json(include=set(WorkerSettings.model_fields))
    children: dict[int, multiprocessing.process.BaseProcess] = {}
    stopping = False

    def start(index: int) -> None:
        child = context.Process(target=_child, args=(setup, payload, index), daemon=False)
        child.start()
        children[index] = child

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    def forward_hangup(signum: int, frame: object) -> None:
        for child in children.values():
            if child.exitcode is None and child.pid is not None:
                os.kill(child.pid, signal.SIGHUP)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, forward_hangup)
    try:
        for index in range(settings.processes):
            start(index)
        restarts: list[float] = []
        while not stopping:
            time.sleep(0.2)
            for index, child in list(children.items()):
                if child.exitcode is not None and not stopping:
                    log.error("worker process %d exited with %s", index, child.exitcode)
                    if on_exit is not None and child.pid is not None:
                        on_exit(child.pid)
                    now = time.monotonic()
                    restarts = [t for t in restarts if now - t < 60] + [now]
                    if len(restarts) > 10 * settings.processes:
                        log.error("worker processes keep crashing; giving up")
                        stopping = True
                        break
                    start(index)
    finally:
        for sock in held:
            sock.close()
        for child in children.values():
            if child.exitcode is None and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + settings.drain_timeout + 5
        for child in children.values():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.exitcode is None:
                child.kill()
                child.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if all(c.exitcode in (0, -signal.SIGTERM) for c in children.values()) else 1

"""Serve one fixed revision from a JSON file, without a manager (benchmarks, tests, debugging).

    python -m portway.worker.static revision.json --port 8080 --processes 2 [--ready-file F]
        [--cache URL] [--logs URL] [--spool-dir DIR] [--http2] [--metrics-port PORT]

``--ready-file`` receives ``{"pid": ..., "ports": {"http": ...}}`` once a process listens.

Without ``--cache`` and ``--logs`` the revision is proxied without policies. With either, each
process builds what ``portway worker`` builds (``portway.worker.process_stores``): the revision's
policy pipelines on the shared cache ``--cache`` (default ``local://``) and, with ``--logs``, a
traffic shipper to that sink, spooling under ``--spool-dir`` (default: the revision's directory).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from portway.compile.routes import PipelineFactory, no_pipeline
from portway.config import log_format
from portway.config.revision import EnvironmentRevision
from portway.http import Handler
from portway.worker import metrics
from portway.worker.process_stores import open_worker_stores
from portway.worker.proxy import GatewayHandler
from portway.worker.runtime import compile_runtime
from portway.worker.server import Listeners, WorkerProcess, run_worker_server
from portway.worker.settings import WorkerSettings

_REVISION_ENV = "PORTWAY_STATIC_REVISION"
_READY_ENV = "PORTWAY_STATIC_READY"
_CACHE_ENV = "PORTWAY_STATIC_CACHE"
_LOGS_ENV = "PORTWAY_STATIC_LOGS"
_SPOOL_ENV = "PORTWAY_STATIC_SPOOL"


async def setup(process: WorkerProcess) -> Handler:
    revision = EnvironmentRevision.read_for_serving(
        Path(os.environ[_REVISION_ENV]).read_text()  # noqa: ASYNC240 - once, at start-up
    )
    handler = GatewayHandler()
    pipelines: PipelineFactory = no_pipeline
    cache_url = os.environ.get(_CACHE_ENV)
    stores = None
    if cache_url:
        stores = await open_worker_stores(
            revision.environment,
            cache_url,
            os.environ.get(_LOGS_ENV) or None,
            Path(os.environ[_SPOOL_ENV]) / f"spool-{process.index}",
        )
        process.on_shutdown.append(stores.close)
        pipelines = stores.pipelines
        if stores.shipper is not None:
            handler.traffic = stores.shipper.submit
    if process.settings.metrics_port is not None:
        metrics.attach(
            handler,
            revision.environment,
            stores.services.stats if stores else None,
            stores.shipper if stores else None,
            process.on_shutdown,
        )
    runtime = compile_runtime(revision, process.settings, pipelines)
    await runtime.start()
    handler.swap(runtime)
    process.on_shutdown.append(handler.close)
    ready = os.environ.get(_READY_ENV)
    if ready:

        def announce(listeners: Listeners) -> None:
            ports = {name: server.port for name, server in listeners.servers.items()}
            tmp = Path(f"{ready}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "ports": ports}))
            tmp.replace(f"{ready}.{process.index}")

        process.on_started.append(announce)
    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m portway.worker.static",
        description="serve one revision file without a manager (benchmarks and tests)",
    )
    parser.add_argument("revision", type=Path, help="an EnvironmentRevision as JSON")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (8080)")
    parser.add_argument("--processes", type=int, default=1, help="processes on the port (1)")
    parser.add_argument(
        "--max-body-bytes", type=int, default=None, help="largest request body (the default limit)"
    )
    parser.add_argument("--ready-file", default=None, help="prefix; '.N' is added per process")
    parser.add_argument("--cache", default=None, help="compile policies on this cache URL")
    parser.add_argument("--logs", default=None, help="ship traffic records to this sink URL")
    parser.add_argument(
        "--spool-dir", type=Path, default=None, help="traffic spool (default: beside REVISION)"
    )
    parser.add_argument("--http2", action="store_true", help="accept h2c with prior knowledge")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_format.configure()  # PORTWAY_LOG_LEVEL / PORTWAY_LOG_FORMAT, else info and text
    os.environ[_REVISION_ENV] = str(args.revision.resolve())
    if args.cache or args.logs:
        os.environ[_CACHE_ENV] = args.cache or "local://"
        if args.logs:
            os.environ[_LOGS_ENV] = args.logs
        os.environ[_SPOOL_ENV] = str((args.spool_dir or args.revision.parent).resolve())
    if args.ready_file:
        os.environ[_READY_ENV] = args.ready_file
    limits = {"max_body_bytes": args.max_body_bytes} if args.max_body_bytes else {}
    settings = WorkerSettings.model_validate(
        {
            "host": args.host,
            "port": args.port,
            "processes": args.processes,
            "limits": limits,
            "http2": {"enabled": args.http2},
            "metrics_port": args.metrics_port,
        }
    )
    return run_worker_server(setup, settings)


if __name__ == "__main__":
    raise SystemExit(main())

"""Serve one fixed revision from a JSON file, without a manager (benchmarks, tests, debugging).

    python -m portway.worker.static revision.json --port 8080 --processes 2 [--ready-file F]

``--ready-file`` receives ``{"pid": ..., "ports": {"http": ...}}`` once a process listens.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from portway.config.revision import EnvironmentRevision
from portway.http import Handler
from portway.worker.proxy import GatewayHandler
from portway.worker.runtime import compile_runtime
from portway.worker.server import Listeners, WorkerProcess, run_worker_server
from portway.worker.settings import WorkerSettings

_REVISION_ENV = "PORTWAY_STATIC_REVISION"
_READY_ENV = "PORTWAY_STATIC_READY"


async def setup(process: WorkerProcess) -> Handler:
    revision = EnvironmentRevision.model_validate_json(
        Path(os.environ[_REVISION_ENV]).read_text()  # noqa: ASYNC240 - once, at start-up
    )
    handler = GatewayHandler()
    runtime = compile_runtime(revision, process.settings)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portway.worker.static")
    parser.add_argument("revision", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--max-body-bytes", type=int, default=None)
    parser.add_argument("--ready-file", default=None, help="prefix; '.N' is added per process")
    args = parser.parse_args(argv)
    os.environ[_REVISION_ENV] = str(args.revision.resolve())
    if args.ready_file:
        os.environ[_READY_ENV] = args.ready_file
    limits = {"max_body_bytes": args.max_body_bytes} if args.max_body_bytes else {}
    settings = WorkerSettings.model_validate(
        {"host": args.host, "port": args.port, "processes": args.processes, "limits": limits}
    )
    return run_worker_server(setup, settings)


if __name__ == "__main__":
    raise SystemExit(main())

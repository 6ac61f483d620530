"""The ``portway`` command: parse arguments, build settings, call the same code the tests call."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from portway.client.cli import register as register_client
from portway.config.platform import PlatformConfig
from portway.config.platform_file import (
    Override,
    PlatformConfigError,
    load_platform,
    parse_assignment,
    platform_from_mapping,
    summary,
)
from portway.errors import ConfigError
from portway.matrix.cli import register as register_matrix


def _absolute(text: str) -> Path:
    """Paths given as flags are relative to the working directory, as on any command line."""
    return Path(text).resolve()


def _platform(args: argparse.Namespace, flags: list[tuple[str, object]]) -> PlatformConfig:
    """The platform file (or, without ``--config``, its defaults under ./var/portway), then
    ``PORTWAY_…`` variables, then ``--set`` assignments and the named flags."""
    overrides = [*(parse_assignment(a) for a in args.set), *flags]
    if args.config is not None:
        return load_platform(args.config, overrides=overrides)
    return platform_from_mapping(
        {}, Path.cwd(), overrides=overrides, default_data_dir=Path("var/portway").resolve()
    )


def _given(prefix: str, args: argparse.Namespace, names: dict[str, str]) -> list[Override]:
    return [
        (f"{prefix}{key}", str(value) if isinstance(value, Path) else value)
        for flag, key in names.items()
        if (value := getattr(args, flag)) is not None
    ]


def _manager(args: argparse.Namespace) -> int:
    from portway.manager.app import run

    flags = {
        "host": "host",
        "port": "port",
        "store": "store",
        "logs": "logs",
        "data_dir": "data_dir",
        "secret_file": "secret_file",
        "report_interval": "report_interval",
    }
    platform = _platform(args, _given("manager.", args, flags))
    run(platform.manager)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from portway.worker.app import WorkerOptions, run

    env = args.environment
    if args.processes == 0:
        args.processes = None  # one per core: the settings' default
    flags = {
        "manager": "manager_url",
        "host": "host",
        "port": "port",
        "processes": "processes",
        "worker_id": "worker_id",
        "advertise_url": "advertise_url",
        "secret_file": "secret_file",
        "state_dir": "state_dir",
        "poll_interval": "poll_interval",
        "logs": "logs",
        "cache": "cache",
    }
    overrides = _given(f"workers.{env}.", args, flags)
    if args.config is None and args.logs is None and args.state_dir is not None:
        # without a file: traffic.db beside the state directory, the manager's on one host
        overrides.append((f"workers.{env}.logs", f"sqlite:///{args.state_dir.parent}/traffic.db"))
    if args.config is None and not overrides:
        overrides = [(f"workers.{env}", {})]
    platform = _platform(args, overrides)
    worker = platform.worker(env)
    assert worker.secret_file is not None  # settled by the loader
    assert worker.state_dir is not None
    return run(
        WorkerOptions(
            environment=env,
            manager_url=platform.manager_url(env),
            host=worker.host,
            port=worker.port or worker.https_port or 0,
            processes=worker.processes,
            worker_id=worker.worker_id,
            advertise_url=worker.advertise_url,
            secret_file=worker.secret_file,
            state_dir=worker.state_dir,
            poll_interval=worker.poll_interval,
            cache_url=worker.cache,
            logs_url=worker.logs or platform.manager.logs,
            settings=worker,
        )
    )


def _config_check(args: argparse.Namespace) -> int:
    from portway.matrix.platform import inventory_for, matrix_for

    try:
        platform = load_platform(args.file)
        matrix_for(platform)
        inventory_for(platform)
    except PlatformConfigError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        message = str(exc)
        shown = message if message.startswith(str(args.file)) else f"{args.file}: {message}"
        print(shown, file=sys.stderr)
        return 2
    print(f"{args.file}: valid ({summary(platform)})")
    return 0


def _add_platform_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="the platform file, portway.yaml"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one key of the platform file (after PORTWAY_… variables), e.g. "
        "manager.port=9000; repeatable",
    )


def _demo_backend(args: argparse.Namespace) -> int:
    from portway.demo.echo import run

    run(args.host, args.port)
    return 0


def _up(args: argparse.Namespace) -> int:
    from portway.local.profile import LocalProfile
    from portway.local.up import run_up

    return run_up(
        LocalProfile(
            worker_port=args.worker_port,
            manager_port=args.manager_port,
            backend_port=args.backend_port,
            data_dir=args.data_dir,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portway", description="Portway API management platform")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start manager, worker and demo backend on this machine")
    up.add_argument("--worker-port", type=int, default=8080)
    up.add_argument("--manager-port", type=int, default=8081)
    up.add_argument("--backend-port", type=int, default=8082)
    up.add_argument("--data-dir", type=Path, default=Path("var/portway"))
    up.set_defaults(func=_up)

    manager = sub.add_parser("manager", help="run the manager (management API, deployments)")
    _add_platform_flags(manager)
    manager.add_argument("--host", default=None, help="default: 127.0.0.1")
    manager.add_argument("--port", type=int, default=None, help="default: 8080")
    manager.add_argument(
        "--store",
        default=None,
        help="config store URL: sqlite:///PATH or mongodb://HOST:PORT/DB "
        "(default: DATA_DIR/manager.db)",
    )
    manager.add_argument(
        "--logs",
        default=None,
        help="traffic log store for analytics: sqlite:///PATH or elasticsearch://HOST:9200 "
        "(default: DATA_DIR/traffic.db)",
    )
    manager.add_argument(
        "--data-dir",
        type=_absolute,
        default=None,
        help="default: the file's data_dir, $PORTWAY_HOME, the file's directory, ./var/portway",
    )
    manager.add_argument(
        "--secret-file",
        type=_absolute,
        default=None,
        help="cluster secret (default: DATA_DIR/cluster.secret)",
    )
    manager.add_argument(
        "--report-interval",
        type=float,
        default=None,
        help="seconds between worker status reports (liveness; default 5)",
    )
    manager.set_defaults(func=_manager)

    worker = sub.add_parser("worker", help="run a gateway worker for one environment")
    _add_platform_flags(worker)
    worker.add_argument("--environment", required=True, help="the environment this worker serves")
    worker.add_argument(
        "--manager",
        default=None,
        help="manager URL, e.g. http://manager:8080 (default: "
        "the file's workers.ENV.manager_url, else the manager's listener)",
    )
    worker.add_argument("--host", default=None, help="default: 0.0.0.0")
    worker.add_argument("--port", type=int, default=None, help="default: 8080")
    worker.add_argument("--processes", type=int, default=None, help="0 = one per core")
    worker.add_argument("--worker-id", default=None, help="default: HOSTNAME-PORT")
    worker.add_argument(
        "--advertise-url",
        default=None,
        help="URL the manager uses to reach this worker (default: from host/port)",
    )
    worker.add_argument(
        "--secret-file", type=_absolute, default=None, help="default: the manager's secret_file"
    )
    worker.add_argument(
        "--state-dir", type=_absolute, default=None, help="default: DATA_DIR/worker-ENV"
    )
    worker.add_argument("--poll-interval", type=float, default=None, help="default: 5")
    worker.add_argument(
        "--logs",
        default=None,
        help="traffic log sink: sqlite:///PATH or elasticsearch://HOST:9200 (default: the "
        "manager's logs; without --config, traffic.db beside --state-dir)",
    )
    worker.add_argument(
        "--cache",
        default=None,
        help="shared cache URL: local:// (per process, the default), redis://HOST:PORT/0, "
        "hazelcast://HOST:PORT/CLUSTER",
    )
    worker.set_defaults(func=_worker)

    config = sub.add_parser("config", help="the platform file, portway.yaml")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", help="validate a platform file; exit 2 naming each bad key, 0 when valid"
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(func=_config_check)

    demo = sub.add_parser("demo-backend", help="run the demo echo backend")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8082)
    demo.set_defaults(func=_demo_backend)

    register_matrix(sub)
    register_client(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"portway: error: {exc}", file=sys.stderr)
        return 2
    return code

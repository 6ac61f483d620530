"""The ``portway`` command, the one command-line entry point: parse arguments, build settings,
call the same code the tests call.

Every command exits 0 when done, 1 when refused or failed, 2 on a usage or configuration error
(argparse's own usage errors included); errors go to stderr as ``portway: error: …``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from portway.client.cli import register as register_client
from portway.config import log_format
from portway.config.manager_settings import ManagerSettings
from portway.config.platform import PlatformConfig, WorkerConfig
from portway.config.platform_file import (
    Override,
    PlatformConfigError,
    load_platform,
    parse_assignment,
    platform_from_mapping,
    summary,
)
from portway.deploy.cli import register as register_deploy
from portway.errors import ConfigError, UsageError
from portway.lab.cli import register as register_lab
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


def manager_settings(args: argparse.Namespace) -> ManagerSettings:
    """The manager's settings: the platform file, ``PORTWAY_…`` variables, then the flags."""
    flags = {
        "host": "host",
        "port": "port",
        "store": "store",
        "logs": "logs",
        "data_dir": "data_dir",
        "secret_file": "secret_file",
        "report_interval": "report_interval",
        "max_body_bytes": "max_body_bytes",
        "max_import_body_bytes": "max_import_body_bytes",
        "max_cluster_body_bytes": "max_cluster_body_bytes",
        "import_max_bytes": "import_max_bytes",
        "tls_cert": "tls_cert_file",
        "tls_key": "tls_key_file",
        "cluster_ca": "cluster_ca_file",
        "metrics_port": "metrics_port",
        "metrics_host": "metrics_host",
    }
    return _platform(args, _given("manager.", args, flags)).manager


def _manager(args: argparse.Namespace) -> int:
    from portway.manager.app import run

    run(manager_settings(args))
    return 0


def worker_platform(args: argparse.Namespace) -> tuple[PlatformConfig, WorkerConfig]:
    """The platform and this worker's section: the file, ``PORTWAY_…`` variables, the flags."""
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
        "https_port": "https_port",
        "redirect_port": "redirect_port",
        "public_https_port": "public_https_port",
        "trusted_proxy": "trusted_proxies",
        "drain_timeout": "drain_timeout",
        "metrics_port": "metrics_port",
        "metrics_host": "metrics_host",
        "tracing_endpoint": "tracing_endpoint",
        "tls_cert": "tls.cert_file",
        "tls_key": "tls.key_file",
        "client_ca": "tls.client_ca_file",
        "require_client_cert": "tls.require_client_cert",
        "tls_reload_interval": "tls.reload_interval",
        "cluster_ca": "cluster_ca",
        "insecure_cluster": "insecure_cluster",
    }
    overrides = _given(f"workers.{env}.", args, flags)
    if args.no_http:
        overrides.append((f"workers.{env}.port", None))
    for flag in ("max_connections_per_client", "body_deadline"):
        value = getattr(args, flag)
        if value is not None:  # 0 turns a limit off
            overrides.append((f"workers.{env}.limits.{flag}", value or None))
    if args.min_body_rate is not None:  # 0 is off already
        overrides.append((f"workers.{env}.limits.min_body_rate", args.min_body_rate))
    tls_extras = args.tls_key or args.client_ca or args.require_client_cert
    if tls_extras and args.tls_cert is None and args.config is None:
        raise ConfigError("--tls-key, --client-ca and --require-client-cert need --tls-cert")
    if args.config is None and args.logs is None and args.state_dir is not None:
        # without a file: traffic.db beside the state directory, the manager's on one host
        overrides.append((f"workers.{env}.logs", f"sqlite:///{args.state_dir.parent}/traffic.db"))
    if args.config is None and not overrides:
        overrides = [(f"workers.{env}", {})]
    platform = _platform(args, overrides)
    return platform, platform.worker(env)


def _worker(args: argparse.Namespace) -> int:
    from portway.worker.app import run

    platform, _ = worker_platform(args)
    return run(args.environment, platform.settled_worker(args.environment))


def _config_check(args: argparse.Namespace) -> int:
    from portway.matrix.platform import inventory_for, matrix_for

    try:
        platform = load_platform(args.file)
        matrix_for(platform)
        inventory_for(platform)
    except PlatformConfigError as exc:
        for problem in exc.problems:
            print(f"portway: error: {args.file}: {problem}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        message = str(exc)
        shown = message if message.startswith(str(args.file)) else f"{args.file}: {message}"
        print(f"portway: error: {shown}", file=sys.stderr)
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


def _tls_arguments(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--tls-cert", type=_absolute, default=None, help=f"PEM certificate chain: {purpose}"
    )
    parser.add_argument(
        "--tls-key", type=_absolute, default=None, help="PEM private key (if not in --tls-cert)"
    )


def _worker_limit_arguments(worker: argparse.ArgumentParser) -> None:
    worker.add_argument(
        "--max-connections-per-client",
        type=int,
        default=None,
        help="open connections per client address (IPv6: per /64), more get 503; 0 = no cap "
        "(e.g. behind a load balancer, which is every client's address); default 256",
    )
    worker.add_argument(
        "--body-deadline",
        type=float,
        default=None,
        help="seconds to receive a whole request body (408 past it); 0 = none; default 600",
    )
    worker.add_argument(
        "--min-body-rate",
        type=int,
        default=None,
        help="least average request body rate in bytes/s after 30 s (408); 0 = none; default 1024",
    )


def _worker_listener_arguments(worker: argparse.ArgumentParser) -> None:
    worker.add_argument(
        "--no-http",
        action="store_true",
        help="no plain HTTP listener (serve --https-port only)",
    )
    worker.add_argument(
        "--https-port", type=int, default=None, help="TLS listener port (needs --tls-cert)"
    )
    worker.add_argument(
        "--redirect-port",
        type=int,
        default=None,
        help="plain listener answering 308 to the HTTPS listener (needs --tls-cert)",
    )
    worker.add_argument(
        "--public-https-port",
        type=int,
        default=None,
        help="HTTPS port named in redirects (default: --https-port)",
    )
    _tls_arguments(worker, "serve clients and the manager's push/probe over HTTPS")
    worker.add_argument(
        "--tls-reload-interval",
        type=float,
        default=None,
        help="seconds between checks of the certificate files (0: only on SIGHUP; default 10)",
    )
    worker.add_argument(
        "--client-ca",
        type=_absolute,
        default=None,
        help="PEM CAs that sign client certs (mTLS)",
    )
    worker.add_argument(
        "--require-client-cert",
        action="store_const",
        const=True,
        default=None,
        help="refuse TLS clients without a certificate signed by --client-ca",
    )
    worker.add_argument(
        "--trusted-proxy",
        action="append",
        default=None,
        metavar="CIDR",
        help="a load balancer whose X-Forwarded-* headers are trusted (repeatable)",
    )
    worker.add_argument(
        "--drain-timeout",
        type=float,
        default=None,
        help="seconds in-flight requests get on shutdown (default 30)",
    )
    _metrics_arguments(worker)
    worker.add_argument(
        "--tracing-endpoint",
        default=None,
        metavar="URL",
        help="export OpenTelemetry traces over OTLP/HTTP to this URL (default: off)",
    )


def _metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics on this port, apart from everything else (default: off)",
    )
    parser.add_argument(
        "--metrics-host", default=None, help="address the metrics port binds (default 127.0.0.1)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portway", description="Portway API management platform")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--version", action="version", version=f"portway {version('portway')}", help="print it"
    )
    parser.add_argument(
        "--log-level",
        choices=log_format.LEVELS,
        default=None,
        help="least severity logged (default info; PORTWAY_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=log_format.FORMATS,
        default=None,
        help="text lines or one JSON object per line (default text; PORTWAY_LOG_FORMAT)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start manager, worker and demo backend on this machine")
    up.add_argument("--worker-port", type=int, default=8080, help="the gateway (8080)")
    up.add_argument(
        "--manager-port", type=int, default=8081, help="the management API and cluster API (8081)"
    )
    up.add_argument("--backend-port", type=int, default=8082, help="the demo echo backend (8082)")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/portway"),
        help="stores, secrets and the admin token (var/portway)",
    )
    up.set_defaults(func=_up)

    manager = sub.add_parser("manager", help="run the manager (management API, deployments)")
    _add_platform_flags(manager)
    manager.add_argument("--host", default=None, help="default: 127.0.0.1")
    manager.add_argument("--port", type=int, default=None, help="default: 8080")
    _metrics_arguments(manager)
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
    manager.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help="largest request body of the JSON API routes (413; default 1 MiB)",
    )
    manager.add_argument(
        "--max-import-body-bytes",
        type=int,
        default=None,
        help="largest request body of OpenAPI import and declarative apply (413; default 16 MiB)",
    )
    manager.add_argument(
        "--max-cluster-body-bytes",
        type=int,
        default=None,
        help="largest request body of the cluster API workers call (413; default 1 MiB)",
    )
    manager.add_argument(
        "--import-max-bytes",
        type=int,
        default=None,
        help="largest OpenAPI document `api create --openapi` may import (default 5 MiB; "
        "also raises --max-import-body-bytes to twice this unless that is given)",
    )
    _tls_arguments(manager, "serve the management API and the cluster API over HTTPS")
    manager.add_argument(
        "--cluster-ca",
        type=_absolute,
        default=None,
        help="PEM CA bundle that workers' https:// advertise URLs must be signed by (pinned)",
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
    _worker_limit_arguments(worker)
    _worker_listener_arguments(worker)
    worker.add_argument(
        "--cluster-ca",
        type=_absolute,
        default=None,
        help="PEM CA bundle that the https:// manager's certificate must be signed by (pinned)",
    )
    worker.add_argument(
        "--insecure-cluster",
        action="store_const",
        const=True,
        default=None,
        help="allow a plain http:// manager URL that is not loopback (cluster calls unencrypted)",
    )
    worker.set_defaults(func=_worker)

    config = sub.add_parser("config", help="the platform file, portway.yaml")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", help="validate a platform file; exit 2 naming each bad key, 0 when valid"
    )
    check.add_argument("file", type=Path, metavar="FILE", help="the platform file to check")
    check.set_defaults(func=_config_check)

    demo = sub.add_parser("demo-backend", help="run the demo echo backend")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    demo.add_argument("--port", type=int, default=8082, help="port to bind (8082)")
    demo.set_defaults(func=_demo_backend)

    register_matrix(sub)
    register_deploy(sub)
    register_client(sub)
    register_lab(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_format.configure("debug" if args.verbose else args.log_level, args.log_format)
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except (ConfigError, UsageError) as exc:
        print(f"portway: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the command writes, a port it binds
        print(f"portway: error: {exc}", file=sys.stderr)
        return 1
    return code

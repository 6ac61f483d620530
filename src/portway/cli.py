"""The ``portway`` command: parse arguments, build settings, call the same code the tests call."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from portway.client.cli import register as register_client
from portway.deploy.cli import register as register_deploy
from portway.matrix.cli import register as register_matrix

if TYPE_CHECKING:
    from portway.manager.settings import ManagerSettings
    from portway.worker.settings import LimitSettings, TlsSettings


def manager_settings(args: argparse.Namespace) -> ManagerSettings:
    """The settings ``portway manager`` was given."""
    from portway.manager.settings import ManagerSettings

    data = args.data_dir.resolve()
    return ManagerSettings(
        host=args.host,
        port=args.port,
        store=args.store or f"sqlite:///{data}/manager.db",
        logs=args.logs or f"sqlite:///{data}/traffic.db",
        data_dir=args.data_dir,
        secret_file=args.secret_file or args.data_dir / "cluster.secret",
        bootstrap_file=args.data_dir / "bootstrap-admin.json",
        report_interval=args.report_interval,
        max_body_bytes=args.max_body_bytes,
        max_import_body_bytes=args.max_import_body_bytes,
        max_cluster_body_bytes=args.max_cluster_body_bytes,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
        cluster_ca_file=args.cluster_ca,
    )


def _manager(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from portway.manager.app import run

    try:
        settings = manager_settings(args)
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run(settings)
    return 0


def worker_limits(args: argparse.Namespace) -> LimitSettings:
    """The connection limits ``portway worker`` was given (0 turns a limit off)."""
    from portway.worker.settings import LimitSettings

    return LimitSettings(
        max_connections_per_client=args.max_connections_per_client or None,
        body_deadline=args.body_deadline or None,
        min_body_rate=args.min_body_rate,
    )


def _worker_tls(args: argparse.Namespace) -> TlsSettings | None:
    """The worker's TLS settings from its flags; raises ``ValueError`` on a bad combination."""
    from portway.worker.settings import TlsSettings

    if args.tls_cert is None:
        if args.tls_key or args.client_ca or args.require_client_cert:
            raise ValueError("--tls-key, --client-ca and --require-client-cert need --tls-cert")
        return None
    return TlsSettings(
        cert_file=str(args.tls_cert),
        key_file=str(args.tls_key) if args.tls_key else None,
        client_ca_file=str(args.client_ca) if args.client_ca else None,
        require_client_cert=args.require_client_cert,
        reload_interval=args.tls_reload_interval,
    )


def _worker(args: argparse.Namespace) -> int:
    from portway.worker.app import WorkerOptions, run

    try:
        limits = worker_limits(args)
        tls = _worker_tls(args)
    except ValueError as exc:  # pydantic's ValidationError included
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(
        WorkerOptions(
            environment=args.environment,
            manager_url=args.manager,
            host=args.host,
            port=None if args.no_http else args.port,
            processes=args.processes,
            https_port=args.https_port,
            redirect_port=args.redirect_port,
            public_https_port=args.public_https_port,
            tls=tls,
            trusted_proxies=args.trusted_proxy,
            drain_timeout=args.drain_timeout,
            worker_id=args.worker_id,
            advertise_url=args.advertise_url,
            secret_file=args.secret_file,
            state_dir=args.state_dir,
            poll_interval=args.poll_interval,
            cache_url=args.cache,
            logs_url=args.logs or f"sqlite:///{args.state_dir.resolve().parent}/traffic.db",
            limits=limits,
            cluster_ca=args.cluster_ca,
            insecure_cluster=args.insecure_cluster,
        )
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
        "--tls-cert", type=Path, default=None, help=f"PEM certificate chain: {purpose}"
    )
    parser.add_argument(
        "--tls-key", type=Path, default=None, help="PEM private key (if not in --tls-cert)"
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
    manager.add_argument("--host", default="127.0.0.1")
    manager.add_argument("--port", type=int, default=8080)
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
    manager.add_argument("--data-dir", type=Path, default=Path("var/portway"))
    manager.add_argument(
        "--secret-file",
        type=Path,
        default=None,
        help="cluster secret (default: DATA_DIR/cluster.secret)",
    )
    manager.add_argument(
        "--report-interval",
        type=float,
        default=5.0,
        help="seconds between worker status reports (liveness)",
    )
    manager.add_argument(
        "--max-body-bytes",
        type=int,
        default=1024 * 1024,
        help="largest request body of the JSON API routes (413)",
    )
    manager.add_argument(
        "--max-import-body-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="largest request body of OpenAPI import and declarative apply (413)",
    )
    manager.add_argument(
        "--max-cluster-body-bytes",
        type=int,
        default=1024 * 1024,
        help="largest request body of the cluster API workers call (413)",
    )
    _tls_arguments(manager, "serve the management API and the cluster API over HTTPS")
    manager.add_argument(
        "--cluster-ca",
        type=Path,
        default=None,
        help="PEM CA bundle that workers' https:// advertise URLs must be signed by (pinned)",
    )
    manager.set_defaults(func=_manager)

    worker = sub.add_parser("worker", help="run a gateway worker for one environment")
    worker.add_argument("--environment", required=True, help="the environment this worker serves")
    worker.add_argument("--manager", required=True, help="manager URL, e.g. http://manager:8080")
    worker.add_argument("--host", default="0.0.0.0")
    worker.add_argument("--port", type=int, default=8080)
    worker.add_argument("--processes", type=int, default=0, help="0 = one per core")
    worker.add_argument("--worker-id", default=None, help="default: HOSTNAME-PORT")
    worker.add_argument(
        "--advertise-url",
        default=None,
        help="URL the manager uses to reach this worker (default: from host/port)",
    )
    worker.add_argument("--secret-file", type=Path, default=Path("var/portway/cluster.secret"))
    worker.add_argument("--state-dir", type=Path, default=Path("var/portway/worker"))
    worker.add_argument("--poll-interval", type=float, default=5.0)
    worker.add_argument(
        "--logs",
        default=None,
        help="traffic log sink: sqlite:///PATH or elasticsearch://HOST:9200 "
        "(default: traffic.db beside the state directory, the manager's default on one host)",
    )
    worker.add_argument(
        "--cache",
        default="local://",
        help="shared cache URL: local:// (per process), redis://HOST:PORT/0, "
        "hazelcast://HOST:PORT/CLUSTER",
    )
    worker.add_argument(
        "--max-connections-per-client",
        type=int,
        default=256,
        help="open connections per client address (IPv6: per /64), more get 503; 0 = no cap "
        "(e.g. behind a load balancer, which is every client's address)",
    )
    worker.add_argument(
        "--body-deadline",
        type=float,
        default=600.0,
        help="seconds to receive a whole request body (408 past it); 0 = none",
    )
    worker.add_argument(
        "--min-body-rate",
        type=int,
        default=1024,
        help="least average request body rate in bytes/s after 30 s (408); 0 = none",
    )
    worker.add_argument(
        "--cluster-ca",
        type=Path,
        default=None,
        help="PEM CA bundle that the https:// manager's certificate must be signed by (pinned)",
    )
    worker.add_argument(
        "--insecure-cluster",
        action="store_true",
        help="allow a plain http:// manager URL that is not loopback (cluster calls unencrypted)",
    )
    worker.add_argument(
        "--no-http", action="store_true", help="no plain HTTP listener (serve --https-port only)"
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
    worker.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain")
    worker.add_argument("--tls-key", type=Path, default=None, help="PEM key (if not in the cert)")
    worker.add_argument(
        "--tls-reload-interval",
        type=float,
        default=10.0,
        help="seconds between checks of the certificate files (0: only on SIGHUP)",
    )
    worker.add_argument(
        "--client-ca", type=Path, default=None, help="PEM CAs that sign client certs (mTLS)"
    )
    worker.add_argument(
        "--require-client-cert",
        action="store_true",
        help="refuse TLS clients without a certificate signed by --client-ca",
    )
    worker.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a load balancer whose X-Forwarded-* headers are trusted (repeatable)",
    )
    worker.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests get on shutdown",
    )
    worker.set_defaults(func=_worker)

    demo = sub.add_parser("demo-backend", help="run the demo echo backend")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8082)
    demo.set_defaults(func=_demo_backend)

    register_matrix(sub)
    register_client(sub)
    register_deploy(sub)
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
    code: int = args.func(args)
    return code

"""``portway deployment render --target haproxy|nginx|kubernetes|systemd --plan FILE``.

(``portway deploy`` is taken: it deploys APIs to an environment.)"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from portway.deploy.haproxy import render_haproxy
from portway.deploy.kubernetes import LabTls, render_kubernetes
from portway.deploy.lab_ca import LabCertificates, lab_certificates
from portway.deploy.nginx import render_nginx
from portway.deploy.plan import DeploymentPlan, load_plan, plan_from_platform
from portway.deploy.systemd import render_systemd
from portway.errors import ConfigError

TARGETS = ("haproxy", "nginx", "kubernetes", "systemd")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    deployment = subparsers.add_parser(
        "deployment", help="deployment artifacts: load balancer, Kubernetes, systemd"
    )
    commands = deployment.add_subparsers(
        dest="deployment_command", metavar="COMMAND", required=True
    )
    render = commands.add_parser(
        "render",
        help="render a load balancer configuration, Kubernetes manifests or systemd units",
    )
    render.add_argument("--target", choices=TARGETS, required=True, help="what to render")
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config", type=Path, help="the platform file, portway.yaml (with --environment)"
    )
    source.add_argument("--plan", type=Path, help="a DeploymentPlan (YAML), instead of --config")
    render.add_argument(
        "--environment", default=None, help="with --config: the environment whose workers to use"
    )
    render.add_argument(
        "--lab-ca",
        type=Path,
        default=None,
        metavar="DIR",
        help="create (or reuse) a local CA in DIR and a certificate for the public names; "
        "labs only",
    )
    render.add_argument(
        "--cluster-secret",
        type=Path,
        default=None,
        help="kubernetes: the manager/worker secret to put in the Secret (default: a new one)",
    )
    render.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        help="file to write (a directory for systemd); default: standard output",
    )
    render.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        plan = _plan(args)
        files = render(plan, args.target, args.lab_ca, args.cluster_secret)
    except ConfigError as exc:
        print(f"portway: error: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        for name, text in files.items():
            if len(files) > 1:
                sys.stdout.write(f"# ---- {name} ----\n")
            sys.stdout.write(text)
        return 0
    if args.target == "systemd":
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.out / name).write_text(text, encoding="utf-8")
    else:
        args.out.write_text(next(iter(files.values())), encoding="utf-8")
    return 0


def _plan(args: argparse.Namespace) -> DeploymentPlan:
    if args.plan is not None:
        return load_plan(args.plan)
    from portway.config.platform_file import load_platform

    platform = load_platform(args.config)
    environment = args.environment
    if environment is None:
        if len(platform.workers) != 1:
            raise ConfigError("name the environment with --environment", "environment")
        environment = next(iter(platform.workers))
    return plan_from_platform(platform, environment)


def _cluster_secret(path: Path | None) -> str:
    if path is None:
        return secrets.token_urlsafe(48)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "cluster_secret") from exc
    if len(value) < 32:
        raise ConfigError("the cluster secret must have at least 32 characters", "cluster_secret")
    return value


def render(
    plan: DeploymentPlan,
    target: str,
    lab_ca: Path | None = None,
    cluster_secret: Path | None = None,
) -> dict[str, str]:
    """File name → contents for ``target``; raises ``ConfigError``."""
    lab: LabCertificates | None = None
    if lab_ca is not None:
        try:
            lab = lab_certificates(lab_ca, plan.public_names)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot create the lab CA in {lab_ca}: {exc}", "lab_ca") from exc
    if target == "haproxy":
        bundle = str(lab.bundle_file) if lab else None
        return {"haproxy.cfg": render_haproxy(plan, bundle)}
    if target == "nginx":
        if lab is not None:
            return {"nginx.conf": render_nginx(plan, str(lab.cert_file), str(lab.key_file))}
        return {"nginx.conf": render_nginx(plan)}
    if target == "kubernetes":
        tls = (
            LabTls(lab.cert_file.read_text(), lab.key_file.read_text()) if lab is not None else None
        )
        return {"portway.yaml": render_kubernetes(plan, _cluster_secret(cluster_secret), tls)}
    if target == "systemd":
        return render_systemd(plan)
    raise ConfigError(f"unknown target {target!r}; known: {', '.join(TARGETS)}", "target")

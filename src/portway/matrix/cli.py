"""``portway matrix …`` and ``portway audit``: parse arguments, call the library, print.

Exit codes, as every ``portway`` command: 0 done; 1 when ``matrix check`` or ``audit`` finds a
violation or ``matrix checklist`` a failed item (the count is in the output); 2 for an unusable
configuration, inventory or request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portway.config.platform import PlatformConfig
from portway.config.platform_file import load_platform
from portway.errors import ConfigError
from portway.matrix.audit.report import render_report_json, render_report_table
from portway.matrix.audit.runner import AuditOptions, run_audit
from portway.matrix.checklist import Status, checklist, render_checklist
from portway.matrix.diagram_ascii import ascii_diagram
from portway.matrix.diagram_mermaid import mermaid_diagram
from portway.matrix.effective import effective_matrix
from portway.matrix.errors import MatrixError
from portway.matrix.firewall import aws, iptables, kubernetes, nftables
from portway.matrix.firewall.plan import Scope, resolve_host, resolve_zone
from portway.matrix.firewall.scope import selected_components
from portway.matrix.inventory import Inventory, load_inventory
from portway.matrix.model import Matrix, Zone
from portway.matrix.platform import inventory_for, matrix_for
from portway.matrix.render_data import render_csv, render_json
from portway.matrix.render_markdown import render_markdown
from portway.matrix.rules import check, standard_rules
from portway.matrix.settings import MatrixSettings

SHOW_FORMATS = ("markdown", "json", "csv", "mermaid", "ascii")
SHOW_HELP = "the document's format (default markdown)"
FIREWALL_FORMATS = ("nftables", "nftables-json", "iptables", "k8s", "aws")
Handler = Callable[[argparse.Namespace], int]


def _add_config(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="the installation's platform file, portway.yaml (default: --profile standard)",
    )
    where.add_argument(
        "--profile",
        choices=("standard",),
        help="standard: the seed's standard installation, every table of the seed",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", type=Path, metavar="PATH", help="write here, not stdout")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``matrix`` and ``audit`` commands to Portway's CLI.

    Each parser sets ``func`` (:func:`run`, which turns Portway errors into exit status 2) and
    ``handler`` (the command itself).
    """
    matrix = subparsers.add_parser(
        "matrix",
        help="the network connection matrix: documents, checks, firewall rules",
        description="Render, check and turn into firewall rules the network connection matrix.",
    )
    _add_config(matrix)
    matrix.add_argument(
        "--format", dest="show_format", choices=SHOW_FORMATS, default="markdown", help=SHOW_HELP
    )
    _add_output(matrix)
    matrix.set_defaults(handler=_show, func=run)
    commands = matrix.add_subparsers(dest="matrix_command", metavar="COMMAND")

    show = commands.add_parser("show", help="render the effective matrix")
    _add_config(show)
    show.add_argument(
        "--format", dest="show_format", choices=SHOW_FORMATS, default="markdown", help=SHOW_HELP
    )
    _add_output(show)
    show.set_defaults(handler=_show, func=run)

    check_parser = commands.add_parser(
        "check", help="evaluate the security rules; exit status 1 on a violation"
    )
    _add_config(check_parser)
    check_parser.set_defaults(handler=_check, func=run)

    firewall = commands.add_parser("firewall", help="generate firewall rules")
    _add_config(firewall)
    firewall.add_argument("--format", dest="firewall_format", choices=FIREWALL_FORMATS,
                          required=True, help="the rule language")  # fmt: skip
    where = firewall.add_mutually_exclusive_group()
    where.add_argument("--zone", choices=[z.value for z in Zone], help="rules for a zone router")
    where.add_argument("--host", help="rules for one host: an inventory host name or a component")
    firewall.add_argument(
        "--inventory", type=Path, metavar="PATH", help="addresses (default: the config's hosts)"
    )
    _add_output(firewall)
    firewall.set_defaults(handler=_firewall, func=run)

    checklist_parser = commands.add_parser(
        "checklist", help="the port opening checklist, answered from evidence"
    )
    _add_config(checklist_parser)
    checklist_parser.add_argument(
        "--audit-report",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a `portway audit --format json` report (repeat for each vantage point)",
    )
    _add_output(checklist_parser)
    checklist_parser.set_defaults(handler=_checklist, func=run)

    audit = subparsers.add_parser(
        "audit",
        help="scan a deployment and compare it with the matrix; exit status 1 on a violation",
        description="Scan the hosts of an inventory from where this runs and compare what "
        "answers with what the matrix allows from here.",
    )
    _add_config(audit)
    audit.add_argument(
        "--inventory", type=Path, metavar="PATH", help="addresses (default: the config's hosts)"
    )
    audit.add_argument(
        "--from",
        dest="vantage",
        required=True,
        metavar="NAME",
        help="where this runs: an inventory host name, or a component such as 'internet'",
    )
    audit.add_argument(
        "--scanner",
        choices=("asyncio", "nmap"),
        default="asyncio",
        help="built-in TCP connects, or nmap -sT -Pn (default asyncio)",
    )
    audit.add_argument("--format", dest="audit_format", choices=("table", "json"),
                       default="table", help="the report's format (default table)")  # fmt: skip
    audit.add_argument("--timeout", type=float, default=1.0, help="seconds per probe")
    audit.add_argument("--concurrency", type=int, default=256, help="probes at once (256)")
    audit.add_argument("--extra-ports", default="", help="more ports to probe, comma-separated")
    audit.add_argument(
        "--no-common-ports",
        dest="common_ports",
        action="store_false",
        help="probe only the matrix's ports (and --extra-ports), not the usual suspects",
    )
    audit.add_argument("--ca-file", type=Path, help="CA bundle that signs the TLS certificates")
    audit.add_argument(
        "--min-cert-days", type=int, default=14, help="least days a certificate has left (14)"
    )
    audit.add_argument("--only-violations", action="store_true", help="table: hide ok rows")
    _add_output(audit)
    audit.set_defaults(handler=_audit, func=run)


def _platform(args: argparse.Namespace) -> PlatformConfig | None:
    path: Path | None = getattr(args, "config", None)
    return load_platform(path) if path is not None else None


def _settings(args: argparse.Namespace) -> tuple[MatrixSettings, Matrix]:
    platform = _platform(args)
    if platform is None:
        settings = MatrixSettings()
        return settings, effective_matrix(settings)
    return matrix_for(platform)


def _emit(args: argparse.Namespace, text: str) -> None:
    if getattr(args, "output", None):
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _show(args: argparse.Namespace) -> int:
    settings, matrix = _settings(args)
    renderers: dict[str, Callable[[], str]] = {
        "markdown": lambda: render_markdown(matrix, standard_rules(settings)),
        "json": lambda: render_json(matrix),
        "csv": lambda: render_csv(matrix),
        "mermaid": lambda: mermaid_diagram(matrix),
        "ascii": lambda: ascii_diagram(matrix),
    }
    _emit(args, renderers[args.show_format]())
    return 0


def _check(args: argparse.Namespace) -> int:
    settings, matrix = _settings(args)
    rules = standard_rules(settings)
    violations = check(matrix, rules)
    for violation in violations:
        print(f"violation: {violation}")
    enabled = len(matrix.enabled_flows)
    print(f"{len(violations)} violation(s) of {len(rules)} rules over {enabled} enabled flows")
    return 1 if violations else 0


def _inventory(args: argparse.Namespace) -> Inventory | None:
    """``--inventory`` when given, else the platform file's zones and hosts."""
    if args.inventory:
        return load_inventory(args.inventory)
    platform = _platform(args)
    return inventory_for(platform) if platform is not None else None


def _firewall(args: argparse.Namespace) -> int:
    settings, matrix = _settings(args)
    inventory = _inventory(args)
    zone = Zone(args.zone) if args.zone else None
    where = f" --zone {args.zone}" if zone else (f" --host {args.host}" if args.host else "")
    header = f"Generated by portway matrix firewall --format {args.firewall_format}{where}"
    fmt = args.firewall_format
    if fmt in ("k8s", "aws"):
        components = selected_components(matrix, inventory, zone, args.host)
        if fmt == "k8s":
            text = kubernetes.render_kubernetes(matrix, settings, inventory, components, header)
        else:
            text = aws.render_aws(matrix, inventory, components, header)
        _emit(args, text)
        return 0
    scope: Scope
    if zone is not None:
        scope = resolve_zone(inventory, zone, fmt)
    elif args.host:
        scope = resolve_host(matrix, inventory, args.host)
    else:
        raise MatrixError(
            f"--format {fmt} writes one host's or one zone's rules: give --host or --zone"
        )
    if fmt == "iptables":
        text = iptables.render_iptables(matrix, inventory, scope, header)
    else:
        table = nftables.build_table(matrix, inventory, scope)
        render = nftables.render_text if fmt == "nftables" else nftables.render_json
        text = render(table, header)
    _emit(args, text)
    return 0


def _load_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable audit report: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != "portway.audit/v1":
        raise ConfigError(f"{path}: not a portway audit report (schema portway.audit/v1)")
    return data


def _checklist(args: argparse.Namespace) -> int:
    settings, matrix = _settings(args)
    violations = check(matrix, standard_rules(settings))
    audits = [_load_report(p) for p in args.audit_report]
    items = checklist(violations, audits)
    _emit(args, render_checklist(items))
    return 1 if any(i.status is Status.FAILED for i in items) else 0


def _audit(args: argparse.Namespace) -> int:
    _, matrix = _settings(args)
    inventory = _inventory(args)
    if inventory is None:
        raise ConfigError("audit needs hosts: give --inventory or a --config with hosts")
    try:
        extra = tuple(int(p) for p in args.extra_ports.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--extra-ports {args.extra_ports!r}: not a list of ports") from None
    options = AuditOptions(
        vantage=args.vantage,
        scanner=args.scanner,
        wait=args.timeout,
        concurrency=args.concurrency,
        extra_ports=extra,
        common_ports=args.common_ports,
        ca_file=args.ca_file,
        min_cert_days=args.min_cert_days,
    )
    report = asyncio.run(run_audit(matrix, inventory, options))
    if args.audit_format == "json":
        _emit(args, render_report_json(report))
    else:
        _emit(args, render_report_table(report, args.only_violations))
    return 1 if report.violations else 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``matrix``/``audit`` command; errors become a message and exit status 2."""
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, MatrixError) as exc:
        print(f"portway: error: {exc}", file=sys.stderr)
        return 2

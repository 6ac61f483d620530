"""``portway lab up | status | audit | drill NAME | report | down``: the seed's topology, live, in
network namespaces on this machine (root, ``ip``, ``nft``, ``haproxy``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from portway.lab import checks
from portway.lab.netns import NetnsError
from portway.lab.state import LabDir
from portway.lab.up import LabError, describe, run_down, run_up, status

DEFAULT_DIR = Path("var/lab")
FAILURES = (LabError, NetnsError)
#: drills that take ``--seconds``, and its default
DRILL_SECONDS = {"2": 60.0, "3": 60.0, "4": 60.0, "5": 10.0, "6": 10.0}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    lab = subparsers.add_parser(
        "lab", help="the seed's topology in network namespaces: up, audit, drills, report, down"
    )
    commands = lab.add_subparsers(dest="lab_command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        parser.add_argument(
            "--lab-dir",
            type=Path,
            default=DEFAULT_DIR,
            help=f"where the lab keeps its state, files and logs (default {DEFAULT_DIR})",
        )
        return parser

    up = command("up", "build the lab (idempotent) and print what runs where")
    up.add_argument(
        "--small",
        action="store_true",
        help="the CI profile (one Hazelcast member); without it the full profile (two)",
    )
    up.set_defaults(func=_up)
    command("status", "what runs, as JSON").set_defaults(func=_status)
    command(
        "audit", "the real `portway audit` from each zone; exit 1 on any violation"
    ).set_defaults(func=_audit)
    drill = command("drill", "run a failure drill and print its figures; exit 1 if it failed")
    drill.add_argument(
        "name",
        choices=sorted(checks.DRILLS),
        help="1: kill a worker; 2: stop the manager, then deploy; 3: cut the manager off "
        "worker-1, deploy, heal; 4: stop Elasticsearch (no record lost or duplicated, worker "
        "memory bounded); 5: stop a Hazelcast member; 6: stop the SMTP server while a worker "
        "fails; 7: deploy 20 times under load; 8: a rogue port in the DMZ",
    )
    drill.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="drills 2 and 4: how long the manager or Elasticsearch stays stopped (60); "
        "drill 3: how long the partition lasts at least (60); drill 5: the Hazelcast member "
        "(10); drill 6: the SMTP server, once the alert is queued (10)",
    )
    drill.add_argument(
        "--deploys", type=int, default=20, help="drill 7: how many deploys (20, at most 100)"
    )
    drill.set_defaults(func=_drill)
    report = command("report", "write lab-report.md and lab-report.json")
    report.add_argument(
        "--out", type=Path, default=Path("var/lab-report"), help="directory (var/lab-report)"
    )
    report.set_defaults(func=_report)
    command("down", "remove every namespace, link, process and file of the lab").set_defaults(
        func=_down
    )


def _guarded(args: argparse.Namespace) -> LabDir:
    return LabDir(args.lab_dir.resolve())


def _fail(exc: Exception) -> int:
    print(f"portway: error: {exc}", file=sys.stderr)
    return 1


def _up(args: argparse.Namespace) -> int:
    lab = _guarded(args)
    try:
        state = run_up(lab, "small" if args.small else "full")
    except FAILURES as exc:
        _fail(exc)
        print(f"what was made stays for inspection (logs in {lab.logs}); "
              f"`portway lab down --lab-dir {lab.path}` removes it", file=sys.stderr)  # fmt: skip
        return 1
    print(f"Portway lab ({state.get('profile')} profile) in {lab.path}, namespaces {lab.ident}-*")
    print(describe(lab))
    return 0


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(status(_guarded(args)), indent=2))
    return 0


def _audit(args: argparse.Namespace) -> int:
    try:
        results = checks.run_audit(_guarded(args))
    except FAILURES as exc:
        return _fail(exc)
    for result in results:
        verdict = "ok" if result["exit"] == 0 and not result["violations"] else "VIOLATION"
        print(f"{result['zone']:<8} from {result['from']:<10} {result['probes']:>4} probes  "
              f"open: {', '.join(result['open']) or '-'}  {verdict}")  # fmt: skip
        for line in result["violations"]:
            print(f"         violation: {line}")
        for line in [*result["tls"], *result["redirects"]]:
            print(f"         {line}")
    return 1 if checks.audit_failed(results) else 0


def _drill(args: argparse.Namespace) -> int:
    try:
        seconds = DRILL_SECONDS.get(args.name, 0.0) if args.seconds is None else args.seconds
        if args.seconds is not None and not 1 <= seconds <= 600:
            print("portway: error: --seconds: between 1 and 600", file=sys.stderr)
            return 2
        if not 1 <= args.deploys <= 100:
            print("portway: error: --deploys: between 1 and 100", file=sys.stderr)
            return 2
        extra: dict[str, float] = {"seconds": seconds} if args.name in DRILL_SECONDS else {}
        if args.name == "7":
            extra = {"deploys": args.deploys}
        result = checks.DRILLS[args.name](_guarded(args), **extra)
    except FAILURES as exc:
        return _fail(exc)
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


def _report(args: argparse.Namespace) -> int:
    try:
        md, js = checks.write_report(_guarded(args), args.out)
    except FAILURES as exc:
        return _fail(exc)
    print(f"wrote {md} and {js}")
    return 0


def _down(args: argparse.Namespace) -> int:
    lab = _guarded(args)
    try:
        removed = run_down(lab)
    except FAILURES as exc:
        return _fail(exc)
    kept = " (kept: not a lab directory)" if lab.path.exists() else ""
    print(f"removed {len(removed)} namespace(s) and {lab.path}{kept}")
    return 0

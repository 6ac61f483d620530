"""The `matrix` and `audit` commands, through the same argparse registration the lead uses."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from portway import cli as portway_cli
from portway.matrix import cli
from tests.matrix.matrix_helpers import DATA, GOLDEN, REPO


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = portway_cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_register_adds_matrix_and_audit() -> None:
    parser = argparse.ArgumentParser(prog="portway")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["matrix", "firewall", "--format", "k8s"])
    assert args.handler is cli._firewall
    assert parser.parse_args(["audit", "--inventory", "x", "--from", "internet"]).handler is (
        cli._audit
    )


def test_check_on_the_standard_installation(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["matrix", "check"], capsys) == (
        0, "0 violation(s) of 6 rules over 29 enabled flows\n", "")  # fmt: skip


def test_check_refuses_mongodb_open_to_the_internet(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["matrix", "check", "--config", str(DATA / "bad-mongodb-public.yaml")],
                       capsys)  # fmt: skip
    assert code == 1
    assert out.splitlines() == [
        "violation: [no-databases-from-internet] flow mongodb-public (Internet → MongoDB "
        "25080/tcp) exposes MongoDB port 25080 to the Internet",
        "violation: [tls-on-internet-facing] flow mongodb-public (Internet → MongoDB 25080/tcp) "
        "is Internet-facing without TLS (TCP)",
        "violation: [dmz-lan-segmentation] flow mongodb-public (Internet → MongoDB 25080/tcp) "
        "reaches the LAN directly from the Internet; route it through the DMZ",
        "3 violation(s) of 6 rules over 17 enabled flows",
    ]


def test_the_installed_entry_point_module_runs(tmp_path: Path) -> None:
    """`python -m portway matrix check` (what CI calls) exits 1 on a violation too."""
    result = subprocess.run(
        [sys.executable, "-m", "portway", "matrix", "check", "--config",
         str(DATA / "bad-mongodb-public.yaml")],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1
    assert "exposes MongoDB port 25080 to the Internet" in result.stdout


@pytest.mark.parametrize(
    ("argv", "golden"),
    [
        (["matrix", "--format", "markdown"], "standard.md"),
        (["matrix", "show", "--format", "json"], "standard.json"),
        (["matrix", "show", "--format", "csv"], "standard.csv"),
        (["matrix", "show", "--format", "mermaid"], "standard.mmd"),
        (["matrix", "show", "--format", "ascii"], "standard.txt"),
    ],
)
def test_show_prints_the_golden_documents(
    argv: list[str], golden: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert out == (GOLDEN / golden).read_text()


def test_firewall_writes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "dmz.nft"
    code, out, _ = run(["matrix", "firewall", "--format", "nftables", "--zone", "dmz",
                        "--inventory", str(DATA / "inventory.yaml"), "-o", str(target)],
                       capsys)  # fmt: skip
    assert (code, out) == (0, "")
    body = target.read_text().split("\n", 1)[1]
    assert body == (GOLDEN / "nft-zone-dmz.nft").read_text().split("\n", 1)[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["matrix", "firewall", "--format", "iptables"],
         "portway: error: --format iptables writes one host's or one zone's rules: give --host "
         "or --zone\n"),
        (["matrix", "firewall", "--format", "nftables", "--zone", "kubernetes", "--inventory",
          str(DATA / "inventory.yaml")],
         "portway: error: nftables --zone kubernetes: the zone's networks are unknown, so its "
         "traffic cannot be told apart; list them under zones.kubernetes in the inventory\n"),
        (["matrix", "firewall", "--format", "k8s"],
         "portway: error: kubernetes: cannot express flow vpn-lb-ssh (vpn -> load_balancer "
         "22/tcp): no networks for VPN; list them in the inventory (zones.vpn or a host running "
         "vpn)\n"),
        (["matrix", "check", "--config", str(DATA / "missing.yaml")],
         f"portway: error: {DATA / 'missing.yaml'}: cannot read: No such file or directory\n"),
    ],
)  # fmt: skip
def test_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out, err) == (2, "", message)


def test_checklist_without_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["matrix", "checklist"], capsys)
    assert code == 0
    assert out == (GOLDEN / "checklist.md").read_text()


def _report(zone: str, name: str, probes: list[dict[str, object]]) -> dict[str, object]:
    return {"schema": "portway.audit/v1", "started_at": "2026-11-26T10:00:00+00:00",
            "scanner": "asyncio", "vantage": {"name": name, "components": [name], "zone": zone},
            "violations": 0, "probes": probes, "redirects": [], "not_probed": [],
            "tls": [{"host": "lb-1", "address": "198.18.1.10", "port": 443, "ok": True,
                     "version": "TLSv1.3", "days_left": 80, "detail": "ok"}]}  # fmt: skip


def _probe(host: str, zone: str, port: int, expected: str, observed: str) -> dict[str, object]:
    bad = (expected == "closed" and observed == "open") or (
        expected == "open" and observed != "open"
    )
    return {"host": host, "address": "198.18.0.1", "zone": zone, "port": port,
            "protocol": "tcp", "expected": expected, "observed": observed, "detail": "",
            "flows": [], "verdict": "violation" if bad else "ok"}  # fmt: skip


def test_checklist_answers_from_audit_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    internet = tmp_path / "internet.json"
    internet.write_text(json.dumps(_report("internet", "internet", [
        _probe("lb-1", "dmz", 443, "open", "open"),
        _probe("data-1", "lan", 25080, "closed", "filtered")])))  # fmt: skip
    worker = tmp_path / "worker.json"
    worker.write_text(json.dumps(_report("dmz", "worker-1", [
        _probe("data-1", "lan", 25080, "open", "open")])))  # fmt: skip
    code, out, _ = run(["matrix", "checklist", "--audit-report", str(internet),
                        "--audit-report", str(worker)], capsys)  # fmt: skip
    assert code == 0
    boxes = [line.split(" — ")[0] for line in out.splitlines()[2:]]
    assert boxes == [
        "- [x] Only necessary ports are opened",
        "- [x] DMZ and LAN separation is implemented",
        "- [x] Firewall rules are configured with least privilege principle",
        "- [x] TLS/SSL certificates are configured",
        "- [x] Network segmentation is implemented",
        "- [x] Port scanning tests are performed",
        "- [ ] Monitoring and alerting are configured",
    ]
    assert "the nearest certificate expiry is in 80 days" in out


def test_checklist_fails_items_the_evidence_contradicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    internet = tmp_path / "internet.json"
    internet.write_text(json.dumps(_report("internet", "internet", [
        _probe("data-1", "lan", 25080, "closed", "open")])))  # fmt: skip
    code, out, _ = run(["matrix", "checklist", "--audit-report", str(internet)], capsys)
    failed = [line for line in out.splitlines() if line.startswith("- [!]")]
    assert len(failed) == 4
    assert code == 1
    assert "open but not in the matrix: data-1:25080 from internet" in out
    assert "data-1:25080 answers from the Internet" in out


def test_checklist_rejects_something_else_than_an_audit_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.json"
    other.write_text("{}")
    code, _, err = run(["matrix", "checklist", "--audit-report", str(other)], capsys)
    assert code == 2
    assert err == f"portway: error: {other}: not a portway audit report (schema portway.audit/v1)\n"


def test_func_default_runs_the_command_with_error_handling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The lead's CLI calls ``args.func(args)``: errors still become one line and status 2."""
    parser = argparse.ArgumentParser(prog="portway")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["matrix", "firewall", "--format", "iptables"])
    assert args.func(args) == 2
    assert capsys.readouterr().err.startswith("portway: error: --format iptables")

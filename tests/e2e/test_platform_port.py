"""One port changed in ``portway.yaml`` shows up everywhere: the manager's real listener, the
matrix, the nftables rules and the audit's expectations; a variable beats the file, a flag the
variable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import Process, free_port, http_ok, portway, wait_until


def portway_output(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(portway(*args), capture_output=True, text=True, timeout=120, check=False)


def start_manager(tmp_path: Path, name: str, *args: str) -> Process:
    return Process(name, portway("manager", *args), tmp_path, cwd=tmp_path)


def test_the_manager_port_of_the_file_is_the_listener_matrix_firewall_and_audit(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "site" / "portway.yaml"
    config.parent.mkdir()
    config.write_text(
        f"manager: {{host: 127.0.0.1, port: {port}}}\n"
        "zones: {vpn: [127.0.0.0/8]}\n"
        "hosts:\n  - {name: manager-1, address: 127.0.0.1, components: [manager]}\n"
    )
    manager = start_manager(tmp_path, "manager", "--config", str(config))
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), "manager", proc=manager)
        assert (config.parent / "manager.db").exists()  # beside the file, not in the cwd
        assert not (tmp_path / "var").exists()

        shown = portway_output("matrix", "show", "--format", "json", "--config", str(config))
        flows = {f["id"]: f for f in json.loads(shown.stdout)["flows"]}
        assert flows["vpn-manager-http"]["ports"] == [port]
        assert flows["int-worker-manager-config"]["ports"] == [port]

        rules = portway_output("matrix", "firewall", "--format", "nftables", "--host",
                               "manager-1", "--config", str(config))  # fmt: skip
        assert rules.returncode == 0, rules.stderr
        assert f'tcp dport {port} accept comment "vpn-manager-http"' in rules.stdout
        assert 'dport 8080 accept comment "vpn-manager-http"' not in rules.stdout

        audit = portway_output(
            "audit", "--config", str(config), "--from", "vpn", "--no-common-ports",
            "--timeout", "1", "--format", "json",
        )  # fmt: skip
        probe = next(p for p in json.loads(audit.stdout)["probes"] if p["port"] == port)
        assert (probe["host"], probe["expected"], probe["observed"], probe["verdict"]) == (
            "manager-1", "open", "open", "ok")  # fmt: skip
        assert probe["flows"] == ["vpn-manager-http"]
    finally:
        manager.stop()


def test_a_variable_beats_the_file_and_a_flag_beats_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_file, in_env, in_flag = free_port(), free_port(), free_port()
    config = tmp_path / "portway.yaml"
    config.write_text(f"manager: {{port: {in_file}}}\n")
    monkeypatch.setenv("PORTWAY_MANAGER__PORT", str(in_env))
    by_env = start_manager(tmp_path, "by-env", "--config", str(config))
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{in_env}/healthz"), "env", proc=by_env)
        assert f"http://127.0.0.1:{in_env}" in by_env.output()
        assert f":{in_file}" not in by_env.output()
    finally:
        by_env.stop()
    by_flag = start_manager(tmp_path, "by-flag", "--config", str(config), "--port", str(in_flag))
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{in_flag}/healthz"), "flag", proc=by_flag)
        assert f"http://127.0.0.1:{in_flag}" in by_flag.output()
        assert f":{in_env}" not in by_flag.output()
    finally:
        by_flag.stop()

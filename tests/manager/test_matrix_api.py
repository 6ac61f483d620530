"""``GET /api/v1/matrix``: the network matrix the manager's own settings describe, the same flows
``portway matrix show`` computes for an installation with those manager settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from portway.config.management.matrix import NetworkMatrix
from portway.manager.app import create_app
from portway.manager.routes_matrix import matrix_answer
from portway.matrix.effective import effective_matrix
from portway.matrix.settings import settings_from_mapping
from tests.manager.conftest import settings_in


def _read(tmp_path: Path, **settings: object) -> NetworkMatrix:
    config = settings_in(tmp_path, **settings)
    assert config.bootstrap_file is not None
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        token = json.loads(config.bootstrap_file.read_text())["token"]
        answer = client.get("/api/v1/matrix", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return NetworkMatrix.model_validate(answer.json())


def test_the_matrix_follows_the_managers_ports_and_store(tmp_path: Path) -> None:
    matrix = _read(tmp_path, port=18443, metrics_port=19465)
    flows = {f.id: f for f in matrix.flows}
    assert flows["vpn-manager-http"].ports == [18443]
    assert flows["int-worker-manager-config"].ports == [18443]
    assert flows["int-worker-manager-config"].direction == "Worker → Manager"
    assert flows["int-monitoring-manager-metrics"].ports == [19465]
    # a SQLite store: no MongoDB flow is on
    assert not any(f.enabled for f in matrix.flows if "MongoDB" in f.direction)
    assert [z.id for z in matrix.zones] == ["internet", "dmz", "lan", "vpn", "kubernetes"]
    assert {c.zone for c in matrix.components} <= {z.id for z in matrix.zones}
    assert {f.table for f in matrix.flows} == {t.id for t in matrix.tables}


def test_the_matrix_is_the_one_portway_matrix_show_prints(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/manager.db"
    platform = tmp_path / "portway.yaml"
    platform.write_text(f"manager:\n  port: 18443\n  store: {store}\n")
    command = ["matrix", "show", "--format", "json", "--config", str(platform)]
    shown = subprocess.run(
        [sys.executable, "-m", "portway", *command],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(shown.stdout)
    answer = _read(tmp_path, port=18443, store=store).model_dump(mode="json")
    assert answer["flows"] == expected["flows"]
    assert answer["components"] == expected["components"]
    assert answer["tables"] == expected["tables"]


def test_the_matrix_needs_a_caller(manager: TestClient) -> None:
    assert manager.get("/api/v1/matrix").status_code == 401


def _portway(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portway", *command], capture_output=True, text=True, check=False
    )


def test_the_verdicts_checklist_and_diagram_are_the_clis(tmp_path: Path) -> None:
    platform = tmp_path / "portway.yaml"
    platform.write_text("manager:\n  port: 18443\n")
    answer = _read(tmp_path, port=18443)
    checked = _portway("matrix", "check", "--config", str(platform))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == f"0 violation(s) of {len(answer.rules)} rules over 14 enabled flows\n"
    assert [r.verdict for r in answer.rules] == ["pass"] * 6
    assert "ssh-only-from-vpn" in {r.id for r in answer.rules}
    listed = _portway("matrix", "checklist", "--config", str(platform)).stdout
    expected = [f"- [ ] {i.text} — {i.status}: {i.evidence}" for i in answer.checklist]
    assert listed.splitlines()[2:] == expected
    assert answer.checklist[-1].status == "needs a person"
    drawn = _portway("matrix", "show", "--format", "ascii", "--config", str(platform)).stdout
    assert answer.diagram == drawn
    assert "(18443) Manager" in answer.diagram


def test_a_violation_fails_its_rule_and_the_checklist() -> None:
    extra = {"id": "custom", "source": "internet", "destination": "mongodb", "ports": [25080],
             "description": "custom flow"}  # fmt: skip
    settings = settings_from_mapping({"extra_flows": [extra]})
    answer = matrix_answer(settings, effective_matrix(settings))
    verdicts = {r.id: r for r in answer.rules}
    databases = verdicts["no-databases-from-internet"]
    assert databases.verdict == "fail"
    message = "flow custom (Internet → MongoDB 25080/tcp) exposes MongoDB port 25080 to the"
    message += " Internet"
    assert [(v.flow, v.message) for v in databases.violations] == [("custom", message)]
    assert verdicts["dmz-lan-segmentation"].verdict == "fail"
    assert verdicts["ssh-only-from-vpn"].verdict == "pass"
    assert verdicts["ssh-only-from-vpn"].violations == []
    items = {i.text: i for i in answer.checklist}
    assert items["DMZ and LAN separation is implemented"].status == "failed"
    assert "custom" in items["DMZ and LAN separation is implemented"].evidence

"""``portway lab``: the seed's topology built in network namespaces, audited from every zone,
drilled, reported, and removed without a trace (also when its state file is lost)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from portway.lab import netns, topology
from portway.lab.netns import in_namespace
from portway.lab.state import LabDir
from portway.lab.up import alive, client_get, lab_namespaces
from tests.support.servers import missing_capability, require

REPO = Path(__file__).parents[2]


def lab_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portway", "lab", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
    )  # fmt: skip


def _require_lab() -> None:
    reason = netns.missing_tools("nft", "haproxy")
    if reason is not None:
        missing_capability(reason)
    try:
        require("FERRETDB_BIN")
    except RuntimeError as exc:
        missing_capability(str(exc))


def _audit(state: dict[str, Any], zone: str) -> dict[str, Any]:
    return next(a for a in state["audit"] if a["zone"] == zone)


def _leftovers(lab: LabDir, pids: list[int]) -> dict[str, Any]:
    return {
        "namespaces": netns.namespaces_with(lab.ident),
        "links": netns.root_links_with(lab.ident),
        "processes": [p for p in pids if alive(p)],
        "lab_dir": lab.path.exists(),
    }


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_lab_up_audit_drills_report_down(tmp_path: Path) -> None:
    _require_lab()
    lab = LabDir(tmp_path / "lab")
    where = ("--lab-dir", str(lab.path))
    pids: list[int] = []
    try:
        up = lab_cli("up", "--small", *where)
        assert up.returncode == 0, up.stderr
        assert f"{lab.ident}-wk1" in up.stdout
        assert "198.18.1.10" in up.stdout
        state = lab.load()
        pids = [p["pid"] for p in state["processes"].values()]
        assert set(state["processes"]) == {
            "ferretdb", "hazelcast", "backend", "backend-tls", "manager", "worker-1", "worker-2",
            "haproxy",
        }  # fmt: skip
        assert state["up"]["deployment"]["acknowledged"] == 2

        status = json.loads(lab_cli("status", *where).stdout)
        assert status["up"] is True
        assert len(status["namespaces"]) == 10
        assert set(status["processes"].values()) == {True}

        again = lab_cli("up", "--small", *where)  # idempotent: the same processes
        assert again.returncode == 0, again.stderr
        assert [p["pid"] for p in lab.load()["processes"].values()] == pids

        # the demo API's policy chain, through the balancer, from the Internet
        key = state["api_key"]
        assert client_get(lab, "/demo/echo", key).status_code == 200
        missing = client_get(lab, "/demo/echo", None)
        assert missing.status_code == 401
        assert missing.json()["correlation_id"]
        assert client_get(lab, "/demo/echo", "pk_" + "x" * 40).status_code == 401
        assert client_get(lab, "/_portway/ready", key).status_code == 404  # control paths
        assert client_get(lab, "/demo/echo", key).headers["X-RateLimit-Limit"] == "6000"
        # each request a new connection, round robin over both workers: one count in Hazelcast
        remaining = [int(client_get(lab, "/demo/echo", key).headers["X-RateLimit-Remaining"])
                     for _ in range(4)]  # fmt: skip
        assert remaining == list(range(remaining[0], remaining[0] - 4, -1))

        audit = lab_cli("audit", *where)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        state = lab.load()
        assert {a["zone"] for a in state["audit"]} == set(topology.AUDIT_VANTAGES)
        assert all(a["exit"] == 0 and a["violations"] == [] for a in state["audit"])
        internet = _audit(state, "internet")
        assert internet["open"] == ["lb-1:443", "lb-1:80"]
        assert internet["tls"] == ["lb-1:443 ok"]
        assert internet["redirects"] == ["lb-1:80 301 ok"]
        assert _audit(state, "lan")["open"] == ["data-1:25080", "worker-1:8080", "worker-2:8080"]
        assert "manager-1:8080" in _audit(state, "vpn")["open"]
        assert _audit(state, "dmz")["open"] == [
            "backend-1:443", "backend-1:80", "data-1:5701", "manager-1:8080"
        ]  # fmt: skip

        drill1 = lab_cli("drill", "1", *where)
        assert drill1.returncode == 0, drill1.stdout + drill1.stderr
        one = json.loads(drill1.stdout)
        assert one["requests"] > 50
        assert one["client_errors"] == 0, one["outcomes"]
        assert one["registry_state_after_kill"] == "down"
        assert one["in_sync_after"] == {"worker-1": True, "worker-2": True}
        worker_1 = lab.load()["processes"]["worker-1"]["pid"]
        assert worker_1 not in pids  # restarted
        pids.append(worker_1)

        drill8 = lab_cli("drill", "8", *where)
        assert drill8.returncode == 0, drill8.stdout + drill8.stderr
        eight = json.loads(drill8.stdout)
        assert eight["audit_exit"] == 1
        assert eight["violations"] == ["worker-1:6379 expected closed, observed open"]
        assert eight["audit_exit_after_undo"] == 0
        in_wk1 = [Path(f"/proc/{p}/cmdline").read_bytes()
                  for p in netns.pids_in(lab_namespaces(lab).ns("wk1"))]  # fmt: skip
        assert in_wk1
        assert not [c for c in in_wk1 if b"http.server" in c]

        drill2 = lab_cli("drill", "2", "--seconds", "5", *where)
        assert drill2.returncode == 0, drill2.stdout + drill2.stderr
        two = json.loads(drill2.stdout)
        assert two["requests_while_manager_down"] > 0
        assert two["served_percent"] == 100.0, two["outcomes"]
        assert two["revision_after"] == two["revision_before"] + 1
        pids += [lab.load()["processes"]["manager"]["pid"]]

        out = tmp_path / "report"
        report = lab_cli("report", *where, "--out", str(out))
        assert report.returncode == 0, report.stderr
        written = json.loads((out / "lab-report.json").read_text())
        assert [d["drill"] for d in written["drills"]] == ["1", "2", "8"]
        assert all(d["passed"] for d in written["drills"])
        assert written["up"]["seconds"] > 0
        assert written["up"]["peak_rss_mib"] > 0
        assert written["versions"]["haproxy"].startswith("HAProxy version")
        markdown = (out / "lab-report.md").read_text()
        assert "| internet | internet |" in markdown
        assert "Drill 8" in markdown

        # a crash that lost the state file: `down` still finds everything by the lab's prefix
        lab.state_file.unlink()
        pids += netns.pids_in(lab_namespaces(lab).ns("mgr"))
    finally:
        down = lab_cli("down", *where)
    assert down.returncode == 0, down.stderr
    assert _leftovers(lab, pids) == {
        "namespaces": [], "links": [], "processes": [], "lab_dir": False
    }  # fmt: skip
    assert lab_cli("down", *where).returncode == 0  # safe to repeat


@pytest.mark.netns
@pytest.mark.timeout(240)
def test_down_after_up_was_killed_midway(tmp_path: Path) -> None:
    """``lab up`` SIGKILLed once its namespaces exist and its first processes run."""
    _require_lab()
    lab = LabDir(tmp_path / "lab")
    up = subprocess.Popen(
        [sys.executable, "-m", "portway", "lab", "up", "--small", "--lab-dir", str(lab.path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(lab.load().get("processes", {})) < 3 and up.poll() is None:
            assert time.monotonic() < deadline, "lab up never started its processes"
            time.sleep(0.1)
        up.kill()
        up.wait(30)
        state = lab.load()
        pids = [p["pid"] for p in state["processes"].values()]
        assert len(netns.namespaces_with(lab.ident)) == 10
        assert any(alive(p) for p in pids)  # orphans the crash left
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(30)
        down = lab_cli("down", "--lab-dir", str(lab.path))
    assert down.returncode == 0, down.stderr
    assert _leftovers(lab, pids) == {
        "namespaces": [], "links": [], "processes": [], "lab_dir": False
    }  # fmt: skip


@pytest.mark.netns
def test_down_keeps_a_directory_that_is_not_a_lab(tmp_path: Path) -> None:
    _require_lab()
    (tmp_path / "precious.txt").write_text("keep me")
    down = lab_cli("down", "--lab-dir", str(tmp_path))
    assert down.returncode == 0, down.stderr
    assert "kept: not a lab directory" in down.stdout
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    up = lab_cli("up", "--small", "--lab-dir", str(tmp_path))
    assert up.returncode == 1
    assert "not a lab directory (no lab.json) and not empty" in up.stderr
    assert netns.namespaces_with(LabDir(tmp_path).ident) == []
    a_file = tmp_path / "precious.txt"
    assert lab_cli("down", "--lab-dir", str(a_file)).returncode == 0
    up = lab_cli("up", "--small", "--lab-dir", str(a_file))
    assert up.returncode == 1
    assert "not a directory" in up.stderr
    assert a_file.read_text() == "keep me"


def test_usage_errors_name_the_problem(tmp_path: Path) -> None:
    full = lab_cli("up", "--lab-dir", str(tmp_path / "x"))
    assert full.returncode == 2
    assert "only the --small profile" in full.stderr
    unknown = lab_cli("drill", "9", "--lab-dir", str(tmp_path))
    assert unknown.returncode == 2
    assert "invalid choice: '9'" in unknown.stderr
    for seconds in ("0", "-5", "601", "nan"):
        outage = lab_cli("drill", "2", "--seconds", seconds, "--lab-dir", str(tmp_path))
        assert outage.returncode == 2, seconds
        assert "--seconds" in outage.stderr
    for command in ("audit", "drill 1", "report"):
        result = lab_cli(*command.split(), "--lab-dir", str(tmp_path / "none"))
        assert result.returncode == 1, command
        assert "portway: error:" in result.stderr
        assert "lab up --small" in result.stderr
    assert not (tmp_path / "none").exists()


def test_namespace_threads_reach_only_their_namespace() -> None:
    """``in_namespace`` runs in a thread of its own; the caller's namespace is untouched."""
    if os.geteuid() != 0:
        missing_capability("network namespaces need root")
    before = os.readlink("/proc/self/ns/net")
    with pytest.raises(FileNotFoundError):
        in_namespace("pwl-no-such-namespace", lambda: None)
    assert os.readlink("/proc/self/ns/net") == before

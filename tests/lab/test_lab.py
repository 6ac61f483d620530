"""``portway lab``: the seed's topology built in network namespaces, audited from every zone,
drilled, reported, and removed without a trace (also when its state file is lost)."""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import json
import mailbox
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
from portway.lab.up import (
    NETNS_ETC,
    LabApi,
    admin_token,
    alive,
    client_get,
    elasticsearch_dir,
    lab_namespaces,
    up_requirements,
    wait_for,
)
from tests.support.servers import missing_capability, require

REPO = Path(__file__).parents[2]


def lab_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portway", "lab", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
    )  # fmt: skip


def _require_lab() -> None:
    reason = up_requirements()
    if reason is not None:
        missing_capability(reason)
    try:
        for server in ("FERRETDB_BIN", "HAZELCAST_JAR", "ELASTICSEARCH_HOME"):
            require(server)
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
        "elasticsearch_dir": elasticsearch_dir(lab).exists(),
        "resolvers": [str(p) for p in NETNS_ETC.glob(f"{lab.ident}-*")],  # /etc/netns/NS/
    }


RESOLVE = """
import socket, sys
for name in sys.argv[1:]:
    try:
        print(name, socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
    except socket.gaierror as exc:
        print(name, "unresolved", exc.errno)
"""


def _resolve(lab: LabDir, short: str, *names: str) -> dict[str, str]:
    """Names resolved by a process in the namespace, as the workers and the manager do (glibc
    through ``ip netns exec``'s ``/etc/netns/NS/resolv.conf``)."""
    argv = lab_namespaces(lab).exec_argv(short, [sys.executable, "-c", RESOLVE, *names])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def _check_dns(lab: LabDir) -> None:
    """The manager and the workers name every host and resolve it through dns-1 (dnsmasq logs
    each query with the asker's address); nothing outside the lab's names is answered."""
    config = lab.config_file.read_text()
    assert "mongodb://mongodb.lab.portway.test:25080/" in config
    assert "manager_url: http://manager.lab.portway.test:8080" in config
    assert "hazelcast://hazelcast-1.lab.portway.test:5701/" in config
    assert "elasticsearch://es-1.lab.portway.test:9200?" in config
    dns_log = lab.logs / "dns.log"
    before = dns_log.read_text()
    worker = _resolve(lab, "wk1", "backend.lab.portway.test", "manager", "example.com")
    assert worker.pop("example.com").startswith("unresolved")  # no upstream: never forwarded
    assert worker == {
        "backend.lab.portway.test": "198.18.0.50",
        "manager": "198.18.2.10",  # the search domain
    }
    assert _resolve(lab, "mgr", "mongodb.lab.portway.test", "worker-2.lab.portway.test") == {
        "mongodb.lab.portway.test": "198.18.2.20",
        "worker-2.lab.portway.test": "198.18.1.22",
    }
    queries = dns_log.read_text()[len(before) :]
    assert "query[A] backend.lab.portway.test from 198.18.1.21" in queries
    assert "query[A] mongodb.lab.portway.test from 198.18.2.10" in queries
    assert "forwarded" not in queries
    # the running manager and workers resolved their peers the same way while `up` ran
    assert "query[A] manager.lab.portway.test from 198.18.1.22" in before
    assert "query[A] worker-1.lab.portway.test from 198.18.2.10" in before
    # the Internet has no DNS flow: its processes get no answer from the lab's server
    assert _resolve(lab, "inet", "api.portway.test")["api.portway.test"].startswith("unresolved")


def _assert_nothing_left(
    lab: LabDir, pids: list[int], down: subprocess.CompletedProcess[str]
) -> None:
    assert down.returncode == 0, down.stderr
    assert _leftovers(lab, pids) == {
        "namespaces": [], "links": [], "processes": [], "lab_dir": False,
        "elasticsearch_dir": False, "resolvers": [],
    }  # fmt: skip


def _drill_5(where: tuple[str, str]) -> dict[str, Any]:
    """Drill 5 (3 s): no 5xx, nothing counted twice, and both workers count again after."""
    drill5 = lab_cli("drill", "5", "--seconds", "3", *where)
    assert drill5.returncode == 0, drill5.stdout + drill5.stderr
    five: dict[str, Any] = json.loads(drill5.stdout)
    assert five["server_errors"] == 0, five["outcomes"]
    assert five["client_errors"] == 0, five["outcomes"]
    assert five["counted_steps"]["double"] == 0
    assert five["counting_after_restart"] is True
    return five


def _parsed(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def _check_drill_6(lab: LabDir, six: dict[str, Any]) -> None:
    """The alert of the killed worker waited in the manager's outbox while smtp-1 was down and
    reached the mailbox once it was back: firing and resolved, each exactly once."""
    assert six["client_errors"] == 0, six["outcomes"]
    assert six["notices"] == ["firing worker-1", "resolved worker-1"]
    assert six["attempts_while_smtp_down"] >= 1
    assert "smtp.lab.portway.test" in six["first_error"]  # the relay by name, through dns-1
    assert six["mails_received"] == 2
    box = mailbox.Maildir(lab.path / "mail", create=False)
    mails = [_parsed(box.get_bytes(key)) for key in box.iterkeys()]
    mails = [m for m in mails if "worker-down" in str(m["Subject"])]
    firing = [m for m in mails if "[FIRING] worker-down — worker-1" in str(m["Subject"])]
    assert len(firing) >= 2  # drill 1's, sent at once, and drill 6's, sent late
    assert {str(m["To"]) for m in mails} == {"oncall@lab.portway.test"}
    assert {str(m["X-Peer"]).split("'")[1] for m in mails} == {"198.18.2.10"}  # the manager


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.timeout(900)
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
            "haproxy", "es-1", "dns", "smtp",
        }  # fmt: skip
        assert state["up"]["deployment"]["acknowledged"] == 2

        status = json.loads(lab_cli("status", *where).stdout)
        assert status["up"] is True
        assert len(status["namespaces"]) == len(topology.hosts("small")) + 3  # router, switches
        assert set(status["processes"].values()) == {True}
        assert status["elasticsearch"]["status"] == "green"  # no replica: one node holds all
        assert status["elasticsearch"]["number_of_nodes"] == 1

        again = lab_cli("up", "--small", *where)  # idempotent: the same processes
        assert again.returncode == 0, again.stderr
        assert [p["pid"] for p in lab.load()["processes"].values()] == pids

        _check_dns(lab)

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
        # the workers ship those records to Elasticsearch; the manager's analytics read them
        with contextlib.closing(LabApi(lab, admin_token(lab))) as api:
            keyed = "/analytics?consumer=lab-client"

            # a 503 (the log store did not answer in time: a loaded machine) is asked again
            def recorded() -> bool:
                return int(api.call("GET", keyed, ok=(503,)).get("total", 0)) >= 6

            wait_for(lab, "the records in the manager's analytics", recorded, 60)
            analytics = api.call("GET", "/analytics?api=demo")
        assert analytics["by_status"]["401"] >= 2

        audit = lab_cli("audit", *where)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        state = lab.load()
        assert {a["zone"] for a in state["audit"]} == set(topology.AUDIT_VANTAGES)
        assert all(a["exit"] == 0 and a["violations"] == [] for a in state["audit"])
        internet = _audit(state, "internet")
        assert internet["open"] == ["lb-1:443", "lb-1:80"]
        assert internet["tls"] == ["lb-1:443 ok"]
        assert internet["redirects"] == ["lb-1:80 301 ok"]
        assert _audit(state, "lan")["open"] == [
            "data-1:25080", "dns-1:53", "es-1:9200", "smtp-1:25", "smtp-1:587", "worker-1:8080",
            "worker-2:8080",
        ]  # fmt: skip
        assert "manager-1:8080" in _audit(state, "vpn")["open"]
        assert not [o for o in _audit(state, "vpn")["open"] if o.startswith("es-1")]
        assert _audit(state, "dmz")["open"] == [
            "backend-1:443", "backend-1:80", "data-1:5701", "dns-1:53", "es-1:9200",
            "manager-1:8080",
        ]  # fmt: skip
        assert _audit(state, "dmz-lb")["open"] == ["worker-1:8080", "worker-2:8080"]

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

        five = _drill_5(where)  # one member: the configured fail-open holds
        assert five["unchecked_while_down"] > 0
        pids.append(lab.load()["processes"]["hazelcast"]["pid"])

        drill6 = lab_cli("drill", "6", "--seconds", "3", *where)
        assert drill6.returncode == 0, drill6.stdout + drill6.stderr
        _check_drill_6(lab, json.loads(drill6.stdout))

        drill2 = lab_cli("drill", "2", "--seconds", "5", *where)
        assert drill2.returncode == 0, drill2.stdout + drill2.stderr
        two = json.loads(drill2.stdout)
        assert two["requests_while_manager_down"] > 0
        assert two["served_percent"] == 100.0, two["outcomes"]
        assert two["revision_after"] == two["revision_before"] + 1
        pids += [lab.load()["processes"]["manager"]["pid"]]

        drill4 = lab_cli("drill", "4", "--seconds", "10", *where)
        assert drill4.returncode == 0, drill4.stdout + drill4.stderr
        four = json.loads(drill4.stdout)
        assert four["requests_while_elasticsearch_down"] > 0
        assert four["peak_records_spooled"] > 0  # the shippers spooled while it was away
        assert four["answered_200"] == four["requests"], four["outcomes"]
        assert four["records_in_elasticsearch"] == four["answered_200"]
        assert (four["records_lost"], four["records_duplicated"]) == (0, 0)
        assert set(four["worker_rss_mib_after"]) == {"worker-1", "worker-2"}
        pids += [lab.load()["processes"]["es-1"]["pid"]]

        drill7 = lab_cli("drill", "7", "--deploys", "5", *where)
        assert drill7.returncode == 0, drill7.stdout + drill7.stderr
        seven = json.loads(drill7.stdout)
        assert seven["failed_requests"] == 0, seven["outcomes"]
        assert seven["deploys_converged_on_both_workers"] == 5
        assert seven["revision_after"] == seven["revision_before"] + 5

        drill3 = lab_cli("drill", "3", "--seconds", "5", *where)
        assert drill3.returncode == 0, drill3.stdout + drill3.stderr
        three = json.loads(drill3.stdout)
        assert three["deploy_acknowledged_by"] == ["worker-2"]
        assert three["requests_straight_to_worker_1"] > 0
        assert three["outcomes_straight_to_worker_1"] == {
            "200": three["requests_straight_to_worker_1"]
        }
        assert three["worker_1_revisions_served_while_cut_off"] == {
            str(three["revision_before"]): three["requests_straight_to_worker_1"]
        }
        assert three["seconds_heal_to_worker_1_converged"] is not None
        assert "portway_lab_partition" not in netns.sh(
            "ip", "netns", "exec", lab_namespaces(lab).ns("rt"), "nft", "list", "tables"
        )

        out = tmp_path / "report"
        report = lab_cli("report", *where, "--out", str(out))
        assert report.returncode == 0, report.stderr
        written = json.loads((out / "lab-report.json").read_text())
        assert [d["drill"] for d in written["drills"]] == ["1", "2", "3", "4", "5", "6", "7", "8"]
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
    _assert_nothing_left(lab, pids, down)
    assert lab_cli("down", *where).returncode == 0  # safe to repeat


@pytest.mark.netns
@pytest.mark.timeout(300)
def test_full_profile_keeps_exact_counts_when_a_hazelcast_member_stops(tmp_path: Path) -> None:
    """``lab up`` without ``--small``: two Hazelcast members in one cluster; one stops under
    load and the throttling count goes on from the other's backup, without a 5xx."""
    _require_lab()
    lab = LabDir(tmp_path / "lab")
    where = ("--lab-dir", str(lab.path))
    pids: list[int] = []
    try:
        up = lab_cli("up", *where)
        assert up.returncode == 0, up.stderr
        assert "full profile" in up.stdout
        state = lab.load()
        assert state["profile"] == "full"
        pids = [p["pid"] for p in state["processes"].values()]
        assert {"hazelcast", "hazelcast-2"} <= set(state["processes"])
        assert len(netns.namespaces_with(lab.ident)) == len(topology.hosts("full")) + 3
        # the second member joined the first across the LAN (int-cache-cluster, 5701)
        assert "Members {size:2," in (lab.logs / "hazelcast-2.log").read_text()
        small = lab_cli("up", "--small", *where)
        assert small.returncode == 1
        assert "is up with the full profile" in small.stderr

        five = _drill_5(where)  # two members: the count goes on from the backup
        assert five["counted_steps"]["lost"] == 0
        assert five["counted_steps"]["exact"] > 50
        pids.append(lab.load()["processes"]["hazelcast"]["pid"])
    finally:
        down = lab_cli("down", *where)
    _assert_nothing_left(lab, pids, down)


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
        assert len(netns.namespaces_with(lab.ident)) == len(topology.hosts("small")) + 3
        assert any(alive(p) for p in pids)  # orphans the crash left
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(30)
        down = lab_cli("down", "--lab-dir", str(lab.path))
    _assert_nothing_left(lab, pids, down)


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
    unknown = lab_cli("drill", "9", "--lab-dir", str(tmp_path))
    assert unknown.returncode == 2
    assert "invalid choice: '9'" in unknown.stderr
    for seconds in ("0", "-5", "601", "nan"):
        outage = lab_cli("drill", "2", "--seconds", seconds, "--lab-dir", str(tmp_path))
        assert outage.returncode == 2, seconds
        assert "--seconds" in outage.stderr
    for deploys in ("0", "101"):
        storm = lab_cli("drill", "7", "--deploys", deploys, "--lab-dir", str(tmp_path))
        assert storm.returncode == 2, deploys
        assert "--deploys" in storm.stderr
    for command in ("audit", "drill 1", "drill 4", "report"):
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

"""The generated nftables, enforced by the kernel in network namespaces, pass the audit.

Topology (addresses from 198.18.0.0/15, inside the namespaces only)::

    inet 198.18.0.50 ─┐                       ┌─ lb   198.18.1.10 ┐
    (client, backend) ├─ rt (router: zone ─ dmz switch             │ DMZ 198.18.1.0/24
    vpn  198.18.4.10 ─┘   tables dmz, lan)  └─ wk   198.18.1.21 ┘
                            └─ lan switch ─ mgr  198.18.2.10, data 198.18.2.20 (LAN)

Each host namespace loads its host table, the router loads the DMZ and LAN zone tables, small
listeners stand in for the components, and ``portway audit`` runs inside the internet, VPN, DMZ
(worker) and LAN (manager) namespaces. Then wrong rule sets are loaded and must be caught.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from portway.lab.netns import Namespaces, missing_tools, namespaces_with, remove, sh
from portway.matrix.effective import effective_matrix, standard_matrix
from portway.matrix.firewall import nftables
from portway.matrix.firewall.plan import resolve_host, resolve_zone
from portway.matrix.inventory import Inventory, inventory_from_mapping
from portway.matrix.model import Matrix, Zone
from portway.matrix.settings import settings_from_mapping
from tests.matrix.matrix_helpers import REPO
from tests.support.servers import missing_capability

pytestmark = [pytest.mark.netns, pytest.mark.slow]  # one lab of namespaces for the module

PREFIX = "pwmx"
TLS_NAME = "api.portway.test"
INVENTORY: dict[str, Any] = {
    "zones": {"dmz": ["198.18.1.0/24"], "lan": ["198.18.2.0/24"], "vpn": ["198.18.4.0/24"]},
    "hosts": [
        {"name": "lb-1", "address": "198.18.1.10", "components": ["load_balancer"],
         "tls_server_name": TLS_NAME},
        {"name": "worker-1", "address": "198.18.1.21", "components": ["worker"]},
        {"name": "manager-1", "address": "198.18.2.10", "components": ["manager"]},
        {"name": "data-1", "address": "198.18.2.20",
         "components": ["mongodb", "elasticsearch", "cache"]},
        {"name": "backend-1", "address": "198.18.0.50", "components": ["backend_api"]},
    ],
}  # fmt: skip
# host namespace -> (address, zone gateway, inventory host or None, listeners)
HOSTS: dict[str, tuple[str, str, str | None, list[tuple[int, str]]]] = {
    "inet": ("198.18.0.50", "198.18.0.1", "backend-1", [(443, "tcp"), (80, "tcp")]),
    "vpn": ("198.18.4.10", "198.18.4.1", None, []),
    "lb": ("198.18.1.10", "198.18.1.1", "lb-1", [(443, "tls"), (80, "redirect"), (22, "tcp")]),
    # 22 on the worker and 6379 on the data host: services the matrix does not know
    "wk": ("198.18.1.21", "198.18.1.1", "worker-1", [(8080, "tcp"), (22, "tcp")]),
    "mgr": ("198.18.2.10", "198.18.2.1", "manager-1", [(8080, "tcp"), (22, "tcp")]),
    "data": ("198.18.2.20", "198.18.2.1", "data-1",
             [(25080, "tcp"), (9200, "tcp"), (9300, "tcp"), (5701, "tcp"), (6379, "tcp")]),
}  # fmt: skip
SWITCHED = {"lb": "dmz", "wk": "dmz", "mgr": "lan", "data": "lan"}
ROUTER_LEGS = {"inet": "198.18.0.1/24", "vpn": "198.18.4.1/24", "dmz": "198.18.1.1/24",
               "lan": "198.18.2.1/24"}  # fmt: skip


def _require_netns() -> None:
    reason = missing_tools()
    if reason is not None:
        missing_capability(reason)


def _reap_abandoned() -> None:
    """Namespaces of runs whose process is gone (killed mid-test) are removed."""
    for name in namespaces_with(PREFIX):
        pid = name[len(PREFIX) :].split("x", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            sh("ip", "netns", "del", name, check=False)


@dataclass
class Lab:
    spaces: Namespaces
    workdir: Path
    ca_file: Path
    listeners: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, short: str) -> str:
        return self.spaces.ns(short)

    def add_ns(self, short: str) -> str:
        return self.spaces.add(short)

    def link(self, left: str, left_if: str, right: str, right_if: str) -> None:
        self.spaces.link(left, left_if, right, right_if)

    def nft(self, short: str, rules: str) -> None:
        self.spaces.nft(short, rules)

    def flush(self, short: str) -> None:
        self.spaces.flush(short)

    def audit(
        self, short: str, vantage: str, config: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        inventory = self.workdir / "inventory.yaml"
        command = [
            "ip", "netns", "exec", self.ns(short), sys.executable, "-m", "portway",
            "audit", "--inventory", str(inventory), "--from", vantage, "--format", "json",
            "--timeout", "0.5", "--ca-file", str(self.ca_file),
        ]  # fmt: skip
        if config is not None:
            path = self.workdir / "config.yaml"
            path.write_text(yaml.safe_dump(config))
            command += ["--config", str(path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                                cwd=REPO)  # fmt: skip
        assert result.stdout, f"audit printed nothing: {result.stderr}"
        return result.returncode, json.loads(result.stdout)

    def close(self) -> None:
        for process in self.listeners:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        remove(list(reversed(self.spaces.namespaces)), self.spaces.link_prefix)


def _build(lab: Lab) -> None:
    router = lab.add_ns("rt")
    sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for switch in ("dmz", "lan"):
        name = lab.add_ns(f"sw{switch}")
        sh("ip", "-n", name, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", name, "link", "set", "br0", "up")
        lab.link(router, switch, name, "uplink")
        sh("ip", "-n", name, "link", "set", "uplink", "master", "br0")
    for leg, address in ROUTER_LEGS.items():
        if leg in ("inet", "vpn"):
            continue
        sh("ip", "-n", router, "addr", "add", address, "dev", leg)
    for short, (address, gateway, _, _) in HOSTS.items():
        namespace = lab.add_ns(short)
        if short in SWITCHED:
            switch = lab.ns(f"sw{SWITCHED[short]}")
            lab.link(namespace, "eth0", switch, short)
            sh("ip", "-n", switch, "link", "set", short, "master", "br0")
        else:
            lab.link(namespace, "eth0", router, short)
            sh("ip", "-n", router, "addr", "add", ROUTER_LEGS[short], "dev", short)
        sh("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", namespace, "route", "add", "default", "via", gateway)


def _start_listeners(lab: Lab, cert: Path, key: Path) -> None:
    for short, (address, _, _, ports) in HOSTS.items():
        if not ports:
            continue
        spec = [{"address": address, "port": port, "kind": kind, "cert": str(cert),
                 "key": str(key)} for port, kind in ports]  # fmt: skip
        spec_file = lab.workdir / f"listen-{short}.json"
        spec_file.write_text(json.dumps(spec))
        process = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns(short), sys.executable, "-m",
             "tests.matrix.lab_listeners", str(spec_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        lab.listeners.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            assert process.stderr is not None
            raise AssertionError(f"listeners in {short} did not start: {process.stderr.read()}")


def _apply(lab: Lab, matrix: Matrix, inventory: Inventory) -> None:
    """The generated tables: zone tables on the router, a host table on each Portway host."""
    lab.flush("rt")
    for zone in (Zone.DMZ, Zone.LAN):
        table = nftables.build_table(matrix, inventory, resolve_zone(inventory, zone, "nft"))
        lab.nft("rt", nftables.render_text(table, f"zone {zone.value}"))
    for short, (_, _, host, _) in HOSTS.items():
        if short in SWITCHED and host is not None:
            lab.flush(short)
            table = nftables.build_table(matrix, inventory, resolve_host(matrix, inventory, host))
            lab.nft(short, nftables.render_text(table, f"host {host}"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    _require_netns()
    if shutil.which("nft") is None:
        pytest.fail("nft is not installed: scripts/apt-packages.txt must install nftables")
    _reap_abandoned()
    workdir = tmp_path_factory.mktemp("netns")
    ca = trustme.CA()
    cert = ca.issue_cert(TLS_NAME)
    cert_file, key_file, ca_file = workdir / "c.pem", workdir / "k.pem", workdir / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    (workdir / "inventory.yaml").write_text(yaml.safe_dump(INVENTORY))
    prefix = f"{PREFIX}{os.getpid()}x{secrets.token_hex(3)}"
    lab = Lab(Namespaces(prefix, prefix[-8:]), workdir, ca_file)
    try:
        _build(lab)
        _start_listeners(lab, cert_file, key_file)
        _apply(lab, standard_matrix(), inventory_from_mapping(INVENTORY))
        yield lab
    finally:
        lab.close()


def opened(report: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p["host"], p["port"]) for p in report["probes"] if p["observed"] == "open"}


def violations(report: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(p["host"], p["port"], p["expected"]) for p in report["probes"]
            if p["verdict"] == "violation"]  # fmt: skip


def test_lab_is_connected_without_rules(lab: Lab) -> None:
    """Guard: with the router open, the Internet reaches the LAN (so the rules do the work)."""
    lab.flush("rt")
    lab.flush("data")
    try:
        code, report = lab.audit("inet", "internet")
        assert ("data-1", 25080) in opened(report)
        assert violations(report)
        assert code == 1
    finally:
        _apply(lab, standard_matrix(), inventory_from_mapping(INVENTORY))


def test_from_the_internet_only_the_load_balancer_answers(lab: Lab) -> None:
    code, report = lab.audit("inet", "internet")
    assert violations(report) == []
    assert code == 0
    assert opened(report) == {("lb-1", 443), ("lb-1", 80)}
    assert [(t["host"], t["ok"]) for t in report["tls"]] == [("lb-1", True)]
    assert [(r["host"], r["ok"], r["status"]) for r in report["redirects"]] == [("lb-1", True, 301)]
    ssh = next(p for p in report["probes"] if (p["host"], p["port"]) == ("lb-1", 22))
    assert (ssh["expected"], ssh["observed"], ssh["flows"]) == (
        "closed", "filtered", ["in-lb-ssh (off)"])  # fmt: skip


def test_from_the_dmz_the_worker_reaches_what_it_needs(lab: Lab) -> None:
    code, report = lab.audit("wk", "worker-1")
    assert (code, violations(report)) == (0, [])
    assert opened(report) == {
        ("manager-1", 8080), ("data-1", 25080), ("data-1", 9200), ("data-1", 5701),
        ("backend-1", 443), ("backend-1", 80),
        # HTTPS to external services may go anywhere; plain HTTP only to the inventory's backend
        ("lb-1", 443),
    }  # fmt: skip


def test_from_the_lan_the_manager_reaches_what_it_needs(lab: Lab) -> None:
    code, report = lab.audit("mgr", "manager-1")
    assert (code, violations(report)) == (0, [])
    assert opened(report) == {
        ("worker-1", 8080), ("data-1", 25080), ("data-1", 9200), ("data-1", 5701),
        ("lb-1", 443),  # the manager's HTTPS egress meets the load balancer's Internet ingress
    }  # fmt: skip


def test_from_the_vpn_operators_reach_ssh_and_the_manager(lab: Lab) -> None:
    code, report = lab.audit("vpn", "vpn")
    assert (code, violations(report)) == (0, [])
    assert opened(report) == {("lb-1", 22), ("manager-1", 22), ("manager-1", 8080),
                              ("lb-1", 443), ("lb-1", 80)}  # fmt: skip


def test_a_rule_set_exposing_mongodb_is_caught(lab: Lab) -> None:
    wrong = settings_from_mapping({"extra_flows": [{
        "id": "mongodb-public", "source": "internet", "destination": "mongodb",
        "ports": [25080], "description": "a mistake"}]})  # fmt: skip
    _apply(lab, effective_matrix(wrong), inventory_from_mapping(INVENTORY))
    try:
        code, report = lab.audit("inet", "internet")
    finally:
        _apply(lab, standard_matrix(), inventory_from_mapping(INVENTORY))
    assert violations(report) == [("data-1", 25080, "closed")]
    assert code == 1


def test_a_rule_set_for_other_ports_blocks_required_flows(lab: Lab) -> None:
    """Rules generated for MongoDB on 27017 while it listens on 25080 (configuration drift)."""
    drifted = settings_from_mapping({"ports": {"mongodb": {"port": 27017}}})
    _apply(lab, effective_matrix(drifted), inventory_from_mapping(INVENTORY))
    try:
        code, report = lab.audit("wk", "worker-1")
    finally:
        _apply(lab, standard_matrix(), inventory_from_mapping(INVENTORY))
    assert violations(report) == [("data-1", 25080, "open")]
    assert code == 1

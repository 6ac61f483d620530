"""``portway audit`` against listeners on loopback addresses (no root, no firewall).

Without a firewall everything that listens answers, so the audit must name exactly the ports
the matrix does not allow from the vantage point; TLS and the redirect are checked for real.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from portway.cli import main
from portway.config.platform_file import platform_from_mapping
from portway.matrix.audit.expectations import Expect
from portway.matrix.audit.report import AuditReport, render_report_json, render_report_table
from portway.matrix.audit.runner import AuditOptions, run_audit
from portway.matrix.audit.scanner import Seen, connect_scan, nmap_scan, parse_nmap_xml
from portway.matrix.audit.tls_checks import check_redirect, check_tls
from portway.matrix.inventory import inventory_from_mapping
from portway.matrix.model import Matrix
from portway.matrix.platform import matrix_for
from tests.matrix.lab_listeners import start_listeners
from tests.support.servers import missing_capability

HOSTS = {"lb-1": "127.0.0.2", "worker-1": "127.0.0.3", "manager-1": "127.0.0.4",
         "data-1": "127.0.0.5"}  # fmt: skip
NAME = "api.portway.test"


def free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


@dataclass
class Lab:
    matrix: Matrix
    settings_data: dict[str, Any]
    inventory_data: dict[str, Any]
    ports: dict[str, int]
    ca_file: Path
    tmp: Path

    def options(self, vantage: str, **more: Any) -> AuditOptions:
        return AuditOptions(vantage=vantage, common_ports=False, wait=0.5, ca_file=self.ca_file,
                            **more)  # fmt: skip

    def files(self) -> tuple[Path, Path]:
        config, inventory = self.tmp / "portway.yaml", self.tmp / "inventory.yaml"
        config.write_text(yaml.safe_dump(self.settings_data | self.inventory_data))
        inventory.write_text(yaml.safe_dump(self.inventory_data))
        return config, inventory


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    names = ["https", "http", "ssh", "worker", "manager", "mongodb", "es_http", "es_transport",
             "cache"]  # fmt: skip
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    data_host = HOSTS["data-1"]
    settings_data = {  # portway.yaml of the lab
        "load_balancer": {"https_port": ports["https"], "http_port": ports["http"]},
        "network": {"ssh": {"port": ports["ssh"]},
                    "elasticsearch_transport_port": ports["es_transport"]},
        "manager": {"port": ports["manager"],
                    "store": f"mongodb://{data_host}:{ports['mongodb']}/portway",
                    "logs": f"elasticsearch://{data_host}:{ports['es_http']}"},
        "workers": {"prod": {"port": ports["worker"],
                             "cache": f"hazelcast://{data_host}:{ports['cache']}/portway"}},
    }  # fmt: skip
    inventory_data = {
        "hosts": [
            {"name": "lb-1", "address": HOSTS["lb-1"], "components": ["load_balancer"],
             "tls_server_name": NAME},
            {"name": "worker-1", "address": HOSTS["worker-1"], "components": ["worker"]},
            {"name": "manager-1", "address": HOSTS["manager-1"], "components": ["manager"]},
            {"name": "data-1", "address": HOSTS["data-1"],
             "components": ["mongodb", "elasticsearch", "cache"]},
        ]
    }  # fmt: skip
    ca = trustme.CA()
    cert = ca.issue_cert(NAME)
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    specs: list[dict[str, Any]] = [
        {"address": HOSTS["lb-1"], "port": ports["https"], "kind": "tls", "cert": str(cert_file),
         "key": str(key_file)},
        {"address": HOSTS["lb-1"], "port": ports["http"], "kind": "redirect"},
        {"address": HOSTS["worker-1"], "port": ports["worker"], "kind": "tcp"},
        {"address": HOSTS["manager-1"], "port": ports["manager"], "kind": "tcp"},
    ] + [
        {"address": HOSTS["data-1"], "port": ports[p], "kind": "tcp"}
        for p in ("mongodb", "es_http", "es_transport", "cache")
    ]  # fmt: skip
    servers = await start_listeners(specs)
    _, matrix = matrix_for(platform_from_mapping(settings_data, tmp_path, env={}))
    try:
        yield Lab(matrix, settings_data, inventory_data, ports, ca_file,
                  tmp_path)  # fmt: skip
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


def violations(report: AuditReport) -> list[tuple[str, int, str]]:
    return [(r.probe.host, r.probe.port, r.verdict) for r in report.probes if r.violation]


async def test_from_the_internet_only_the_load_balancer_may_answer(lab: Lab) -> None:
    inventory = inventory_from_mapping(lab.inventory_data)
    report = await run_audit(lab.matrix, inventory, lab.options("internet"))
    p = lab.ports
    unexpected = "VIOLATION: open but not in the matrix"
    assert sorted(violations(report)) == sorted([
        ("worker-1", p["worker"], unexpected),
        ("manager-1", p["manager"], unexpected),
        ("data-1", p["mongodb"], unexpected),
        ("data-1", p["es_http"], unexpected),
        ("data-1", p["es_transport"], unexpected),
        ("data-1", p["cache"], unexpected),
    ])  # fmt: skip
    lb = {r.probe.port: r for r in report.probes if r.probe.host == "lb-1"}
    assert lb[p["https"]].probe.expect is Expect.OPEN
    assert lb[p["https"]].probe.flows == ("in-lb-https",)
    assert lb[p["ssh"]].probe.expect is Expect.CLOSED  # SSH from the Internet is switched off
    assert lb[p["ssh"]].probe.flows == ("in-lb-ssh (off)",)
    assert [(t.host, t.ok) for t in report.tls] == [("lb-1", True)]
    assert report.tls[0].days_left is not None
    assert report.tls[0].days_left > 300
    assert [(r.host, r.ok, r.status) for r in report.redirects] == [("lb-1", True, 301)]
    assert report.violations == 6


async def test_from_the_worker_required_flows_connect(lab: Lab) -> None:
    inventory = inventory_from_mapping(lab.inventory_data)
    report = await run_audit(lab.matrix, inventory, lab.options("worker-1"))
    expected = {(r.probe.host, r.probe.port): r.probe.expect for r in report.probes}
    p = lab.ports
    assert expected[("manager-1", p["manager"])] is Expect.OPEN
    assert expected[("data-1", p["cache"])] is Expect.OPEN
    assert expected[("lb-1", p["https"])] is Expect.EITHER  # an Internet flow: not the worker's
    assert expected[("data-1", p["es_http"])] is Expect.OPEN  # the manager's logs by default
    # workers never open the config store; 9300 is between Elasticsearch nodes only
    unexpected = "VIOLATION: open but not in the matrix"
    assert sorted(violations(report)) == sorted([
        ("data-1", p["mongodb"], unexpected),
        ("data-1", p["es_transport"], unexpected),
    ])  # fmt: skip
    assert "worker-1" not in {r.probe.host for r in report.probes}  # not its own host
    assert {u.flow for u in report.unprobed} >= {"out-worker-dns", "out-worker-backend-https"}


async def test_a_blocked_required_flow_is_a_violation(lab: Lab) -> None:
    data = dict(lab.inventory_data)
    data["hosts"] = [*data["hosts"][:2],
                     {"name": "manager-1", "address": "127.0.0.9", "components": ["manager"]},
                     data["hosts"][3]]  # fmt: skip
    report = await run_audit(lab.matrix, inventory_from_mapping(data), lab.options("worker-1"))
    blocked = [v for v in violations(report) if v[0] == "manager-1"]
    assert blocked == [("manager-1", lab.ports["manager"], "VIOLATION: required flow blocked")]


async def test_report_json_and_table(lab: Lab) -> None:
    inventory = inventory_from_mapping(lab.inventory_data)
    report = await run_audit(lab.matrix, inventory, lab.options("internet"))
    document = json.loads(render_report_json(report))
    assert document["schema"] == "portway.audit/v1"
    assert document["violations"] == 6
    row = next(p for p in document["probes"] if p["port"] == lab.ports["https"])
    assert row | {"detail": ""} == {
        "host": "lb-1", "address": "127.0.0.2", "zone": "dmz", "port": lab.ports["https"],
        "protocol": "tcp", "expected": "open", "observed": "open", "detail": "",
        "flows": ["in-lb-https"], "verdict": "ok",
    }  # fmt: skip
    table = render_report_table(report, only_violations=True)
    assert table.splitlines()[2].split() == ["HOST", "ADDRESS", "PORT", "EXPECTED", "OBSERVED",
                                             "VERDICT", "FLOWS"]  # fmt: skip
    assert "6 violation(s)" in table
    assert f"lb-1 127.0.0.2:{lab.ports['https']}  ok" in table


async def test_cli_audit_exits_1_on_violations_and_reports_their_number(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = lab.files()  # the hosts are in portway.yaml
    # the CLI runs its own event loop: a thread, so this loop keeps serving the listeners
    argv = ["audit", "--config", str(config), "--from",
            "internet", "--no-common-ports", "--timeout", "0.5", "--ca-file", str(lab.ca_file),
            "--format", "json"]  # fmt: skip
    code = await asyncio.to_thread(main, argv)
    document = json.loads(capsys.readouterr().out)
    assert document["violations"] == 6
    assert code == 1


async def test_tls_check_reports_an_untrusted_certificate(lab: Lab) -> None:
    result = await check_tls("lb-1", HOSTS["lb-1"], lab.ports["https"], NAME, None, 14)
    assert not result.ok
    assert result.detail.startswith(f"certificate not trusted for {NAME}")
    assert result.days_left is not None  # read anyway, for the report


async def test_tls_check_reports_a_certificate_about_to_expire(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert(NAME, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=5, hours=1))
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "c.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "k.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (port,) = free_ports(1)
    servers = await start_listeners([{"address": "127.0.0.2", "port": port, "kind": "tls",
                                      "cert": str(tmp_path / "c.pem"),
                                      "key": str(tmp_path / "k.pem")}])  # fmt: skip
    try:
        result = await check_tls("lb-1", "127.0.0.2", port, NAME, tmp_path / "ca.pem", 14)
    finally:
        servers[0].close()
    assert not result.ok
    assert result.detail == "certificate expires in 5 days (< 14)"
    assert result.days_left == 5


async def test_tls_check_on_a_plain_port_fails(lab: Lab) -> None:
    result = await check_tls("lb-1", HOSTS["lb-1"], lab.ports["http"], NAME, lab.ca_file, 14, 0.5)
    assert not result.ok
    assert result.detail.startswith("no TLS handshake")


async def test_redirect_check_rejects_a_plain_answer() -> None:
    (port,) = free_ports(1)
    servers = await start_listeners([{"address": "127.0.0.2", "port": port, "kind": "http200"}])
    try:
        result = await check_redirect("lb-1", "127.0.0.2", port, NAME)
    finally:
        servers[0].close()
    assert not result.ok
    assert result.detail == "answered 200 (no Location) instead of a redirect to https://"


async def test_connect_scan_tells_open_from_refused() -> None:
    open_port, closed_port = free_ports(2)
    servers = await start_listeners([{"address": "127.0.0.1", "port": open_port, "kind": "tcp"}])
    try:
        seen = await connect_scan([("127.0.0.1", open_port), ("127.0.0.1", closed_port)], 1.0)
    finally:
        servers[0].close()
    assert seen[("127.0.0.1", open_port)].seen is Seen.OPEN
    assert seen[("127.0.0.1", closed_port)].seen is Seen.CLOSED


async def test_nmap_scanner_agrees_with_the_connect_scanner() -> None:
    import shutil

    if shutil.which("nmap") is None:
        missing_capability("nmap is not installed (scripts/apt-packages.txt lists it)")
    open_port, closed_port = free_ports(2)
    servers = await start_listeners([{"address": "127.0.0.1", "port": open_port, "kind": "tcp"}])
    try:
        seen = await nmap_scan([("127.0.0.1", open_port), ("127.0.0.1", closed_port)], 1.0)
    finally:
        servers[0].close()
    assert seen[("127.0.0.1", open_port)].seen is Seen.OPEN
    assert seen[("127.0.0.1", closed_port)].seen is Seen.CLOSED


def test_nmap_xml_states_are_mapped() -> None:
    xml = """<nmaprun><host><address addr="198.18.1.10" addrtype="ipv4"/><ports>
      <port protocol="tcp" portid="443"><state state="open" reason="syn-ack"/></port>
      <port protocol="tcp" portid="22"><state state="filtered" reason="no-response"/></port>
      <port protocol="tcp" portid="80"><state state="closed" reason="conn-refused"/></port>
    </ports></host></nmaprun>"""
    seen = parse_nmap_xml(xml)
    assert {k: v.seen for k, v in seen.items()} == {
        ("198.18.1.10", 443): Seen.OPEN, ("198.18.1.10", 22): Seen.FILTERED,
        ("198.18.1.10", 80): Seen.CLOSED,
    }  # fmt: skip

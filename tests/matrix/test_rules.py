"""Security rules: the standard installation passes; each rule catches what it is about."""

from __future__ import annotations

import pytest

from portway.matrix.effective import effective_matrix, standard_matrix
from portway.matrix.rules import check, standard_rules
from portway.matrix.settings import settings_from_mapping


def _violations(data: dict[str, object]) -> list[str]:
    settings = settings_from_mapping(data)
    return [str(v) for v in check(effective_matrix(settings), standard_rules(settings))]


def _extra(source: str, destination: str, ports: list[int], **more: object) -> dict[str, object]:
    flow = {"id": "custom", "source": source, "destination": destination, "ports": ports,
            "description": "custom flow", **more}  # fmt: skip
    return {"extra_flows": [flow]}


def test_standard_installation_violates_nothing() -> None:
    assert check(standard_matrix(), standard_rules()) == []


def test_mongodb_open_to_the_internet() -> None:
    assert _violations(_extra("internet", "mongodb", [25080])) == [
        "[no-databases-from-internet] flow custom (Internet → MongoDB 25080/tcp) exposes "
        "MongoDB port 25080 to the Internet",
        "[tls-on-internet-facing] flow custom (Internet → MongoDB 25080/tcp) is Internet-facing "
        "without TLS (TCP)",
        "[dmz-lan-segmentation] flow custom (Internet → MongoDB 25080/tcp) reaches the LAN "
        "directly from the Internet; route it through the DMZ",
    ]


def test_elasticsearch_port_forwarded_through_the_load_balancer() -> None:
    assert _violations(_extra("internet", "load_balancer", [9200], protocol="HTTPS")) == [
        "[no-databases-from-internet] flow custom (Internet → Load Balancer 9200/tcp) opens "
        "port 9200 (MongoDB or Elasticsearch port) on Load Balancer to the Internet",
    ]


def test_manager_port_follows_the_configuration() -> None:
    data: dict[str, object] = {"ports": {"manager": {"http": 9443}}}
    data |= _extra("internet", "load_balancer", [9443], protocol="HTTPS")
    assert _violations(data) == [
        "[no-manager-from-internet] flow custom (Internet → Load Balancer 9443/tcp) opens port "
        "9443 (Manager port) on Load Balancer to the Internet",
    ]


def test_ssh_from_the_internet_switched_on() -> None:
    assert _violations({"optional_flows": {"ssh_from_internet": True}}) == [
        "[ssh-only-from-vpn] flow in-lb-ssh (Internet → Load Balancer 22/tcp) allows SSH from "
        "the Internet; SSH only from the VPN",
    ]


def test_plain_http_redirect_without_https_is_not_tls() -> None:
    # The redirect flow is fine only next to an HTTPS flow to the same component.
    matrix = standard_matrix()
    from dataclasses import replace

    from portway.matrix.model import Matrix

    flows = tuple(replace(f, enabled=False) if f.id == "in-lb-https" else f for f in matrix.flows)
    broken = Matrix(matrix.components, flows, matrix.tables)
    assert [v.rule for v in check(broken, standard_rules())] == ["tls-on-internet-facing"]


def test_dynamic_ports_outside_kubernetes_break_default_deny() -> None:
    from dataclasses import replace

    from portway.matrix.model import Matrix, PortSet

    matrix = standard_matrix()
    flows = tuple(
        replace(f, ports=PortSet.any_port(), port_ref=None) if f.id == "int-worker-cache" else f
        for f in matrix.flows
    )
    violations = check(Matrix(matrix.components, flows, matrix.tables), standard_rules())
    assert [str(v) for v in violations] == [
        "[default-deny] flow int-worker-cache (Worker → Cache Dynamic/tcp) opens every port "
        "instead of naming them"
    ]


@pytest.mark.parametrize("destination", ["manager", "cache"])
def test_internet_into_the_lan_breaks_segmentation(destination: str) -> None:
    rules = {v.split("]")[0][1:] for v in _violations(_extra("internet", destination, [443],
                                                              protocol="HTTPS"))}  # fmt: skip
    assert "dmz-lan-segmentation" in rules


def test_ssh_by_port_is_caught_whatever_the_protocol_says() -> None:
    assert any("ssh-only-from-vpn" in v for v in _violations(_extra("internet", "worker", [22])))

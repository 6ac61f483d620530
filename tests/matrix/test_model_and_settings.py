"""The catalogue, the settings model and the effective matrix."""

from __future__ import annotations

import dataclasses

import pytest

from portway.config.platform_file import load_platform
from portway.errors import ConfigError
from portway.matrix.effective import effective_matrix, standard_matrix
from portway.matrix.errors import MatrixError
from portway.matrix.model import Category, PortSet, Zone
from portway.matrix.platform import matrix_for
from portway.matrix.settings import MatrixSettings, settings_from_mapping
from portway.matrix.standard import FLOW_IDS, FLOWS
from tests.matrix.matrix_helpers import DATA

# Flow ids are referred to by firewall comments, audit reports and operators' scripts: changing
# one is a breaking change and must show up here.
PINNED_IDS = (
    "in-lb-https", "in-lb-http", "in-lb-ssh", "vpn-lb-ssh", "vpn-manager-ssh", "vpn-manager-http",
    "out-worker-backend-https", "out-worker-backend-http", "out-worker-external-https",
    "out-manager-external-https", "out-manager-smtp", "out-manager-dns", "out-worker-dns",
    "int-lb-worker", "int-manager-worker-deploy", "int-manager-worker-health",
    "int-worker-manager-config", "int-worker-manager-status", "int-worker-mongodb",
    "int-manager-mongodb", "int-mongodb-replica", "int-worker-elasticsearch",
    "int-manager-elasticsearch", "int-elasticsearch-cluster", "int-worker-cache",
    "int-manager-cache", "int-cache-cluster", "k8s-kubelet-apiserver", "k8s-kubeproxy-apiserver",
    "k8s-pod-pod", "int-monitoring-worker-metrics", "int-monitoring-manager-metrics",
)  # fmt: skip


def test_flow_ids_are_stable() -> None:
    assert FLOW_IDS == PINNED_IDS


def test_flow_ids_do_not_depend_on_ports() -> None:
    custom = effective_matrix(settings_from_mapping({"ports": {"mongodb": {"port": 27017}}}))
    assert tuple(f.id for f in custom.flows) == PINNED_IDS


def test_model_objects_are_frozen() -> None:
    flow = FLOWS[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        flow.id = "other"  # type: ignore[misc]


def test_components_sit_in_the_seed_zones() -> None:
    matrix = standard_matrix()
    zones = {c.id: c.zone for c in matrix.components}
    assert zones["load_balancer"] is Zone.DMZ
    assert zones["worker"] is Zone.DMZ
    assert {zones[c] for c in ("manager", "mongodb", "elasticsearch", "cache")} == {Zone.LAN}
    assert zones["backend_api"] is Zone.INTERNET
    assert zones["api_server"] is Zone.KUBERNETES


def test_categories_follow_the_seed() -> None:
    matrix = standard_matrix()
    assert {f.id for f in matrix.flows if f.category is Category.INBOUND} == {
        "in-lb-https", "in-lb-http", "in-lb-ssh", "vpn-lb-ssh", "vpn-manager-ssh",
        "vpn-manager-http",
    }  # fmt: skip
    assert all(f.id.startswith("out-") for f in matrix.flows if f.category is Category.OUTBOUND)


def test_port_sets_reject_nonsense() -> None:
    with pytest.raises(MatrixError, match=r"outside 1\.\.65535"):
        PortSet.of(0)
    with pytest.raises(MatrixError, match="repeats"):
        PortSet.of(25, 25)
    with pytest.raises(MatrixError, match="not both"):
        PortSet(numbers=(1,), dynamic=True)


def test_standard_installation_switches_ssh_from_internet_and_metrics_off_and_the_rest_on() -> None:
    matrix = standard_matrix()
    off = [f.id for f in matrix.flows if not f.enabled]
    assert off == ["in-lb-ssh", "int-monitoring-worker-metrics", "int-monitoring-manager-metrics"]


def test_changing_a_port_moves_every_flow_that_uses_it() -> None:
    matrix = effective_matrix(settings_from_mapping({"ports": {"mongodb": {"port": 27017}}}))
    mongo = [f for f in matrix.flows if f.destination == "mongodb"]
    assert len(mongo) == 3
    assert all(f.ports.numbers == (27017,) for f in mongo)
    assert 25080 not in matrix.all_ports()


def test_turning_an_optional_flow_off_keeps_it_listed_but_disabled() -> None:
    _, matrix = matrix_for(load_platform(DATA / "custom.yaml"))
    assert not matrix.flow("out-worker-backend-http").enabled
    assert matrix.flow("out-worker-backend-https").enabled


def test_kubernetes_off_removes_its_flows_and_table() -> None:
    matrix = effective_matrix(settings_from_mapping({"kubernetes": {"enabled": False}}))
    assert not [f for f in matrix.flows if f.id.startswith("k8s-")]
    assert "kubernetes" not in {t.id for t in matrix.tables}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ports": {"mongodb": {"prot": 1}}},
         "ports.mongodb.prot: unknown field (not allowed here)"),
        ({"ports": {"mongodb": {"port": 70000}}},
         "ports.mongodb.port: Input should be less than or equal to 65535"),
        ({"optional_flows": {"telnet": True}},
         "optional_flows.telnet: unknown field (not allowed here)"),
        ({"extra_flows": [{"id": "x", "source": "internet", "destination": "mongo",
                           "ports": [1], "description": "d"}]},
         "extra_flows[0].destination: unknown component 'mongo'; known: internet, vpn, "),
        ({"extra_flows": [{"id": "in-lb-https", "source": "internet",
                           "destination": "load_balancer", "ports": [1], "description": "d"}]},
         "extra_flows[0].id: 'in-lb-https' is already a standard flow"),
        ({"layout": "cloud"}, "layout: Input should be 'distributed' or 'single-host'"),
    ],
)  # fmt: skip
def test_settings_errors_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    assert str(caught.value).startswith(message)


def test_two_listeners_on_one_port_of_a_component_are_refused() -> None:
    settings = settings_from_mapping({"ports": {"elasticsearch": {"http": 9300}}})
    with pytest.raises(ConfigError) as caught:
        effective_matrix(settings)
    assert str(caught.value) == (
        "ports.elasticsearch.transport: port 9300 is also ports.elasticsearch.http "
        "(both on elasticsearch); give each listener its own port"
    )


def test_single_host_layout_refuses_the_shared_8080() -> None:
    settings = settings_from_mapping({"layout": "single-host"})
    with pytest.raises(ConfigError) as caught:
        effective_matrix(settings)
    assert str(caught.value) == (
        "ports.worker.http: port 8080 is also ports.manager.http (manager and worker on a "
        "single host); give each listener its own port"
    )


def test_single_host_layout_with_remapped_ports_is_accepted() -> None:
    settings = settings_from_mapping(
        {"layout": "single-host", "ports": {"manager": {"http": 8081}, "ssh": {"port": 2222}}}
    )
    assert effective_matrix(settings).flow("vpn-manager-http").ports.numbers == (8081,)


def test_default_settings_object_is_the_standard_installation() -> None:
    assert effective_matrix(MatrixSettings()) == standard_matrix()

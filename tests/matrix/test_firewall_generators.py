"""Generated rules load into the real tools; flows a target cannot express fail loudly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from portway.matrix.effective import effective_matrix, standard_matrix
from portway.matrix.errors import MatrixError, UnexpressibleFlow
from portway.matrix.firewall import aws, iptables, kubernetes, nftables
from portway.matrix.firewall.plan import resolve_host, resolve_zone
from portway.matrix.firewall.scope import selected_components
from portway.matrix.inventory import inventory_from_mapping, load_inventory
from portway.matrix.model import Zone
from portway.matrix.settings import MatrixSettings, settings_from_mapping
from tests.matrix.matrix_helpers import GOLDEN, require_root_and, run_in_fresh_netns

NFT_TEXT = sorted(GOLDEN.glob("nft-*.nft"))
NFT_JSON = sorted(GOLDEN.glob("nft-*.json"))
IPTABLES = sorted(GOLDEN.glob("iptables-*.rules"))


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_golden_files_exist_for_each_generator() -> None:
    assert len(NFT_TEXT) == 6
    assert len(NFT_JSON) == 6
    assert len(IPTABLES) == 6


@pytest.mark.parametrize("path", NFT_TEXT, ids=_ids(NFT_TEXT))
def test_nft_accepts_the_text_rules(path: Path) -> None:
    require_root_and("nft")
    result = run_in_fresh_netns("nft", "-c", "-f", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", NFT_JSON, ids=_ids(NFT_JSON))
def test_nft_accepts_the_json_rules(path: Path) -> None:
    require_root_and("nft")
    result = run_in_fresh_netns("nft", "-c", "-j", "-f", str(path))
    assert result.returncode == 0, result.stderr


def test_nft_check_would_catch_a_broken_file(tmp_path: Path) -> None:
    require_root_and("nft")
    broken = tmp_path / "broken.nft"
    broken.write_text((GOLDEN / "nft-zone-dmz.nft").read_text().replace("policy accept", "pol"))
    assert run_in_fresh_netns("nft", "-c", "-f", str(broken)).returncode != 0


@pytest.mark.parametrize("path", IPTABLES, ids=_ids(IPTABLES))
def test_iptables_restore_accepts_the_rules(path: Path) -> None:
    require_root_and("iptables-restore")
    result = run_in_fresh_netns("iptables-restore", "--test", str(path))
    assert result.returncode == 0, result.stderr


def test_iptables_restore_would_catch_a_broken_file(tmp_path: Path) -> None:
    require_root_and("iptables-restore")
    broken = tmp_path / "broken.rules"
    broken.write_text((GOLDEN / "iptables-zone-lan.rules").read_text().replace("--dport", "--dp"))
    assert run_in_fresh_netns("iptables-restore", "--test", str(broken)).returncode != 0


def _k8s_documents() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((GOLDEN / "k8s.yaml").read_text()))


def test_network_policies_validate_against_the_kubernetes_schema() -> None:
    documents = _k8s_documents()
    assert len(documents) == 8  # 2 default-deny + 6 components
    for document in documents:
        kubernetes_validate.validate(document, "1.31.0", strict=True)


def test_kubernetes_schema_validation_would_catch_a_mistake() -> None:
    document = _k8s_documents()[2]
    document["spec"]["ingress"][0]["ports"][0]["port"] = {"not": "a port"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, "1.31.0", strict=True)


def test_each_namespace_starts_with_a_default_deny() -> None:
    denies = [d for d in _k8s_documents() if d["metadata"]["name"] == "portway-default-deny"]
    assert {d["metadata"]["namespace"] for d in denies} == {"portway-dmz", "portway-lan"}
    assert all(d["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
               for d in denies)  # fmt: skip


def test_worker_policy_admits_the_manager_from_the_lan_namespace() -> None:
    worker = next(d for d in _k8s_documents() if d["metadata"]["name"] == "portway-worker")
    peers = [p for rule in worker["spec"]["ingress"] for p in rule["from"]]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "portway-lan"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "portway",
                                        "app.kubernetes.io/component": "manager"}},
    } in peers  # fmt: skip


def test_aws_rules_reference_security_groups_and_are_not_duplicated() -> None:
    import json

    document = json.loads((GOLDEN / "aws.tf.json").read_text())
    ingress = document["resource"]["aws_vpc_security_group_ingress_rule"]
    keys = [
        (r["security_group_id"], r.get("referenced_security_group_id") or r.get("cidr_ipv4")
         or r.get("cidr_ipv6"), r["ip_protocol"], r["from_port"])
        for r in ingress.values()
    ]  # fmt: skip
    assert len(keys) == len(set(keys))
    deploy = ingress["worker_int_manager_worker_deploy_tcp_8080"]
    assert deploy["description"].startswith("int-manager-worker-deploy,int-manager-worker-health")
    assert deploy["referenced_security_group_id"] == "${aws_security_group.portway_manager.id}"
    assert "data" not in document  # every referenced group is in the file


def test_aws_per_zone_looks_up_the_other_zones_groups() -> None:
    import json

    document = json.loads((GOLDEN / "aws-dmz.tf.json").read_text())
    assert set(document["resource"]["aws_security_group"]) == {
        "portway_load_balancer", "portway_worker"}  # fmt: skip
    assert "portway_manager" in document["data"]["aws_security_group"]


# -- loud failures -----------------------------------------------------------------------------


def test_nftables_for_the_kubernetes_zone_refuses_dynamic_pod_ports() -> None:
    inventory = inventory_from_mapping({"zones": {"kubernetes": ["198.18.8.0/22"]}})
    matrix = standard_matrix()
    scope = resolve_zone(inventory, Zone.KUBERNETES, "nftables")
    with pytest.raises(UnexpressibleFlow) as caught:
        nftables.build_table(matrix, inventory, scope)
    assert str(caught.value) == (
        "nftables: cannot express flow k8s-pod-pod (pod <-> pod Dynamic/tcp+udp): its ports are "
        "dynamic; a rule for it would open every port"
    )


def test_a_zone_without_networks_cannot_be_told_apart() -> None:
    with pytest.raises(MatrixError, match=r"list them under zones.dmz in the inventory"):
        resolve_zone(None, Zone.DMZ, "nftables")


def test_iptables_without_addresses_refuses_rather_than_admitting_everyone() -> None:
    matrix = standard_matrix()
    with pytest.raises(UnexpressibleFlow) as caught:
        iptables.render_iptables(matrix, None, resolve_host(matrix, None, "worker"), "x")
    assert str(caught.value) == (
        "iptables: cannot express flow int-lb-worker (load_balancer -> worker 8080/tcp): no "
        "address for load_balancer in the inventory, and a rule without one would admit every "
        "address"
    )


def test_nftables_without_addresses_uses_empty_sets_that_match_nothing() -> None:
    matrix = standard_matrix()
    table = nftables.build_table(matrix, None, resolve_host(matrix, None, "worker"))
    assert table.sets["load_balancer_v4"].elements == ()
    text = nftables.render_text(table, "x")
    assert "# note: set load_balancer_v4 is empty" in text


def test_kubernetes_needs_the_vpn_networks() -> None:
    matrix = standard_matrix()
    components = selected_components(matrix, None, None, None)
    with pytest.raises(UnexpressibleFlow, match=r"vpn-lb-ssh .* no networks for VPN"):
        kubernetes.render_kubernetes(matrix, MatrixSettings(), None, components, "x")


def test_kubernetes_refuses_a_flow_to_cluster_plumbing() -> None:
    settings = settings_from_mapping({"extra_flows": [{
        "id": "worker-kubelet", "source": "worker", "destination": "kubelet", "ports": [10250],
        "description": "metrics"}]})  # fmt: skip
    matrix = effective_matrix(settings)
    inventory = load_inventory(GOLDEN.parent / "data" / "inventory.yaml")
    components = selected_components(matrix, inventory, None, None)
    with pytest.raises(UnexpressibleFlow, match="Kubelet is cluster plumbing"):
        kubernetes.render_kubernetes(matrix, settings, inventory, components, "x")


def test_aws_refuses_dynamic_ports_on_a_portway_component() -> None:
    from dataclasses import replace

    from portway.matrix.model import Matrix, PortSet

    matrix = standard_matrix()
    flows = tuple(replace(f, ports=PortSet.any_port()) if f.id == "int-worker-cache" else f
                  for f in matrix.flows)  # fmt: skip
    widened = Matrix(matrix.components, flows, matrix.tables)
    with pytest.raises(UnexpressibleFlow, match=r"int-worker-cache .* its ports are dynamic"):
        aws.render_aws(widened, None, ("worker", "cache"), "x")


def test_ipv6_hosts_are_refused_by_iptables() -> None:
    inventory = inventory_from_mapping({"hosts": [
        {"name": "lb-1", "address": "fd00::10", "components": ["load_balancer"]},
        {"name": "worker-1", "address": "fd00::21", "components": ["worker"]}]})  # fmt: skip
    matrix = standard_matrix()
    with pytest.raises(UnexpressibleFlow, match="IPv6 addresses"):
        iptables.render_iptables(
            matrix, inventory, resolve_host(matrix, inventory, "worker-1"), "x"
        )
    table = nftables.build_table(matrix, inventory, resolve_host(matrix, inventory, "worker-1"))
    assert table.sets["load_balancer_v6"].elements == ("fd00::10",)


def test_an_internet_component_placed_in_a_zone_gets_its_flows_on_that_zones_router() -> None:
    """A DNS server the inventory puts in the LAN: the worker's queries cross the LAN router,
    whose table must accept them (and nothing else towards it)."""
    inventory = inventory_from_mapping({
        "zones": {"dmz": ["198.18.1.0/24"], "lan": ["198.18.2.0/24"]},
        "hosts": [
            {"name": "worker-1", "address": "198.18.1.21", "components": ["worker"]},
            {"name": "manager-1", "address": "198.18.2.10", "components": ["manager"]},
            {"name": "dns-1", "address": "198.18.2.53", "components": ["dns_server"]},
        ],
    })  # fmt: skip
    matrix = standard_matrix()
    lan = nftables.render_text(
        nftables.build_table(matrix, inventory, resolve_zone(inventory, Zone.LAN, "nftables")), "x"
    )
    to_lan = lan.split("chain to_lan {", 1)[1].split("}", 1)[0]
    assert (
        'ip saddr @worker_v4 ip daddr @dns_server_v4 udp dport 53 accept comment "out-worker-dns"'
        in to_lan
    )
    assert "tcp dport 53" in to_lan
    assert "elements = { 198.18.2.53 }" in lan
    # a DNS server the inventory leaves outside the zone changes nothing on its router
    outside = inventory_from_mapping({
        "zones": {"lan": ["198.18.2.0/24"]},
        "hosts": [{"name": "dns-1", "address": "198.18.0.53", "components": ["dns_server"]}],
    })  # fmt: skip
    table = nftables.build_table(matrix, outside, resolve_zone(outside, Zone.LAN, "nftables"))
    assert "out-worker-dns" not in nftables.render_text(table, "x").split("chain to_lan", 1)[1]

"""Kubernetes NetworkPolicies: a default deny per namespace, then one policy per component.

Portway components run as pods labelled ``app.kubernetes.io/part-of: portway`` and
``app.kubernetes.io/component: <component>`` in one namespace per zone (settings
``kubernetes.dmz_namespace`` / ``lan_namespace``). Internet ends become ``ipBlock`` rules (the
inventory's addresses, else any address); the VPN needs its networks from the inventory.
Flows with neither end a selected Portway component (the cluster's own plumbing: kubelet, API
server) are not NetworkPolicy's to govern and are listed in the header.
"""

from __future__ import annotations

from typing import Any

import yaml

from portway.matrix.errors import UnexpressibleFlow
from portway.matrix.firewall.plan import peer, ungoverned
from portway.matrix.inventory import Inventory
from portway.matrix.model import Flow, Matrix, Transport, Zone
from portway.matrix.settings import MatrixSettings

GENERATOR = "kubernetes"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
_ANY = ({"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}})
_KUBE_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


class _NoAliases(yaml.SafeDumper):
    """Writes shared sub-objects out in full: anchors would puzzle a reader of the policy."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def label(component: str) -> str:
    return component.replace("_", "-")


def namespace_of(matrix: Matrix, settings: MatrixSettings, component: str) -> str:
    zone = matrix.zone_of(component)
    if zone is Zone.DMZ:
        return settings.kubernetes.dmz_namespace
    return settings.kubernetes.lan_namespace


def _peers(
    matrix: Matrix,
    settings: MatrixSettings,
    inventory: Inventory | None,
    flow: Flow,
    component: str,
) -> list[dict[str, Any]]:
    target = matrix.component(component)
    if target.portway:
        return [
            {
                "namespaceSelector": {
                    "matchLabels": {
                        "kubernetes.io/metadata.name": namespace_of(matrix, settings, component)
                    }
                },
                "podSelector": {"matchLabels": {PART_OF: "portway", COMPONENT: label(component)}},
            }
        ]
    if target.zone is Zone.KUBERNETES:
        raise UnexpressibleFlow(
            GENERATOR,
            flow.short(),
            f"{target.name} is cluster plumbing, not a pod NetworkPolicy can select",
        )
    end = peer(matrix, inventory, component)
    if end.unknown:
        raise UnexpressibleFlow(
            GENERATOR,
            flow.short(),
            f"no networks for {target.name}; list them in the inventory "
            f"(zones.{target.zone.value} or a host running {component})",
        )
    blocks: list[dict[str, Any]] = (
        list(_ANY)
        if end.networks is None
        else [{"ipBlock": {"cidr": str(n)}} for n in end.networks]
    )
    if component == "dns_server" and end.networks is None:
        blocks.insert(0, _KUBE_DNS)
    return blocks


def _ports(flow: Flow) -> list[dict[str, Any]]:
    if flow.ports.dynamic:
        raise UnexpressibleFlow(GENERATOR, flow.short(), "its ports are dynamic")
    return [
        {"protocol": transport.name, "port": number}
        for number in flow.ports
        for transport in flow.transports
        if transport in (Transport.TCP, Transport.UDP)
    ]


def network_policies(
    matrix: Matrix,
    settings: MatrixSettings,
    inventory: Inventory | None,
    components: tuple[str, ...],
) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    namespaces = dict.fromkeys(namespace_of(matrix, settings, c) for c in components)
    for namespace in namespaces:
        docs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {
                    "name": "portway-default-deny",
                    "namespace": namespace,
                    "labels": {PART_OF: "portway"},
                },
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            }
        )
    for component in components:
        ingress: list[dict[str, Any]] = []
        egress: list[dict[str, Any]] = []
        for flow in matrix.enabled_flows:
            into = flow.destination == component or (
                flow.bidirectional and flow.source == component
            )
            out_of = flow.source == component or (
                flow.bidirectional and flow.destination == component
            )
            if into:
                ingress.append(
                    {
                        "from": _peers(matrix, settings, inventory, flow, flow.source),
                        "ports": _ports(flow),
                    }
                )
            if out_of:
                egress.append(
                    {
                        "to": _peers(matrix, settings, inventory, flow, flow.destination),
                        "ports": _ports(flow),
                    }
                )
        docs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {
                    "name": f"portway-{label(component)}",
                    "namespace": namespace_of(matrix, settings, component),
                    "labels": {PART_OF: "portway"},
                    "annotations": {
                        "portway.io/flows": ",".join(
                            f.id
                            for f in matrix.enabled_flows
                            if component in (f.source, f.destination)
                        )
                    },
                },
                "spec": {
                    "podSelector": {
                        "matchLabels": {PART_OF: "portway", COMPONENT: label(component)}
                    },
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": _merge(ingress),
                    "egress": _merge(egress),
                },
            }
        )
    return docs


def _merge(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules with the same peers become one rule with both port lists (flows sharing a port)."""
    merged: list[dict[str, Any]] = []
    for rule in rules:
        key = "from" if "from" in rule else "to"
        for existing in merged:
            if existing[key] == rule[key]:
                for port in rule["ports"]:
                    if port not in existing["ports"]:
                        existing["ports"].append(port)
                break
        else:
            merged.append({key: rule[key], "ports": list(rule["ports"])})
    return merged


def render_kubernetes(
    matrix: Matrix,
    settings: MatrixSettings,
    inventory: Inventory | None,
    components: tuple[str, ...],
    header: str,
) -> str:
    docs = network_policies(matrix, settings, inventory, components)
    skipped = [f.id for f in ungoverned(matrix)]
    lines = [f"# {line}" for line in header.splitlines()]
    if skipped:
        lines.append(f"# cluster plumbing, not governed by NetworkPolicy: {', '.join(skipped)}")
    body = yaml.dump_all(
        docs, Dumper=_NoAliases, sort_keys=False, explicit_start=True, allow_unicode=True
    )
    return "\n".join(lines) + "\n" + body

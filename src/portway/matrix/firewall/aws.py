"""AWS security groups as Terraform JSON (``*.tf.json``), AWS provider 5 resources.

One ``aws_security_group`` per selected Portway component; one
``aws_vpc_security_group_ingress_rule`` / ``…_egress_rule`` per flow, port and protocol.
Portway peers are referenced by security group (a data source when the peer is outside the
selection), Internet peers by CIDR (the inventory's addresses, else 0.0.0.0/0 and ::/0), the VPN
by the inventory's networks. Terraform removes AWS's default allow-all egress rule from groups
it creates, so both directions are default deny.
"""

from __future__ import annotations

import json
from typing import Any

from portway.matrix.errors import UnexpressibleFlow
from portway.matrix.firewall.plan import peer, ungoverned
from portway.matrix.inventory import Inventory
from portway.matrix.model import Flow, Matrix, Zone

GENERATOR = "aws"


def _sg(component: str) -> str:
    return f"portway_{component}"


def _endpoints(
    matrix: Matrix,
    inventory: Inventory | None,
    flow: Flow,
    component: str,
    selected: set[str],
    data_sources: dict[str, Any],
) -> list[dict[str, str]]:
    target = matrix.component(component)
    if target.portway:
        if component in selected:
            return [{"referenced_security_group_id": _ref(component)}]
        data_sources[_sg(component)] = {
            "name": f"portway-{component.replace('_', '-')}",
            "vpc_id": "${var.vpc_id}",
        }
        return [
            {"referenced_security_group_id": f"${{data.aws_security_group.{_sg(component)}.id}}"}
        ]
    if target.zone is Zone.KUBERNETES:
        raise UnexpressibleFlow(
            GENERATOR, flow.short(), f"{target.name} has no security group or address"
        )
    end = peer(matrix, inventory, component)
    if end.networks is None:
        return [{"cidr_ipv4": "0.0.0.0/0"}, {"cidr_ipv6": "::/0"}]
    if not end.networks:
        raise UnexpressibleFlow(
            GENERATOR,
            flow.short(),
            f"no networks for {target.name}; list them in the inventory "
            f"(zones.{target.zone.value} or a host running {component})",
        )
    return [{"cidr_ipv4" if n.version == 4 else "cidr_ipv6": str(n)} for n in end.networks]


def _add_rule(
    rules: dict[str, Any],
    component: str,
    flow: Flow,
    protocol: str,
    number: int,
    end: dict[str, str],
    index: int,
) -> None:
    """One rule per group, peer, protocol and port: AWS rejects duplicates, so flows sharing
    them (deploy and health check on 8080) share one rule that names both."""
    for rule in rules.values():
        same = (
            rule["security_group_id"] == _ref(component)
            and rule["ip_protocol"] == protocol
            and rule["from_port"] == number
            and all(rule.get(k) == v for k, v in end.items())
        )
        if same:
            ids, _, text = rule["description"].partition(": ")
            rule["description"] = f"{ids},{flow.id}: {text}"[:255]
            return
    name = f"{component}_{flow.id}_{protocol}_{number}" + (f"_{index}" if index else "")
    rules[name.replace("-", "_")] = {
        "security_group_id": _ref(component),
        **end,
        "ip_protocol": protocol,
        "from_port": number,
        "to_port": number,
        "description": f"{flow.id}: {flow.description}"[:255],
    }


def _ref(component: str) -> str:
    return f"${{aws_security_group.{_sg(component)}.id}}"


def render_aws(
    matrix: Matrix, inventory: Inventory | None, components: tuple[str, ...], header: str
) -> str:
    selected = set(components)
    groups: dict[str, Any] = {}
    ingress: dict[str, Any] = {}
    egress: dict[str, Any] = {}
    data_sources: dict[str, Any] = {}
    for component in components:
        c = matrix.component(component)
        groups[_sg(component)] = {
            "name": f"portway-{component.replace('_', '-')}",
            "description": f"Portway {c.name} ({c.zone.title})",
            "vpc_id": "${var.vpc_id}",
            "tags": {"portway:component": component, "portway:zone": c.zone.value},
        }
    for flow in matrix.enabled_flows:
        if flow.ports.dynamic and (flow.source in selected or flow.destination in selected):
            raise UnexpressibleFlow(GENERATOR, flow.short(), "its ports are dynamic")
        for component in components:
            into = flow.destination == component or (
                flow.bidirectional and flow.source == component
            )
            out_of = flow.source == component or (
                flow.bidirectional and flow.destination == component
            )
            directions = ((ingress, into, flow.source), (egress, out_of, flow.destination))
            for rules, applies, other in directions:
                if not applies:
                    continue
                ends = _endpoints(matrix, inventory, flow, other, selected, data_sources)
                for number in flow.ports:
                    for transport in flow.transports:
                        for index, end in enumerate(ends):
                            _add_rule(rules, component, flow, transport.value, number, end, index)
    document: dict[str, Any] = {
        "//": header,
        "variable": {"vpc_id": {"type": "string", "description": "VPC of the Portway groups"}},
        "resource": {
            "aws_security_group": groups,
            "aws_vpc_security_group_ingress_rule": ingress,
            "aws_vpc_security_group_egress_rule": egress,
        },
    }
    if data_sources:
        document["data"] = {"aws_security_group": data_sources}
    skipped = [f.id for f in ungoverned(matrix)]
    if skipped:
        document["//"] += "; not governed by security groups: " + ", ".join(skipped)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

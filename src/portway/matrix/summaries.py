"""Derived views of a matrix shared by the renderers: directions, zone lists, rule summaries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from portway.matrix.model import PLATFORM_ZONES, Flow, Matrix, Zone

#: How the seed titles each Portway component in its lists.
LIST_TITLES = {
    "worker": "Worker Nodes",
    "load_balancer": "Load Balancer",
    "manager": "Manager Module",
    "mongodb": "MongoDB",
    "elasticsearch": "Elasticsearch",
    "cache": "Cache (Hazelcast)",
}

NODE_TITLES = {
    "worker": "Worker Node Ports",
    "manager": "Manager Node Ports",
    "load_balancer": "Load Balancer Ports",
    "mongodb": "MongoDB Ports",
    "elasticsearch": "Elasticsearch Ports",
    "cache": "Cache Ports",
}


def direction(flow: Flow, matrix: Matrix) -> str:
    """``Manager → Worker`` or ``MongoDB ↔ MongoDB``: the seed's Direction column."""
    arrow = "↔" if flow.bidirectional else "→"
    return f"{matrix.name(flow.source)} {arrow} {matrix.name(flow.destination)}"


@dataclass(frozen=True, slots=True)
class PortUse:
    """One line of a component's port list: a port, which way, what for, with whom."""

    port: str
    inbound: bool
    descriptions: tuple[str, ...]
    peers: tuple[str, ...]
    flow_ids: tuple[str, ...]
    optional: bool

    def text(self) -> str:
        what = ", ".join(self.descriptions)
        way = "from" if self.inbound else "to"
        note = " (optional)" if self.optional else ""
        return f"{self.port}: {what} ({way} {', '.join(self.peers)}){note}"


def port_uses(matrix: Matrix, component_id: str) -> list[PortUse]:
    """The enabled flows a component takes part in, one line per (direction, port), inbound
    first; the order of first appearance in the catalogue is kept."""
    groups: dict[tuple[bool, str], list[tuple[Flow, str]]] = {}
    for flow in matrix.enabled_flows:
        if flow.destination == component_id:
            groups.setdefault((True, flow.ports.label()), []).append((flow, flow.source))
        if flow.source == component_id and flow.destination != component_id:
            groups.setdefault((False, flow.ports.label()), []).append((flow, flow.destination))

    def order(item: tuple[tuple[bool, str], list[tuple[Flow, str]]]) -> tuple[bool, bool]:
        (inbound, _), members = item
        leaves = all(matrix.zone_of(peer) not in PLATFORM_ZONES for _, peer in members)
        return (not inbound, leaves)

    uses = []
    for (inbound, port), members in sorted(groups.items(), key=order):
        uses.append(
            PortUse(
                port=port,
                inbound=inbound,
                descriptions=_unique(f.description for f, _ in members),
                peers=_unique(matrix.name(peer) for _, peer in members),
                flow_ids=tuple(f.id for f, _ in members),
                optional=all(not f.required for f, _ in members),
            )
        )
    return uses


@dataclass(frozen=True, slots=True)
class RuleLine:
    """``Internet → Load Balancer: 443, 80`` in the firewall rules summary."""

    source: str
    destination: str
    ports: tuple[str, ...]
    optional: bool
    flow_ids: tuple[str, ...]

    def text(self) -> str:
        note = " (optional)" if self.optional else ""
        return f"{self.source} → {self.destination}: {', '.join(self.ports)}{note}"


@dataclass(frozen=True, slots=True)
class ZoneRules:
    zone: Zone
    inbound: tuple[RuleLine, ...]
    outbound: tuple[RuleLine, ...]


def firewall_summary(matrix: Matrix) -> list[ZoneRules]:
    """Per platform zone: flows entering it from another zone (named by the source zone, as
    the seed does), and flows leaving its components (named by component)."""
    out = []
    for zone in PLATFORM_ZONES:
        inbound: dict[tuple[str, str], list[Flow]] = {}
        outbound: dict[tuple[str, str], list[Flow]] = {}
        for flow in matrix.enabled_flows:
            src, dst = matrix.component(flow.source), matrix.component(flow.destination)
            if dst.zone is zone and src.zone is not zone:
                inbound.setdefault((src.zone.title, dst.name), []).append(flow)
            if src.zone is zone:
                outbound.setdefault((src.name, dst.name), []).append(flow)
        # connections inside the platform first, then those leaving it (the seed's order)
        leaving = {matrix.name(c.id) for c in matrix.components if c.zone not in PLATFORM_ZONES}
        outbound = dict(sorted(outbound.items(), key=lambda kv: kv[0][1] in leaving))
        out.append(ZoneRules(zone, _rule_lines(inbound), _rule_lines(outbound)))
    return out


def _rule_lines(groups: dict[tuple[str, str], list[Flow]]) -> tuple[RuleLine, ...]:
    lines = []
    for (source, destination), flows in groups.items():
        ports = _unique(p for f in flows for p in (f.ports.label(",").split(",")))
        lines.append(
            RuleLine(
                source=source,
                destination=destination,
                ports=ports,
                optional=all(not f.required for f in flows),
                flow_ids=tuple(f.id for f in flows),
            )
        )
    return tuple(lines)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))

"""nftables rule sets (``nft -f`` text and ``nft -j -f`` JSON) from the same model.

A host gets ``table inet portway_host_<host>`` with ``input`` and ``output`` chains, policy drop.
A zone gets ``table inet portway_zone_<zone>`` for the router around it: its ``forward`` chain
sends traffic to or from the zone's networks into ``to_<zone>``/``from_<zone>``, which accept the
matrix's flows and drop everything else; traffic of other zones is left to their own tables.
Every accept carries the flow id as its comment. Files start with the
``table …; delete table …`` idiom, so loading one again replaces it atomically.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from portway.matrix.errors import UnexpressibleFlow
from portway.matrix.firewall.plan import (
    HostScope,
    Peer,
    Permit,
    Scope,
    ZoneScope,
    host_permits,
    zone_permits,
)
from portway.matrix.inventory import Inventory
from portway.matrix.model import Matrix

Family = Literal["ip", "ip6"]
GENERATOR = "nftables"


@dataclass(frozen=True, slots=True)
class AddrMatch:
    family: Family
    field: Literal["saddr", "daddr"]
    set_name: str


@dataclass(frozen=True, slots=True)
class PortMatch:
    protocol: str
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CtStateMatch:
    states: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IfaceMatch:
    key: Literal["iifname", "oifname"]
    name: str


Match = AddrMatch | PortMatch | CtStateMatch | IfaceMatch


@dataclass(frozen=True, slots=True)
class Rule:
    matches: tuple[Match, ...]
    verdict: str  # "accept", "drop", "jump <chain>"
    counter: bool = False
    comment: str | None = None


@dataclass(slots=True)
class Chain:
    name: str
    hook: str | None = None
    policy: str | None = None
    rules: list[Rule] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AddrSet:
    name: str
    family: Family
    elements: tuple[str, ...]


@dataclass(slots=True)
class NftTable:
    name: str
    sets: dict[str, AddrSet] = field(default_factory=dict)
    chains: list[Chain] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- building ---------------------------------------------------------------------------------


def _families(peer: Peer) -> set[Family] | None:
    """Address families a peer has; None for "any address"."""
    if peer.networks is None:
        return None
    if not peer.networks:
        return {"ip"}
    return {"ip" if n.version == 4 else "ip6" for n in peer.networks}


def _set_for(table: NftTable, peer: Peer, family: Family) -> str:
    name = f"{peer.component}_{'v4' if family == 'ip' else 'v6'}"
    if name not in table.sets:
        version = 4 if family == "ip" else 6
        nets = [n for n in (peer.networks or ()) if n.version == version]
        elements = tuple(
            str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in nets
        )
        table.sets[name] = AddrSet(name, family, elements)
        if not elements:
            table.notes.append(
                f"set {name} is empty (no address for {peer.component} in the inventory): "
                f"its rules match nothing until you add elements"
            )
    return name


def _permit_rules(table: NftTable, permit: Permit) -> list[Rule]:
    ends: list[tuple[Literal["saddr", "daddr"], Peer]] = []
    if permit.chain in ("input", "to_zone", "from_zone"):
        ends.append(("saddr", permit.source))
    if permit.chain in ("output", "to_zone", "from_zone"):
        ends.append(("daddr", permit.destination))
    constrained = [(f, p, _families(p)) for f, p in ends]
    families: set[Family] | None = None
    for _, _, fams in constrained:
        if fams is not None:
            families = fams if families is None else families & fams
    if families is not None and not families:
        raise UnexpressibleFlow(
            GENERATOR, permit.flow.short(), "source and destination share no address family"
        )
    ports = PortMatch(permit.transport.value, permit.ports)
    comment = permit.flow.id
    if families is None:
        return [Rule((ports,), "accept", comment=comment)]
    rules = []
    for family in sorted(families):
        matches: list[Match] = [
            AddrMatch(family, f, _set_for(table, p, family))
            for f, p, fams in constrained
            if fams is not None
        ]
        rules.append(Rule((*matches, ports), "accept", comment=comment))
    return rules


_ESTABLISHED = Rule((CtStateMatch(("established", "related")),), "accept")
_INVALID = Rule((CtStateMatch(("invalid",)),), "drop")


def _dedupe(rules: list[Rule]) -> list[Rule]:
    return list(dict.fromkeys(rules))


def build_table(matrix: Matrix, inventory: Inventory | None, scope: Scope) -> NftTable:
    if isinstance(scope, HostScope):
        table = NftTable(f"portway_host_{scope.name.replace('-', '_')}")
        permits = host_permits(matrix, inventory, scope, GENERATOR)
        for chain_name, iface in (("input", "iifname"), ("output", "oifname")):
            chain = Chain(chain_name, hook=chain_name, policy="drop")
            chain.rules += [_ESTABLISHED, _INVALID, Rule((IfaceMatch(iface, "lo"),), "accept")]  # type: ignore[arg-type]
            for permit in permits:
                if permit.chain == chain_name:
                    chain.rules += _permit_rules(table, permit)
            chain.rules = _dedupe(chain.rules)
            table.chains.append(chain)
        return table
    return _zone_table(matrix, inventory, scope)


def _zone_table(matrix: Matrix, inventory: Inventory | None, scope: ZoneScope) -> NftTable:
    zone = scope.zone.value
    table = NftTable(f"portway_zone_{zone}")
    zone_peer = Peer(f"zone_{zone}", scope.networks)
    forward = Chain("forward", hook="forward", policy="accept")
    for family in sorted(_families(zone_peer) or ()):
        name = _set_for(table, zone_peer, family)
        forward.rules.append(Rule((AddrMatch(family, "daddr", name),), f"jump to_{zone}"))
        forward.rules.append(Rule((AddrMatch(family, "saddr", name),), f"jump from_{zone}"))
    table.chains.append(forward)
    permits = zone_permits(matrix, inventory, scope, GENERATOR)
    for kind in ("to_zone", "from_zone"):
        chain = Chain(f"{kind.removesuffix('_zone')}_{zone}")
        chain.rules += [_ESTABLISHED, _INVALID]
        for permit in permits:
            if permit.chain == kind:
                chain.rules += _permit_rules(table, permit)
        chain.rules = _dedupe(chain.rules)
        chain.rules.append(Rule((), "drop", counter=True, comment="default deny"))
        table.chains.append(chain)
    return table


# -- text -------------------------------------------------------------------------------------


def _match_text(match: Match) -> str:
    match match:
        case AddrMatch():
            return f"{match.family} {match.field} @{match.set_name}"
        case PortMatch():
            if len(match.ports) == 1:
                return f"{match.protocol} dport {match.ports[0]}"
            return f"{match.protocol} dport {{ {', '.join(map(str, match.ports))} }}"
        case CtStateMatch():
            return f"ct state {','.join(match.states)}"
        case IfaceMatch():
            return f'{match.key} "{match.name}"'


def _rule_text(rule: Rule) -> str:
    parts = [_match_text(m) for m in rule.matches]
    if rule.counter:
        parts.append("counter")
    parts.append(rule.verdict)
    if rule.comment:
        parts.append(f'comment "{rule.comment}"')
    return " ".join(parts)


def render_text(table: NftTable, header: str) -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"# note: {note}" for note in table.notes]
    lines += [f"table inet {table.name}", f"delete table inet {table.name}", ""]
    lines.append(f"table inet {table.name} {{")
    for addr_set in table.sets.values():
        kind = "ipv4_addr" if addr_set.family == "ip" else "ipv6_addr"
        lines += [f"\tset {addr_set.name} {{", f"\t\ttype {kind}", "\t\tflags interval"]
        if addr_set.elements:
            lines.append(f"\t\telements = {{ {', '.join(addr_set.elements)} }}")
        lines += ["\t}", ""]
    for chain in table.chains:
        lines.append(f"\tchain {chain.name} {{")
        if chain.hook:
            lines.append(
                f"\t\ttype filter hook {chain.hook} priority filter; policy {chain.policy};"
            )
        lines += [f"\t\t{_rule_text(rule)}" for rule in chain.rules]
        lines += ["\t}", ""]
    lines[-1] = "}"
    return "\n".join(lines) + "\n"


# -- JSON (libnftables schema) -----------------------------------------------------------------


def _match_json(match: Match) -> dict[str, Any]:
    match match:
        case AddrMatch():
            left: dict[str, Any] = {"payload": {"protocol": match.family, "field": match.field}}
            return {"match": {"op": "==", "left": left, "right": f"@{match.set_name}"}}
        case PortMatch():
            left = {"payload": {"protocol": match.protocol, "field": "dport"}}
            right: Any = match.ports[0] if len(match.ports) == 1 else {"set": list(match.ports)}
            return {"match": {"op": "==", "left": left, "right": right}}
        case CtStateMatch():
            states: Any = list(match.states) if len(match.states) > 1 else match.states[0]
            return {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": states}}
        case IfaceMatch():
            return {
                "match": {"op": "==", "left": {"meta": {"key": match.key}}, "right": match.name}
            }


def _verdict_json(verdict: str) -> dict[str, Any]:
    if verdict.startswith("jump "):
        return {"jump": {"target": verdict.split(" ", 1)[1]}}
    return {verdict: None}


def _element_json(element: str) -> Any:
    if "/" in element:
        network = ipaddress.ip_network(element)
        return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}
    return element


def render_json(table: NftTable, header: str) -> str:
    ref = {"family": "inet", "table": table.name}
    commands: list[dict[str, Any]] = [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": {"family": "inet", "name": table.name}}},
        {"delete": {"table": {"family": "inet", "name": table.name}}},
        {"add": {"table": {"family": "inet", "name": table.name, "comment": header[:128]}}},
    ]
    for addr_set in table.sets.values():
        body: dict[str, Any] = {
            **ref,
            "name": addr_set.name,
            "type": "ipv4_addr" if addr_set.family == "ip" else "ipv6_addr",
            "flags": ["interval"],
        }
        if addr_set.elements:
            body["elem"] = [_element_json(e) for e in addr_set.elements]
        commands.append({"add": {"set": body}})
    for chain in table.chains:
        chain_body: dict[str, Any] = {**ref, "name": chain.name}
        if chain.hook:
            chain_body.update(type="filter", hook=chain.hook, prio=0, policy=chain.policy)
        commands.append({"add": {"chain": chain_body}})
    for chain in table.chains:
        for rule in chain.rules:
            expr = [_match_json(m) for m in rule.matches]
            if rule.counter:
                expr.append({"counter": None})
            expr.append(_verdict_json(rule.verdict))
            rule_body: dict[str, Any] = {**ref, "chain": chain.name, "expr": expr}
            if rule.comment:
                rule_body["comment"] = rule.comment
            commands.append({"add": {"rule": rule_body}})
    return json.dumps({"nftables": commands}, indent=2) + "\n"

"""iptables-restore input (IPv4 ``filter`` table) for a host or a zone router.

iptables has no named address sets in ``iptables-restore`` input, so every rule names its
addresses: a Portway component without an address in the inventory cannot be written and
raises :class:`UnexpressibleFlow` (a rule without ``-s`` would admit every address). IPv6
addresses belong in ip6tables and raise too.

A zone file only manages its own chains (``PW-TO-<ZONE>``, ``PW-FROM-<ZONE>``) and the jumps to
them; load it with ``iptables-restore --noflush`` next to the other zones' files.
"""

from __future__ import annotations

from portway.matrix.errors import UnexpressibleFlow
from portway.matrix.firewall.plan import (
    HostScope,
    Peer,
    Permit,
    Scope,
    host_permits,
    zone_permits,
)
from portway.matrix.inventory import Inventory
from portway.matrix.model import Matrix

GENERATOR = "iptables"


def _addresses(peer: Peer, permit: Permit) -> list[str | None]:
    """``-s``/``-d`` values for one end; ``[None]`` means no constraint (any address)."""
    if peer.networks is None:
        return [None]
    if not peer.networks:
        raise UnexpressibleFlow(
            GENERATOR,
            permit.flow.short(),
            f"no address for {peer.component} in the inventory, and a rule without one "
            "would admit every address",
        )
    if any(n.version == 6 for n in peer.networks):
        raise UnexpressibleFlow(
            GENERATOR, permit.flow.short(), f"{peer.component} has IPv6 addresses (ip6tables)"
        )
    return [str(n) for n in peer.networks]


def _port_args(permit: Permit) -> str:
    proto = permit.transport.value
    if len(permit.ports) == 1:
        return f"-p {proto} -m {proto} --dport {permit.ports[0]}"
    return f"-p {proto} -m multiport --dports {','.join(map(str, permit.ports))}"


def _rules(chain: str, permit: Permit, use_source: bool, use_destination: bool) -> list[str]:
    sources = _addresses(permit.source, permit) if use_source else [None]
    destinations = _addresses(permit.destination, permit) if use_destination else [None]
    lines = []
    for source in sources:
        for destination in destinations:
            parts = [f"-A {chain}"]
            if source:
                parts.append(f"-s {source}")
            if destination:
                parts.append(f"-d {destination}")
            parts.append(_port_args(permit))
            parts.append(f'-m comment --comment "{permit.flow.id}" -j ACCEPT')
            lines.append(" ".join(parts))
    return lines


_STATEFUL = (
    "-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "-A {chain} -m conntrack --ctstate INVALID -j DROP",
)


def render_iptables(matrix: Matrix, inventory: Inventory | None, scope: Scope, header: str) -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    lines.append("*filter")
    body: list[str] = []
    if isinstance(scope, HostScope):
        lines += [":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT DROP [0:0]"]
        permits = host_permits(matrix, inventory, scope, GENERATOR)
        for chain, iface, kind in (("INPUT", "-i", "input"), ("OUTPUT", "-o", "output")):
            body += [line.format(chain=chain) for line in _STATEFUL]
            body.append(f"-A {chain} {iface} lo -j ACCEPT")
            for permit in permits:
                if permit.chain == kind:
                    body += _rules(chain, permit, kind == "input", kind == "output")
    else:
        zone = scope.zone.value.upper()
        to_chain, from_chain = f"PW-TO-{zone}", f"PW-FROM-{zone}"
        lines += [f":{to_chain} - [0:0]", f":{from_chain} - [0:0]"]
        for network in scope.networks:
            if network.version == 6:
                raise UnexpressibleFlow(
                    GENERATOR, f"zone {scope.zone.value}", f"network {network} is IPv6"
                )
            body.append(f"-A FORWARD -d {network} -j {to_chain}")
            body.append(f"-A FORWARD -s {network} -j {from_chain}")
        permits = zone_permits(matrix, inventory, scope, GENERATOR)
        for chain, kind in ((to_chain, "to_zone"), (from_chain, "from_zone")):
            body += [line.format(chain=chain) for line in _STATEFUL]
            for permit in permits:
                if permit.chain == kind:
                    body += _rules(chain, permit, True, True)
            body.append(f'-A {chain} -m comment --comment "default deny" -j DROP')
    lines += list(dict.fromkeys(body))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"

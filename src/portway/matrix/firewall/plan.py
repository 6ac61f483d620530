"""What a firewall must permit, independent of its syntax.

A *scope* says which machine or perimeter the rules are for: a host (the components it runs) or
a zone (the router around it). :func:`host_permits` and :func:`zone_permits` turn the enabled
flows of a matrix into :class:`Permit` objects; every syntax renders those and nothing else.

Addresses come from the inventory. An Internet component without addresses stands for any
address (that is what the flow means); a Portway or VPN component without addresses is
*unknown*: nftables renders an empty set (it matches nothing, so the rule is narrower, never
wider), syntaxes without named sets raise :class:`UnexpressibleFlow`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from portway.matrix.errors import MatrixError, UnexpressibleFlow
from portway.matrix.inventory import Inventory, IPNetwork
from portway.matrix.model import Flow, Matrix, Transport, Zone


@dataclass(frozen=True, slots=True)
class Peer:
    """The other end of a permitted connection.

    ``networks`` is None for "any address"; an empty tuple means the addresses are unknown.
    """

    component: str
    networks: tuple[IPNetwork, ...] | None

    @property
    def any(self) -> bool:
        return self.networks is None

    @property
    def unknown(self) -> bool:
        return self.networks == ()


@dataclass(frozen=True, slots=True)
class Permit:
    """Accept new connections of ``flow`` on ``transport`` to ``ports``.

    ``chain`` is ``input``/``output`` for a host, ``to_zone``/``from_zone`` for a zone router.
    """

    flow: Flow
    chain: Literal["input", "output", "to_zone", "from_zone"]
    source: Peer
    destination: Peer
    transport: Transport
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class HostScope:
    name: str
    components: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ZoneScope:
    zone: Zone
    networks: tuple[IPNetwork, ...]


Scope = HostScope | ZoneScope


def resolve_host(matrix: Matrix, inventory: Inventory | None, name: str) -> HostScope:
    """An inventory host by name, or else a component id (a generic host running it)."""
    if inventory is not None:
        host = inventory.host(name)
        if host is not None:
            return HostScope(host.name, host.components)
    if matrix.has_component(name):
        return HostScope(name.replace("_", "-"), (name,))
    hosts = ", ".join(h.name for h in inventory.hosts) if inventory else "(no inventory)"
    raise MatrixError(f"--host {name}: neither an inventory host ({hosts}) nor a component")


def resolve_zone(inventory: Inventory | None, zone: Zone, generator: str) -> ZoneScope:
    networks = inventory.networks(zone) if inventory is not None else ()
    if not networks:
        raise MatrixError(
            f"{generator} --zone {zone.value}: the zone's networks are unknown, so its traffic "
            f"cannot be told apart; list them under zones.{zone.value} in the inventory"
        )
    return ZoneScope(zone, networks)


def peer(matrix: Matrix, inventory: Inventory | None, component_id: str) -> Peer:
    component = matrix.component(component_id)
    if inventory is not None:
        addresses = inventory.addresses_of(component_id)
        if addresses:
            return Peer(component_id, tuple(ipaddress.ip_network(a) for a in addresses))
        if component.zone is Zone.VPN and inventory.networks(Zone.VPN):
            return Peer(component_id, inventory.networks(Zone.VPN))
    if component.zone is Zone.INTERNET:
        return Peer(component_id, None)
    return Peer(component_id, ())


def _numbers(flow: Flow, generator: str) -> tuple[int, ...]:
    if flow.ports.dynamic:
        raise UnexpressibleFlow(
            generator,
            flow.short(),
            "its ports are dynamic; a rule for it would open every port",
        )
    return flow.ports.numbers


def host_permits(
    matrix: Matrix, inventory: Inventory | None, scope: HostScope, generator: str
) -> list[Permit]:
    """Input and output permits of a host running ``scope.components``."""
    runs = set(scope.components)
    permits: list[Permit] = []
    for flow in matrix.enabled_flows:
        into = flow.destination in runs or (flow.bidirectional and flow.source in runs)
        out_of = flow.source in runs or (flow.bidirectional and flow.destination in runs)
        if not (into or out_of):
            continue
        ports = _numbers(flow, generator)
        src, dst = peer(matrix, inventory, flow.source), peer(matrix, inventory, flow.destination)
        for transport in flow.transports:
            if into:
                permits.append(Permit(flow, "input", src, dst, transport, ports))
            if out_of:
                permits.append(Permit(flow, "output", src, dst, transport, ports))
    return permits


def _placed_in(end: Peer, scope: ZoneScope) -> bool:
    """The inventory puts every host of ``end`` inside the zone's networks (e.g. the DNS server,
    an Internet component by the seed, run in the LAN): the zone's router carries its flows."""
    if not end.networks:
        return False
    return all(
        any(n.version == z.version and n.subnet_of(z) for z in scope.networks)  # type: ignore[arg-type]
        for n in end.networks
    )


def zone_permits(
    matrix: Matrix, inventory: Inventory | None, scope: ZoneScope, generator: str
) -> list[Permit]:
    """Permits of the router around ``scope.zone``: flows entering it and flows leaving it."""
    permits: list[Permit] = []
    for flow in matrix.enabled_flows:
        src, dst = peer(matrix, inventory, flow.source), peer(matrix, inventory, flow.destination)
        into = matrix.zone_of(flow.destination) is scope.zone or _placed_in(dst, scope)
        out_of = matrix.zone_of(flow.source) is scope.zone or _placed_in(src, scope)
        if not (into or out_of):
            continue
        ports = _numbers(flow, generator)
        for transport in flow.transports:
            if into:
                permits.append(Permit(flow, "to_zone", src, dst, transport, ports))
            if out_of:
                permits.append(Permit(flow, "from_zone", src, dst, transport, ports))
    return permits


def ungoverned(matrix: Matrix) -> list[Flow]:
    """Enabled flows with no Portway component at either end (e.g. the cluster's plumbing):
    no Portway firewall object governs them."""
    return [
        f
        for f in matrix.enabled_flows
        if not matrix.component(f.source).portway and not matrix.component(f.destination).portway
    ]

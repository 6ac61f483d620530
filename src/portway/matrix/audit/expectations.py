"""What an audit expects to see from its vantage point: one :class:`Probe` per host and port.

From a vantage running components ``S`` (an inventory host, or a component such as
``internet``), a TCP port of a target host is expected

- ``open`` when an enabled *required* flow from ``S`` reaches a component of the target on it;
- ``either`` when only optional flows from ``S`` reach it, or when the flow comes from the
  Internet (which stands for any address, so other zones may or may not get through);
- ``closed`` otherwise: default deny, including optional flows the configuration turns off.

Hosts running no Portway component are probed only on the ports of flows from ``S`` (checking
egress); their other ports are not the matrix's business.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from portway.errors import ConfigError
from portway.matrix.inventory import Inventory, InventoryHost
from portway.matrix.model import Flow, Matrix, Transport, Zone

#: Ports probed on every Portway host besides the matrix's own: where forgotten services listen.
COMMON_PORTS = (21, 22, 23, 25, 53, 80, 443, 2375, 2379, 3306, 5432, 5701, 6379, 6443, 8080,
                8443, 9200, 9300, 10250, 25080, 27017)  # fmt: skip


class Expect(enum.Enum):
    OPEN = "open"
    EITHER = "either"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Vantage:
    name: str
    components: tuple[str, ...]
    zone: Zone
    host: InventoryHost | None


@dataclass(frozen=True, slots=True)
class Probe:
    host: str
    address: str
    zone: str
    port: int
    expect: Expect
    flows: tuple[str, ...]
    """Ids of the flows that decide the expectation (switched-off ones end in ``(off)``)."""


@dataclass(frozen=True, slots=True)
class Unprobed:
    flow: str
    reason: str


def resolve_vantage(matrix: Matrix, inventory: Inventory, name: str) -> Vantage:
    host = inventory.host(name)
    if host is not None:
        zones = {matrix.zone_of(c) for c in host.components}
        return Vantage(name, host.components, sorted(zones, key=lambda z: z.value)[0], host)
    if matrix.has_component(name):
        return Vantage(name, (name,), matrix.zone_of(name), None)
    raise ConfigError(
        f"--from {name}: neither an inventory host "
        f"({', '.join(h.name for h in inventory.hosts)}) nor a component",
        field="from",
    )


def _reaches(flow: Flow, sources: set[str], targets: set[str]) -> bool:
    forward = flow.source in sources and flow.destination in targets
    backward = flow.bidirectional and flow.destination in sources and flow.source in targets
    return forward or backward


def plan_probes(
    matrix: Matrix,
    inventory: Inventory,
    vantage: Vantage,
    extra_ports: tuple[int, ...] = (),
    common_ports: bool = True,
) -> tuple[list[Probe], list[Unprobed]]:
    sources = set(vantage.components)
    from_internet = vantage.zone is Zone.INTERNET
    internet = {c.id for c in matrix.in_zone(Zone.INTERNET)}
    probes: list[Probe] = []
    vantage_is_portway = any(matrix.component(c).portway for c in sources)
    for host in inventory.hosts:
        if vantage.host is not None and host.name == vantage.host.name:
            continue
        targets = set(host.components)
        target_is_portway = any(matrix.component(c).portway for c in targets)
        if not target_is_portway and not vantage_is_portway:
            continue
        flows = [f for f in matrix.flows if Transport.TCP in f.transports and not f.ports.dynamic]
        own = [f for f in flows if _reaches(f, sources, targets)]
        via_internet = [] if from_internet else [f for f in flows if _reaches(f, internet, targets)]
        if target_is_portway:
            ports = set(matrix.all_ports()) | set(extra_ports)
            ports |= set(COMMON_PORTS) if common_ports else set()
        else:
            ports = {n for f in own if f.enabled for n in f.ports}
        for port in sorted(ports):
            mine = [f for f in own if port in f.ports.numbers]
            theirs = [f for f in via_internet if port in f.ports.numbers and f.enabled]
            live = [f for f in mine if f.enabled]
            if any(f.required for f in live):
                expect = Expect.OPEN
            elif live or theirs:
                expect = Expect.EITHER
            else:
                expect = Expect.CLOSED
            named = [f.id if f.enabled else f"{f.id} (off)" for f in mine]
            named += [f.id for f in theirs]
            zone = "+".join(sorted({matrix.zone_of(c).value for c in host.components}))
            probes.append(Probe(host.name, str(host.address), zone, port, expect, tuple(named)))
    unprobed: list[Unprobed] = []
    for flow in matrix.enabled_flows:
        if flow.source not in sources:
            continue
        if flow.ports.dynamic:
            unprobed.append(Unprobed(flow.id, "dynamic ports"))
        elif Transport.TCP not in flow.transports:
            unprobed.append(Unprobed(flow.id, "UDP only: a connect scan cannot tell"))
        elif not inventory.hosts_running(flow.destination):
            unprobed.append(Unprobed(flow.id, f"no host runs {flow.destination} in the inventory"))
    return probes, unprobed

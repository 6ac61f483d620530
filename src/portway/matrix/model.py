"""The typed model of the network connection matrix: zones, components, flows.

Everything here is immutable data. A :class:`Flow` carries concrete port numbers; the standard
catalogue (``standard.py``) names, for each flow, which setting its ports come from
(:class:`PortRef`), and ``effective.py`` resolves them from a :class:`MatrixSettings`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from portway.matrix.errors import MatrixError


class Zone(enum.Enum):
    INTERNET = "internet"
    DMZ = "dmz"
    LAN = "lan"
    VPN = "vpn"
    KUBERNETES = "kubernetes"

    @property
    def title(self) -> str:
        return _ZONE_TITLES[self]


_ZONE_TITLES = {
    Zone.INTERNET: "Internet",
    Zone.DMZ: "DMZ",
    Zone.LAN: "LAN",
    Zone.VPN: "VPN",
    Zone.KUBERNETES: "Kubernetes cluster",
}

#: Zones whose hosts Portway runs on (and so protects with host and zone firewalls).
PLATFORM_ZONES = (Zone.DMZ, Zone.LAN)


class Category(enum.Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Transport(enum.Enum):
    TCP = "tcp"
    UDP = "udp"


class AppProtocol(enum.Enum):
    """The application protocol as the seed shows it; ``TRANSPORT`` means "shown as transport"."""

    HTTPS = "HTTPS"
    HTTP = "HTTP"
    SSH = "SSH"
    SMTP = "SMTP"
    DNS = "DNS"
    TRANSPORT = "transport"


class PortRef(enum.Enum):
    """Names a port setting (``MatrixSettings.ports.<component>.<name>``)."""

    LB_HTTPS = "load_balancer.https"
    LB_HTTP = "load_balancer.http"
    SSH = "ssh.port"
    WORKER = "worker.http"
    MANAGER = "manager.http"
    MONGODB = "mongodb.port"
    ES_HTTP = "elasticsearch.http"
    ES_TRANSPORT = "elasticsearch.transport"
    CACHE = "cache.port"
    SMTP = "smtp.ports"
    DNS = "dns.port"
    K8S_API = "kubernetes_api.port"
    BACKEND_HTTPS = "backend_api.https"
    BACKEND_HTTP = "backend_api.http"
    EXTERNAL_HTTPS = "external_services.https"
    WORKER_METRICS = "worker.metrics"
    MANAGER_METRICS = "manager.metrics"


@dataclass(frozen=True, slots=True)
class PortSet:
    """Destination ports of a flow: explicit numbers, or ``dynamic`` (the seed's "Dynamic")."""

    numbers: tuple[int, ...] = ()
    dynamic: bool = False

    def __post_init__(self) -> None:
        if self.dynamic and self.numbers:
            raise MatrixError("a port set is either dynamic or a list of numbers, not both")
        if not self.dynamic and not self.numbers:
            raise MatrixError("a port set needs at least one port number")
        for number in self.numbers:
            if not 1 <= number <= 65535:
                raise MatrixError(f"port {number} is outside 1..65535")
        if len(set(self.numbers)) != len(self.numbers):
            raise MatrixError(f"port set {self.numbers} repeats a port")

    @classmethod
    def of(cls, *numbers: int) -> PortSet:
        return cls(numbers=tuple(numbers))

    @classmethod
    def any_port(cls) -> PortSet:
        return cls(dynamic=True)

    def label(self, sep: str = "/") -> str:
        """``443``, ``25/587`` or ``Dynamic``, as in the seed's tables."""
        return "Dynamic" if self.dynamic else sep.join(str(n) for n in self.numbers)

    def __iter__(self) -> Iterator[int]:
        return iter(self.numbers)


@dataclass(frozen=True, slots=True)
class Component:
    """Something that sends or receives traffic, placed in one zone.

    ``name`` is the seed's wording ("Load Balancer", "Cache"); ``id`` is the stable key used in
    settings, inventories, labels and firewall object names.
    """

    id: str
    name: str
    zone: Zone
    description: str
    portway: bool = False
    """True for the components Portway deploys (they get host firewalls and policies)."""


@dataclass(frozen=True, slots=True)
class Flow:
    """One permitted connection: ``source`` opens it towards ``destination`` on ``ports``.

    ``id`` is stable across configurations (port changes keep it); firewall comments, audit reports
    and checklists refer to flows by it. ``bidirectional`` flows (cluster peers) may be opened by
    either side. ``enabled`` is False for optional flows the configuration turns off: they stay in
    the matrix so documents can show them, but no rule opens them and audits expect them closed.
    """

    id: str
    source: str
    destination: str
    ports: PortSet
    transports: tuple[Transport, ...]
    protocol: AppProtocol
    description: str
    category: Category
    table: str
    required: bool = True
    bidirectional: bool = False
    enabled: bool = True
    tls_redirect: bool = False
    """Plain HTTP whose only answer is a redirect to the HTTPS flow of the same destination."""
    port_ref: PortRef | None = None
    toggle: str | None = None
    """Name of the ``MatrixSettings.optional_flows`` field that turns this flow on or off."""

    def __post_init__(self) -> None:
        if not self.transports:
            raise MatrixError(f"flow {self.id}: needs at least one transport")
        if self.required and self.toggle is not None:
            raise MatrixError(f"flow {self.id}: a required flow cannot have a toggle")

    @property
    def protocol_label(self) -> str:
        """The seed's "Protocol" column: HTTPS, HTTP, SSH, SMTP, or the transports (UDP/TCP)."""
        if self.protocol in (AppProtocol.DNS, AppProtocol.TRANSPORT):
            return "/".join(t.name for t in self.transports)
        return str(self.protocol.value)

    @property
    def is_tls(self) -> bool:
        return self.protocol is AppProtocol.HTTPS

    def transport_label(self) -> str:
        return "+".join(t.value for t in self.transports)

    def short(self) -> str:
        """``int-worker-mongodb (worker -> mongodb 25080/tcp)``: for messages and comments."""
        arrow = "<->" if self.bidirectional else "->"
        return (
            f"{self.id} ({self.source} {arrow} {self.destination} "
            f"{self.ports.label(',')}/{self.transport_label()})"
        )


@dataclass(frozen=True, slots=True)
class Table:
    """A table of the seed document: which flows it lists and whether it shows Required or
    Direction as its last column."""

    id: str
    title: str
    heading: str
    last_column: str  # "Required" or "Direction"


@dataclass(frozen=True, slots=True)
class Matrix:
    """The effective network connection matrix of one installation."""

    components: tuple[Component, ...]
    flows: tuple[Flow, ...]
    tables: tuple[Table, ...]
    _by_id: dict[str, Component] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {c.id: c for c in self.components}
        if len(by_id) != len(self.components):
            raise MatrixError("two components share an id")
        object.__setattr__(self, "_by_id", by_id)
        seen: set[str] = set()
        table_ids = {t.id for t in self.tables}
        for flow in self.flows:
            if flow.id in seen:
                raise MatrixError(f"flow id {flow.id!r} is used twice")
            seen.add(flow.id)
            for end in (flow.source, flow.destination):
                if end not in by_id:
                    raise MatrixError(f"flow {flow.id}: unknown component {end!r}")
            if flow.table not in table_ids:
                raise MatrixError(f"flow {flow.id}: unknown table {flow.table!r}")

    def component(self, component_id: str) -> Component:
        try:
            return self._by_id[component_id]
        except KeyError:
            known = ", ".join(sorted(self._by_id))
            raise MatrixError(f"unknown component {component_id!r}; known: {known}") from None

    def has_component(self, component_id: str) -> bool:
        return component_id in self._by_id

    def flow(self, flow_id: str) -> Flow:
        for f in self.flows:
            if f.id == flow_id:
                return f
        raise MatrixError(f"unknown flow {flow_id!r}")

    @property
    def enabled_flows(self) -> tuple[Flow, ...]:
        return tuple(f for f in self.flows if f.enabled)

    def zone_of(self, component_id: str) -> Zone:
        return self.component(component_id).zone

    def in_zone(self, zone: Zone) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.zone is zone)

    def flows_in_table(self, table_id: str) -> tuple[Flow, ...]:
        return tuple(f for f in self.flows if f.table == table_id)

    def name(self, component_id: str) -> str:
        return self.component(component_id).name

    def listening_ports(self, component_id: str) -> tuple[int, ...]:
        """Ports of every enabled flow into the component, ascending."""
        ports: set[int] = set()
        for f in self.enabled_flows:
            if f.destination == component_id or (f.bidirectional and f.source == component_id):
                ports.update(f.ports.numbers)
        return tuple(sorted(ports))

    def all_ports(self) -> tuple[int, ...]:
        """Every port any flow of the matrix names (enabled or not), ascending."""
        return tuple(sorted({n for f in self.flows for n in f.ports.numbers}))


def zones_of(matrix: Matrix, component_ids: Iterable[str]) -> set[Zone]:
    return {matrix.zone_of(c) for c in component_ids}

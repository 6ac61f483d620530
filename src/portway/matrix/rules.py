"""Security rules as data, and ``check`` which evaluates them against an effective matrix.

The rules are the seed's "Network Security Best Practices" written so a program can answer them:

- never expose MongoDB or Elasticsearch to the Internet;
- never expose the manager's port to the Internet;
- TLS on everything Internet-facing (plain HTTP only as a redirect to an HTTPS flow);
- default deny: every flow names its ports (the Kubernetes pod network excepted, which
  NetworkPolicies narrow);
- DMZ/LAN segmentation: nothing from the Internet reaches the LAN directly;
- SSH only from the VPN.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from portway.matrix.model import AppProtocol, Flow, Matrix, Zone
from portway.matrix.settings import MatrixSettings


@dataclass(frozen=True, slots=True)
class NeverExpose:
    """No flow from ``from_zones`` to these components, nor to their ``ports`` on any other
    Portway component (a port forwarded through the load balancer is exposed all the same)."""

    id: str
    title: str
    components: tuple[str, ...]
    ports: tuple[int, ...]
    from_zones: tuple[Zone, ...] = (Zone.INTERNET,)


@dataclass(frozen=True, slots=True)
class RequireTls:
    """Flows from ``from_zones`` into the platform use TLS (or SSH, or an HTTPS redirect)."""

    id: str
    title: str
    from_zones: tuple[Zone, ...] = (Zone.INTERNET,)


@dataclass(frozen=True, slots=True)
class DefaultDeny:
    """Only listed flows: each names its ports; ``dynamic_allowed_in`` zones excepted."""

    id: str
    title: str
    dynamic_allowed_in: tuple[Zone, ...] = (Zone.KUBERNETES,)


@dataclass(frozen=True, slots=True)
class Segmentation:
    """No flow from ``from_zones`` straight into ``protected`` zones."""

    id: str
    title: str
    protected: tuple[Zone, ...] = (Zone.LAN,)
    from_zones: tuple[Zone, ...] = (Zone.INTERNET,)


@dataclass(frozen=True, slots=True)
class SshOnlyFrom:
    """SSH (by protocol or by port) only from ``allowed_zones``."""

    id: str
    title: str
    ssh_ports: tuple[int, ...] = (22,)
    allowed_zones: tuple[Zone, ...] = (Zone.VPN,)


Rule = NeverExpose | RequireTls | DefaultDeny | Segmentation | SshOnlyFrom


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    flow: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


def standard_rules(settings: MatrixSettings | None = None) -> tuple[Rule, ...]:
    """The seed's rules, with the ports of ``settings`` (the standard ports by default)."""
    ports = (settings or MatrixSettings()).ports
    return (
        NeverExpose(
            "no-databases-from-internet",
            "Never expose MongoDB and Elasticsearch ports to the Internet",
            ("mongodb", "elasticsearch"),
            (ports.mongodb.port, ports.elasticsearch.http, ports.elasticsearch.transport),
        ),
        NeverExpose(
            "no-manager-from-internet",
            "Never expose the Manager port to the Internet",
            ("manager",),
            (ports.manager.http,),
        ),
        RequireTls("tls-on-internet-facing", "Always use TLS on everything Internet-facing"),
        DefaultDeny("default-deny", "Only listed flows, each on named ports (least privilege)"),
        Segmentation("dmz-lan-segmentation", "Nothing from the Internet reaches the LAN directly"),
        SshOnlyFrom(
            "ssh-only-from-vpn", "SSH only from the VPN", tuple(sorted({22, ports.ssh.port}))
        ),
    )


def check(matrix: Matrix, rules: Sequence[Rule]) -> list[Violation]:
    """Every violation of ``rules`` by the enabled flows of ``matrix``, in flow order."""
    violations: list[Violation] = []
    for flow in matrix.enabled_flows:
        for rule in rules:
            violations.extend(_check_flow(rule, flow, matrix))
    return violations


def _describe(flow: Flow, matrix: Matrix) -> str:
    arrow = "↔" if flow.bidirectional else "→"
    return (
        f"flow {flow.id} ({matrix.name(flow.source)} {arrow} {matrix.name(flow.destination)} "
        f"{flow.ports.label(',')}/{flow.transport_label()})"
    )


def _check_flow(rule: Rule, flow: Flow, matrix: Matrix) -> Iterable[Violation]:
    source = matrix.component(flow.source)
    destination = matrix.component(flow.destination)
    what = _describe(flow, matrix)
    match rule:
        case NeverExpose():
            if source.zone not in rule.from_zones:
                return
            zones = "/".join(z.title for z in rule.from_zones)
            if destination.id in rule.components:
                yield Violation(
                    rule.id,
                    flow.id,
                    f"{what} exposes {destination.name} port {flow.ports.label(',')} "
                    f"to the {zones}",
                )
                return
            shared = sorted(set(flow.ports) & set(rule.ports))
            if destination.portway and shared:
                names = " or ".join(matrix.name(c) for c in rule.components)
                yield Violation(
                    rule.id,
                    flow.id,
                    f"{what} opens port {','.join(map(str, shared))} ({names} port) on "
                    f"{destination.name} to the {zones}",
                )
        case RequireTls():
            if source.zone not in rule.from_zones or not destination.portway:
                return
            if flow.is_tls or flow.protocol is AppProtocol.SSH:
                return
            if flow.tls_redirect and _has_tls_sibling(flow, matrix):
                return
            hint = (
                "; it is marked as a redirect but no enabled HTTPS flow reaches the same component"
                if flow.tls_redirect
                else ""
            )
            yield Violation(
                rule.id,
                flow.id,
                f"{what} is Internet-facing without TLS ({flow.protocol_label}){hint}",
            )
        case DefaultDeny():
            if not flow.ports.dynamic:
                return
            if (
                source.zone in rule.dynamic_allowed_in
                and destination.zone in rule.dynamic_allowed_in
            ):
                return
            yield Violation(rule.id, flow.id, f"{what} opens every port instead of naming them")
        case Segmentation():
            if source.zone in rule.from_zones and destination.zone in rule.protected:
                yield Violation(
                    rule.id,
                    flow.id,
                    f"{what} reaches the {destination.zone.title} directly from the "
                    f"{source.zone.title}; route it through the DMZ",
                )
        case SshOnlyFrom():
            is_ssh = flow.protocol is AppProtocol.SSH or bool(set(flow.ports) & set(rule.ssh_ports))
            if is_ssh and source.zone not in rule.allowed_zones:
                allowed = "/".join(z.title for z in rule.allowed_zones)
                yield Violation(
                    rule.id,
                    flow.id,
                    f"{what} allows SSH from the {source.zone.title}; SSH only from the {allowed}",
                )


def _has_tls_sibling(flow: Flow, matrix: Matrix) -> bool:
    return any(
        other.is_tls and other.source == flow.source and other.destination == flow.destination
        for other in matrix.enabled_flows
    )

"""The effective matrix: the standard catalogue with an installation's ports and switches."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from portway.errors import ConfigError
from portway.matrix.model import (
    AppProtocol,
    Category,
    Flow,
    Matrix,
    PortRef,
    PortSet,
    Table,
    Transport,
    Zone,
)
from portway.matrix.settings import ExtraFlow, MatrixSettings
from portway.matrix.standard import COMPONENTS, FLOWS, TABLES

_COMPONENTS = {c.id: c for c in COMPONENTS}
_TRANSPORTS = {
    "tcp": (Transport.TCP,),
    "udp": (Transport.UDP,),
    "tcp+udp": (Transport.TCP, Transport.UDP),
}
_HTTPS, _HTTP = AppProtocol.HTTPS, AppProtocol.HTTP
EXTRA_TABLE = Table("extra", "Installation-specific Flows", "Installation-specific", "Required")


def port_numbers(settings: MatrixSettings, ref: PortRef) -> tuple[int, ...]:
    """The configured port(s) behind a :class:`PortRef` (``mongodb.port`` -> ``(25080,)``)."""
    group_name, field_name = ref.value.split(".")
    value = getattr(getattr(settings.ports, group_name), field_name)
    return tuple(value) if isinstance(value, tuple) else (int(value),)


def setting_path(ref: PortRef) -> str:
    return f"ports.{ref.value}"


def effective_matrix(settings: MatrixSettings | None = None) -> Matrix:
    """The matrix of an installation; ``None`` gives the standard installation."""
    settings = settings or MatrixSettings()
    flows: list[Flow] = []
    for flow in FLOWS:
        if flow.table == "kubernetes" and not settings.kubernetes.enabled:
            continue
        if flow.id in settings.unused_flows:
            continue
        changes: dict[str, object] = {}
        if flow.port_ref is not None:
            changes["ports"] = PortSet.of(*port_numbers(settings, flow.port_ref))
        if flow.toggle is not None:
            changes["enabled"] = bool(getattr(settings.optional_flows, flow.toggle))
        changed = _worker_tls(dataclasses.replace(flow, **changes), settings)  # type: ignore[arg-type]
        if changed is not None:
            flows.append(changed)
    flows.extend(_extra_flow(extra) for extra in settings.extra_flows)
    tables = TABLES + ((EXTRA_TABLE,) if settings.extra_flows else ())
    used = {f.table for f in flows}
    tables = tuple(_retitle(t, settings) for t in tables if t.id in used)
    matrix = Matrix(components=COMPONENTS, flows=tuple(flows), tables=tables)
    _check_port_collisions(matrix, settings)
    return matrix


def _retitle(table: Table, settings: MatrixSettings) -> Table:
    if table.id == "worker_cache" and settings.cache_product == "redis":
        return dataclasses.replace(table, title="Worker ↔ Cache (Redis)")
    return table


def _worker_tls(flow: Flow, settings: MatrixSettings) -> Flow | None:
    """TLS at the worker: the balancer reaches its HTTPS listener; without a balancer the
    Internet reaches the worker directly (its HTTPS and redirect listeners)."""
    worker = settings.ports.worker
    if flow.id == "int-lb-worker":
        if not settings.load_balancer:
            return None
        if worker.https is not None:
            return dataclasses.replace(flow, ports=PortSet.of(worker.https), protocol=_HTTPS)
        return flow
    if settings.load_balancer or flow.destination != "load_balancer":
        return flow
    if flow.id == "in-lb-https":
        if worker.https is not None:
            return dataclasses.replace(flow, destination="worker", ports=PortSet.of(worker.https))
        return dataclasses.replace(
            flow, destination="worker", ports=PortSet.of(worker.http), protocol=_HTTP
        )
    if flow.id == "in-lb-http" and worker.redirect is not None:
        return dataclasses.replace(flow, destination="worker", ports=PortSet.of(worker.redirect))
    return None


def standard_matrix() -> Matrix:
    return effective_matrix(MatrixSettings())


def _extra_flow(extra: ExtraFlow) -> Flow:
    source = _COMPONENTS[extra.source]
    destination = _COMPONENTS[extra.destination]
    outside = (Zone.INTERNET, Zone.VPN)
    if source.zone in outside and destination.zone not in outside:
        category = Category.INBOUND
    elif destination.zone in outside and source.zone not in outside:
        category = Category.OUTBOUND
    else:
        category = Category.INTERNAL
    protocol = AppProtocol.TRANSPORT if extra.protocol == "TCP" else AppProtocol(extra.protocol)
    return Flow(
        id=extra.id,
        source=extra.source,
        destination=extra.destination,
        ports=PortSet.of(*extra.ports),
        transports=_TRANSPORTS[extra.transport],
        protocol=protocol,
        description=extra.description,
        category=category,
        table=EXTRA_TABLE.id,
        required=extra.required,
        bidirectional=extra.bidirectional,
    )


def _check_port_collisions(matrix: Matrix, settings: MatrixSettings) -> None:
    """Two different port settings that land on the same port of the same machine."""
    by_host: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    single_host = settings.layout == "single-host"
    for flow in matrix.enabled_flows:
        if flow.port_ref is None:
            continue
        destination = matrix.component(flow.destination)
        if not destination.portway:
            continue
        host = "the single host" if single_host else destination.id
        for number in flow.ports:
            owners = by_host[(host, number)]
            owners.setdefault(setting_path(flow.port_ref), destination.id)
            if len(owners) > 1:
                (first, first_owner), (second, second_owner) = list(owners.items())[:2]
                where = (
                    f"{first_owner} and {second_owner} on a single host"
                    if single_host
                    else f"both on {destination.id}"
                )
                raise ConfigError(
                    f"port {number} is also {first} ({where}); give each listener its own port",
                    field=second,
                )

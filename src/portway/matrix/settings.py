"""``MatrixSettings``: the ports and options of an installation that shape its matrix.

Never written by hand: ``portway.matrix.platform`` computes it from the platform file
(``portway.yaml``); ``MatrixSettings()`` is the seed's standard installation. Every error names the
field by its dotted path (``ports.mongodb.port``, ``extra_flows[0].destination``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from portway.config.base import FrozenModel
from portway.errors import ConfigError
from portway.matrix.standard import COMPONENTS, FLOW_IDS

Port = Annotated[int, Field(ge=1, le=65535)]

_COMPONENT_IDS = tuple(c.id for c in COMPONENTS)
_FLOW_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class LoadBalancerPorts(FrozenModel):
    https: Port = Field(443, description="HTTPS listener open to the Internet")
    http: Port = Field(80, description="plain HTTP listener; only redirects to HTTPS")


class ManagerPorts(FrozenModel):
    http: Port = Field(8080, description="HTTP port (cluster calls and, for the manager, UI/API)")
    metrics: Port = Field(9465, description="Prometheus metrics listener")


class WorkerPorts(FrozenModel):
    http: Port = Field(8080, description="the port the manager and the balancer reach")
    https: Port | None = Field(None, description="TLS listener: the balancer reaches this one")
    redirect: Port | None = Field(None, description="plain listener redirecting to HTTPS")
    metrics: Port = Field(9464, description="Prometheus metrics listener")


class MongoPorts(FrozenModel):
    port: Port = 25080


class ElasticsearchPorts(FrozenModel):
    http: Port = Field(9200, description="HTTP API (workers send logs, manager queries)")
    transport: Port = Field(9300, description="transport protocol between cluster nodes")


class CachePorts(FrozenModel):
    port: Port = Field(5701, description="Hazelcast member port (clients and cluster)")


class SmtpPorts(FrozenModel):
    ports: tuple[Port, ...] = Field((25, 587), min_length=1, description="SMTP relay ports")

    @field_validator("ports")
    @classmethod
    def _unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"ports repeat: {list(value)}")
        return value


class SinglePort(FrozenModel):
    port: Port


class BackendPorts(FrozenModel):
    https: Port = 443
    http: Port = 80


class ExternalPorts(FrozenModel):
    https: Port = 443


class Ports(FrozenModel):
    load_balancer: LoadBalancerPorts = LoadBalancerPorts()
    worker: WorkerPorts = WorkerPorts()
    manager: ManagerPorts = ManagerPorts()
    mongodb: MongoPorts = MongoPorts()
    elasticsearch: ElasticsearchPorts = ElasticsearchPorts()
    cache: CachePorts = CachePorts()
    smtp: SmtpPorts = SmtpPorts()
    dns: SinglePort = SinglePort(port=53)
    kubernetes_api: SinglePort = SinglePort(port=6443)
    ssh: SinglePort = SinglePort(port=22)
    backend_api: BackendPorts = BackendPorts()
    external_services: ExternalPorts = ExternalPorts()


class OptionalFlows(FrozenModel):
    """One switch per optional flow of the seed; a flow switched off must be closed."""

    ssh_from_internet: bool = Field(
        False, description="SSH to the load balancer straight from the Internet (in-lb-ssh)"
    )
    vpn_ssh: bool = Field(True, description="SSH from the VPN (vpn-lb-ssh, vpn-manager-ssh)")
    backend_http: bool = Field(True, description="plain HTTP backends (out-worker-backend-http)")
    worker_external_services: bool = Field(
        True, description="worker integrations over HTTPS (out-worker-external-https)"
    )
    manager_external_services: bool = Field(
        True, description="monitoring and webhooks from the manager (out-manager-external-https)"
    )
    smtp: bool = Field(True, description="e-mail from the manager (out-manager-smtp)")
    worker_metrics: bool = Field(
        False, description="metrics scrapes of the workers (int-monitoring-worker-metrics)"
    )
    manager_metrics: bool = Field(
        False, description="metrics scrapes of the manager (int-monitoring-manager-metrics)"
    )


class KubernetesSettings(FrozenModel):
    enabled: bool = Field(True, description="the platform runs on Kubernetes (adds its flows)")
    dmz_namespace: str = Field("portway-dmz", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    lan_namespace: str = Field("portway-lan", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ExtraFlow(FrozenModel):
    """A flow the installation adds to the standard ones (checked by the same rules)."""

    id: str
    source: str
    destination: str
    ports: tuple[Port, ...] = Field(min_length=1)
    transport: Literal["tcp", "udp", "tcp+udp"] = "tcp"
    protocol: Literal["HTTPS", "HTTP", "SSH", "SMTP", "DNS", "TCP"] = "TCP"
    description: str = Field(min_length=1)
    required: bool = True
    bidirectional: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _FLOW_ID.match(value):
            raise ValueError(f"{value!r} is not a flow id (lowercase letters, digits and '-')")
        if value in FLOW_IDS:
            raise ValueError(f"{value!r} is already a standard flow")
        return value

    @field_validator("source", "destination")
    @classmethod
    def _component(cls, value: str) -> str:
        if value not in _COMPONENT_IDS:
            raise ValueError(f"unknown component {value!r}; known: {', '.join(_COMPONENT_IDS)}")
        return value


class MatrixSettings(FrozenModel):
    """What an installation configures that changes its network connection matrix."""

    layout: Literal["distributed", "single-host"] = Field(
        "distributed", description="single-host puts every Portway component on one machine"
    )
    ports: Ports = Ports()
    optional_flows: OptionalFlows = OptionalFlows()
    kubernetes: KubernetesSettings = KubernetesSettings()
    extra_flows: tuple[ExtraFlow, ...] = ()
    unused_flows: tuple[str, ...] = Field(
        (), description="standard flows no configured component uses (left out of the matrix)"
    )
    cache_product: Literal["hazelcast", "redis"] = "hazelcast"
    load_balancer: bool = Field(True, description="false: clients reach the workers directly")

    @field_validator("unused_flows")
    @classmethod
    def _known_flows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for flow_id in value:
            if flow_id not in FLOW_IDS:
                raise ValueError(f"unknown flow {flow_id!r}")
        return value

    @field_validator("extra_flows")
    @classmethod
    def _unique_ids(cls, value: tuple[ExtraFlow, ...]) -> tuple[ExtraFlow, ...]:
        seen: set[str] = set()
        for flow in value:
            if flow.id in seen:
                raise ValueError(f"flow id {flow.id!r} is used twice")
            seen.add(flow.id)
        return value


def field_path(loc: Sequence[int | str]) -> str:
    """``("extra_flows", 0, "destination")`` -> ``extra_flows[0].destination``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def config_error_from(exc: ValidationError, prefix: str = "") -> ConfigError:
    """The first error of a pydantic ValidationError as a ConfigError naming its field."""
    messages = []
    for err in exc.errors():
        path = field_path(err["loc"])
        path = f"{prefix}.{path}" if prefix and path else (prefix or path)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not allowed here)"
        messages.append(f"{path}: {msg}" if path else msg)
    return ConfigError("; ".join(messages))


def settings_from_mapping(data: Any) -> MatrixSettings:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the matrix settings must be a mapping, not {type(data).__name__}")
    try:
        return MatrixSettings.model_validate_json(json.dumps(data, default=str))
    except ValidationError as exc:
        raise config_error_from(exc) from exc

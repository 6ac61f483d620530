"""``DeploymentPlan``: what the deployment renderers need to know about one installation, built
from the platform file (``portway.yaml``, ``plan_from_platform``) or read from YAML (``--plan``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from portway.config.base import Model, Slug
from portway.config.platform import PlatformConfig
from portway.config.worker_settings import check_networks
from portway.errors import ConfigError

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(?P<port>\d{1,5})$")
Port = Annotated[int, Field(ge=1, le=65535)]


def split_host_port(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); raises ``ValueError``."""
    match = _HOST_PORT.match(value)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    return match["host"], int(match["port"])


class CertificateFiles(Model):
    """The operator's certificate for the public names, as paths on the load balancer host."""

    cert_file: Annotated[str, Field(min_length=1, description="PEM certificate chain")]
    key_file: Annotated[str, Field(min_length=1, description="PEM private key")]


class KubernetesPlan(Model):
    """What only the Kubernetes manifests need."""

    image: Annotated[str, Field(min_length=1, description="the Portway container image")] = (
        "ghcr.io/portway/portway:latest"
    )
    load_balancer_image: Annotated[str, Field(min_length=1)] = "haproxy:2.6"
    dmz_namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = (
        "portway-dmz"
    )
    lan_namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = (
        "portway-lan"
    )
    worker_replicas: Annotated[int, Field(ge=1, le=1000)] = 2
    worker_max_replicas: Annotated[int, Field(ge=1, le=1000)] = 10
    worker_cpu_target: Annotated[int, Field(ge=10, le=100, description="HPA CPU %")] = 70
    tls_secret: Annotated[
        str, Field(description="Secret (type kubernetes.io/tls) with the public certificate")
    ] = "portway-public-tls"

    @model_validator(mode="after")
    def _replicas(self) -> KubernetesPlan:
        if self.worker_max_replicas < self.worker_replicas:
            raise ValueError("worker_max_replicas must be at least worker_replicas")
        return self


class SystemdPlan(Model):
    """What only the systemd units need."""

    executable: Annotated[str, Field(pattern=r"^/\S+$")] = "/usr/local/bin/portway"
    data_dir: Annotated[str, Field(pattern=r"^/\S+$")] = "/var/lib/portway"
    secret_file: Annotated[str, Field(pattern=r"^/\S+$")] = "/etc/portway/cluster.secret"


class DeploymentPlan(Model):
    """One installation as the deployment renderers see it (the seed's topology: Internet → load
    balancer 443/80 → workers 8080 in the DMZ; manager 8080 in the LAN)."""

    environment: Annotated[Slug, Field(description="the environment the workers serve")]
    public_names: Annotated[
        list[str], Field(min_length=1, max_length=100, description="host names clients use")
    ]
    https_port: Port = 443
    http_port: Annotated[Port, Field(description="plain port answering 301 to HTTPS")] = 80
    certificate: Annotated[
        CertificateFiles | None,
        Field(description="operator certificate; null: render with --lab-ca"),
    ] = None
    workers: Annotated[
        list[str], Field(min_length=1, max_length=1000, description="workers as host:port")
    ]
    worker_health_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.-]*$")] = "/_portway/health"
    manager: Annotated[str, Field(description="manager as host:port")]
    trusted_proxies: Annotated[
        list[str],
        Field(description="load balancer addresses (CIDRs) the workers trust for X-Forwarded-*"),
    ] = Field(default_factory=list)
    vpn_networks: Annotated[
        list[str],
        Field(
            min_length=1,
            description="networks operators reach the manager from (the seed's VPN zone)",
        ),
    ] = Field(default_factory=lambda: ["10.8.0.0/24"])
    health_check_interval_ms: Annotated[int, Field(ge=100, le=60_000)] = 2000
    hsts_max_age: Annotated[int, Field(ge=0, le=63_072_000)] = 31_536_000
    kubernetes: KubernetesPlan = KubernetesPlan()
    systemd: SystemdPlan = SystemdPlan()

    @field_validator("public_names")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _HOSTNAME.match(name):
                raise ValueError(f"{name!r} is not a host name")
        return value

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: list[str]) -> list[str]:
        for entry in value:
            split_host_port(entry)
        if len(set(value)) != len(value):
            raise ValueError("a worker appears twice")
        return value

    @field_validator("manager")
    @classmethod
    def _manager(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("trusted_proxies", "vpn_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return check_networks(value)

    @model_validator(mode="after")
    def _ports(self) -> DeploymentPlan:
        if self.https_port == self.http_port:
            raise ValueError("https_port and http_port must differ")
        return self

    def worker_addresses(self) -> list[tuple[str, int]]:
        return [split_host_port(w) for w in self.workers]

    def manager_address(self) -> tuple[str, int]:
        return split_host_port(self.manager)


def plan_from_mapping(data: Any) -> DeploymentPlan:
    """Validate a decoded plan; raises ``ConfigError`` naming the first field at fault."""
    try:
        return DeploymentPlan.model_validate_json(json.dumps(data, default=str))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or None
        raise ConfigError(error["msg"], field=where) from exc


def load_plan(path: Path) -> DeploymentPlan:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", field="plan") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", field="plan") from exc
    return plan_from_mapping(data)


def plan_from_platform(platform: PlatformConfig, environment: str) -> DeploymentPlan:
    """The plan of one environment of ``portway.yaml``: the hosts that run a worker behind the
    balancer's public names and ports; raises ``ConfigError`` naming the file's key."""
    worker = platform.workers.get(environment)
    if worker is None:
        known = ", ".join(sorted(platform.workers)) or "none"
        raise ConfigError(f"no such environment (configured: {known})", f"workers.{environment}")
    port = worker.port or worker.https_port
    workers = [f"{_host(h.address)}:{port}" for h in platform.hosts if "worker" in h.components]
    managers = [h.address for h in platform.hosts if "manager" in h.components]
    if not workers:
        raise ConfigError("no host runs a worker (components: [worker])", "hosts")
    if not managers:
        raise ConfigError("no host runs the manager (components: [manager])", "hosts")
    balancers = [h.address for h in platform.hosts if "load_balancer" in h.components]
    lb = platform.load_balancer
    certificate: dict[str, str] | None = None
    if lb.certificates:
        first = lb.certificates[0]
        key = first.key_file or first.cert_file.with_name(first.cert_file.name + ".key")
        certificate = {"cert_file": str(first.cert_file), "key_file": str(key)}
    data: dict[str, Any] = {
        "environment": environment,
        "public_names": lb.public_names,
        "https_port": lb.https_port,
        "certificate": certificate,
        "workers": workers,
        "manager": f"{_host(managers[0])}:{platform.manager.port}",
        "trusted_proxies": worker.trusted_proxies or [f"{a}/32" if ":" not in a else f"{a}/128"
                                                      for a in balancers],
    }  # fmt: skip
    if lb.http_port is not None:
        data["http_port"] = lb.http_port
    if platform.zones.get("vpn"):
        data["vpn_networks"] = [str(n) for n in platform.zones["vpn"]]
    try:
        return DeploymentPlan.model_validate_json(json.dumps(data, default=str))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ConfigError(f"load_balancer or hosts: {where}: {error['msg']}", where) from exc


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address

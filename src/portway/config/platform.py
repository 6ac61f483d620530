"""``portway.yaml``: one typed model of an installation.

The manager and worker sections *are* ``ManagerSettings`` and ``WorkerSettings`` (subclassed, not
re-declared) plus what only the platform file knows (where a worker finds the manager, what the
manager talks to outside). The network connection matrix is computed from this model
(``portway.matrix.platform``); loading, path resolution and ``PORTWAY_…`` overrides live in
``portway.config.platform_file``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from portway.config.base import Model, Slug
from portway.config.manager_settings import ManagerSettings
from portway.config.worker_settings import WorkerSettings
from portway.errors import ConfigError

Port = Annotated[int, Field(ge=1, le=65535)]
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")

#: Default port of each URL scheme Portway's stores and caches understand.
DEFAULT_PORTS = {
    "mongodb": 27017,
    "elasticsearch": 9200,
    "http": 80,
    "https": 443,
    "redis": 6379,
    "rediss": 6379,
    "hazelcast": 5701,
    "smtp": 25,
    "smtps": 465,
}


def url_port(url: str) -> int | None:
    """The TCP port a store/cache URL connects to (``None`` for embedded ones: sqlite, local)."""
    parts = urlsplit(url)
    if parts.scheme in ("sqlite", "local", ""):
        return None
    hosts = parts.netloc.rpartition("@")[2].split(",")[0]
    _, colon, port = hosts.rpartition(":")
    if colon and port.isdigit() and "]" not in port:
        return int(port)
    return DEFAULT_PORTS.get(parts.scheme)


def url_scheme(url: str) -> str:
    return urlsplit(url).scheme


class ManagerConfig(ManagerSettings):
    """The manager: every ``ManagerSettings`` field (its mail relay and webhook egress included,
    since the manager's alerts use them)."""


class WorkerConfig(WorkerSettings):
    """The workers of one environment: every ``WorkerSettings`` field, plus their connections."""

    manager_url: Annotated[
        str | None, Field(description="how workers reach the manager; default: its listener")
    ] = None
    cache: Annotated[
        str,
        Field(
            description="local:// (per process), redis://HOST:PORT/0, hazelcast://HOST:PORT/NAME"
        ),
    ] = "local://"
    logs: Annotated[
        str | None,
        Field(
            description="traffic log sink; default: the manager's logs; also forwarding sinks: "
            "syslog+tcp://, syslog+tls://, webhook+https://, kafka://"
        ),
    ] = None
    state_dir: Annotated[
        Path | None, Field(description="cached revision and spool; default: DATA_DIR/worker-ENV")
    ] = None
    secret_file: Annotated[
        Path | None, Field(description="cluster secret; default: the manager's secret_file")
    ] = None
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    worker_id: Annotated[str | None, Field(description="default: HOSTNAME-PORT")] = None
    advertise_url: Annotated[
        str | None, Field(description="URL the manager uses to reach this worker")
    ] = None
    egress_https: Annotated[
        bool,
        Field(description="policies call external HTTPS services (JWKS, token introspection)"),
    ] = True
    cluster_ca: Annotated[
        Path | None,
        Field(description="PEM CA bundle the https:// manager's certificate must chain to"),
    ] = None
    insecure_cluster: Annotated[
        bool, Field(description="allow a plain http:// manager URL that is not loopback")
    ] = False

    @field_validator("cache")
    @classmethod
    def _cache(cls, value: str) -> str:
        if url_scheme(value) not in ("local", "redis", "rediss", "hazelcast"):
            raise ValueError(
                f"{value!r}: use local://, redis://HOST:PORT/0 or hazelcast://HOST:PORT"
            )
        return value

    @property
    def tls_port(self) -> int | None:
        return self.https_port if self.tls is not None else None


class Certificate(Model):
    cert_file: Annotated[Path, Field(description="PEM certificate chain")]
    key_file: Annotated[Path | None, Field(description="PEM key (if not in cert_file)")] = None


class LoadBalancerConfig(Model):
    """The balancer in front of the workers (rendered by ``portway deploy render``)."""

    kind: Annotated[
        Literal["haproxy", "nginx", "none"],
        Field(description="none: clients reach the workers directly"),
    ] = "haproxy"
    public_names: Annotated[list[str], Field(description="DNS names clients use")] = Field(
        default_factory=list
    )
    certificates: list[Certificate] = Field(default_factory=list)
    https_port: Port = 443
    http_port: Annotated[Port | None, Field(description="redirects to HTTPS; null = none")] = 80

    @field_validator("public_names")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _DNS_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a DNS name")
        return value


class EnvironmentConfig(Model):
    type: Annotated[str, Field(pattern=r"^(test|prod|dev|staging)$")] = "test"
    description: Annotated[str, Field(max_length=1000)] = ""


class HostConfig(Model):
    """A machine and the components it runs (firewall addresses, audit targets)."""

    name: str
    address: str
    components: Annotated[list[str], Field(min_length=1)]
    tls_server_name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _HOST_NAME.match(value):
            raise ValueError(f"{value!r} is not a host name (lowercase letters, digits and '-')")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        return value


class SshAccess(Model):
    port: Port = 22
    from_vpn: Annotated[bool, Field(description="SSH to the load balancer and manager")] = True
    from_internet: Annotated[bool, Field(description="SSH to the load balancer (not advised)")] = (
        False
    )


class BackendPorts(Model):
    https: Port = 443
    http: Annotated[Port | None, Field(description="plain-HTTP backends; null = none")] = 80


class ExtraFlow(Model):
    """A flow the installation adds to Portway's own (checked by the same rules)."""

    id: str
    source: str
    destination: str
    ports: Annotated[list[Port], Field(min_length=1)]
    transport: Literal["tcp", "udp", "tcp+udp"] = "tcp"
    protocol: Literal["HTTPS", "HTTP", "SSH", "SMTP", "DNS", "TCP"] = "TCP"
    description: Annotated[str, Field(min_length=1)]
    required: bool = True
    bidirectional: bool = False


class NetworkConfig(Model):
    """What the matrix needs that no Portway process listens on or connects to by URL."""

    ssh: SshAccess = SshAccess()
    dns_port: Port = 53
    backends: BackendPorts = BackendPorts()
    external_https_port: Port = 443
    elasticsearch_transport_port: Annotated[
        Port, Field(description="between Elasticsearch nodes (only with elasticsearch:// logs)")
    ] = 9300
    extra_flows: list[ExtraFlow] = Field(default_factory=list)


class KubernetesConfig(Model):
    enabled: Annotated[bool, Field(description="the platform runs on Kubernetes")] = False
    api_port: Port = 6443
    dmz_namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = (
        "portway-dmz"
    )
    lan_namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = (
        "portway-lan"
    )


class PlatformConfig(Model):
    """One installation of Portway: ``portway.yaml``."""

    layout: Annotated[
        Literal["distributed", "single-host"],
        Field(description="single-host: every Portway component on one machine"),
    ] = "distributed"
    data_dir: Annotated[
        Path | None,
        Field(description="default for every data path; default: $PORTWAY_HOME or the file's dir"),
    ] = None
    zones: Annotated[
        dict[Literal["internet", "dmz", "lan", "vpn", "kubernetes"], list[str]],
        Field(description="networks (CIDRs) of each zone"),
    ] = Field(default_factory=dict)
    hosts: list[HostConfig] = Field(default_factory=list)
    environments: dict[Slug, EnvironmentConfig] = Field(default_factory=dict)
    manager: ManagerConfig = ManagerConfig()
    workers: dict[Slug, WorkerConfig] = Field(default_factory=dict)
    load_balancer: LoadBalancerConfig = LoadBalancerConfig()
    network: NetworkConfig = NetworkConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()

    @field_validator("zones")
    @classmethod
    def _networks(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for zone, networks in value.items():
            for network in networks:
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    raise ValueError(f"{zone}: {network!r} is not an IP network") from None
        return value

    @model_validator(mode="after")
    def _environments(self) -> PlatformConfig:
        if self.environments:
            unknown = sorted(set(self.workers) - set(self.environments))
            if unknown:
                raise ValueError(
                    f"workers.{unknown[0]}: no such environment (environments: "
                    f"{', '.join(sorted(self.environments))})"
                )
        return self

    def worker(self, environment: str) -> WorkerConfig:
        try:
            return self.workers[environment]
        except KeyError:
            known = ", ".join(sorted(self.workers)) or "none"
            raise ConfigError(
                f"no workers for environment {environment!r} (configured: {known})",
                field="workers",
            ) from None

    def settled_worker(self, environment: str) -> WorkerConfig:
        """The section ``portway worker`` runs with: ``manager_url`` and ``logs`` filled in from
        the manager's when the section leaves them out."""
        worker = self.worker(environment)
        return worker.model_copy(
            update={
                "manager_url": self.manager_url(environment),
                "logs": worker.logs or self.manager.logs,
            }
        )

    def manager_url(self, environment: str) -> str:
        """How the workers of ``environment`` reach the manager."""
        url = self.worker(environment).manager_url
        if url:
            return url.rstrip("/")
        host = self.manager.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        return f"http://{host}:{self.manager.port}"

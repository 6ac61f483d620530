"""The matrix of an installation, computed from its platform file (``portway.yaml``).

A standard flow is in the matrix exactly when a configured component uses it, on the port of the
configured URL or listener:

* MongoDB flows only with a ``mongodb://`` store (the manager's); workers never open the store.
* Elasticsearch flows only with ``elasticsearch://`` logs (manager queries, workers send), plus
  the transport port between nodes.
* Cache flows only when workers use ``redis://`` or ``hazelcast://``; the manager has no cache.
* SMTP with ``manager.smtp``, manager HTTPS egress with ``manager.webhooks``, worker HTTPS egress
  with a worker's ``egress_https``; Kubernetes flows with ``kubernetes.enabled``.
* TLS on the workers: the balancer reaches their HTTPS listener; ``load_balancer.kind: none``
  puts the inbound flows on the workers themselves.
* Metrics scrapes (monitoring → worker / manager) only with a ``metrics_port``.
"""

from __future__ import annotations

import re
from typing import Any

from portway.config.platform import PlatformConfig, url_port, url_scheme
from portway.errors import ConfigError
from portway.matrix.effective import effective_matrix
from portway.matrix.inventory import Inventory, inventory_from_mapping
from portway.matrix.model import Matrix
from portway.matrix.settings import MatrixSettings, settings_from_mapping

MONGODB_FLOWS = ("int-worker-mongodb", "int-manager-mongodb", "int-mongodb-replica")
ELASTICSEARCH_FLOWS = (
    "int-worker-elasticsearch",
    "int-manager-elasticsearch",
    "int-elasticsearch-cluster",
)
CACHE_FLOWS = ("int-worker-cache", "int-manager-cache", "int-cache-cluster")
#: Flows of the seed that no Portway code opens, whatever the configuration.
NEVER_USED = ("int-worker-mongodb", "int-manager-cache")


def _worker_ports(config: PlatformConfig) -> dict[str, Any]:
    workers = list(config.workers.values())
    if not workers:
        return {}
    first = workers[0]
    ports: dict[str, Any] = {"http": first.port if first.port else first.https_port}
    if first.tls_port:
        ports["https"] = first.tls_port
    if first.tls is not None and first.redirect_port:
        ports["redirect"] = first.redirect_port
    if first.metrics_port:
        ports["metrics"] = first.metrics_port
    return ports


def matrix_settings_for(config: PlatformConfig) -> MatrixSettings:
    """The matrix settings an installation implies; errors name the platform file's keys."""
    manager = config.manager
    workers = list(config.workers.values())
    unused: set[str] = set(NEVER_USED)
    ports: dict[str, Any] = {
        "load_balancer": {
            "https": config.load_balancer.https_port,
            "http": config.load_balancer.http_port or 80,
        },
        "manager": {
            "http": manager.port,
            **({"metrics": manager.metrics_port} if manager.metrics_port else {}),
        },
        "ssh": {"port": config.network.ssh.port},
        "dns": {"port": config.network.dns_port},
        "kubernetes_api": {"port": config.kubernetes.api_port},
        "backend_api": {
            "https": config.network.backends.https,
            "http": config.network.backends.http or 80,
        },
        "external_services": {"https": config.network.external_https_port},
    }
    if (worker_ports := _worker_ports(config)) != {}:
        ports["worker"] = worker_ports
    if url_scheme(manager.store) == "mongodb":
        ports["mongodb"] = {"port": url_port(manager.store)}
    else:
        unused.update(MONGODB_FLOWS)
    es_urls = [u for u in [manager.logs, *(w.logs or "" for w in workers)] if u]
    es_urls = [u for u in es_urls if url_scheme(u) == "elasticsearch"]
    if es_urls:
        ports["elasticsearch"] = {
            "http": url_port(es_urls[0]),
            "transport": config.network.elasticsearch_transport_port,
        }
        if url_scheme(manager.logs) != "elasticsearch":
            unused.add("int-manager-elasticsearch")
        if not any(url_scheme(w.logs or "") == "elasticsearch" for w in workers):
            unused.add("int-worker-elasticsearch")
    else:
        unused.update(ELASTICSEARCH_FLOWS)
    caches = [w.cache for w in workers if url_scheme(w.cache) != "local"]
    product = "hazelcast"
    if caches:
        ports["cache"] = {"port": url_port(caches[0])}
        product = "hazelcast" if url_scheme(caches[0]) == "hazelcast" else "redis"
        if product == "redis":
            unused.add("int-cache-cluster")
    else:
        unused.update(CACHE_FLOWS)
    if manager.smtp is not None:
        ports["smtp"] = {"ports": manager.smtp.ports}
    ssh = config.network.ssh
    lb = config.load_balancer.kind != "none"
    data = {
        "layout": config.layout,
        "ports": ports,
        "optional_flows": {
            "ssh_from_internet": ssh.from_internet and lb,
            "vpn_ssh": ssh.from_vpn,
            "backend_http": config.network.backends.http is not None,
            "worker_external_services": any(w.egress_https for w in workers),
            "manager_external_services": manager.webhooks,
            "smtp": manager.smtp is not None,
            "worker_metrics": any(w.metrics_port is not None for w in workers),
            "manager_metrics": manager.metrics_port is not None,
        },
        "kubernetes": {
            "enabled": config.kubernetes.enabled,
            "dmz_namespace": config.kubernetes.dmz_namespace,
            "lan_namespace": config.kubernetes.lan_namespace,
        },
        "extra_flows": [f.model_dump() for f in config.network.extra_flows],
        "unused_flows": sorted(unused),
        "cache_product": product,
        "load_balancer": lb,
    }
    if not lb:
        data["unused_flows"] = sorted(unused | {"vpn-lb-ssh"})
    try:
        return settings_from_mapping(data)
    except ConfigError as exc:
        message = str(exc).replace("extra_flows", "network.extra_flows")
        raise ConfigError(message) from exc


def _platform_key(config: PlatformConfig, setting: str) -> str:
    """``ports.worker.http`` (the matrix's name of a port) -> ``workers.prod.port``."""
    env = next(iter(config.workers), "ENV")
    keys = {
        "ports.manager.http": "manager.port",
        "ports.manager.metrics": "manager.metrics_port",
        "ports.worker.metrics": f"workers.{env}.metrics_port",
        "ports.worker.http": f"workers.{env}.port",
        "ports.mongodb.port": "manager.store",
        "ports.elasticsearch.http": "manager.logs",
        "ports.elasticsearch.transport": "network.elasticsearch_transport_port",
        "ports.cache.port": f"workers.{env}.cache",
        "ports.ssh.port": "network.ssh.port",
        "ports.load_balancer.https": "load_balancer.https_port",
        "ports.load_balancer.http": "load_balancer.http_port",
        "ports.dns.port": "network.dns_port",
        "ports.kubernetes_api.port": "kubernetes.api_port",
        "ports.smtp.ports": "manager.smtp.ports",
        "ports.backend_api.https": "network.backends.https",
        "ports.backend_api.http": "network.backends.http",
        "ports.external_services.https": "network.external_https_port",
    }
    return keys.get(setting, setting)


def matrix_for(config: PlatformConfig) -> tuple[MatrixSettings, Matrix]:
    """The matrix settings and matrix of an installation; a port clash names the file's keys."""
    settings = matrix_settings_for(config)
    try:
        return settings, effective_matrix(settings)
    except ConfigError as exc:
        message = exc.message
        for setting in re.findall(r"ports\.[a-z_]+\.[a-z_]+", message):
            message = message.replace(setting, _platform_key(config, setting))
        field = _platform_key(config, exc.field) if exc.field else None
        raise ConfigError(message, field=field) from exc


def inventory_for(config: PlatformConfig) -> Inventory | None:
    """The platform file's zones and hosts as the firewall's and audit's inventory."""
    if not config.hosts and not config.zones:
        return None
    data = {
        "zones": config.zones,
        "hosts": [h.model_dump(exclude_none=True) for h in config.hosts],
    }
    return inventory_from_mapping(data)

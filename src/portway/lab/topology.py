"""The lab's topology and its ``portway.yaml`` (the ``--small`` profile).

Addresses come from 198.18.0.0/15 (benchmarking range) and exist only inside the lab's
namespaces::

    inet 198.18.0.50 (clients, backend-1) ─┐                      ┌─ lb   198.18.1.10
    vpn  198.18.4.10 (operators) ──────────┼─ rt (router) ─ dmz ──┼─ wk1  198.18.1.21
                                           │                      └─ wk2  198.18.1.22
                                           └──────────── lan ─────┬─ mgr  198.18.2.10
                                                                  ├─ data 198.18.2.20
                                                                  └─ es1  198.18.2.30
       data: FerretDB 25080, Hazelcast 5701; es1: Elasticsearch 9200 (9300 between nodes)

The router forwards between the zones through the DMZ and LAN zone tables generated from the
file's matrix; each DMZ/LAN host loads its own host table (inside a zone the switch does not
route, so the host table is what guards one DMZ host from another).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portway.lab.provisioned import ElasticsearchNode, hazelcast_member_config

ENVIRONMENT = "prod"
PUBLIC_NAME = "api.portway.test"
ZONES = {"dmz": ["198.18.1.0/24"], "lan": ["198.18.2.0/24"], "vpn": ["198.18.4.0/24"]}
ROUTER_LEGS = {
    "inet": "198.18.0.1/24",
    "vpn": "198.18.4.1/24",
    "dmz": "198.18.1.1/24",
    "lan": "198.18.2.1/24",
}
MONGODB_PORT = 25080
HAZELCAST_PORT = 5701
HAZELCAST_CLUSTER = "portway-lab"
ELASTICSEARCH_PORT = 9200
ELASTICSEARCH_TRANSPORT_PORT = 9300
ELASTICSEARCH_CLUSTER = "portway-lab"
#: the Elasticsearch nodes of the small profile (namespace suffixes); a cluster names several
ELASTICSEARCH_NODES = ("es1",)


@dataclass(frozen=True, slots=True)
class LabHost:
    short: str
    """namespace suffix"""
    address: str
    gateway: str
    switch: str | None
    """``dmz``/``lan``: on that zone's switch; ``None``: a router leg of its own"""
    inventory: str | None
    """the platform file's host name (``None``: not a Portway host)"""
    components: tuple[str, ...] = ()


HOSTS = (
    LabHost("inet", "198.18.0.50", "198.18.0.1", None, "backend-1", ("backend_api",)),
    LabHost("vpn", "198.18.4.10", "198.18.4.1", None, None),
    LabHost("lb", "198.18.1.10", "198.18.1.1", "dmz", "lb-1", ("load_balancer",)),
    LabHost("wk1", "198.18.1.21", "198.18.1.1", "dmz", "worker-1", ("worker",)),
    LabHost("wk2", "198.18.1.22", "198.18.1.1", "dmz", "worker-2", ("worker",)),
    LabHost("mgr", "198.18.2.10", "198.18.2.1", "lan", "manager-1", ("manager",)),
    LabHost("data", "198.18.2.20", "198.18.2.1", "lan", "data-1", ("mongodb", "cache")),
    LabHost("es1", "198.18.2.30", "198.18.2.1", "lan", "es-1", ("elasticsearch",)),
)
WORKERS = ("wk1", "wk2")
#: zone audited -> (namespace, ``portway audit --from``)
AUDIT_VANTAGES = {
    "internet": ("inet", "internet"),
    "vpn": ("vpn", "vpn"),
    "dmz": ("wk1", "worker-1"),
    "dmz-lb": ("lb", "lb-1"),
    "lan": ("mgr", "manager-1"),
}


def host(short: str) -> LabHost:
    return next(h for h in HOSTS if h.short == short)


def url(short: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://{host(short).address}:{port}"


def elasticsearch_url(nodes: tuple[str, ...]) -> str:
    """The traffic log of the manager and (inherited) the workers: the data stream on ``nodes``,
    one replica when there is a second node to hold it."""
    hosts = ",".join(f"{host(n).address}:{ELASTICSEARCH_PORT}" for n in nodes)
    return f"elasticsearch://{hosts}?stream=portway-traffic&replicas={min(1, len(nodes) - 1)}"


def elasticsearch_node(short: str, nodes: tuple[str, ...]) -> ElasticsearchNode:
    """Node ``short`` of the cluster of ``nodes`` (single-node when it is alone); the first node
    bootstraps a new cluster."""
    return ElasticsearchNode(
        name=str(host(short).inventory),
        address=host(short).address,
        http_port=ELASTICSEARCH_PORT,
        transport_port=ELASTICSEARCH_TRANSPORT_PORT,
        cluster=ELASTICSEARCH_CLUSTER,
        peers=tuple(f"{host(n).address}:{ELASTICSEARCH_TRANSPORT_PORT}" for n in nodes),
        masters=(str(host(nodes[0]).inventory),),
    )


def platform(data_dir: Path, certificates_dir: Path) -> dict[str, Any]:
    """The lab's ``portway.yaml``: one file for the matrix, the firewall, the balancer, every
    process. Reports every 2 s and down after 2 missed reports keep the drills short. The
    workers share their counters in one Hazelcast member on data-1; they ship their traffic
    records to Elasticsearch on es-1, where the manager reads its analytics."""
    return {
        "layout": "distributed",
        "data_dir": str(data_dir),
        "zones": ZONES,
        "hosts": [
            {
                "name": h.inventory,
                "address": h.address,
                "components": list(h.components),
                **({"tls_server_name": PUBLIC_NAME} if h.short == "lb" else {}),
            }
            for h in HOSTS
            if h.inventory is not None
        ],
        "environments": {ENVIRONMENT: {"type": "prod", "description": "portway lab"}},
        "manager": {
            "host": "0.0.0.0",
            "port": 8080,
            "store": f"mongodb://{host('data').address}:{MONGODB_PORT}/portway?replicaSet=rs0",
            "logs": elasticsearch_url(ELASTICSEARCH_NODES),
            "report_interval": 2.0,
            "down_after": 2,
        },
        "workers": {
            ENVIRONMENT: {
                "host": "0.0.0.0",
                "port": 8080,
                "processes": 1,
                "manager_url": url("mgr", 8080),
                "insecure_cluster": True,
                "poll_interval": 2.0,
                "egress_https": False,
                "trusted_proxies": [f"{host('lb').address}/32"],
                "cache": f"hazelcast://{host('data').address}:{HAZELCAST_PORT}/{HAZELCAST_CLUSTER}",
            }
        },
        "load_balancer": {
            "kind": "haproxy",
            "public_names": [PUBLIC_NAME],
            "https_port": 443,
            "http_port": 80,
        },
        "network": {"ssh": {"from_vpn": False}},
    }


def hazelcast_config() -> str:
    """One member on data-1's address only."""
    return hazelcast_member_config(HAZELCAST_CLUSTER, HAZELCAST_PORT, host("data").address)

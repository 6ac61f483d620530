"""The lab's topology and its ``portway.yaml``, in two profiles: ``small`` (one of each store) and
``full`` (adds data-2, a second Hazelcast member on 198.18.2.21; its cluster of two meets on 5701).

Addresses come from 198.18.0.0/15 (benchmarking range) and exist only inside the lab's
namespaces::

    inet 198.18.0.50 (clients, backend-1) ─┐                      ┌─ lb   198.18.1.10
    vpn  198.18.4.10 (operators) ──────────┼─ rt (router) ─ dmz ──┼─ wk1  198.18.1.21
                                           │                      └─ wk2  198.18.1.22
                                           └──────────── lan ─────┬─ mgr  198.18.2.10
                                                                  ├─ data 198.18.2.20
                                                                  │  FerretDB 25080, Hazelcast 5701
                                                                  ├─ data2 198.18.2.21 (full only)
                                                                  │  Hazelcast 5701
                                                                  ├─ es1  198.18.2.30 Elastic 9200
                                                                  ├─ dns  198.18.2.53 dnsmasq 53
                                                                  └─ smtp 198.18.2.25 SMTP 587, 25

The router forwards between the zones through the DMZ and LAN zone tables generated from the
file's matrix; each DMZ/LAN host loads its own host table (inside a zone the switch does not
route, so the host table is what guards one DMZ host from another).

The manager and the workers name every host (``NAME.lab.portway.test``) and resolve it through
the lab's DNS server (dnsmasq on dns-1, which answers only the lab's names and forwards nothing);
the other namespaces have no resolver, as the matrix gives them no DNS flow.
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
DNS_PORT = 53
SMTP_PORTS = (587, 25)
SMTP_USER = "portway-alerts"
DOMAIN = "lab.portway.test"
ALERT_MAILBOX = f"oncall@{DOMAIN}"
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
    LabHost("dns", "198.18.2.53", "198.18.2.1", "lan", "dns-1", ("dns_server",)),
    LabHost("smtp", "198.18.2.25", "198.18.2.1", "lan", "smtp-1", ("smtp_server",)),
    LabHost("data2", "198.18.2.21", "198.18.2.1", "lan", "data-2", ("cache",)),
)
PROFILES = ("small", "full")
#: namespaces only the full profile builds
FULL_ONLY = ("data2",)
#: the Hazelcast members of each profile: namespace -> the lab's process name
HAZELCAST_MEMBERS = {
    "small": {"data": "hazelcast"},
    "full": {"data": "hazelcast", "data2": "hazelcast-2"},
}


def hosts(profile: str) -> tuple[LabHost, ...]:
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PROFILES)}")
    return tuple(h for h in HOSTS if profile == "full" or h.short not in FULL_ONLY)


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
    """The traffic log of the manager and (inherited) the workers: the data stream on ``nodes``
    (by name, through the lab's DNS), one replica when there is a second node to hold it."""
    hosts = ",".join(f"{fqdn(str(host(n).inventory))}:{ELASTICSEARCH_PORT}" for n in nodes)
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


#: names the lab's DNS answers beside each host's ``INVENTORY.lab.portway.test``: service names
#: (what the configuration uses) -> the namespace of the host that runs it
SERVICE_NAMES = {
    "manager": "mgr",
    "mongodb": "data",
    "hazelcast-1": "data",
    "backend": "inet",
    "dns": "dns",
    "smtp": "smtp",
    "hazelcast-2": "data2",
}
#: namespaces that resolve through the lab's DNS (the matrix's DNS flows: manager and workers)
RESOLVING = ("mgr", "wk1", "wk2")


def fqdn(name: str) -> str:
    return f"{name}.{DOMAIN}"


def named_url(name: str, port: int, scheme: str = "http") -> str:
    """A URL by the lab DNS's name (what the platform file and the demo API use)."""
    return f"{scheme}://{fqdn(name)}:{port}"


def dns_records(profile: str) -> dict[str, str]:
    """Every name the lab's DNS answers -> its address (the balancer's public name too)."""
    present = hosts(profile)
    records = {fqdn(h.inventory): h.address for h in present if h.inventory is not None}
    shorts = {h.short for h in present}
    records |= {fqdn(n): host(s).address for n, s in SERVICE_NAMES.items() if s in shorts}
    records[PUBLIC_NAME] = host("lb").address
    return records


def resolv_conf(short: str) -> str:
    """``/etc/netns/NS/resolv.conf``: the lab's DNS for the manager and workers; no resolver
    elsewhere (queries to 127.0.0.1 are refused at once, nothing leaves for the machine's own)."""
    if short in RESOLVING:
        return (
            f"# portway lab: {short} resolves through dns-1\n"
            f"nameserver {host('dns').address}\nsearch {DOMAIN}\noptions timeout:1 attempts:3\n"
        )
    return f"# portway lab: {short} has no DNS flow in the matrix\nnameserver 127.0.0.1\n"


HOSTS_FILE = "# portway lab: every other name comes from DNS\n127.0.0.1 localhost\n::1 localhost\n"


def cache_url(profile: str) -> str:
    """The workers' ``hazelcast://`` URL: every member of the profile, by name."""
    names = [f"{fqdn(f'hazelcast-{i}')}:{HAZELCAST_PORT}"
             for i in range(1, len(HAZELCAST_MEMBERS[profile]) + 1)]  # fmt: skip
    return f"hazelcast://{','.join(names)}/{HAZELCAST_CLUSTER}"


def platform(
    data_dir: Path, certificates_dir: Path, smtp_dir: Path, profile: str = "small"
) -> dict[str, Any]:
    """The lab's ``portway.yaml``: one file for the matrix, the firewall, the balancer, every
    process. Reports every 2 s and down after 2 missed reports keep the drills short. The
    workers share their counters in the Hazelcast members and ship their traffic records to
    Elasticsearch on es-1, where the manager reads its analytics. The manager's alert mail
    goes to smtp-1 (STARTTLS required, verified against ``smtp_dir/ca.pem``, AUTH with the
    password in ``smtp_dir/password``); alerts are evaluated every second and a failed notice
    retried after 1, 2, 4, 4… s."""
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
            for h in hosts(profile)
            if h.inventory is not None
        ],
        "environments": {ENVIRONMENT: {"type": "prod", "description": "portway lab"}},
        "manager": {
            "host": "0.0.0.0",
            "port": 8080,
            "store": f"mongodb://{fqdn('mongodb')}:{MONGODB_PORT}/portway?replicaSet=rs0",
            "logs": elasticsearch_url(ELASTICSEARCH_NODES),
            "report_interval": 2.0,
            "down_after": 2,
            "smtp": {
                "host": fqdn("smtp"),
                "ports": list(SMTP_PORTS),
                "starttls": "required",
                "ca_file": str(smtp_dir / "ca.pem"),
                "username": SMTP_USER,
                "password_file": str(smtp_dir / "password"),
                "sender": f"portway-lab@{DOMAIN}",
                "timeout": 5.0,
            },
            "alert_interval": 1.0,
            "alert_retry_base": 1.0,
            "alert_retry_max": 4.0,
        },
        "workers": {
            ENVIRONMENT: {
                "host": "0.0.0.0",
                "port": 8080,
                "processes": 1,
                "manager_url": named_url("manager", 8080),
                "insecure_cluster": True,
                "poll_interval": 2.0,
                "egress_https": False,
                "trusted_proxies": [f"{host('lb').address}/32"],
                "cache": cache_url(profile),
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


def hazelcast_config(short: str, profile: str) -> str:
    """The member on ``short``'s address only; in the full profile it joins the other member
    by address (TCP/IP join, nothing discovered)."""
    members = [host(s).address for s in HAZELCAST_MEMBERS[profile]]
    return hazelcast_member_config(
        HAZELCAST_CLUSTER, HAZELCAST_PORT, host(short).address, members if len(members) > 1 else ()
    )

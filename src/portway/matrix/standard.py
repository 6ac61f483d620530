"""The standard installation: the seed document (``spec/network-connection-matrix.txt``) as data.

Where this catalogue departs from the seed, the departure is deliberate and listed in
``docs/matrix.md``: flows the seed draws or lists but leaves out of its tables (load balancer to
worker, VPN management access) get tables of their own, and the worker's DNS queries are added.
"""

from __future__ import annotations

from portway.matrix.model import (
    AppProtocol,
    Category,
    Component,
    Flow,
    PortRef,
    PortSet,
    Table,
    Transport,
    Zone,
)

TCP = (Transport.TCP,)
UDP_TCP = (Transport.UDP, Transport.TCP)
TCP_UDP = (Transport.TCP, Transport.UDP)

COMPONENTS: tuple[Component, ...] = (
    Component("internet", "Internet", Zone.INTERNET, "API clients and anyone else on the Internet"),
    Component("vpn", "VPN", Zone.VPN, "Operators connected through the management VPN"),
    Component(
        "load_balancer",
        "Load Balancer",
        Zone.DMZ,
        "HAProxy or nginx configured by Portway; terminates TLS",
        portway=True,
    ),
    Component("worker", "Worker", Zone.DMZ, "Gateway worker (`portway worker`)", portway=True),
    Component("manager", "Manager", Zone.LAN, "Web Manager and Management API", portway=True),
    Component("mongodb", "MongoDB", Zone.LAN, "Configuration store", portway=True),
    Component(
        "elasticsearch", "Elasticsearch", Zone.LAN, "Traffic logs and analytics", portway=True
    ),
    Component("cache", "Cache", Zone.LAN, "Hazelcast distributed cache", portway=True),
    Component("backend_api", "Backend API", Zone.INTERNET, "The APIs behind the gateway"),
    Component(
        "external_services",
        "External Services",
        Zone.INTERNET,
        "Integrations, monitoring, webhooks",
    ),
    Component("smtp_server", "SMTP Server", Zone.INTERNET, "Outgoing mail relay"),
    Component("monitoring", "Monitoring", Zone.LAN, "Prometheus (or another scraper of /metrics)"),
    Component("dns_server", "DNS Server", Zone.INTERNET, "Name resolution"),
    Component("kubelet", "Kubelet", Zone.KUBERNETES, "Node agent"),
    Component("kube_proxy", "Kube-proxy", Zone.KUBERNETES, "Service proxy on each node"),
    Component("api_server", "API Server", Zone.KUBERNETES, "Kubernetes API server"),
    Component("pod", "Pod", Zone.KUBERNETES, "Any pod of the cluster"),
)

TABLES: tuple[Table, ...] = (
    Table("inbound", "Inbound Traffic (Internet → Portway)", "Inbound Traffic", "Required"),
    Table("management", "Management Access (VPN → Portway)", "Management Access", "Required"),
    Table("outbound", "Outbound Traffic (Portway → Internet)", "Outbound Traffic", "Required"),
    Table("lb_worker", "Load Balancer ↔ Worker", "Internal Traffic", "Direction"),
    Table("manager_worker", "Manager ↔ Worker", "Internal Traffic", "Direction"),
    Table("worker_mongodb", "Worker ↔ Database (MongoDB)", "Internal Traffic", "Direction"),
    Table("worker_elasticsearch", "Worker ↔ Elasticsearch", "Internal Traffic", "Direction"),
    Table("worker_cache", "Worker ↔ Cache (Hazelcast)", "Internal Traffic", "Direction"),
    Table("kubernetes", "Kubernetes Communication", "Kubernetes", "Direction"),
    Table("monitoring", "Monitoring → Portway (metrics)", "Internal Traffic", "Direction"),
)

_IN, _OUT, _INT = Category.INBOUND, Category.OUTBOUND, Category.INTERNAL
_H, _HS = AppProtocol.HTTP, AppProtocol.HTTPS
_T = AppProtocol.TRANSPORT

FLOWS: tuple[Flow, ...] = (
    # -- inbound: Internet -> Portway
    Flow("in-lb-https", "internet", "load_balancer", PortSet.of(443), TCP, _HS,
         "API access (Production)", _IN, "inbound", port_ref=PortRef.LB_HTTPS),
    Flow("in-lb-http", "internet", "load_balancer", PortSet.of(80), TCP, _H,
         "HTTP → HTTPS redirect", _IN, "inbound", tls_redirect=True, port_ref=PortRef.LB_HTTP),
    Flow("in-lb-ssh", "internet", "load_balancer", PortSet.of(22), TCP, AppProtocol.SSH,
         "Management access (recommended via VPN)", _IN, "inbound", required=False,
         port_ref=PortRef.SSH, toggle="ssh_from_internet"),
    # -- management access through the VPN (the seed's firewall rules summary)
    Flow("vpn-lb-ssh", "vpn", "load_balancer", PortSet.of(22), TCP, AppProtocol.SSH,
         "Management access", _IN, "management", required=False, port_ref=PortRef.SSH,
         toggle="vpn_ssh"),
    Flow("vpn-manager-ssh", "vpn", "manager", PortSet.of(22), TCP, AppProtocol.SSH,
         "Management access", _IN, "management", required=False, port_ref=PortRef.SSH,
         toggle="vpn_ssh"),
    Flow("vpn-manager-http", "vpn", "manager", PortSet.of(8080), TCP, _H,
         "Web Manager UI and Management API", _IN, "management", port_ref=PortRef.MANAGER),
    # -- outbound: Portway -> Internet
    Flow("out-worker-backend-https", "worker", "backend_api", PortSet.of(443), TCP, _HS,
         "Backend API calls", _OUT, "outbound", port_ref=PortRef.BACKEND_HTTPS),
    Flow("out-worker-backend-http", "worker", "backend_api", PortSet.of(80), TCP, _H,
         "HTTP Backend API calls", _OUT, "outbound", required=False,
         port_ref=PortRef.BACKEND_HTTP, toggle="backend_http"),
    Flow("out-worker-external-https", "worker", "external_services", PortSet.of(443), TCP, _HS,
         "External service integrations", _OUT, "outbound", required=False,
         port_ref=PortRef.EXTERNAL_HTTPS, toggle="worker_external_services"),
    Flow("out-manager-external-https", "manager", "external_services", PortSet.of(443), TCP,
         _HS, "Monitoring, webhooks", _OUT, "outbound", required=False,
         port_ref=PortRef.EXTERNAL_HTTPS, toggle="manager_external_services"),
    Flow("out-manager-smtp", "manager", "smtp_server", PortSet.of(25, 587), TCP,
         AppProtocol.SMTP, "Email sending", _OUT, "outbound", required=False,
         port_ref=PortRef.SMTP, toggle="smtp"),
    Flow("out-manager-dns", "manager", "dns_server", PortSet.of(53), UDP_TCP, AppProtocol.DNS,
         "DNS queries", _OUT, "outbound", port_ref=PortRef.DNS),
    Flow("out-worker-dns", "worker", "dns_server", PortSet.of(53), UDP_TCP, AppProtocol.DNS,
         "DNS queries (backend host names)", _OUT, "outbound", port_ref=PortRef.DNS),
    # -- internal: load balancer -> worker (drawn in the seed's diagram and firewall summary)
    Flow("int-lb-worker", "load_balancer", "worker", PortSet.of(8080), TCP, _H,
         "Client traffic routing", _INT, "lb_worker", port_ref=PortRef.WORKER),
    # -- internal: manager <-> worker
    Flow("int-manager-worker-deploy", "manager", "worker", PortSet.of(8080), TCP, _H,
         "Deployment operations", _INT, "manager_worker", port_ref=PortRef.WORKER),
    Flow("int-manager-worker-health", "manager", "worker", PortSet.of(8080), TCP, _H,
         "Health check", _INT, "manager_worker", port_ref=PortRef.WORKER),
    Flow("int-worker-manager-config", "worker", "manager", PortSet.of(8080), TCP, _H,
         "Configuration retrieval", _INT, "manager_worker", port_ref=PortRef.MANAGER),
    Flow("int-worker-manager-status", "worker", "manager", PortSet.of(8080), TCP, _H,
         "Status reporting", _INT, "manager_worker", port_ref=PortRef.MANAGER),
    # -- internal: MongoDB
    Flow("int-worker-mongodb", "worker", "mongodb", PortSet.of(25080), TCP, _T,
         "Data read/write", _INT, "worker_mongodb", port_ref=PortRef.MONGODB),
    Flow("int-manager-mongodb", "manager", "mongodb", PortSet.of(25080), TCP, _T,
         "Configuration management", _INT, "worker_mongodb", port_ref=PortRef.MONGODB),
    Flow("int-mongodb-replica", "mongodb", "mongodb", PortSet.of(25080), TCP, _T,
         "Replica set communication", _INT, "worker_mongodb", bidirectional=True,
         port_ref=PortRef.MONGODB),
    # -- internal: Elasticsearch
    Flow("int-worker-elasticsearch", "worker", "elasticsearch", PortSet.of(9200), TCP, _H,
         "Log sending", _INT, "worker_elasticsearch", port_ref=PortRef.ES_HTTP),
    Flow("int-manager-elasticsearch", "manager", "elasticsearch", PortSet.of(9200), TCP, _H,
         "Analytics queries", _INT, "worker_elasticsearch", port_ref=PortRef.ES_HTTP),
    Flow("int-elasticsearch-cluster", "elasticsearch", "elasticsearch", PortSet.of(9300), TCP,
         _T, "Cluster communication", _INT, "worker_elasticsearch", bidirectional=True,
         port_ref=PortRef.ES_TRANSPORT),
    # -- internal: cache
    Flow("int-worker-cache", "worker", "cache", PortSet.of(5701), TCP, _T,
         "Cache access", _INT, "worker_cache", port_ref=PortRef.CACHE),
    Flow("int-manager-cache", "manager", "cache", PortSet.of(5701), TCP, _T,
         "Cache management", _INT, "worker_cache", port_ref=PortRef.CACHE),
    Flow("int-cache-cluster", "cache", "cache", PortSet.of(5701), TCP, _T,
         "Cluster communication", _INT, "worker_cache", bidirectional=True,
         port_ref=PortRef.CACHE),
    # -- Kubernetes plumbing (present when the platform runs on Kubernetes)
    Flow("k8s-kubelet-apiserver", "kubelet", "api_server", PortSet.of(6443), TCP, _HS,
         "API access", _INT, "kubernetes", port_ref=PortRef.K8S_API),
    Flow("k8s-kubeproxy-apiserver", "kube_proxy", "api_server", PortSet.of(6443), TCP, _HS,
         "API access", _INT, "kubernetes", port_ref=PortRef.K8S_API),
    Flow("k8s-pod-pod", "pod", "pod", PortSet.any_port(), TCP_UDP, _T,
         "Pod-to-Pod communication", _INT, "kubernetes", bidirectional=True),
    # -- metrics scrapes (not in the seed): on when a metrics_port is configured
    Flow("int-monitoring-worker-metrics", "monitoring", "worker", PortSet.of(9464), TCP, _H,
         "Prometheus metrics scrape", _INT, "monitoring", required=False,
         port_ref=PortRef.WORKER_METRICS, toggle="worker_metrics"),
    Flow("int-monitoring-manager-metrics", "monitoring", "manager", PortSet.of(9465), TCP, _H,
         "Prometheus metrics scrape", _INT, "monitoring", required=False,
         port_ref=PortRef.MANAGER_METRICS, toggle="manager_metrics"),
)  # fmt: skip

#: Flow ids of the standard installation, in catalogue order. Tests pin this list: an id that
#: changes breaks firewall comments, audit history and operators' scripts.
FLOW_IDS: tuple[str, ...] = tuple(f.id for f in FLOWS)

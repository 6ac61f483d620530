"""Kubernetes manifests for the seed's topology: the load balancer (HAProxy, the same
configuration as ``--target haproxy``) and the workers in the DMZ namespace, the manager in the
LAN namespace, and the NetworkPolicies the connection matrix gives for them.

Every pod runs as a non-root user on a read-only root file system with all capabilities
dropped; the load balancer binds 443/80 through the namespaced, safe sysctl
``net.ipv4.ip_unprivileged_port_start`` rather than a capability. Workers are ready only while
they serve a revision (``/_portway/health``), live while they accept connections, scale on CPU
and keep one pod through voluntary disruptions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from portway.deploy.haproxy import render_haproxy
from portway.deploy.plan import DeploymentPlan
from portway.matrix.effective import effective_matrix
from portway.matrix.firewall.kubernetes import COMPONENT, PART_OF, label, network_policies
from portway.matrix.inventory import inventory_from_mapping
from portway.matrix.settings import (
    KubernetesSettings,
    LoadBalancerPorts,
    ManagerPorts,
    MatrixSettings,
    OptionalFlows,
    Ports,
    WorkerPorts,
)

UID = 10001
CERT_DIR = "/etc/portway/tls"
SECRET_DIR = "/etc/portway/cluster"
READY_PATH = "/_portway/ready"
WORKER_PORT = 8080
MANAGER_PORT = 8080


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _labels(component: str) -> dict[str, str]:
    return {PART_OF: "portway", COMPONENT: label(component), "app.kubernetes.io/name": "portway"}


def _meta(name: str, namespace: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": _labels(component)}


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def _deployment(
    name: str,
    namespace: str,
    component: str,
    replicas: int,
    pod: dict[str, Any],
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": _labels(component)},
        "template": {"metadata": {"labels": _labels(component)}, "spec": pod},
    }
    if strategy is not None:
        spec["strategy"] = strategy
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, component),
        "spec": spec,
    }


def _service(
    name: str,
    namespace: str,
    component: str,
    ports: list[tuple[str, int, int]],
    kind: str = "ClusterIP",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": kind,
        "selector": _labels(component),
        "ports": [
            {"name": n, "port": port, "targetPort": target, "protocol": "TCP"}
            for n, port, target in ports
        ],
    }
    if kind == "LoadBalancer":
        spec["externalTrafficPolicy"] = "Local"  # keep the client's address
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, component),
        "spec": spec,
    }


def _probe(path: str | None, port: int, period: int, failures: int) -> dict[str, Any]:
    action: dict[str, Any] = (
        {"httpGet": {"path": path, "port": port}} if path else {"tcpSocket": {"port": port}}
    )
    return {**action, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 2}


@dataclass(frozen=True)
class LabTls:
    """A lab CA's certificate chain and key, rendered as the load balancer's TLS Secret."""

    cert_pem: str
    key_pem: str


def render_kubernetes(plan: DeploymentPlan, cluster_secret: str, lab: LabTls | None = None) -> str:
    """All manifests as one multi-document YAML stream. ``cluster_secret`` is the manager↔worker
    secret (at least 32 characters) put into a Secret in both namespaces; with ``lab`` the
    public certificate's Secret is rendered too (else the operator creates it)."""
    k8s = plan.kubernetes
    dmz, lan = k8s.dmz_namespace, k8s.lan_namespace
    manager_url = f"http://portway-manager.{lan}.svc.cluster.local:{MANAGER_PORT}"
    docs: list[dict[str, Any]] = []
    for namespace in (dmz, lan):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {PART_OF: "portway"}},
            }
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "portway-cluster",
                    "namespace": namespace,
                    "labels": {PART_OF: "portway"},
                },
                "type": "Opaque",
                "stringData": {"cluster.secret": cluster_secret},
            }
        )
    secret_volume = {
        "name": "cluster",
        "secret": {"secretName": "portway-cluster", "defaultMode": 0o440},
    }
    secret_mount = {"name": "cluster", "mountPath": SECRET_DIR, "readOnly": True}

    # -- manager (LAN) --
    manager_pod = {
        "securityContext": _pod_security(),
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "manager",
                "image": k8s.image,
                "args": [
                    "manager",
                    "--host",
                    "0.0.0.0",
                    "--port",
                    str(MANAGER_PORT),
                    "--data-dir",
                    "/var/lib/portway",
                    "--secret-file",
                    f"{SECRET_DIR}/cluster.secret",
                ],
                "ports": [{"name": "http", "containerPort": MANAGER_PORT}],
                "readinessProbe": _probe("/healthz", MANAGER_PORT, 5, 3),
                "livenessProbe": _probe("/healthz", MANAGER_PORT, 10, 6),
                "resources": _resources("250m", "256Mi", "2", "1Gi"),
                "securityContext": _container_security(),
                "volumeMounts": [
                    {"name": "data", "mountPath": "/var/lib/portway"},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir)
                    secret_mount,
                ],
            }
        ],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "portway-manager-data"}},
            {"name": "tmp", "emptyDir": {}},
            secret_volume,
        ],
    }
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta("portway-manager-data", lan, "manager"),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}},
            },
        }
    )
    # one manager on a ReadWriteOnce volume: the old pod stops before the new one starts
    docs.append(
        _deployment("portway-manager", lan, "manager", 1, manager_pod, {"type": "Recreate"})
    )
    docs.append(_service("portway-manager", lan, "manager", [("http", MANAGER_PORT, MANAGER_PORT)]))

    # -- workers (DMZ) --
    trusted: list[str] = []
    for cidr in plan.trusted_proxies:
        trusted += ["--trusted-proxy", cidr]
    worker_pod = {
        "securityContext": _pod_security(),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 40,
        "containers": [
            {
                "name": "worker",
                "image": k8s.image,
                "args": [
                    "worker",
                    "--environment",
                    plan.environment,
                    "--manager",
                    manager_url,
                    "--host",
                    "0.0.0.0",
                    "--port",
                    str(WORKER_PORT),
                    "--processes",
                    "1",
                    "--worker-id",
                    "$(POD_NAME)",
                    "--advertise-url",
                    f"http://$(POD_IP):{WORKER_PORT}",
                    "--secret-file",
                    f"{SECRET_DIR}/cluster.secret",
                    "--state-dir",
                    "/var/lib/portway/worker",
                    *trusted,
                ],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                ],
                "ports": [{"name": "http", "containerPort": WORKER_PORT}],
                # ready only while a revision is served; alive while it accepts connections
                # ready only while serving the desired revision; live while the process answers
                "readinessProbe": _probe(READY_PATH, WORKER_PORT, 2, 2),
                "livenessProbe": _probe(None, WORKER_PORT, 10, 6),
                "resources": _resources("500m", "256Mi", "2", "1Gi"),
                "securityContext": _container_security(),
                "volumeMounts": [
                    {"name": "state", "mountPath": "/var/lib/portway"},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir)
                    secret_mount,
                ],
            }
        ],
        "volumes": [
            {"name": "state", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            secret_volume,
        ],
    }
    docs.append(
        _deployment(
            "portway-worker",
            dmz,
            "worker",
            k8s.worker_replicas,
            worker_pod,
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        )
    )
    docs.append(_service("portway-worker", dmz, "worker", [("http", WORKER_PORT, WORKER_PORT)]))
    docs.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta("portway-worker", dmz, "worker"),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": _labels("worker")}},
        }
    )
    docs.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta("portway-worker", dmz, "worker"),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "portway-worker",
                },
                "minReplicas": k8s.worker_replicas,
                "maxReplicas": k8s.worker_max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": k8s.worker_cpu_target,
                            },
                        },
                    }
                ],
            },
        }
    )

    # -- load balancer (DMZ): HAProxy in front of the workers' Service --
    in_cluster = plan.model_copy(
        update={"workers": [f"portway-worker.{dmz}.svc.cluster.local:{WORKER_PORT}"]}
    )
    haproxy_cfg = render_haproxy(in_cluster, certificate_bundle=f"{CERT_DIR}/site.pem")
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("portway-load-balancer", dmz, "load_balancer"),
            "data": {"haproxy.cfg": haproxy_cfg},
        }
    )
    lb_security = _pod_security()
    lb_security["sysctls"] = [
        {
            "name": "net.ipv4.ip_unprivileged_port_start",
            "value": str(min(plan.http_port, plan.https_port)),
        }
    ]
    lb_pod = {
        "securityContext": lb_security,
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "haproxy",
                "image": k8s.load_balancer_image,
                "args": ["-f", "/usr/local/etc/haproxy/haproxy.cfg"],
                "ports": [
                    {"name": "https", "containerPort": plan.https_port},
                    {"name": "http", "containerPort": plan.http_port},
                ],
                "readinessProbe": _probe(None, plan.https_port, 5, 3),
                "livenessProbe": _probe(None, plan.https_port, 10, 6),
                "resources": _resources("250m", "128Mi", "2", "512Mi"),
                "securityContext": _container_security(),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/usr/local/etc/haproxy", "readOnly": True},
                    {"name": "tls", "mountPath": CERT_DIR, "readOnly": True},
                    {"name": "run", "mountPath": "/var/run"},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "portway-load-balancer"}},
            {
                "name": "tls",
                "secret": {
                    "secretName": k8s.tls_secret,
                    # HAProxy reads the key from CERT.key beside the certificate
                    "items": [
                        {"key": "tls.crt", "path": "site.pem"},
                        {"key": "tls.key", "path": "site.pem.key"},
                    ],
                },
            },
            {"name": "run", "emptyDir": {}},
        ],
    }
    docs.append(_deployment("portway-load-balancer", dmz, "load_balancer", 2, lb_pod))
    docs.append(
        _service(
            "portway-load-balancer",
            dmz,
            "load_balancer",
            [("https", plan.https_port, plan.https_port), ("http", plan.http_port, plan.http_port)],
            kind="LoadBalancer",
        )
    )
    docs.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta("portway-load-balancer", dmz, "load_balancer"),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": _labels("load_balancer")}},
        }
    )

    # -- NetworkPolicies from the connection matrix --
    settings = MatrixSettings(
        ports=Ports(
            load_balancer=LoadBalancerPorts(https=plan.https_port, http=plan.http_port),
            worker=WorkerPorts(http=WORKER_PORT),
            manager=ManagerPorts(http=MANAGER_PORT),
        ),
        # pods have no SSH daemon: operators use kubectl through the API server
        optional_flows=OptionalFlows(vpn_ssh=False),
        kubernetes=KubernetesSettings(enabled=True, dmz_namespace=dmz, lan_namespace=lan),
    )
    matrix = effective_matrix(settings)
    inventory = inventory_from_mapping({"zones": {"vpn": list(plan.vpn_networks)}})
    docs.extend(
        network_policies(matrix, settings, inventory, ("load_balancer", "worker", "manager"))
    )
    header = (
        "# Generated by portway deployment render --target kubernetes "
        f"(environment {plan.environment})\n"
    )
    if lab is not None:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta(k8s.tls_secret, dmz, "load_balancer"),
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": lab.cert_pem, "tls.key": lab.key_pem},
            }
        )
    else:
        header += (
            f"# Create the TLS Secret first: kubectl -n {dmz} create secret tls "
            f"{k8s.tls_secret} --cert=CERT --key=KEY\n"
        )
    return header + yaml.dump_all(docs, Dumper=_NoAliases, sort_keys=False, explicit_start=True)

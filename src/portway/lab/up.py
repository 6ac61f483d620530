"""``portway lab up | status | down``: build the topology, start every process, tear it all down.

Processes run in their namespaces through ``ip netns exec`` in sessions of their own, so they
outlive the ``lab up`` command; ``down`` kills every process inside the lab's namespaces (``ip
netns pids``), whatever recorded it, then deletes the namespaces and any root-namespace link with
the lab's prefix, then the lab directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from portway.config.platform_file import load_platform, platform_from_mapping
from portway.deploy.cli import render
from portway.deploy.lab_ca import lab_certificates
from portway.deploy.plan import plan_from_platform
from portway.lab import netns, topology
from portway.lab.netns import Namespaces, in_namespace
from portway.lab.provisioned import elasticsearch_node, manifest
from portway.lab.state import LabDir
from portway.local.up import Api, _write_private
from portway.matrix.firewall import nftables
from portway.matrix.firewall.plan import resolve_host, resolve_zone
from portway.matrix.model import Zone
from portway.matrix.platform import inventory_for, matrix_for

PYTHON = [sys.executable, "-m", "portway"]
DEMO_PATH = "/demo/echo"
DEMO_API: dict[str, Any] = {
    "name": "demo",
    "description": "the lab's demo API: a key per consumer, 6000 requests a minute each",
    "base_path": "/demo",
    "backends": [{"url": topology.named_url("backend", 80)}],
    "policies": {
        "request": [
            {"name": "key", "type": "api_key", "config": {"key_name": "X-Api-Key"}},
            {
                "name": "limit",
                "type": "throttling",
                "config": {
                    "limit": 6000,
                    "interval_seconds": 60,
                    "identity": "consumer",
                    "headers": True,
                },
            },
        ]
    },
}
BACKEND_TLS = """\
# the backend API host's HTTPS (443) in front of its plain HTTP service (80)
global
    log stdout format raw local0
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend https_in
    bind :443 ssl crt {bundle}
    default_backend echo
backend echo
    server echo 127.0.0.1:80
"""

CONFIG_HEADER = "# Written by `portway lab up`: the lab's one platform file.\n"


class LabError(Exception):
    """The lab cannot be built or used; the message says why."""


def lab_namespaces(lab: LabDir) -> Namespaces:
    return Namespaces(lab.ident, lab.ident, on_create=lab.record)


# --- processes ---------------------------------------------------------------------------------


def start(lab: LabDir, name: str, short: str, argv: list[str]) -> int:
    """Start ``argv`` in namespace ``short``, detached; record its pid."""
    lab.logs.mkdir(parents=True, exist_ok=True)
    command = lab_namespaces(lab).exec_argv(short, argv)
    with open(lab.logs / f"{name}.log", "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=lab.path,
        )
    state = lab.load()
    state.setdefault("processes", {})[name] = {"pid": process.pid, "ns": short, "argv": argv}
    lab.save(state)
    return process.pid


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def in_lab_namespace(lab: LabDir, pid: int, short: str) -> bool:
    """``pid`` runs in the lab namespace ``short`` (not a reused pid of something else)."""
    try:
        mine = os.stat(Path("/run/netns") / lab_namespaces(lab).ns(short))
        theirs = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def stop(lab: LabDir, name: str, sig: int = 9) -> None:
    """Signal a lab process (``sig``; SIGKILL after 10 s) and wait until it is gone."""
    entry = lab.load().get("processes", {}).get(name)
    if not entry or not alive(entry["pid"]) or not in_lab_namespace(lab, entry["pid"], entry["ns"]):
        return
    pid = entry["pid"]
    os.kill(pid, sig)
    deadline = time.monotonic() + 10
    while alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            deadline = time.monotonic() + 10
        time.sleep(0.05)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def session_pids(pid: int) -> list[int]:
    """``pid`` and every process of the session it leads (lab processes start sessions of their
    own; Elasticsearch's server JVM is a child of its launcher)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(entry.name) == pid or int(fields[3]) == pid:  # fields[3]: the session id
            found.append(int(entry.name))
    return found


def peak_rss_kib(pid: int) -> int:
    """The peak resident memory (VmHWM) of a lab process and its session's other processes."""
    return sum(_status_kib(p, "VmHWM") for p in session_pids(pid))


def rss_kib(pid: int) -> int:
    """The resident memory (VmRSS) now of a lab process and its session's other processes."""
    return sum(_status_kib(p, "VmRSS") for p in session_pids(pid))


def _log_tail(lab: LabDir, name: str) -> str:
    try:
        return "\n".join((lab.logs / f"{name}.log").read_text().splitlines()[-15:])
    except OSError:
        return ""


def wait_for(
    lab: LabDir, what: str, check: Callable[[], bool], timeout: float, process: str | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError, netns.NetnsError):
            pass
        if process is not None:
            pid = lab.load().get("processes", {}).get(process, {}).get("pid")
            if pid is None or not alive(pid):
                raise LabError(f"{process} exited while starting:\n{_log_tail(lab, process)}")
        time.sleep(0.2)
    tail = _log_tail(lab, process) if process else ""
    raise LabError(f"{what} not ready within {timeout:.0f}s\n{tail}".rstrip())


def tcp_open(lab: LabDir, short: str, address: str, port: int) -> bool:
    def probe() -> bool:
        with socket.create_connection((address, port), timeout=1.0):
            return True

    return in_namespace(lab_namespaces(lab).ns(short), probe)


def http_get(lab: LabDir, short: str, url: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 5.0)

    def get() -> httpx.Response:
        with httpx.Client(trust_env=False, **kwargs) as client:
            return client.get(url)

    return in_namespace(lab_namespaces(lab).ns(short), get)


class LabApi:
    """The management API as an operator on the VPN uses it."""

    def __init__(self, lab: LabDir, token: str) -> None:
        self.namespace = lab_namespaces(lab).ns("vpn")
        self.api = Api(topology.url("mgr", 8080), token)

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
        return in_namespace(self.namespace, lambda: self.api.call(method, path, body, ok))

    def close(self) -> None:
        self.api.client.close()


def admin_token(lab: LabDir) -> str:
    token_file = lab.path / "admin.token"
    if token_file.exists():
        return token_file.read_text().strip()
    platform = load_platform(lab.config_file, env={})
    bootstrap = platform.manager.bootstrap_file
    if bootstrap is None or not bootstrap.exists():
        raise LabError("the manager wrote no first-admin file")
    token = str(json.loads(bootstrap.read_text())["token"])
    _write_private(token_file, token + "\n")
    bootstrap.unlink()
    return token


# --- Elasticsearch -----------------------------------------------------------------------------

#: each node's heap: the lab's traffic is a few thousand small records
ELASTICSEARCH_HEAP = "256m"
#: the client compiler only: a node starts in less CPU time (drill 4 restarts it), and the lab's
#: few requests a second need no peak throughput
ELASTICSEARCH_JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1",)


def elasticsearch_dir(lab: LabDir) -> Path:
    """The nodes' directories, outside the lab directory: the unprivileged user Elasticsearch runs
    as must reach them (a lab under root's home or a test's 0700 tmp dir it cannot enter). Named
    by the lab's prefix, so ``down`` finds it without ``lab.json``."""
    return Path(tempfile.gettempdir()) / f"{lab.ident}-elasticsearch"


def _remove_elasticsearch_dir(lab: LabDir) -> None:
    """Remove the nodes' directory: only a real directory owned by root (never a symlink or a
    directory someone else made in the shared temporary directory)."""
    path = elasticsearch_dir(lab)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.geteuid():
        raise LabError(f"{path} is not a directory this lab made; remove it by hand")
    shutil.rmtree(path)


def elasticsearch_process(short: str) -> str:
    return str(topology.host(short).inventory)


def elasticsearch_argv(lab: LabDir, short: str, nodes: tuple[str, ...], heap: str) -> list[str]:
    """Lay out node ``short`` of the cluster of ``nodes`` (see ``ElasticsearchNode``) in the
    nodes' directory; the command that runs it in its namespace as the provisioned unprivileged
    user."""
    servers = manifest()
    home, user = servers.get("ELASTICSEARCH_HOME", ""), servers.get("ELASTICSEARCH_USER", "")
    if not home or not Path(home).is_dir() or not user:
        raise LabError(
            f"Elasticsearch is not provisioned (home {home or 'absent'}, user "
            f"{user or 'absent'}): run scripts/provision as root"
        )
    workdir = elasticsearch_dir(lab) / short
    workdir.mkdir(mode=0o755)
    node = topology.elasticsearch_node(short, nodes)
    java_home = servers.get("JAVA_HOME", "")
    options = ELASTICSEARCH_JAVA_OPTIONS
    launch = elasticsearch_node(workdir, node, heap, Path(home), java_home, user, options)
    return [
        "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--",
        "env", *(f"{k}={v}" for k, v in sorted(launch.env.items())), *launch.argv,
    ]  # fmt: skip


def start_elasticsearch(
    lab: LabDir,
    nodes: tuple[str, ...] = topology.ELASTICSEARCH_NODES,
    heap: str = ELASTICSEARCH_HEAP,
) -> None:
    """Lay out and start every node of ``nodes`` (one: single-node; several: a cluster over
    9300, which needs the production bootstrap checks met, vm.max_map_count ≥ 262144 among
    them); ``wait_for_elasticsearch`` waits for them."""
    _remove_elasticsearch_dir(lab)
    os.mkdir(elasticsearch_dir(lab), 0o755)  # fails on anything already there
    for short in nodes:
        start(lab, elasticsearch_process(short), short, elasticsearch_argv(lab, short, nodes, heap))


def restart_elasticsearch(lab: LabDir, short: str) -> None:
    """Start a stopped node again with its data, as it ran before."""
    name = elasticsearch_process(short)
    start(lab, name, short, lab.load()["processes"][name]["argv"])


def elasticsearch_health(lab: LabDir, short: str = "mgr") -> dict[str, Any]:
    """The cluster's health as the manager's host sees it (the matrix lets it reach 9200)."""
    node = topology.ELASTICSEARCH_NODES[0]
    url = topology.url(node, topology.ELASTICSEARCH_PORT) + "/_cluster/health?timeout=1s"
    health: dict[str, Any] = http_get(lab, short, url).json()
    return health


def wait_for_elasticsearch(
    lab: LabDir, nodes: tuple[str, ...] = topology.ELASTICSEARCH_NODES, timeout: float = 180
) -> None:
    def ready() -> bool:
        health = elasticsearch_health(lab)
        return health.get("status") in ("green", "yellow") and health.get("number_of_nodes") == len(
            nodes
        )

    wait_for(lab, "Elasticsearch", ready, timeout, elasticsearch_process(nodes[0]))


def stop_elasticsearch(lab: LabDir, short: str) -> None:
    """SIGTERM node ``short``'s launcher and server JVM (a graceful shutdown), SIGKILL after
    30 s; returns once every process of its session is gone."""
    entry = lab.load().get("processes", {}).get(elasticsearch_process(short))
    if not entry or not running(lab, entry):
        return
    pids = session_pids(entry["pid"])
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        time.sleep(0.1)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(entry["pid"], os.WNOHANG)


# --- up ----------------------------------------------------------------------------------------


def requirements() -> str | None:
    """What ``status`` and ``down`` need (``down`` must work whatever else is missing)."""
    return netns.missing_tools("nft", "haproxy")


def up_requirements() -> str | None:
    """What ``up`` needs besides: the DNS server (dnsmasq) and the SMTP server (aiosmtpd)."""
    missing = netns.missing_tools("nft", "haproxy", "dnsmasq")
    if missing is None and importlib.util.find_spec("aiosmtpd") is None:
        return "aiosmtpd (the SMTP server) is not installed: `uv sync` with the dev group"
    return missing


def _build_network(lab: LabDir) -> None:
    spaces = lab_namespaces(lab)
    router = spaces.add("rt")
    netns.sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for switch in ("dmz", "lan"):
        name = spaces.add(f"sw{switch}")
        netns.sh("ip", "-n", name, "link", "add", "br0", "type", "bridge")
        netns.sh("ip", "-n", name, "link", "set", "br0", "up")
        spaces.link(router, switch, name, "uplink")
        netns.sh("ip", "-n", name, "link", "set", "uplink", "master", "br0")
        netns.sh("ip", "-n", router, "addr", "add", topology.ROUTER_LEGS[switch], "dev", switch)
    for host in topology.hosts(profile_of(lab)):
        namespace = spaces.add(host.short)
        if host.switch is not None:
            switch = spaces.ns(f"sw{host.switch}")
            spaces.link(namespace, "eth0", switch, host.short)
            netns.sh("ip", "-n", switch, "link", "set", host.short, "master", "br0")
        else:
            spaces.link(namespace, "eth0", router, host.short)
            leg = topology.ROUTER_LEGS[host.short]
            netns.sh("ip", "-n", router, "addr", "add", leg, "dev", host.short)
        netns.sh("ip", "-n", namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        netns.sh("ip", "-n", namespace, "route", "add", "default", "via", host.gateway)
    _write_resolvers(lab)


#: ``ip netns exec NS`` bind-mounts ``/etc/netns/NS/*`` over ``/etc/*`` for what it runs, so
#: glibc (and Python's ``getaddrinfo``) in a lab process reads the namespace's own files
NETNS_ETC = Path("/etc/netns")


def _write_resolvers(lab: LabDir) -> None:
    """A ``resolv.conf`` and a ``hosts`` (localhost only) per host namespace: the manager and
    the workers resolve every name through dns-1; ``down`` removes them."""
    spaces = lab_namespaces(lab)
    for host in topology.hosts(profile_of(lab)):
        etc = NETNS_ETC / spaces.ns(host.short)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(topology.resolv_conf(host.short))
        (etc / "hosts").write_text(topology.HOSTS_FILE)


def _remove_resolvers(ident: str) -> None:
    for etc in NETNS_ETC.glob(f"{ident}-*"):
        shutil.rmtree(etc, ignore_errors=True)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only when no other namespace has files there


def start_dns(lab: LabDir) -> None:
    """dnsmasq on dns-1: the lab's names only (no upstream, no /etc/hosts, no DHCP), bound to
    its lab address alone, UDP and TCP 53, every query logged."""
    address = topology.host("dns").address
    names = topology.dns_records(profile_of(lab))
    records = [f"--host-record={name},{ip}" for name, ip in names.items()]
    start(lab, "dns", "dns", [
        "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-queries",
        "--conf-file=/dev/null", "--pid-file=", "--no-resolv", "--no-hosts", "--no-poll",
        f"--listen-address={address}", "--bind-dynamic", f"--port={topology.DNS_PORT}",
        "--local=/portway.test/", "--domain-needed", "--user=nobody", *records,
    ])  # fmt: skip
    wait_for(lab, "DNS (dnsmasq)",
             lambda: tcp_open(lab, "mgr", address, topology.DNS_PORT), 20, "dns")  # fmt: skip


def apply_firewall(lab: LabDir) -> None:
    """The matrix of the lab's ``portway.yaml`` as nftables: zone tables on the router, a host
    table on each DMZ/LAN host."""
    spaces = lab_namespaces(lab)
    platform = load_platform(lab.config_file, env={})
    _, matrix = matrix_for(platform)
    inventory = inventory_for(platform)
    spaces.flush("rt")
    for zone in (Zone.DMZ, Zone.LAN):
        table = nftables.build_table(matrix, inventory, resolve_zone(inventory, zone, "nft"))
        spaces.nft("rt", nftables.render_text(table, f"zone {zone.value}"))
    for host in topology.hosts(profile_of(lab)):
        if host.switch is not None and host.inventory is not None:
            spaces.flush(host.short)
            scope = resolve_host(matrix, inventory, host.inventory)
            table = nftables.build_table(matrix, inventory, scope)
            spaces.nft(host.short, nftables.render_text(table, f"host {host.inventory}"))


def smtp_dir(lab: LabDir) -> Path:
    """smtp-1's CA, certificate and AUTH password (0600)."""
    return lab.path / "smtp"


def maildir(lab: LabDir) -> Path:
    """Where smtp-1 keeps every message it accepted (a Maildir: ``new/``, one file each)."""
    return lab.path / "mail"


def _write_smtp_files(lab: LabDir) -> None:
    names = [topology.fqdn("smtp"), topology.fqdn("smtp-1")]
    lab_certificates(smtp_dir(lab), names)
    _write_private(smtp_dir(lab) / "password", secrets.token_urlsafe(24) + "\n")


def start_smtp(lab: LabDir) -> None:
    """smtp-1: ``portway.lab.mailserver`` (aiosmtpd) on 587 and 25, STARTTLS and AUTH required,
    into the lab's Maildir."""
    certs, address = smtp_dir(lab), topology.host("smtp").address
    start(lab, "smtp", "smtp", [
        sys.executable, "-m", "portway.lab.mailserver", "--listen", address,
        *[f"--port={port}" for port in topology.SMTP_PORTS], "--hostname", topology.fqdn("smtp"),
        "--maildir", str(maildir(lab)), "--cert", str(certs / "server.pem"),
        "--key", str(certs / "server-key.pem"), "--user", topology.SMTP_USER,
        "--password-file", str(certs / "password"),
    ])  # fmt: skip
    wait_for(lab, "SMTP", lambda: all(tcp_open(lab, "mgr", address, port)
                                      for port in topology.SMTP_PORTS), 30, "smtp")  # fmt: skip


ALERT_CHANNEL = {"name": "lab-mail", "target": {"kind": "email", "to": [topology.ALERT_MAILBOX]}}
ALERT_RULE = {
    "name": "worker-down",
    "description": "a worker of the lab stopped reporting",
    "severity": "critical",
    "condition": {"kind": "worker_down", "environment": topology.ENVIRONMENT},
    "channels": ["lab-mail"],
}


def _setup_alerts(api: LabApi) -> None:
    """The manager mails ``oncall@lab.portway.test`` through smtp-1 when a worker is down."""
    api.call("POST", "/alerts/channels", ALERT_CHANNEL, ok=(409,))
    api.call("POST", "/alerts/rules", ALERT_RULE, ok=(409,))


def _write_files(lab: LabDir) -> None:
    _write_smtp_files(lab)
    data = topology.platform(lab.path / "data", lab.ca_dir, smtp_dir(lab), profile_of(lab))
    platform = platform_from_mapping(data, lab.path, env={})  # refuse to write a bad file
    lab.config_file.write_text(CONFIG_HEADER + yaml.safe_dump(data, sort_keys=False))
    plan = plan_from_platform(platform, topology.ENVIRONMENT)
    files = render(plan, "haproxy", lab.ca_dir)
    (lab.path / "haproxy.cfg").write_text(files["haproxy.cfg"])
    backend = lab_certificates(lab.path / "backend-ca", [topology.host("inet").address])
    (lab.path / "backend-haproxy.cfg").write_text(BACKEND_TLS.format(bundle=backend.bundle_file))


def profile_of(lab: LabDir) -> str:
    """``small`` or ``full``, as ``lab.json`` records it (what other parts of ``up`` read)."""
    return str(lab.load().get("profile", "small"))


def start_hazelcast(lab: LabDir, short: str) -> None:
    """The profile's Hazelcast member on ``short`` (its YAML written next to lab.json)."""
    profile = profile_of(lab)
    name = topology.HAZELCAST_MEMBERS[profile][short]
    servers = manifest()
    java = Path(servers.get("JAVA_HOME", "")) / "bin" / "java"
    config = lab.path / f"{name}.yaml"
    config.write_text(topology.hazelcast_config(short, profile))
    start(lab, name, short, [
        str(java), "-Xms128m", "-Xmx256m", "-XX:+UseSerialGC", f"-Dhazelcast.config={config}",
        "-Djava.net.preferIPv4Stack=true", "-cp", servers.get("HAZELCAST_JAR", ""),
        "com.hazelcast.core.server.HazelcastMemberStarter",
    ])  # fmt: skip


def hazelcast_ready(lab: LabDir, short: str) -> bool:
    """The member on ``short`` started, sees every member of the profile (its last "Members
    {size:N" line; a lone member prints none) and answers the workers on 5701."""
    profile = profile_of(lab)
    name = topology.HAZELCAST_MEMBERS[profile][short]
    log = (lab.logs / f"{name}.log").read_text(errors="replace")
    size = len(topology.HAZELCAST_MEMBERS[profile])
    views = re.findall(r"Members \{size:(\d+),", log)
    address = topology.host(short).address
    return (
        " is STARTED" in log
        and (size == 1 or (bool(views) and int(views[-1]) == size))
        and tcp_open(lab, "wk1", address, topology.HAZELCAST_PORT)
    )


def wait_for_hazelcast(lab: LabDir, timeout: float = 90) -> None:
    for short, name in topology.HAZELCAST_MEMBERS[profile_of(lab)].items():
        wait_for(lab, f"Hazelcast ({name})", lambda s=short: hazelcast_ready(lab, s),  # type: ignore[misc]
                 timeout, name)  # fmt: skip


def _worker_argv(lab: LabDir, short: str) -> list[str]:
    host = topology.host(short)
    return [
        *PYTHON,
        "worker",
        "--config",
        str(lab.config_file),
        "--environment",
        topology.ENVIRONMENT,
        "--worker-id",
        str(host.inventory),
        "--advertise-url",
        topology.named_url(str(host.inventory), 8080),
        "--state-dir",
        str(lab.path / "data" / str(host.inventory)),
    ]


def start_worker(lab: LabDir, short: str) -> None:
    start(lab, str(topology.host(short).inventory), short, _worker_argv(lab, short))


def workers(api: LabApi) -> dict[str, dict[str, Any]]:
    rows = api.call("GET", f"/workers?environment={topology.ENVIRONMENT}")
    return {row["id"]: row for row in rows}


def worker_ready(lab: LabDir, short: str) -> bool:
    """``/_portway/ready``: the worker serves the desired revision (asked from the manager)."""
    url = topology.url(short, 8080) + "/_portway/ready"
    return http_get(lab, "mgr", url).status_code == 200


def _setup_demo(api: LabApi) -> dict[str, Any]:
    api.call("POST", "/environments", {"name": topology.ENVIRONMENT, "type": "prod"}, ok=(409,))
    api.call("POST", "/projects", {"name": "default"}, ok=(409,))
    api.call("POST", "/projects/default/apis", DEMO_API, ok=(409,))
    api.call("POST", "/consumers", {"name": "lab-client"}, ok=(409,))
    api.call("PUT", "/consumers/lab-client/grants/default/demo", {})
    created = api.call("POST", "/consumers/lab-client/credentials", {"kind": "api_key"})
    deployment: dict[str, Any] = api.call(
        "POST",
        f"/environments/{topology.ENVIRONMENT}/deployments",
        {"api": "demo", "note": "portway lab up"},
    )
    return {"key": created["secret"], "deployment": deployment}


def client_get(lab: LabDir, path: str, key: str | None) -> httpx.Response:
    """One request from the Internet through the balancer, trusting the lab CA."""
    headers = {"X-Api-Key": key} if key else {}

    def get() -> httpx.Response:
        with httpx.Client(trust_env=False, verify=lab_trust(lab), timeout=5) as c:
            return c.get(public_url(path), headers=public_headers(headers), extensions=SNI)

    return in_namespace(lab_namespaces(lab).ns("inet"), get)


def lab_trust(lab: LabDir) -> ssl.SSLContext:
    """Clients trust the lab CA only."""
    return ssl.create_default_context(cafile=str(lab.ca_dir / "ca.pem"))


#: the lab has no DNS: clients connect to the balancer's address and name the public host
SNI = {"sni_hostname": topology.PUBLIC_NAME}


def public_url(path: str) -> str:
    return f"https://{topology.host('lb').address}{path}"


def public_headers(headers: dict[str, str]) -> dict[str, str]:
    return {"Host": topology.PUBLIC_NAME, **headers}


def is_up(lab: LabDir) -> bool:
    state = lab.load()
    processes = state.get("processes", {})
    expected = set(state.get("namespaces", []))
    return (
        bool(state.get("ready"))
        and bool(expected)
        and expected <= set(netns.namespaces_with(lab.ident))
        and all(running(lab, p) for p in processes.values())
    )


def running(lab: LabDir, process: dict[str, Any]) -> bool:
    return alive(process["pid"]) and in_lab_namespace(lab, process["pid"], process["ns"])


def run_up(lab: LabDir, profile: str = "small") -> dict[str, Any]:
    """Build the lab unless it is up already; returns the state."""
    reason = up_requirements()
    if reason is not None:
        raise LabError(reason)
    check_lab_dir(lab)
    if profile not in topology.PROFILES:
        raise LabError(f"profile {profile!r}: one of {', '.join(topology.PROFILES)}")
    if is_up(lab):
        if profile_of(lab) != profile:
            raise LabError(
                f"the lab in {lab.path} is up with the {profile_of(lab)} profile; "
                f"`portway lab down --lab-dir {lab.path}` first"
            )
        return lab.load()
    if lab.state_file.exists() or netns.namespaces_with(lab.ident):
        run_down(lab)  # a crashed or partial lab: start over
    servers = manifest()
    ferretdb, jar = servers.get("FERRETDB_BIN", ""), servers.get("HAZELCAST_JAR", "")
    java = Path(servers.get("JAVA_HOME", "")) / "bin" / "java"
    elasticsearch = servers.get("ELASTICSEARCH_HOME", "")
    for what, path in (
        ("FerretDB", ferretdb),
        ("Hazelcast", jar),
        ("Java", str(java)),
        ("Elasticsearch", elasticsearch),
    ):
        if not path or not Path(path).exists():
            raise LabError(f"{what} is not provisioned ({path or 'absent'}): run scripts/provision")
    began = time.monotonic()
    lab.path.mkdir(parents=True, exist_ok=True)
    lab.save({"ident": lab.ident, "profile": profile, "namespaces": [], "links": []})
    _write_files(lab)
    _build_network(lab)
    apply_firewall(lab)
    network_seconds = time.monotonic() - began
    start_elasticsearch(lab)  # the slowest to start: first, waited for last
    start_dns(lab)
    start_smtp(lab)

    for short in topology.HAZELCAST_MEMBERS[profile]:
        start_hazelcast(lab, short)
    store = lab.path / "data" / "ferretdb"
    store.mkdir(parents=True, exist_ok=True)
    data = topology.host("data").address
    start(lab, "ferretdb", "data", [
        ferretdb, "--handler=sqlite", f"--sqlite-url=file:{store}/",
        f"--listen-addr={data}:{topology.MONGODB_PORT}", "--debug-addr=-",
        "--telemetry=disable", f"--state-dir={store}", "--repl-set-name=rs0", "--log-level=warn",
    ])  # fmt: skip
    start(lab, "backend", "inet", [*PYTHON, "demo-backend", "--host", "0.0.0.0", "--port", "80"])
    start(
        lab, "backend-tls", "inet", ["haproxy", "-db", "-f", str(lab.path / "backend-haproxy.cfg")]
    )
    wait_for(
        lab, "FerretDB", lambda: tcp_open(lab, "mgr", data, topology.MONGODB_PORT), 30, "ferretdb"
    )
    start(lab, "manager", "mgr", [*PYTHON, "manager", "--config", str(lab.config_file)])
    health = topology.url("mgr", 8080) + "/healthz"
    wait_for(lab, "manager", lambda: http_get(lab, "vpn", health).status_code == 200, 60, "manager")
    api = LabApi(lab, admin_token(lab))
    api.call("POST", "/environments", {"name": topology.ENVIRONMENT, "type": "prod"}, ok=(409,))
    _setup_alerts(api)
    wait_for_hazelcast(lab)
    for short in topology.WORKERS:
        start_worker(lab, short)
    for short in topology.WORKERS:
        name = str(topology.host(short).inventory)
        wait_for(
            lab,
            name,
            lambda n=name: workers(api).get(n, {}).get("state") == "up",  # type: ignore[misc]
            60,
            name,
        )
    demo = _setup_demo(api)
    lab.update(api_key=demo["key"])
    start(lab, "haproxy", "lb", ["haproxy", "-db", "-f", str(lab.path / "haproxy.cfg")])
    for short in topology.WORKERS:
        wait_for(lab, f"{short} ready", lambda s=short: worker_ready(lab, s), 30)  # type: ignore[misc]
    wait_for_elasticsearch(lab)
    wait_for(
        lab,
        "the demo API through the balancer",
        lambda: client_get(lab, DEMO_PATH, demo["key"]).status_code == 200,
        30,
        "haproxy",
    )
    seconds = time.monotonic() - began
    processes = lab.load()["processes"]
    peak = sum(peak_rss_kib(p["pid"]) for p in processes.values())
    return lab.update(
        ready=True,
        up={
            "seconds": round(seconds, 1),
            "network_seconds": round(network_seconds, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "deployment": {
                "env_revision": demo["deployment"]["env_revision"],
                "acknowledged": sum(1 for r in demo["deployment"]["results"] if r.get("success")),
            },
        },
    )


WHERE = (
    ("internet", "inet", "clients; backend-1 (demo echo :80, HAProxy TLS :443)"),
    ("vpn", "vpn", "operators (management API from here)"),
    ("dmz", "lb", "lb-1: HAProxy :443 TLS (lab CA), :80 → 301 https"),
    ("dmz", "wk1", "worker-1 :8080"),
    ("dmz", "wk2", "worker-2 :8080"),
    ("lan", "mgr", "manager-1 :8080 (management API, cluster API)"),
    ("lan", "dns", f"dns-1: dnsmasq :{topology.DNS_PORT} udp+tcp, names *.{topology.DOMAIN}"),
    ("lan", "smtp", "smtp-1: SMTP :587 :25 (aiosmtpd, STARTTLS + AUTH), Maildir mail/"),
    (
        "lan",
        "data",
        f"data-1: FerretDB :{topology.MONGODB_PORT}, Hazelcast :{topology.HAZELCAST_PORT}",
    ),
    ("lan", "es1", f"es-1: Elasticsearch :{topology.ELASTICSEARCH_PORT} (traffic records)"),
    (
        "lan",
        "data2",
        f"data-2: Hazelcast :{topology.HAZELCAST_PORT} (the full profile's second member)",
    ),
    ("router", "rt", "nftables zone tables dmz + lan from the matrix"),
)


def describe(lab: LabDir) -> str:
    state = lab.load()
    spaces = lab_namespaces(lab)
    lines = ["zone      namespace          address        runs"]
    present = {h.short for h in topology.hosts(profile_of(lab))} | {"rt"}
    for zone, short, what in WHERE:
        if short not in present:
            continue
        address = topology.host(short).address if short != "rt" else "198.18.{0,1,2,4}.1"
        lines.append(f"{zone:<9} {spaces.ns(short):<18} {address:<14} {what}")
    processes = state.get("processes", {})
    lines.append("")
    lines.append("processes: " + ", ".join(
        f"{name} {p['pid']}{'' if alive(p['pid']) else ' (dead)'}"
        for name, p in sorted(processes.items())
    ))  # fmt: skip
    up = state.get("up", {})
    if up:
        lines.append(
            f"up in {up['seconds']} s, peak memory {up['peak_rss_mib']} MiB (sum of VmHWM)"
        )
    lines.append(f"config: {lab.config_file}; CA: {lab.ca_dir / 'ca.pem'}")
    lines.append(
        f"try: ip netns exec {spaces.ns('inet')} curl --cacert {lab.ca_dir / 'ca.pem'} "
        f"--resolve {topology.PUBLIC_NAME}:443:{topology.host('lb').address} "
        f'-H "X-Api-Key: $(jq -r .api_key {lab.state_file})" '
        f"https://{topology.PUBLIC_NAME}{DEMO_PATH}"
    )
    return "\n".join(lines)


def status(lab: LabDir) -> dict[str, Any]:
    state = lab.load()
    processes = {n: running(lab, p) for n, p in state.get("processes", {}).items()}
    present = netns.namespaces_with(lab.ident) if requirements() is None else []
    up = is_up(lab)
    return {
        "lab_dir": str(lab.path),
        "ident": lab.ident,
        "up": up,
        "namespaces": present,
        "processes": processes,
        "elasticsearch": _elasticsearch_status(lab) if up else None,
    }


def _elasticsearch_status(lab: LabDir) -> dict[str, Any]:
    try:
        health = elasticsearch_health(lab)
    except (OSError, httpx.HTTPError, ValueError) as exc:
        return {"status": "unreachable", "error": str(exc)}
    return {k: health.get(k) for k in ("status", "number_of_nodes", "active_shards")}


# --- down --------------------------------------------------------------------------------------


def _is_lab_dir(path: Path) -> bool:
    """A directory ``down`` may delete: absent, empty, holding ``lab.json`` or the platform file
    ``lab up`` wrote."""
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    if (path / "lab.json").exists() or not any(path.iterdir()):
        return True
    try:
        return (path / "portway.yaml").read_text().startswith(CONFIG_HEADER)
    except OSError:
        return False


def check_lab_dir(lab: LabDir) -> None:
    if lab.path.exists() and not lab.path.is_dir():
        raise LabError(f"--lab-dir {lab.path}: not a directory")
    if not _is_lab_dir(lab.path):
        raise LabError(f"--lab-dir {lab.path}: not a lab directory (no lab.json) and not empty")


def run_down(lab: LabDir) -> list[str]:
    """Remove everything the lab made; safe to repeat, also when ``lab.json`` is gone (the
    namespaces are found by the lab's prefix, their processes by ``ip netns pids``). The lab
    directory itself is deleted only when it holds ``lab.json`` (or is empty)."""
    reason = requirements()
    if reason is not None:
        raise LabError(reason)
    state = lab.load()
    names = sorted(set(state.get("namespaces", [])) | set(netns.namespaces_with(lab.ident)))
    names = [n for n in names if n.startswith(lab.ident)]
    netns.remove(names, lab.ident)
    _remove_elasticsearch_dir(lab)
    _remove_resolvers(lab.ident)
    if lab.path.is_dir() and _is_lab_dir(lab.path):
        shutil.rmtree(lab.path)
    return names

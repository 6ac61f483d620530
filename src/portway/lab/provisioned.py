"""Where ``scripts/provision`` put the real servers: ``$PORTWAY_CACHE/servers.env`` (default
``~/.cache/portway``), ``KEY=VALUE`` lines such as ``FERRETDB_BIN=…``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("PORTWAY_CACHE", Path.home() / ".cache" / "portway"))


def manifest() -> dict[str, str]:
    path = cache_dir() / "servers.env"
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                out[key.strip()] = value.strip()
    return out


def hazelcast_member_config(
    cluster: str, port: int, address: str, members: Sequence[str] = ()
) -> str:
    """A Hazelcast member's YAML bound to one address: no multicast, no auto-detection, so it
    never joins anything but ``members`` (addresses) named to it (the tests' members and the
    lab's)."""
    join = ""
    if members:
        listed = "".join(f"\n          - {m}:{port}" for m in members)
        join = f"\n      tcp-ip:\n        enabled: true\n        member-list:{listed}"
    return f"""hazelcast:
  cluster-name: {cluster}
  properties:
    hazelcast.phone.home.enabled: false
    hazelcast.socket.bind.any: false
    hazelcast.logging.type: jdk
  network:
    port:
      port: {port}
      auto-increment: false
    join:
      multicast:
        enabled: false
      auto-detection:
        enabled: false{join}
    interfaces:
      enabled: true
      interfaces:
        - {address}
  jet:
    enabled: false
"""


@dataclass(frozen=True, slots=True)
class ElasticsearchNode:
    """One Elasticsearch node: its name, the address it binds, its ports and its cluster.

    ``peers`` are the transport addresses (``ADDRESS:PORT``) of every node of the cluster, this
    one included; with fewer than two the node forms a single-node cluster (no discovery, and
    Elasticsearch skips its production bootstrap checks). ``masters`` are the names of the nodes
    that may bootstrap a new cluster (the first nodes of it).
    """

    name: str
    address: str
    http_port: int = 9200
    transport_port: int = 9300
    cluster: str = "portway"
    peers: tuple[str, ...] = ()
    masters: tuple[str, ...] = ()

    def yml(self, data: Path, logs: Path) -> str:
        if len(self.peers) < 2:
            discovery = "discovery.type: single-node\n"
        else:
            discovery = (
                f"discovery.seed_hosts: [{', '.join(self.peers)}]\n"
                f"cluster.initial_master_nodes: [{', '.join(self.masters)}]\n"
            )
        return (
            f"cluster.name: {self.cluster}\n"
            f"node.name: {self.name}\n"
            f"network.host: {self.address}\n"
            f"http.port: {self.http_port}\n"
            f"transport.port: {self.transport_port}\n"
            f"{discovery}"
            f"path.data: {data}\n"
            f"path.logs: {logs}\n"
            "xpack.security.enabled: false\n"
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
        )


@dataclass(frozen=True, slots=True)
class ElasticsearchLaunch:
    argv: list[str]
    env: dict[str, str]
    user: str | None
    """run as this user (Elasticsearch refuses root); ``None``: as the caller"""


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link a read-only copy of the distribution (copy when links cross filesystems)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, symlinks=True)


def elasticsearch_node(
    workdir: Path,
    node: ElasticsearchNode,
    heap: str,
    home: Path,
    java_home: str,
    user: str | None,
    java_options: tuple[str, ...] = (),
) -> ElasticsearchLaunch:
    """Lay out one node of the provisioned Elasticsearch (the integ-test zip) in ``workdir``, an
    empty directory the node's ``user`` can reach: a hard-linked copy of the distribution, its
    own config, data, logs and tmp (owned by ``user``); returns how to start it. The tests' node
    and the lab's nodes are made here."""
    _link_tree(home, workdir / "home")
    config = workdir / "config"
    shutil.copytree(home / "config", config)
    data, logs, tmp = workdir / "data", workdir / "logs", workdir / "tmp"
    (config / "elasticsearch.yml").write_text(node.yml(data, logs))
    for d in (data, logs, tmp):
        d.mkdir()
    if user:
        for d in (config, data, logs, tmp):
            for p in (d, *d.rglob("*")):
                shutil.chown(p, user, user)
    env = {
        "ES_JAVA_HOME": java_home,
        "ES_PATH_CONF": str(config),
        "ES_TMPDIR": str(tmp),
        "ES_JAVA_OPTS": " ".join([f"-Xms{heap}", f"-Xmx{heap}", *java_options]),
    }
    return ElasticsearchLaunch([str(workdir / "home" / "bin" / "elasticsearch")], env, user)

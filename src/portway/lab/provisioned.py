"""Where ``scripts/provision`` put the real servers: ``$PORTWAY_CACHE/servers.env`` (default
``~/.cache/portway``), ``KEY=VALUE`` lines such as ``FERRETDB_BIN=…``."""

from __future__ import annotations

import os
from collections.abc import Sequence
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

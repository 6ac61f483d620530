"""Where ``scripts/provision`` put the real servers: ``$PORTWAY_CACHE/servers.env`` (default
``~/.cache/portway``), ``KEY=VALUE`` lines such as ``FERRETDB_BIN=…``."""

from __future__ import annotations

import os
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

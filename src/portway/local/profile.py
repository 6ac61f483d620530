"""The single-host profile: the ``portway.yaml`` that ``portway up`` writes and starts from.

On one machine the worker and the manager cannot both listen on 8080, and ports below 1024 need
root. The profile keeps the worker's client port (8080) and moves the manager next to it; no port
needs root. Everything listens on loopback; the store and traffic log are SQLite files and the
cache is in-process, so the matrix has no MongoDB, Elasticsearch or cache flows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portway.config.platform_file import platform_from_mapping


@dataclass(frozen=True, slots=True)
class LocalProfile:
    host: str = "127.0.0.1"
    worker_port: int = 8080
    manager_port: int = 8081
    backend_port: int = 8082
    data_dir: Path = Path("var/portway")
    environment: str = "dev"

    @property
    def manager_url(self) -> str:
        return f"http://{self.host}:{self.manager_port}"

    @property
    def worker_url(self) -> str:
        return f"http://{self.host}:{self.worker_port}"

    @property
    def backend_url(self) -> str:
        return f"http://{self.host}:{self.backend_port}"

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "cluster.secret"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def bootstrap_file(self) -> Path:
        return self.data_dir / "bootstrap-admin.json"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "portway.yaml"

    def platform(self, worker_id: str) -> dict[str, Any]:
        """This installation as ``portway.yaml``; validated with the platform model before use.
        Paths are left out: they default to the file's directory (the data directory)."""
        data: dict[str, Any] = {
            "layout": "single-host",
            "data_dir": ".",
            "environments": {self.environment: {"type": "dev"}},
            "manager": {"host": self.host, "port": self.manager_port},
            "workers": {
                self.environment: {
                    "host": self.host,
                    "port": self.worker_port,
                    "processes": 1,
                    "worker_id": worker_id,
                    "http2": {"enabled": True},
                }
            },
            "hosts": [
                {"name": "local", "address": self.host, "components": ["worker", "manager"]},
            ],
        }
        platform_from_mapping(data, self.data_dir, env={})  # refuse to write a bad file
        return data

    def ports(self) -> list[tuple[str, int, str]]:
        return [
            ("worker", self.worker_port, "client traffic + deployment calls (matrix: worker 8080)"),
            ("manager", self.manager_port, "web UI + management API (matrix: manager 8080)"),
            ("demo backend", self.backend_port, "echo service (matrix: backend API 80/443)"),
        ]

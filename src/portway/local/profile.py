"""The single-host profile of the network connection matrix.

On one machine the worker and the manager cannot both listen on 8080, and ports below 1024 need
root. The profile keeps the worker's client port (8080) and moves the manager next to it; no port
needs root. Everything listens on loopback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    def matrix_file(self) -> Path:
        return self.data_dir / "matrix.yaml"

    @property
    def inventory_file(self) -> Path:
        return self.data_dir / "inventory.yaml"

    def matrix_settings(self) -> dict[str, object]:
        """The effective matrix settings of this profile (``portway matrix --config``)."""
        return {
            "layout": "single-host",
            "ports": {
                "worker": {"http": self.worker_port},
                "manager": {"http": self.manager_port},
            },
            "kubernetes": {"enabled": False},
        }

    def inventory(self) -> dict[str, object]:
        """This machine as the audit's inventory: one host carrying worker and manager."""
        return {
            "hosts": [
                {"name": "local", "address": self.host, "components": ["worker", "manager"]},
            ]
        }

    def ports(self) -> list[tuple[str, int, str]]:
        return [
            ("worker", self.worker_port, "client traffic + deployment calls (matrix: worker 8080)"),
            ("manager", self.manager_port, "web UI + management API (matrix: manager 8080)"),
            ("demo backend", self.backend_port, "echo service (matrix: backend API 80/443)"),
        ]

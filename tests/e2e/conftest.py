"""A real platform for end-to-end tests: manager, echo backend and workers as real processes."""

from __future__ import annotations

import json
import ssl
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import Process, free_port, http_ok, portway, wait_until

REPORT_INTERVAL = 0.5


@dataclass
class Platform:
    root: Path
    manager_port: int
    backend_port: int
    token: str
    processes: list[Process] = field(default_factory=list)
    manager_args: Sequence[str] = ()
    ca_file: Path | None = None
    """When set, the manager serves HTTPS with a certificate from this CA."""

    @property
    def manager_url(self) -> str:
        scheme = "https" if self.ca_file else "http"
        return f"{scheme}://127.0.0.1:{self.manager_port}"

    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.backend_port}"

    @property
    def secret_file(self) -> Path:
        return self.root / "cluster.secret"

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.manager_url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
            trust_env=False,
            verify=self.verify(),
        )

    def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        with self.api() as client:
            response = client.request(method, path, json=body)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response.json() if response.content else None

    def start_manager(self) -> Process:
        proc = Process(
            f"manager-{len(self.processes)}",
            portway(
                "manager",
                "--port",
                str(self.manager_port),
                "--store",
                f"sqlite:///{self.root}/manager.db",
                "--data-dir",
                str(self.root),
                "--secret-file",
                str(self.secret_file),
                "--report-interval",
                str(REPORT_INTERVAL),
                *self.manager_args,
            ),
            self.root,
        )
        self.processes.append(proc)
        wait_until(lambda: self.manager_ok(), "manager", timeout=60.0, proc=proc)
        return proc

    def start_worker(
        self,
        worker_id: str,
        environment: str = "dev",
        port: int | None = None,
        wait: bool = True,
        advertise_url: str | None = None,
        cache_url: str | None = None,
        manager_url: str | None = None,
        extra: Sequence[str] = (),
    ) -> tuple[Process, int]:
        port = port or free_port()
        advertise = ["--advertise-url", advertise_url] if advertise_url else []
        if cache_url:
            advertise += ["--cache", cache_url]
        proc = Process(
            worker_id,
            portway(
                "worker",
                "--environment",
                environment,
                "--manager",
                manager_url or self.manager_url,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--processes",
                "1",
                "--worker-id",
                worker_id,
                "--state-dir",
                str(self.root / worker_id),
                "--secret-file",
                str(self.secret_file),
                "--poll-interval",
                str(REPORT_INTERVAL),
                *advertise,
                *extra,
            ),
            self.root,
        )
        self.processes.append(proc)
        if wait:
            wait_until(lambda: self.worker_state(worker_id) == "up", f"{worker_id} up", proc=proc)
        return proc, port

    def manager_ok(self) -> bool:
        url = self.manager_url + "/healthz"
        return httpx.get(url, timeout=2.0, trust_env=False, verify=self.verify()).status_code == 200

    def worker_state(self, worker_id: str) -> str | None:
        for row in self.call("GET", "/workers"):
            if row["id"] == worker_id:
                return str(row["state"])
        return None

    def deploy(self, api: str, environment: str = "dev", **extra: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "POST", f"/environments/{environment}/deployments", {"api": api, **extra}, expect=201
        )
        return result


def launch(
    tmp_path: Path, manager_args: Sequence[str] = (), ca_file: Path | None = None
) -> Generator[Platform]:
    """Echo backend and manager (started with ``manager_args``), an admin token, env ``dev``."""
    backend_port = free_port()
    backend = Process("backend", portway("demo-backend", "--port", str(backend_port)), tmp_path)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{backend_port}/"), "echo backend", proc=backend)
    plat = Platform(
        tmp_path,
        free_port(),
        backend_port,
        token="",
        processes=[backend],
        manager_args=manager_args,
        ca_file=ca_file,
    )
    try:
        manager = plat.start_manager()
        bootstrap = tmp_path / "bootstrap-admin.json"
        wait_until(bootstrap.exists, "the first admin's credentials", proc=manager)
        plat.token = json.loads(bootstrap.read_text())["token"]
        plat.call("POST", "/environments", {"name": "dev"}, expect=201)
        plat.call("POST", "/projects", {"name": "default"}, expect=201)
        yield plat
    finally:
        for proc in reversed(plat.processes):
            proc.stop()


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    yield from launch(tmp_path)

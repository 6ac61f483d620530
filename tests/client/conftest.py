"""A real manager process on a loopback port for the CLI tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import Process, free_port, http_ok, portway, wait_until


@dataclass
class Manager:
    url: str
    token: str
    root: Path
    process: Process

    def api(self, method: str, path: str, body: object = None) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.url}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            trust_env=False,
        )


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    port = free_port()
    proc = Process(
        "manager",
        portway(
            "manager",
            "--port",
            str(port),
            "--store",
            f"sqlite:///{tmp_path}/manager.db",
            "--data-dir",
            str(tmp_path),
            "--report-interval",
            "0.5",
        ),
        tmp_path,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/healthz"), "manager", proc=proc)
        token = json.loads((tmp_path / "bootstrap-admin.json").read_text())["token"]
        yield Manager(url, token, tmp_path, proc)
    finally:
        proc.stop()


@pytest.fixture
def cli_env(manager: Manager, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Manager:
    """The environment a user of the CLI has: PORTWAY_MANAGER and PORTWAY_TOKEN set."""
    monkeypatch.setenv("PORTWAY_MANAGER", manager.url)
    monkeypatch.setenv("PORTWAY_TOKEN", manager.token)
    monkeypatch.chdir(tmp_path)
    return manager

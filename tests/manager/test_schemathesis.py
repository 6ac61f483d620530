"""Schemathesis against the manager's OpenAPI document: generated requests (valid and invalid) for
every operation, authenticated as the admin, on a real uvicorn server on a loopback port. No answer
may be a server error. The number of examples per operation is bounded so the run stays short."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase

from portway.manager.app import create_app
from portway.manager.settings import ManagerSettings

EXAMPLES_PER_OPERATION = 12


@dataclass
class Server:
    url: str
    token: str


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = ManagerSettings(
        store=f"sqlite:///{tmp_path}/manager.db",
        data_dir=tmp_path,
        secret_file=tmp_path / "cluster.secret",
        bootstrap_file=tmp_path / "bootstrap.json",
        push_timeout=2.0,
        probe_interval=0,
        login_failure_delay=0,
        import_timeout=2.0,
    )
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "the manager did not start"
        assert thread.is_alive(), "the manager exited"
        time.sleep(0.05)
    port = uv.servers[0].sockets[0].getsockname()[1]
    token = json.loads((tmp_path / "bootstrap.json").read_text())["token"]
    try:
        yield Server(f"http://127.0.0.1:{port}", token)
    finally:
        uv.should_exit = True
        thread.join(30)


def test_no_generated_request_gets_a_server_error(server: Server) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {server.token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises: the test fails
        operations += 1

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def call(case: schemathesis.Case[Any]) -> None:
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

        call()
    assert operations >= 80
    assert failures == []

"""A deploy is recorded (history and audit) before the environment's desired revision moves, and a
manager stopped at any step of a deploy settles what it left on the next start: no revision is live
without a record, no record claims a revision that never went live."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.app import create_app
from portway.manager.settings import ManagerSettings
from portway.stores.config_store import open_config_store
from tests.manager.store_faults import FaultyStore

API = {"name": "orders", "base_path": "/orders", "backends": [{"url": "http://127.0.0.1:9"}]}
WRITES_PER_DEPLOY = 12  # more than a deploy makes: the last cases crash nothing


def started(settings: ManagerSettings, store: Any) -> TestClient:
    client = TestClient(create_app(settings, store), raise_server_exceptions=False)
    client.__enter__()
    return client


def token(settings: ManagerSettings) -> str:
    assert settings.bootstrap_file is not None
    value: str = json.loads(settings.bootstrap_file.read_text())["token"]
    return value


def consistent(client: TestClient) -> tuple[int, list[dict[str, Any]]]:
    """Check the invariants; returns the desired revision and the history."""
    env = client.get("/api/v1/environments/dev").json()
    desired = env["desired_revision"]
    history = client.get("/api/v1/environments/dev/deployments").json()["items"]
    history = history["items"] if isinstance(history, dict) else history
    assert all(h["status"] != "pending" for h in history), history
    live = [h for h in history if h["env_revision"] == desired]
    assert live, f"revision {desired} is desired without a record: {history}"
    assert all(h["status"] in ("published", "interrupted", "recovered") for h in live), live
    for h in history:
        if h["env_revision"] != desired and h["env_revision"] > desired:
            assert h["status"] == "failed", h
    found = client.get("/api/v1/audit", params={"target_prefix": "environments/dev"})
    audit = found.json()["items"]
    assert any(desired == e_rev for e in audit for e_rev in _revisions(e)), audit
    return desired, history


def _revisions(entry: dict[str, Any]) -> list[Any]:
    return [
        c.get("new")
        for c in entry.get("changes", [])
        if c.get("field") in ("desired_revision", "env_revision")
    ]


CASES = [("sqlite", n) for n in range(WRITES_PER_DEPLOY)] + [
    pytest.param("mongodb", n, marks=pytest.mark.servers) for n in (6, 7, 8, 9)
]  # on FerretDB: the steps around the record, the audit entry and the pointer


@pytest.mark.parametrize(("backend", "crash_after"), CASES)
def test_a_manager_stopped_mid_deploy_settles_on_start(
    settings: ManagerSettings,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    backend: str,
    crash_after: int,
) -> None:
    if backend == "sqlite":
        url = f"sqlite://{tmp_path / 'crash.db'}"
    else:
        from tests.stores.conftest import mongo_url

        url = mongo_url(request.getfixturevalue("ferretdb"), f"c{uuid.uuid4().hex[:12]}")
    first = started(settings, open_config_store(url))
    headers = {"Authorization": f"Bearer {token(settings)}"}
    first.headers.update(headers)
    assert first.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    assert first.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    created = first.post("/api/v1/projects/default/apis", json=API)
    assert created.status_code == 201, created.text
    deployed = first.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
    assert deployed.status_code == 201, deployed.text
    first.__exit__(None, None, None)

    faulty = FaultyStore(open_config_store(url))
    crashing = started(settings, faulty)
    crashing.headers.update(headers)
    changed = crashing.patch(
        "/api/v1/projects/default/apis/orders", json={"description": f"v{uuid.uuid4().hex}"}
    )
    assert changed.status_code == 200, changed.text
    faulty.fail_after(crash_after, once=False)  # from here on the store is gone: a crash
    crashing.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
    crashing.__exit__(None, None, None)

    again = started(settings, open_config_store(url))
    again.headers.update(headers)
    try:
        desired, history = consistent(again)
        assert desired in (1, 2)
        if faulty.failed == 0:  # the deploy finished before the crash point
            assert desired == 2
            assert history[0]["status"] == "published"
        # the manager works on after the recovery
        redeploy = again.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
        assert redeploy.status_code == 201, redeploy.text
        assert redeploy.json()["status"] == "published"
        consistent(again)
    finally:
        again.__exit__(None, None, None)

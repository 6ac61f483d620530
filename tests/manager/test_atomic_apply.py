"""``declarative/apply`` is all-or-nothing, on SQLite and on FerretDB: clashes are found in the
plan (nothing written), and a write that fails half-way is undone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.app import create_app
from portway.manager.settings import ManagerSettings
from portway.stores.config_store import open_config_store
from tests.manager.store_faults import FaultyStore

APPLY = "/api/v1/declarative/apply"
BACKEND = [{"url": "http://127.0.0.1:9"}]


@pytest.fixture(params=["sqlite", pytest.param("mongodb", marks=pytest.mark.servers)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'manager.db'}"
    from tests.stores.conftest import mongo_url

    return mongo_url(request.getfixturevalue("ferretdb"), f"m{uuid.uuid4().hex[:12]}")


@pytest.fixture
def faulty(store_url: str) -> FaultyStore:
    return FaultyStore(open_config_store(store_url))


@pytest.fixture
def client(settings: ManagerSettings, faulty: FaultyStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, faulty), raise_server_exceptions=False) as client:
        assert settings.bootstrap_file is not None
        token = json.loads(settings.bootstrap_file.read_text())["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def api(name: str, base_path: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_path": base_path, "backends": BACKEND, **extra}


def export(client: TestClient) -> Any:
    return client.get("/api/v1/declarative/export").json()


@pytest.mark.parametrize("dry_run", [True, False])
def test_two_apis_with_one_base_path_are_refused_in_the_plan(
    client: TestClient, dry_run: bool
) -> None:
    body = {"projects": [{"name": "default"}], "apis": [api("dup1", "/x"), api("dup2", "/x")]}
    response = client.post(APPLY + f"?dry_run={str(dry_run).lower()}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "body.apis[1].base_path"
    assert "default/dup1" in response.json()["message"]
    assert client.get("/api/v1/projects/default/apis/dup1").status_code == 404
    assert export(client)["projects"] == []  # not even the project


def test_a_clash_with_a_stored_api_the_file_does_not_replace_is_refused(
    client: TestClient,
) -> None:
    first = {"projects": [{"name": "default"}], "apis": [api("old", "/x")]}
    assert client.post(APPLY, json=first).status_code == 200
    before = export(client)
    body = {"environments": [{"name": "dev"}], "apis": [api("new1", "/y"), api("new2", "/x")]}
    response = client.post(APPLY, json=body)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["details"]] == ["body.apis[1].base_path"]
    assert export(client) == before
    # another project may use the same base path
    other = {"projects": [{"name": "shop"}], "apis": [api("new2", "/x", project="shop")]}
    assert client.post(APPLY, json=other).status_code == 200


def test_a_base_path_freed_by_the_file_can_be_taken_by_it(client: TestClient) -> None:
    first = {"projects": [{"name": "default"}], "apis": [api("a", "/x"), api("b", "/y")]}
    assert client.post(APPLY, json=first).status_code == 200
    moved = {"apis": [api("a", "/z"), api("c", "/x")]}  # a gives /x up, c takes it
    response = client.post(APPLY, json=moved, params={"prune": "true"})
    assert response.status_code == 200, response.text
    paths = {a["name"]: a["base_path"] for a in export(client)["apis"]}
    assert paths == {"a": "/z", "c": "/x"}
    # a pruned API's base path is free for a new one in the same apply
    again = client.post(APPLY, json={"apis": [api("d", "/z")]}, params={"prune": "true"})
    assert again.status_code == 200, again.text
    assert {a["name"]: a["base_path"] for a in export(client)["apis"]} == {"d": "/z"}


def test_a_swap_of_base_paths_is_refused_by_the_dry_run_as_by_the_real_run(
    client: TestClient,
) -> None:
    first = {"projects": [{"name": "default"}], "apis": [api("a", "/x"), api("b", "/y")]}
    assert client.post(APPLY, json=first).status_code == 200
    before = export(client)
    swap = {"apis": [api("a", "/y"), api("b", "/x")]}
    for dry_run in ("true", "false"):
        response = client.post(APPLY, json=swap, params={"dry_run": dry_run})
        assert response.status_code == 422, response.text
        assert response.json()["details"][0]["field"].endswith(".base_path")
    assert export(client) == before


def test_a_write_failing_half_way_is_undone(client: TestClient, faulty: FaultyStore) -> None:
    first = {
        "environments": [{"name": "dev"}],
        "projects": [{"name": "default"}],
        "apis": [api("keep", "/keep"), api("gone", "/gone")],
        "consumers": [{"name": "old-app"}],
    }
    assert client.post(APPLY, json=first).status_code == 200
    before = export(client)
    body = {
        "environments": [{"name": "dev"}, {"name": "qa"}],
        "projects": [{"name": "default"}, {"name": "shop"}],
        "apis": [api("keep", "/keep", description="changed"), api("new", "/new")],
        "consumers": [{"name": "new-app"}],
    }
    plan = client.post(APPLY, json=body, params={"dry_run": "true", "prune": "true"})
    assert plan.status_code == 200, plan.text
    faulty.fail_after(0, "consumers")  # everything before the consumers is written, then a fault
    response = client.post(APPLY, json=body, params={"prune": "true"})
    assert response.status_code == 503, response.text
    assert faulty.failed == 1
    assert export(client) == before
    audit = client.get("/api/v1/audit", params={"action": "declarative.undo"}).json()
    entries = audit["items"] if isinstance(audit, dict) else audit
    undo = [e for e in entries if e["action"] == "declarative.undo"]
    assert undo, entries
    recorded = json.dumps(undo[0]["changes"])
    assert "apis/default/gone" in recorded  # the pruned API, re-created
    assert "apis/default/new" in recorded  # the created API, deleted again
    # and once the store is healthy the same file applies whole
    assert client.post(APPLY, json=body, params={"prune": "true"}).status_code == 200
    names = sorted(a["name"] for a in export(client)["apis"])
    assert names == ["keep", "new"]

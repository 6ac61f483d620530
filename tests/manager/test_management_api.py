"""The management API in-process: validation, conflicts, versions, auth, audit."""

from __future__ import annotations

import json
import stat
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.settings import ManagerSettings

API = {"name": "orders", "base_path": "/orders", "backends": [{"url": "http://127.0.0.1:9"}]}


def create_api(client: TestClient, body: dict[str, Any] | None = None) -> Any:
    return client.post("/api/v1/projects/default/apis", json=body or API)


@pytest.fixture
def project(admin: TestClient) -> TestClient:
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    return admin


def test_bootstrap_credentials_are_private_and_work(
    admin: TestClient, settings: ManagerSettings
) -> None:
    assert settings.bootstrap_file is not None
    mode = stat.S_IMODE(settings.bootstrap_file.stat().st_mode)
    assert mode == 0o600
    assert admin.get("/api/v1/me").json() == {"username": "admin", "role": "admin"}


def test_create_and_read_api(project: TestClient) -> None:
    created = create_api(project)
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == '"1"'
    got = project.get("/api/v1/projects/default/apis/orders").json()
    assert got["base_path"] == "/orders"
    assert got["version"] == 1
    assert got["project"] == "default"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (API | {"colour": "blue"}, "body.colour"),
        (API | {"backends": "http://x"}, "body.backends"),
        (API | {"base_path": "orders"}, "body.base_path"),
        (API | {"backends": [{"url": "ftp://x"}]}, "body.backends[0].url"),
        (API | {"connection": {"connect_timeout": "soon"}}, "body.connection.connect_timeout"),
        (API | {"name": "Bad Name"}, "body.name"),
    ],
)
def test_invalid_input_is_422_with_the_field_and_stores_nothing(
    project: TestClient, body: dict[str, Any], field: str
) -> None:
    response = create_api(project, body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["error"] == "validation_error"
    assert problem["correlation_id"] == response.headers["X-Correlation-ID"]
    assert any(d["field"] == field for d in problem["details"]), problem
    assert project.get("/api/v1/projects/default/apis").json()["items"] == []


def test_duplicate_base_path_is_409_and_keeps_the_first(project: TestClient) -> None:
    assert create_api(project).status_code == 201
    duplicate = create_api(project, API | {"name": "orders2"})
    assert duplicate.status_code == 409
    assert "base_path" in duplicate.json()["message"]
    names = [a["name"] for a in project.get("/api/v1/projects/default/apis").json()["items"]]
    assert names == ["orders"]


def test_stale_version_is_refused(project: TestClient) -> None:
    create_api(project)
    first = project.put(
        "/api/v1/projects/default/apis/orders",
        json=API | {"description": "v2"},
        headers={"If-Match": '"1"'},
    )
    assert first.status_code == 200
    assert first.json()["version"] == 2
    stale = project.put(
        "/api/v1/projects/default/apis/orders",
        json=API | {"description": "lost update"},
        headers={"If-Match": '"1"'},
    )
    assert stale.status_code == 409
    assert project.get("/api/v1/projects/default/apis/orders").json()["description"] == "v2"


def test_unauthenticated_and_bad_token(manager: TestClient) -> None:
    assert manager.get("/api/v1/environments").status_code == 401
    bad = manager.get("/api/v1/environments", headers={"Authorization": "Bearer pwt_nope"})
    assert bad.status_code == 401
    assert bad.json()["error"] == "unauthenticated"


def test_unknown_project_is_404(admin: TestClient) -> None:
    response = admin.post("/api/v1/projects/nope/apis", json=API)
    assert response.status_code == 404


def test_audit_records_changes_without_secrets(project: TestClient) -> None:
    create_api(project)
    records = project.get("/api/v1/audit").json()["items"]
    assert records[0]["action"] == "api.create"
    assert records[0]["actor"] == "admin"
    assert any(c["field"] == "base_path" and c["new"] == "/orders" for c in records[0]["changes"])
    assert "password" not in json.dumps(records)


def test_deploy_without_workers_records_the_revision(project: TestClient) -> None:
    assert project.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    create_api(project)
    deployed = project.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
    assert deployed.status_code == 201, deployed.text
    body = deployed.json()
    assert body["env_revision"] == 1
    assert body["api_revision"] == 1
    assert body["results"] == []
    revision = project.get("/api/v1/environments/dev/revision").json()
    assert [d["api"]["name"] for d in revision["apis"]] == ["orders"]
    # an unchanged working copy is not a new API revision; a changed one is
    again = project.post("/api/v1/environments/dev/deployments", json={"api": "orders"}).json()
    assert again["api_revision"] == 1
    assert again["env_revision"] == 2
    project.put("/api/v1/projects/default/apis/orders", json=API | {"description": "x"})
    third = project.post("/api/v1/environments/dev/deployments", json={"api": "orders"}).json()
    assert third["api_revision"] == 2
    rollback = project.post(
        "/api/v1/environments/dev/deployments",
        json={"api": "orders", "action": "rollback", "api_revision": 1},
    ).json()
    assert rollback["api_revision"] == 1
    current = project.get("/api/v1/environments/dev/revision").json()
    assert current["apis"][0]["api"]["description"] == ""
    undeploy = project.post(
        "/api/v1/environments/dev/deployments", json={"api": "orders", "action": "undeploy"}
    )
    assert undeploy.status_code == 201
    assert project.get("/api/v1/environments/dev/revision").json()["apis"] == []
    history = project.get("/api/v1/environments/dev/deployments").json()["items"]
    assert [h["action"] for h in history] == ["undeploy", "rollback", "deploy", "deploy", "deploy"]

"""Write-only policy secrets: no read of the management API shows them, to any role; a write that
sends ``"***"`` back keeps the stored value; audit records never store them."""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from portway.manager.app import create_app
from portway.manager.settings import ManagerSettings
from portway.policies.registry import policy_json_schemas
from tests.e2e.conftest import Platform, platform  # noqa: F401 - the fixture

JWT_SECRET = "jwt-secret-0123456789-abcdefghijklmnop"
CLIENT_SECRET = "introspection-client-secret-zyxw"
GLOBAL_SECRET = "global-jwt-secret-0123456789-qrstuvwxyz"
SECRETS = (JWT_SECRET, CLIENT_SECRET, GLOBAL_SECRET)
API = "/projects/default/apis/orders"


def jwt_spec(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "type": "jwt", "config": {"algorithms": ["HS256"], "secret": secret}}


def orders_api() -> dict[str, Any]:
    introspection = {
        "name": "introspect",
        "type": "oauth2_introspection",
        "config": {
            "introspection_url": "http://127.0.0.1:9/introspect",
            "client_id": "gateway",
            "client_secret": CLIENT_SECRET,
        },
    }
    return {
        "name": "orders",
        "base_path": "/orders",
        "backends": [{"url": "http://127.0.0.1:9"}],
        "policies": {"request": [jwt_spec("auth", JWT_SECRET)]},
        "endpoints": [
            {
                "path": "/admin",
                "policies": {
                    "request": [
                        introspection,
                        {"name": "shared", "type": "jwt", "global_ref": "shared-jwt"},
                    ]
                },
            }
        ],
    }


def setup_catalog(admin: TestClient) -> None:
    created = admin.post("/api/v1/global-policies", json=jwt_spec("shared-jwt", GLOBAL_SECRET))
    assert created.status_code == 201, created.text
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    created = admin.post("/api/v1/projects/default/apis", json=orders_api())
    assert created.status_code == 201, created.text
    deployed = admin.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
    assert deployed.status_code == 201, deployed.text


READS = (
    "/apis",
    "/projects/default/apis",
    API,
    f"{API}/policies",
    f"{API}/policies/request/auth",
    f"{API}/endpoints",
    f"{API}/endpoints/0",
    f"{API}/endpoints/0/policies",
    f"{API}/endpoints/0/policies/request/introspect",
    f"{API}/revisions",
    f"{API}/revisions/1",
    f"{API}/status",
    "/global-policies",
    "/global-policies/shared-jwt",
    "/environments/dev/revision",
    "/environments/dev/revisions/1",
    "/environments/dev/deployments",
    "/audit",
    "/declarative/export",
)


def test_no_read_shows_a_secret_to_a_viewer_or_an_admin(
    admin: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    setup_catalog(admin)
    # a change of each secret leaves audit records with old and new values
    api = admin.get(f"/api/v1{API}").json()
    api["policies"]["request"][0]["config"]["secret"] = JWT_SECRET[::-1]
    changed = admin.put(f"/api/v1{API}", json=api, headers={"If-Match": str(api.pop("version"))})
    assert changed.status_code == 200, changed.text
    spec = jwt_spec("shared-jwt", GLOBAL_SECRET[::-1])
    assert admin.put("/api/v1/global-policies/shared-jwt", json=spec).status_code == 200
    for role in ("viewer", "admin"):
        for path in READS:
            answer = admin.get(f"/api/v1{path}", headers=as_role(role))
            if path == "/audit" and role == "viewer":
                assert answer.status_code == 403
                continue
            assert answer.status_code == 200, (role, path, answer.text)
            for secret in (*SECRETS, JWT_SECRET[::-1], GLOBAL_SECRET[::-1]):
                assert secret not in answer.text, (role, path)
    shown = admin.get(f"/api/v1{API}/policies/request/auth").json()
    assert shown["config"]["secret"] == "***"


def test_the_policy_json_schemas_mark_secrets_write_only() -> None:
    schemas = policy_json_schemas()
    marked = {
        (name, field)
        for name, schema in schemas.items()
        for field, prop in schema["config"]["properties"].items()
        if prop.get("writeOnly")
    }
    assert marked == {
        ("jwt", "secret"),
        ("token_endpoint", "secret"),
        ("token_endpoint", "private_key"),
        ("oauth2_introspection", "client_secret"),
        ("oidc", "client_secret"),
        ("oidc", "cookie_secret"),
    }


def test_audit_records_never_store_a_secret(admin: TestClient, settings: ManagerSettings) -> None:
    setup_catalog(admin)
    db = sqlite3.connect(str(settings.data_dir / "manager.db"))
    try:
        rows = [str(r) for r in db.execute("SELECT * FROM documents WHERE collection = 'audit'")]
    finally:
        db.close()
    assert rows
    assert not any(secret in row for row in rows for secret in SECRETS)


def test_stars_keep_the_stored_secret_and_are_refused_without_one(admin: TestClient) -> None:
    setup_catalog(admin)
    api = admin.get(f"/api/v1{API}").json()
    version = api.pop("version")
    api["description"] = "changed"
    kept = admin.put(f"/api/v1{API}", json=api, headers={"If-Match": str(version)})
    assert kept.status_code == 200, kept.text
    # the policy route, and PATCH, keep it too
    policy = admin.get(f"/api/v1{API}/policies/request/auth").json()
    assert policy["config"]["secret"] == "***"
    replaced = admin.put(f"/api/v1{API}/policies/request/auth", json=policy)
    assert replaced.status_code == 200, replaced.text
    patch = {"policies": {"request": [jwt_spec("auth", "***")]}}
    assert admin.patch(f"/api/v1{API}", json=patch).status_code == 200
    # a new policy has nothing stored to keep: the field is named
    fresh = admin.post(f"/api/v1{API}/policies/request", json=jwt_spec("other", "***"))
    assert fresh.status_code == 422, fresh.text
    assert fresh.json()["details"][0]["field"].endswith("config.secret")
    created = admin.post("/api/v1/global-policies", json=jwt_spec("g2", "***"))
    assert created.status_code == 422, created.text
    assert created.json()["details"][0]["field"] == "body.config.secret"
    # the stored value is still the original: the revision the worker pulls carries it
    deployed = admin.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
    assert deployed.status_code == 201, deployed.text


def token(secret: str) -> str:
    return jwt.encode({"sub": "app", "exp": int(time.time()) + 600}, secret, algorithm="HS256")


def test_a_jwt_secret_sent_back_as_stars_still_validates_at_the_worker(
    platform: Platform,  # noqa: F811
) -> None:
    _, port = platform.start_worker("w1")
    api = {
        "name": "guarded",
        "base_path": "/guarded",
        "backends": [{"url": platform.backend_url}],
        "policies": {"request": [jwt_spec("auth", JWT_SECRET)]},
    }
    platform.call("POST", "/projects/default/apis", api, expect=201)
    shown = platform.call("GET", "/projects/default/apis/guarded")
    assert shown["policies"]["request"][0]["config"]["secret"] == "***"
    shown["description"] = "sent back with the mask"
    del shown["version"]
    platform.call("PUT", "/projects/default/apis/guarded", shown, expect=200)
    platform.deploy("guarded")

    def call(secret: str) -> int:
        return httpx.get(
            f"http://127.0.0.1:{port}/guarded/echo",
            headers={"Authorization": f"Bearer {token(secret)}"},
            timeout=10.0,
            trust_env=False,
        ).status_code

    assert call(JWT_SECRET) == 200
    assert call(JWT_SECRET[::-1]) == 401


def test_a_duplicate_api_key_is_refused_without_a_digest(admin: TestClient) -> None:
    assert admin.post("/api/v1/consumers", json={"name": "one"}).status_code == 201
    assert admin.post("/api/v1/consumers", json={"name": "two"}).status_code == 201
    key = "pk_a-chosen-key-that-is-long-enough-0123"
    body = {"kind": "api_key", "key": key}
    assert admin.post("/api/v1/consumers/one/credentials", json=body).status_code == 201
    for owner in ("one", "two"):
        dup = admin.post(f"/api/v1/consumers/{owner}/credentials", json=body)
        assert dup.status_code == 409, dup.text
        assert dup.json()["message"] == "this API key is already in use"
        assert "lookup" not in dup.text
    basic = {"kind": "basic", "username": "app-user", "password": "a long enough password"}
    assert admin.post("/api/v1/consumers/one/credentials", json=basic).status_code == 201
    dup = admin.post("/api/v1/consumers/two/credentials", json=basic)
    assert dup.json()["message"] == "this username is already in use"


def test_data_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    settings = ManagerSettings(
        store=f"sqlite:///{data_dir}/manager.db",
        logs=f"sqlite:///{data_dir}/traffic.db",
        data_dir=data_dir,
        secret_file=data_dir / "cluster.secret",
        bootstrap_file=data_dir / "bootstrap.json",
        probe_interval=0,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        files = [p for p in data_dir.iterdir() if ".db" in p.name]
        assert {"manager.db", "manager.db-wal", "manager.db-shm"} <= {p.name for p in files}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


REFERENCES = {
    "PORTWAY_SECRET_DEFAULT_ORDERS_AUTH_SECRET": JWT_SECRET,
    "PORTWAY_SECRET_DEFAULT_ORDERS_E0_INTROSPECT_CLIENT_SECRET": CLIENT_SECRET,
    "PORTWAY_SECRET_GLOBAL_SHARED_JWT_SECRET": GLOBAL_SECRET,
}


def stored_documents(db_path: Path, collection: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(str(db_path))
    try:
        rows = db.execute("SELECT data FROM documents WHERE collection = ?", (collection,))
        return [json.loads(data) for (data,) in rows]
    finally:
        db.close()


def test_export_writes_env_references_that_apply_resolves(
    admin: TestClient,
    as_role: Callable[[str], dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup_catalog(admin)
    exported = admin.get("/api/v1/declarative/export", headers=as_role("viewer"))
    assert exported.status_code == 200
    for name in REFERENCES:
        assert "${env:" + name + "}" in exported.text
    assert not any(secret in exported.text for secret in SECRETS)

    other = tmp_path / "other"
    settings = ManagerSettings(
        store=f"sqlite:///{other}/manager.db",
        logs=f"sqlite:///{other}/traffic.db",
        data_dir=other,
        secret_file=other / "cluster.secret",
        bootstrap_file=other / "bootstrap.json",
        probe_interval=0,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        token = json.loads((other / "bootstrap.json").read_text())["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        missing = client.post("/api/v1/declarative/apply", json=exported.json())
        assert missing.status_code == 422, missing.text
        [detail] = missing.json()["details"]
        assert detail["field"] == "body.global_policies[0].config.secret"
        assert "PORTWAY_SECRET_GLOBAL_SHARED_JWT_SECRET" in detail["message"]
        assert client.get("/api/v1/global-policies").json() == []
        for name, value in REFERENCES.items():
            monkeypatch.setenv(name, value)
        applied = client.post("/api/v1/declarative/apply", json=exported.json())
        assert applied.status_code == 200, applied.text
        assert not any(secret in applied.text for secret in SECRETS)
        again = client.post("/api/v1/declarative/apply", json=exported.json())
        assert again.json()["applied"] is False, again.text
    # applying the same values again changes nothing: the stored values are the variables'
    assert not any(
        secret.encode() in path.read_bytes()
        for path in other.glob("manager.db*")
        for secret in SECRETS
    )


def test_the_store_file_holds_secrets_sealed_and_a_new_key_reseals_them(
    settings: ManagerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_key = "old:" + base64.urlsafe_b64encode(bytes(range(32))).decode()
    new_key = "new:" + base64.urlsafe_b64encode(bytes(range(32, 64))).decode()
    monkeypatch.setenv("PORTWAY_SECRETS_KEY", old_key)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        token = json.loads(settings.bootstrap_file.read_text())["token"]  # type: ignore[union-attr]
        client.headers["Authorization"] = f"Bearer {token}"
        setup_catalog(client)
    files = list(settings.data_dir.glob("manager.db*"))
    raw = b"".join(path.read_bytes() for path in files)
    assert b"pwsealed:v1:old:" in raw
    for secret in SECRETS:
        assert secret.encode() not in raw
    [api] = stored_documents(settings.data_dir / "manager.db", "apis")
    assert api["policies"]["request"][0]["config"]["secret"].startswith("pwsealed:v1:old:")

    monkeypatch.setenv("PORTWAY_SECRETS_KEY", f"{new_key},{old_key}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        deployed = client.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
        assert deployed.status_code == 201, deployed.text
    [api] = stored_documents(settings.data_dir / "manager.db", "apis")
    assert api["policies"]["request"][0]["config"]["secret"].startswith("pwsealed:v1:new:")
    # the old key alone no longer opens it: it was re-sealed, not copied
    monkeypatch.setenv("PORTWAY_SECRETS_KEY", new_key)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        again = client.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
        assert again.status_code == 201, again.text

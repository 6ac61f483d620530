"""API clients: a client_id with versioned secrets (argon2), rotated with a grace period like API
keys, listed by version with dates (never a secret or hash), a version revoked at once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from portway.manager.consumers import MAX_SECRET_VERSIONS
from portway.manager.settings import ManagerSettings
from tests.manager.test_consumers import C, consumer, deployed, pulled

__all__ = ["deployed"]


def new_client(client: TestClient, **extra: Any) -> dict[str, Any]:
    client.post(C, json={"name": "app"})
    created = client.post(f"{C}/app/credentials", json={"kind": "client", **extra})
    assert created.status_code == 201, created.text
    assert created.headers["Cache-Control"] == "no-store"
    result: dict[str, Any] = created.json()
    return result


def versions(client: TestClient, credential: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{C}/app/credentials/{credential}/secrets", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_a_client_secret_is_shown_once_and_stored_as_an_argon2_hash(
    deployed: TestClient, settings: ManagerSettings, tmp_path: Path
) -> None:
    created = new_client(deployed)
    secret = created["secret"]
    assert created["kind"] == "client"
    assert created["client_id"].startswith("pwc_")
    assert secret.startswith("pwcs_")
    assert (created["secret_version"], created["secret_versions"]) == (1, [1])
    shown = deployed.get(f"{C}/app/credentials/{created['id']}").json()
    assert shown["client_id"] == created["client_id"]
    assert "secret" not in shown
    [cred] = consumer(deployed, pulled(deployed, settings))["credentials"]
    assert (cred["kind"], cred["lookup"]) == ("client", created["client_id"])
    assert cred["secrets"][0]["secret_hash"].startswith("$argon2")
    revision = deployed.get("/api/v1/environments/dev/revision").json()
    assert revision["consumers"][0]["credentials"][0]["secrets"][0]["secret_hash"] == "***"
    for path in tmp_path.glob("manager.db*"):
        assert secret.encode() not in path.read_bytes(), path
    audit = str(deployed.get("/api/v1/audit").json()["items"])
    assert secret not in audit
    assert "$argon2" not in audit
    chosen = new_client(deployed, client_id="shop-backend", label="shop")
    assert chosen["client_id"] == "shop-backend"
    clash = deployed.post(
        f"{C}/app/credentials", json={"kind": "client", "client_id": "shop-backend"}
    )
    assert clash.status_code == 409
    assert "client_id" in clash.json()["message"]


def test_rotation_adds_a_version_and_the_old_one_lives_through_its_grace(
    deployed: TestClient, settings: ManagerSettings
) -> None:
    created = new_client(deployed)
    path = f"{C}/app/credentials/{created['id']}"
    rotated = deployed.post(f"{path}/rotate", json={"grace_seconds": 3600})
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    assert (body["id"], body["client_id"]) == (created["id"], created["client_id"])
    assert body["secret_version"] == 2
    assert body["secret"] != created["secret"]
    assert body["secret_versions"] == [1, 2]
    items = versions(deployed, created["id"])["items"]
    assert [v["version"] for v in items] == [1, 2]
    assert all(v["active"] for v in items)
    grace = datetime.fromisoformat(items[0]["expires_at"]) - datetime.now(UTC)
    assert 3500 < grace.total_seconds() <= 3600
    assert items[1]["expires_at"] is None
    assert "secret" not in str(items)
    assert "hash" not in str(items)
    record = deployed.get("/api/v1/audit", params={"action": "credential.rotate"}).json()
    assert body["secret"] not in str(record)
    assert "$argon2" not in str(record)

    revoked = deployed.delete(f"{path}/secrets/1")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["active"] is False
    assert revoked.json()["revoked_at"]
    [cred] = consumer(deployed, pulled(deployed, settings))["credentials"]
    assert [s["version"] for s in cred["secrets"]] == [2]  # a revoked version never travels
    assert deployed.delete(f"{path}/secrets/1").status_code == 200  # idempotent
    assert deployed.delete(f"{path}/secrets/9").status_code == 404
    assert deployed.delete(f"{path}/secrets/0").status_code == 422
    assert deployed.delete(f"{path}/secrets/x").status_code == 422

    deployed.post(f"{path}/rotate", json={"grace_seconds": 0})
    listed = {v["version"]: v["active"] for v in versions(deployed, created["id"])["items"]}
    assert listed == {1: False, 2: False, 3: True}  # no grace: version 2 expired at once


def test_versions_page_like_other_lists(deployed: TestClient) -> None:
    created = new_client(deployed)
    path = f"{C}/app/credentials/{created['id']}"
    for _ in range(3):
        assert deployed.post(f"{path}/rotate", json={}).status_code == 201
    first = versions(deployed, created["id"], limit=2)
    assert [v["version"] for v in first["items"]] == [1, 2]
    assert first["next"]
    second = versions(deployed, created["id"], limit=2, cursor=first["next"])
    assert ([v["version"] for v in second["items"]], second["next"]) == ([3, 4], None)
    newest = versions(deployed, created["id"], order="desc", limit=3)
    assert [v["version"] for v in newest["items"]] == [4, 3, 2]
    for cursor in (first["next"][:-2] + "AA", newest["next"], "garbage"):
        bad = deployed.get(f"{path}/secrets", params={"cursor": cursor, "limit": 2})
        assert bad.status_code == 422, cursor
        assert "query.cursor" in bad.text
    other = new_client(deployed)
    stolen = deployed.get(
        f"{C}/app/credentials/{other['id']}/secrets", params={"cursor": first["next"], "limit": 2}
    )
    assert stolen.status_code == 422  # a cursor only continues the list it came from


def test_live_versions_are_bounded(deployed: TestClient) -> None:
    created = new_client(deployed)
    path = f"{C}/app/credentials/{created['id']}"
    for _ in range(MAX_SECRET_VERSIONS - 1):
        assert deployed.post(f"{path}/rotate", json={"grace_seconds": 3600}).status_code == 201
    refused = deployed.post(f"{path}/rotate", json={"grace_seconds": 3600})
    assert refused.status_code == 409
    assert "revoke one" in refused.json()["message"]
    assert deployed.delete(f"{path}/secrets/1").status_code == 200
    assert deployed.post(f"{path}/rotate", json={"grace_seconds": 3600}).status_code == 201
    listed = versions(deployed, created["id"])["items"]
    assert len(listed) <= MAX_SECRET_VERSIONS


def test_hostile_client_requests(deployed: TestClient, as_role: Any) -> None:
    created = new_client(deployed)
    path = f"{C}/app/credentials/{created['id']}"
    for body, field in [
        ({"kind": "client", "client_id": "bad id"}, "body.client_id"),
        ({"kind": "client", "client_id": "x" * 101}, "body.client_id"),
        ({"kind": "client", "key": "k" * 30}, "key belongs to api_key"),
        ({"kind": "client", "password": "p" * 20}, "username and password belong"),
        ({"kind": "api_key", "client_id": "abc"}, "client_id belongs to client"),
    ]:
        response = deployed.post(f"{C}/app/credentials", json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text, (field, response.text)
    key = deployed.post(f"{C}/app/credentials", json={"kind": "api_key"}).json()
    assert deployed.get(f"{C}/app/credentials/{key['id']}/secrets").status_code == 404
    assert deployed.delete(f"{C}/app/credentials/{key['id']}/secrets/1").status_code == 404
    assert deployed.get(f"{C}/nobody/credentials/{created['id']}/secrets").status_code == 404
    viewer = as_role("viewer")
    assert deployed.get(f"{path}/secrets", headers=viewer).status_code == 200
    writes: list[tuple[str, str, dict[str, str] | None]] = [
        ("POST", f"{C}/app/credentials", {"kind": "client"}),
        ("POST", f"{path}/rotate", {}),
        ("DELETE", f"{path}/secrets/1", None),
    ]
    for method, url, payload in writes:
        denied = deployed.request(method, url, json=payload, headers=viewer)
        assert denied.status_code == 403, (method, url)
    assert [v["active"] for v in versions(deployed, created["id"])["items"]] == [True]

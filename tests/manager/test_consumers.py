"""Consumers, credentials (hashes only, shown once, rotation, expiry, disable) and grants, and how
they reach workers: a new revision of each deployed environment, as the signed pull returns it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.cluster.signing import sign
from portway.config.revision import api_key_lookup
from portway.manager.settings import ManagerSettings

API = {"name": "orders", "base_path": "/orders", "backends": [{"url": "http://127.0.0.1:9"}]}
C = "/api/v1/consumers"


@pytest.fixture
def deployed(admin: TestClient) -> TestClient:
    admin.post("/api/v1/projects", json={"name": "default"})
    admin.post("/api/v1/environments", json={"name": "dev"})
    admin.post("/api/v1/environments", json={"name": "prod"})
    admin.post("/api/v1/projects/default/apis", json=API)
    for env in ("dev", "prod"):
        response = admin.post(f"/api/v1/environments/{env}/deployments", json={"api": "orders"})
        assert response.status_code == 201
    return admin


def pulled(client: TestClient, settings: ManagerSettings, env: str = "dev") -> dict[str, Any]:
    """The current revision exactly as a worker pulls it (signed cluster call)."""
    secret = settings.secret_file.read_text().strip().encode()
    number = client.get(f"/api/v1/environments/{env}").json()["desired_revision"]
    path = f"/_portway/cluster/environments/{env}/revisions/{number}"
    response = client.get(path, headers=sign(secret, "GET", path))
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def consumer(client: TestClient, revision: dict[str, Any], name: str = "app") -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in revision["consumers"] if c["name"] == name)
    return found


def add_key(client: TestClient, name: str = "app", **extra: Any) -> dict[str, Any]:
    response = client.post(f"{C}/{name}/credentials", json={"kind": "api_key", **extra})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_the_key_hash_is_the_sha256_of_the_key() -> None:
    assert api_key_lookup("pwk_abc") == hashlib.sha256(b"pwk_abc").hexdigest()
    assert api_key_lookup("pwk_é") == hashlib.sha256("pwk_é".encode()).hexdigest()


def test_a_consumer_change_publishes_a_revision_of_every_deployed_environment(
    deployed: TestClient, settings: ManagerSettings
) -> None:
    created = deployed.post(C, json={"name": "app", "grants": [{"api": "orders"}]})
    assert created.status_code == 201, created.text
    assert created.headers["X-Portway-Published"] == "dev@2, prod@2"
    for env in ("dev", "prod"):
        revision = pulled(deployed, settings, env)
        assert [d["api"]["name"] for d in revision["apis"]] == ["orders"]  # same APIs
        assert consumer(deployed, revision)["grants"][0]["api"] == "orders"
    history = deployed.get("/api/v1/environments/dev/deployments").json()["items"]
    assert history[0]["action"] == "consumers"
    assert history[0]["env_revision"] == 2


def test_api_keys_are_shown_once_and_stored_only_as_hashes(
    deployed: TestClient, settings: ManagerSettings, tmp_path: Path
) -> None:
    deployed.post(C, json={"name": "app"})
    created = add_key(deployed, label="ci")
    key = created["secret"]
    assert key.startswith("pwk_")
    assert created["key_prefix"] == key[:8]
    assert created["active"] is True
    listed = deployed.get(f"{C}/app/credentials").json()
    assert key not in str(listed)
    assert "secret" not in listed[0]
    revision = pulled(deployed, settings)
    [cred] = consumer(deployed, revision)["credentials"]
    assert cred["lookup"] == api_key_lookup(key)
    assert cred["kind"] == "api_key"
    # the management API's view of the revision hides even the hash
    shown = deployed.get("/api/v1/environments/dev/revision").json()
    assert shown["consumers"][0]["credentials"][0]["lookup"] == "***"
    # nowhere on disk: not in the database, its WAL, or the audit log
    for path in tmp_path.glob("manager.db*"):
        assert key.encode() not in path.read_bytes(), path
    assert key not in str(deployed.get("/api/v1/audit").json()["items"])
    assert api_key_lookup(key) not in str(deployed.get("/api/v1/audit").json()["items"])


def test_basic_passwords_are_argon2_hashed(
    deployed: TestClient, settings: ManagerSettings, tmp_path: Path
) -> None:
    deployed.post(C, json={"name": "app"})
    created = deployed.post(
        f"{C}/app/credentials",
        json={"kind": "basic", "username": "app-user", "password": "a long enough password"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["username"] == "app-user"
    [cred] = consumer(deployed, pulled(deployed, settings))["credentials"]
    assert cred["lookup"] == "app-user"
    assert cred["secret_hash"].startswith("$argon2")
    for path in tmp_path.glob("manager.db*"):
        assert b"a long enough password" not in path.read_bytes()
    generated = deployed.post(
        f"{C}/app/credentials", json={"kind": "basic", "username": "second"}
    ).json()
    assert len(generated["secret"]) >= 16
    dup = deployed.post(f"{C}/app/credentials", json={"kind": "basic", "username": "app-user"})
    assert dup.status_code == 409
    bad = deployed.post(f"{C}/app/credentials", json={"kind": "basic"})
    assert bad.status_code == 422
    changed = deployed.patch(
        f"{C}/app/credentials/{created.json()['id']}", json={"password": "another long password"}
    )
    assert changed.status_code == 200
    creds = consumer(deployed, pulled(deployed, settings))["credentials"]
    [again] = [c for c in creds if c["lookup"] == "app-user"]
    assert again["secret_hash"].startswith("$argon2")
    assert again["secret_hash"] != cred["secret_hash"]


def test_rotation_keeps_the_old_key_for_the_grace_period(
    deployed: TestClient, settings: ManagerSettings
) -> None:
    deployed.post(C, json={"name": "app"})
    old = add_key(deployed)
    before = datetime.now(UTC)
    rotated = deployed.post(f"{C}/app/credentials/{old['id']}/rotate", json={"grace_seconds": 3600})
    after = datetime.now(UTC)
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["secret"] != old["secret"]
    assert new["rotated_from"] == old["id"]
    old_now = deployed.get(f"{C}/app/credentials/{old['id']}").json()
    assert old_now["replaced_by"] == new["id"]
    assert old_now["active"] is True
    expiry = datetime.fromisoformat(old_now["expires_at"])
    assert before + timedelta(seconds=3600) <= expiry <= after + timedelta(seconds=3600)
    creds = consumer(deployed, pulled(deployed, settings))["credentials"]
    lookups = {c["lookup"]: c for c in creds}
    assert set(lookups) == {api_key_lookup(old["secret"]), api_key_lookup(new["secret"])}
    assert lookups[api_key_lookup(old["secret"])]["expires_at"] is not None
    again = deployed.post(f"{C}/app/credentials/{old['id']}/rotate", json={})
    assert again.status_code == 422
    immediate = deployed.post(f"{C}/app/credentials/{new['id']}/rotate", json={"grace_seconds": 0})
    assert immediate.status_code == 201
    assert deployed.get(f"{C}/app/credentials/{new['id']}").json()["active"] is False


def test_disable_and_expiry_reach_the_workers(
    deployed: TestClient, settings: ManagerSettings
) -> None:
    deployed.post(C, json={"name": "app"})
    key = add_key(deployed)
    url = f"{C}/app/credentials/{key['id']}"
    assert deployed.patch(url, json={"disabled": True}).json()["active"] is False
    [cred] = consumer(deployed, pulled(deployed, settings))["credentials"]
    assert cred["disabled"] is True
    deployed.patch(url, json={"disabled": False, "expires_at": "2030-01-01T00:00:00Z"})
    [cred] = consumer(deployed, pulled(deployed, settings))["credentials"]
    assert cred["disabled"] is False
    assert cred["expires_at"].startswith("2030-01-01T00:00:00")
    deployed.patch(url, json={"expires_at": None})
    [cred] = consumer(deployed, pulled(deployed, settings))["credentials"]
    assert cred["expires_at"] is None
    deployed.put(f"{C}/app", json={"name": "app", "disabled": True})
    assert consumer(deployed, pulled(deployed, settings))["disabled"] is True


def test_grants_with_expiry_environments_and_per_environment_limits(
    deployed: TestClient, settings: ManagerSettings
) -> None:
    deployed.post(C, json={"name": "app"})
    grant = {
        "expires_at": "2031-05-01T00:00:00Z",
        "environments": ["dev", "prod"],
        "limits": {
            "dev": {"throttling": {"limit": 5, "interval": 1}},
            "prod": {"quota": {"limit": 1000, "period": "month"}},
        },
    }
    put = deployed.put(f"{C}/app/grants/default/orders", json=grant)
    assert put.status_code == 200, put.text
    dev = consumer(deployed, pulled(deployed, settings, "dev"))["grants"][0]
    prod = consumer(deployed, pulled(deployed, settings, "prod"))["grants"][0]
    assert dev["throttling"] == {"limit": 5, "interval": 1.0}
    assert dev["quota"] is None
    assert prod["quota"] == {"limit": 1000, "period": "month"}
    assert prod["throttling"] is None
    assert dev["environments"] == ["dev", "prod"]
    assert dev["expires_at"].startswith("2031-05-01")
    assert deployed.get(f"{C}/app/grants").json()[0]["api"] == "orders"
    assert deployed.delete(f"{C}/app/grants/default/orders").status_code == 204
    assert consumer(deployed, pulled(deployed, settings))["grants"] == []
    assert deployed.delete(f"{C}/app/grants/default/orders").status_code == 404


@pytest.mark.parametrize(
    ("grant", "field"),
    [
        ({"api": "nope"}, "body.grants[0].api"),
        ({"api": "orders", "environments": ["nope"]}, "body.grants[0].environments[0]"),
        ({"api": "orders", "limits": {"nope": {}}}, "body.grants[0].limits.nope"),
        (
            {"api": "orders", "environments": ["dev"], "limits": {"prod": {}}},
            "body.grants[0]",
        ),
        ({"api": "orders", "limits": {"dev": {"quota": {"limit": 0}}}}, "body.grants[0].limits"),
    ],
)
def test_invalid_grants_are_422_with_the_field(
    deployed: TestClient, grant: dict[str, Any], field: str
) -> None:
    response = deployed.post(C, json={"name": "app", "grants": [grant]})
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"].startswith(field), response.json()
    assert deployed.get(C).json()["items"] == []


def test_consumer_names_are_unique_and_deletion_removes_credentials(
    deployed: TestClient, settings: ManagerSettings
) -> None:
    deployed.post(C, json={"name": "app"})
    add_key(deployed)
    assert deployed.post(C, json={"name": "app"}).status_code == 409
    assert deployed.delete(f"{C}/app").status_code == 204
    assert deployed.get(f"{C}/app").status_code == 404
    assert pulled(deployed, settings)["consumers"] == []
    deployed.post(C, json={"name": "app"})
    assert deployed.get(f"{C}/app/credentials").json() == []


def test_consumer_changes_are_audited_without_secrets(deployed: TestClient) -> None:
    deployed.post(C, json={"name": "app"})
    key = add_key(deployed)
    deployed.post(f"{C}/app/credentials/{key['id']}/rotate", json={})
    records = deployed.get("/api/v1/audit?target_prefix=consumers/").json()["items"]
    actions = [r["action"] for r in records]
    assert {"consumer.create", "credential.create", "credential.rotate"} <= set(actions)
    text = str(records)
    assert key["secret"] not in text
    assert api_key_lookup(key["secret"]) not in text


def test_environments_without_a_deployment_get_no_revision(admin: TestClient) -> None:
    admin.post("/api/v1/environments", json={"name": "dev"})
    created = admin.post(C, json={"name": "app"})
    assert created.status_code == 201
    assert created.headers["X-Portway-Published"] == ""
    assert admin.get("/api/v1/environments/dev").json()["desired_revision"] is None


def test_digest_credentials_keep_ha1_never_the_password(
    deployed: TestClient, settings: ManagerSettings, tmp_path: Path
) -> None:
    password = "a long digest password"
    deployed.post(C, json={"name": "app"})
    created = deployed.post(
        f"{C}/app/credentials",
        json={"kind": "digest", "username": "app-user", "password": password, "realm": "shop"},
    )
    assert created.status_code == 201, created.text
    view = created.json()
    assert (view["kind"], view["username"], view["realm"], view["secret"]) == (
        "digest",
        "app-user",
        "shop",
        password,
    )
    assert "ha1" not in view
    ha1 = hashlib.sha256(f"app-user:shop:{password}".encode()).hexdigest()
    [cred] = consumer(deployed, pulled(deployed, settings))["credentials"]
    assert (cred["kind"], cred["lookup"], cred["username"], cred["realm"]) == (
        "digest",
        "digest:app-user:shop",
        "app-user",
        "shop",
    )
    assert cred["ha1"] == {"SHA-256": ha1}  # no MD5 unless asked for
    assert pulled(deployed, settings)["nonce_secret"]
    for path in tmp_path.glob("manager.db*"):
        assert password.encode() not in path.read_bytes()
    # the management API shows neither HA1 nor the nonce secret
    shown = deployed.get("/api/v1/environments/dev/revision").json()
    [shown_cred] = consumer(deployed, shown)["credentials"]
    assert shown_cred["ha1"] == {"SHA-256": "***"}
    assert shown["nonce_secret"] == "***"
    assert ha1 not in str(deployed.get("/api/v1/audit").json()["items"])
    # a basic credential may share the username: digest looks up by username and realm
    basic = deployed.post(f"{C}/app/credentials", json={"kind": "basic", "username": "app-user"})
    assert basic.status_code == 201
    dup = deployed.post(
        f"{C}/app/credentials", json={"kind": "digest", "username": "app-user", "realm": "shop"}
    )
    assert dup.status_code == 409
    # a new password recomputes HA1 (and keeps MD5 only if it was kept)
    changed = deployed.patch(
        f"{C}/app/credentials/{view['id']}", json={"password": "another digest password"}
    )
    assert changed.status_code == 200, changed.text
    creds = consumer(deployed, pulled(deployed, settings))["credentials"]
    [again] = [c for c in creds if c["kind"] == "digest"]
    assert again["ha1"]["SHA-256"] != ha1
    legacy = deployed.post(
        f"{C}/app/credentials", json={"kind": "digest", "username": "old-client", "md5": True}
    ).json()
    creds = consumer(deployed, pulled(deployed, settings))["credentials"]
    [old] = [c for c in creds if c["username"] == "old-client"]
    md5 = hashlib.md5(f"old-client:portway:{legacy['secret']}".encode()).hexdigest()
    assert (old["realm"], old["ha1"]["MD5"]) == ("portway", md5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "digest"}, "digest credentials need a username"),
        ({"kind": "basic", "username": "u", "realm": "r"}, "realm and md5 belong to digest"),
        ({"kind": "digest", "username": "u", "realm": 'a"b'}, "String should match pattern"),
        ({"kind": "api_key", "md5": True}, "realm and md5 belong to digest"),
    ],
)
def test_invalid_digest_credentials_are_422(
    deployed: TestClient, body: dict[str, Any], message: str
) -> None:
    deployed.post(C, json={"name": "app"})
    response = deployed.post(f"{C}/app/credentials", json=body)
    assert response.status_code == 422, response.text
    assert message in response.text

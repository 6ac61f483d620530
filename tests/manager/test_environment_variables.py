"""Per-environment variables through the management API: typed CRUD, the permissions of
environments, audit with secret values masked, ``${env.NAME}`` expanded per environment when a
revision is built (only the signed cluster API hands out expanded values), and a secret value in
no answer to any role."""

from __future__ import annotations

import base64
import json
import sqlite3
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.cluster.signing import sign
from portway.manager.settings import ManagerSettings

SECRET = "sk-live-7f3a9c2e-the-backend-key"
SECRET_2 = "sk-live-second-value-4411"
VARS = "/api/v1/environments/{env}/variables"


def put_var(client: TestClient, env: str, name: str, body: dict[str, Any], **kw: Any) -> Any:
    return client.put(f"{VARS.format(env=env)}/{name}", json=body, **kw)


def catalog(admin: TestClient) -> None:
    for env in ("dev", "prod"):
        assert admin.post("/api/v1/environments", json={"name": env}).status_code == 201
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    api = {
        "name": "orders",
        "base_path": "/orders",
        "backends": [{"url": "${env.BACKEND}/v1"}],
        "policies": {
            "request": [
                {
                    "name": "key",
                    "type": "rewrite",
                    "config": {"request_headers": {"set": {"x-api-key": "${env.API_KEY}"}}},
                }
            ]
        },
    }
    created = admin.post("/api/v1/projects/default/apis", json=api)
    assert created.status_code == 201, created.text
    for env, host in (("dev", "127.0.0.1:9001"), ("prod", "127.0.0.1:9002")):
        assert put_var(admin, env, "BACKEND", {"value": f"http://{host}"}).status_code == 200
    secret = {"value": SECRET, "secret": True, "description": "backend key"}
    assert put_var(admin, "prod", "API_KEY", secret).status_code == 200
    assert put_var(admin, "dev", "API_KEY", {"value": "dev-key"}).status_code == 200


def deploy(admin: TestClient, env: str) -> Any:
    return admin.post(f"/api/v1/environments/{env}/deployments", json={"api": "orders"})


def pulled(admin: TestClient, settings: ManagerSettings, env: str, number: int) -> Any:
    """The revision as a worker pulls it over the signed cluster API."""
    secret = settings.secret_file.read_text().strip().encode()
    path = f"/_portway/cluster/environments/{env}/revisions/{number}"
    answer = admin.get(path, headers=sign(secret, "GET", path, b""))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_crud_with_versions(admin: TestClient) -> None:
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    created = put_var(admin, "dev", "REGION", {"value": "eu-1", "description": "where"})
    assert created.status_code == 200, created.text
    assert created.json() == {
        "environment": "dev",
        "name": "REGION",
        "value": "eu-1",
        "secret": False,
        "description": "where",
        "version": 1,
    }
    assert created.headers["ETag"] == '"1"'
    stale = put_var(admin, "dev", "REGION", {"value": "eu-2"}, headers={"If-Match": '"7"'})
    assert stale.status_code == 409, stale.text
    changed = put_var(admin, "dev", "REGION", {"value": "eu-2"}, headers={"If-Match": '"1"'})
    assert changed.json()["version"] == 2
    assert put_var(admin, "dev", "ZONE", {"value": "a"}).status_code == 200
    listed = admin.get(VARS.format(env="dev")).json()
    assert [(v["name"], v["value"]) for v in listed] == [("REGION", "eu-2"), ("ZONE", "a")]
    assert admin.get(f"{VARS.format(env='dev')}/REGION").json()["value"] == "eu-2"
    assert admin.delete(f"{VARS.format(env='dev')}/ZONE").status_code == 204
    assert admin.get(f"{VARS.format(env='dev')}/ZONE").status_code == 404
    assert admin.delete(f"{VARS.format(env='dev')}/ZONE").status_code == 404
    # another environment has its own set; an unknown environment is 404
    assert admin.get(VARS.format(env="nope")).status_code == 404
    assert put_var(admin, "nope", "A", {"value": "x"}).status_code == 404
    # deleting the environment takes its variables along
    assert admin.delete("/api/v1/environments/dev").status_code == 204
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    assert admin.get(VARS.format(env="dev")).json() == []


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("lower", {"value": "x"}, "path.name"),
        ("1ABC", {"value": "x"}, "path.name"),
        ("A-B", {"value": "x"}, "path.name"),
        ("A" * 129, {"value": "x"}, "path.name"),
        ("OK", {"value": 3}, "body.value"),
        ("OK", {"value": "x" * 8193}, "body.value"),
        ("OK", {"value": "x", "secret": "true"}, "body.secret"),
        ("OK", {"value": "x", "environment": "prod"}, "body.environment"),
        ("OK", {}, "body.value"),
    ],
)
def test_bad_input_names_the_field(
    admin: TestClient, name: str, body: dict[str, Any], field: str
) -> None:
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    refused = put_var(admin, "dev", name, body)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["details"][0]["field"] == field
    assert problem["correlation_id"]


def test_only_environment_managers_write(
    admin: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    for role in ("viewer", "api_manager", "deployer", "security_officer"):
        body = {"value": "x"}
        assert put_var(admin, "dev", "A", body, headers=as_role(role)).status_code == 403, role
        assert admin.delete(f"{VARS.format(env='dev')}/A", headers=as_role(role)).status_code in (
            403,
        ), role
    assert put_var(admin, "dev", "A", {"value": "x"}, headers=as_role("admin")).status_code == 200
    assert admin.get(VARS.format(env="dev"), headers=as_role("viewer")).status_code == 200


def test_each_environment_expands_its_own_values(
    admin: TestClient, settings: ManagerSettings
) -> None:
    catalog(admin)
    for env, number, host, key in (
        ("dev", 1, "127.0.0.1:9001", "dev-key"),
        ("prod", 1, "127.0.0.1:9002", SECRET),
    ):
        deployed = deploy(admin, env)
        assert deployed.status_code == 201, deployed.text
        api = pulled(admin, settings, env, number)["apis"][0]["api"]
        assert api["backends"][0]["url"] == f"http://{host}/v1"
        headers = api["policies"]["request"][0]["config"]["request_headers"]["set"]
        assert headers == {"x-api-key": key}
        # users read the API as written and the values it was built with
        shown = admin.get(f"/api/v1/environments/{env}/revision").json()
        assert shown["apis"][0]["api"]["backends"][0]["url"] == "${env.BACKEND}/v1"
        assert shown["variables"]["BACKEND"] == {"value": f"http://{host}", "secret": False}
    shown = admin.get("/api/v1/environments/prod/revisions/1").json()
    assert shown["variables"]["API_KEY"] == {"value": "***", "secret": True}
    # a changed value takes effect with the next deploy, never inside a built revision
    assert put_var(admin, "dev", "BACKEND", {"value": "http://127.0.0.1:9003"}).status_code == 200
    assert pulled(admin, settings, "dev", 1)["apis"][0]["api"]["backends"][0]["url"].endswith(
        ":9001/v1"
    )
    status = admin.get("/api/v1/projects/default/apis/orders/status").json()
    by_env = {row["environment"]: row for row in status["deployments"]}
    assert by_env["dev"]["redeploy_required"] is True
    assert by_env["dev"]["reasons"] == ["variable BACKEND changed"]
    assert by_env["prod"]["redeploy_required"] is False
    assert deploy(admin, "dev").status_code == 201
    status = admin.get("/api/v1/projects/default/apis/orders/status").json()
    assert not any(row["redeploy_required"] for row in status["deployments"])
    assert pulled(admin, settings, "dev", 2)["apis"][0]["api"]["backends"][0]["url"].endswith(
        ":9003/v1"
    )
    # the pull is signed: unsigned, it is refused
    path = "/_portway/cluster/environments/prod/revisions/1"
    assert admin.get(path).status_code == 401


def test_an_undefined_variable_refuses_the_deploy_naming_api_field_and_variable(
    admin: TestClient,
) -> None:
    catalog(admin)
    assert admin.delete(f"{VARS.format(env='dev')}/API_KEY").status_code == 204
    refused = deploy(admin, "dev")
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["details"][0]["field"] == (
        "apis[default/orders].policies.request[0].config.request_headers.set.x-api-key"
    )
    assert (
        "API default/orders in environment dev: variable API_KEY is not defined"
        in (problem["message"])
    )
    # nothing was deployed
    assert admin.get("/api/v1/environments/dev/revision").status_code == 404


@pytest.mark.parametrize(
    ("value", "field_end", "why"),
    [
        ("http://169.254.169.254", "backends[0].url", "in a network backends may not use"),
        ("ftp://files.example", "backends[0].url", "scheme must be http or https"),
        ("http://h:1/?x=1", "backends[0].url", "must not carry a query"),
    ],
)
def test_an_expanded_backend_url_goes_through_the_url_checks(
    admin: TestClient, value: str, field_end: str, why: str
) -> None:
    catalog(admin)
    assert put_var(admin, "dev", "BACKEND", {"value": value}).status_code == 200
    refused = deploy(admin, "dev")
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["details"][0]["field"] == f"apis[default/orders].{field_end}"
    assert why in problem["message"]


def test_a_secret_variable_is_refused_in_a_backend_url(admin: TestClient) -> None:
    catalog(admin)
    body = {"value": "http://127.0.0.1:9001", "secret": True}
    assert put_var(admin, "dev", "BACKEND", body).status_code == 200
    refused = deploy(admin, "dev")
    assert refused.status_code == 422
    assert "secret variable BACKEND may not be used in a backend URL" in refused.text
    assert "127.0.0.1:9001" not in refused.text


def test_a_policy_check_waits_for_the_expanded_value(admin: TestClient) -> None:
    """A rewrite refuses ``${env.X}`` as its own placeholder: the reference is checked once
    expanded; an expanded value the policy refuses is refused at deploy, naming the field."""
    catalog(admin)
    assert put_var(admin, "dev", "API_KEY", {"value": "bad\r\nx-injected: 1"}).status_code == 200
    refused = deploy(admin, "dev")
    assert refused.status_code == 422, refused.text
    assert "default/orders" in refused.text
    assert "request_headers.set" in refused.text
    # the escape is literal text for the policy: its own placeholder syntax, refused as such
    api = admin.get("/api/v1/projects/default/apis/orders").json()
    config = api["policies"]["request"][0]["config"]
    config["request_headers"]["set"]["x-api-key"] = "$${env.API_KEY}"
    version = api.pop("version")
    saved = admin.put(
        "/api/v1/projects/default/apis/orders", json=api, headers={"If-Match": str(version)}
    )
    assert saved.status_code == 200, saved.text
    refused = deploy(admin, "prod")
    assert refused.status_code == 422, refused.text
    assert "unknown variable 'env.API_KEY'" in refused.text


def test_stars_keep_a_secret_and_cannot_unmask_it(admin: TestClient) -> None:
    catalog(admin)
    kept = put_var(admin, "prod", "API_KEY", {"value": "***", "secret": True})
    assert kept.status_code == 200, kept.text
    assert kept.json()["value"] == "***"
    revealed = put_var(admin, "prod", "API_KEY", {"value": "***", "secret": False})
    assert revealed.status_code == 422
    assert revealed.json()["details"][0]["field"] == "body.secret"
    nothing = put_var(admin, "dev", "NEW", {"value": "***", "secret": True})
    assert nothing.status_code == 422
    assert nothing.json()["details"][0]["field"] == "body.value"
    plain = put_var(admin, "dev", "BACKEND", {"value": "***", "secret": True})
    assert plain.status_code == 422  # a plain variable has no secret to keep
    assert deploy(admin, "prod").status_code == 201


READS = (
    "/environments/prod/variables",
    "/environments/prod/variables/API_KEY",
    "/environments/prod/revision",
    "/environments/prod/revisions/1",
    "/environments/prod/revisions/2",
    "/environments/prod/deployments",
    "/environments/prod",
    "/projects/default/apis/orders",
    "/projects/default/apis/orders/revisions/1",
    "/projects/default/apis/orders/status",
    "/audit",
    "/audit?target_prefix=environments/prod/variables",
    "/declarative/export",
)


def test_no_read_shows_a_secret_value_to_any_role(
    admin: TestClient,
    settings: ManagerSettings,
    as_role: Callable[[str], dict[str, str]],
) -> None:
    catalog(admin)
    assert deploy(admin, "prod").status_code == 201
    # a change of the secret leaves audit records of old and new; a new revision holds it
    secret = {"value": SECRET_2, "secret": True}
    assert put_var(admin, "prod", "API_KEY", secret).status_code == 200
    assert deploy(admin, "prod").status_code == 201
    assert pulled(admin, settings, "prod", 2)["apis"][0]["api"]["policies"]["request"][0]["config"][
        "request_headers"
    ]["set"] == {"x-api-key": SECRET_2}
    for role in ("viewer", "deployer", "api_manager", "security_officer", "admin"):
        for path in READS:
            answer = admin.get(f"/api/v1{path}", headers=as_role(role))
            if path.startswith("/audit") and role not in ("admin", "security_officer"):
                assert answer.status_code == 403, (role, path)
                continue
            assert answer.status_code == 200, (role, path, answer.text)
            assert SECRET not in answer.text, (role, path)
            assert SECRET_2 not in answer.text, (role, path)
    records = admin.get("/api/v1/audit?target_prefix=environments/prod/variables/API").json()
    assert [r["action"] for r in records["items"]] == [
        "environment_variable.update",
        "environment_variable.create",
    ]
    # at rest: sealed in the variable and in the stored (compressed) revisions
    db = sqlite3.connect(str(settings.data_dir / "manager.db"))
    try:
        rows = [str(r) for r in db.execute("SELECT data FROM documents")]
        parts = [
            json.loads(data)["data"]
            for (data,) in db.execute(
                "SELECT data FROM documents WHERE collection = 'env_revision_parts'"
            )
        ]
    finally:
        db.close()
    assert not any(SECRET in row or SECRET_2 in row for row in rows)
    revisions = [zlib.decompress(base64.b64decode(p)).decode() for p in parts]
    assert revisions
    assert all("pwsealed:v1:" in r for r in revisions)
    assert not any(SECRET in r or SECRET_2 in r for r in revisions)


def test_a_refusal_quoting_a_secret_value_masks_it(admin: TestClient) -> None:
    catalog(admin)
    api = admin.get("/api/v1/projects/default/apis/orders").json()
    version = api.pop("version")
    ips = {"name": "ips", "type": "ip_filter", "config": {"deny": ["${env.BLOCKED}"]}}
    api["policies"]["request"].append(ips)
    saved = admin.put(
        "/api/v1/projects/default/apis/orders", json=api, headers={"If-Match": str(version)}
    )
    assert saved.status_code == 200, saved.text
    body = {"value": "not-a-network-but-a-secret", "secret": True}
    assert put_var(admin, "prod", "BLOCKED", body).status_code == 200
    refused = deploy(admin, "prod")
    assert refused.status_code == 422, refused.text
    assert "'***' is not an IP address or CIDR network" in refused.text
    assert "not-a-network-but-a-secret" not in refused.text


def test_a_write_only_policy_field_may_name_a_variable_and_reads_as_written(
    admin: TestClient, settings: ManagerSettings
) -> None:
    catalog(admin)
    api = admin.get("/api/v1/projects/default/apis/orders").json()
    version = api.pop("version")
    jwt = {"algorithms": ["HS256"], "secret": "${env.JWT_SECRET}"}
    api["policies"]["request"].append({"name": "auth", "type": "jwt", "config": jwt})
    saved = admin.put(
        "/api/v1/projects/default/apis/orders", json=api, headers={"If-Match": str(version)}
    )
    assert saved.status_code == 200, saved.text
    # the reference is no secret: shown as written, exported as written
    shown = admin.get("/api/v1/projects/default/apis/orders/policies/request/auth").json()
    assert shown["config"]["secret"] == "${env.JWT_SECRET}"
    exported = admin.get("/api/v1/declarative/export").text
    assert "${env.JWT_SECRET}" in exported
    value = "a-jwt-signing-secret-of-32-bytes-or-more"
    body = {"value": value, "secret": True}
    assert put_var(admin, "prod", "JWT_SECRET", body).status_code == 200
    assert deploy(admin, "prod").status_code == 201
    pulled_api = pulled(admin, settings, "prod", 1)["apis"][0]["api"]
    assert pulled_api["policies"]["request"][1]["config"]["secret"] == value
    assert value not in admin.get("/api/v1/environments/prod/revision").text

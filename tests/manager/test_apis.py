"""API proxies beyond create/read: search, merge patch, endpoints, policies at proxy and endpoint
scope (validated by each policy's own model), global policies and "redeploy required"."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

API = {"name": "orders", "base_path": "/orders", "backends": [{"url": "http://127.0.0.1:9"}]}
BASE = "/api/v1/projects/default/apis/orders"
THROTTLE = {"name": "throttle", "type": "throttling", "config": {"limit": 10}}
IP_FILTER = {"name": "ips", "type": "ip_filter", "config": {"allow": ["10.0.0.0/8"]}}


@pytest.fixture
def api(admin: TestClient) -> TestClient:
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    assert admin.post("/api/v1/projects/default/apis", json=API).status_code == 201
    return admin


def deploy(client: TestClient, name: str = "orders", env: str = "dev") -> dict[str, Any]:
    response = client.post(f"/api/v1/environments/{env}/deployments", json={"api": name})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def status(client: TestClient, name: str = "orders") -> dict[str, Any]:
    result: dict[str, Any] = client.get(f"/api/v1/projects/default/apis/{name}/status").json()
    return result


# API proxies -------------------------------------------------------------------------------
def test_merge_patch_changes_only_what_it_names(api: TestClient) -> None:
    patched = api.patch(BASE, json={"maintenance": True, "connection": {"retries": 3}})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["maintenance"] is True
    assert body["connection"]["retries"] == 3
    assert body["connection"]["connect_timeout"] == 5.0
    assert body["version"] == 2
    refused = api.patch(BASE, json={"name": "other"})
    assert refused.status_code == 422
    assert refused.json()["details"][0]["field"] == "body.name"
    invalid = api.patch(BASE, json={"connection": {"retries": 99}})
    assert invalid.status_code == 422
    assert invalid.json()["details"][0]["field"] == "body.connection.retries"
    assert api.patch(BASE, json={}, headers={"If-Match": '"1"'}).status_code == 409


def test_search_across_projects_with_filters(api: TestClient) -> None:
    def names(query: str) -> list[str]:
        return [r["name"] for r in api.get(f"/api/v1/apis?{query}").json()["items"]]

    api.post("/api/v1/projects", json={"name": "shop"})
    api.post(
        "/api/v1/projects/shop/apis",
        json=API | {"name": "carts", "base_path": "/carts", "project": "shop"},
    )
    deploy(api)
    rows = api.get("/api/v1/apis").json()["items"]
    assert [(r["project"], r["name"]) for r in rows] == [("default", "orders"), ("shop", "carts")]
    assert rows[0]["deployments"] == [
        {"environment": "dev", "api_revision": 1, "redeploy_required": False}
    ]
    assert names("environment=dev") == ["orders"]
    assert names("project=shop") == ["carts"]
    assert names("name_contains=ord") == ["orders"]
    assert names("base_path_prefix=/ca") == ["carts"]


def test_a_deployed_api_cannot_be_deleted(api: TestClient) -> None:
    deploy(api)
    refused = api.delete(BASE)
    assert refused.status_code == 409
    assert "undeploy" in refused.json()["message"]
    api.post("/api/v1/environments/dev/deployments", json={"api": "orders", "action": "undeploy"})
    assert api.delete(BASE).status_code == 204


def test_projects_and_environments_in_use_cannot_be_deleted(api: TestClient) -> None:
    assert api.delete("/api/v1/projects/default").status_code == 409
    deploy(api)
    assert api.delete("/api/v1/environments/dev").status_code == 409
    updated = api.put("/api/v1/environments/dev", json={"name": "dev", "description": "d"})
    assert updated.status_code == 200
    assert updated.json()["desired_revision"] == 1  # not lost by an update


def test_api_revision_documents_are_readable(api: TestClient) -> None:
    deploy(api)
    api.patch(BASE, json={"description": "v2"})
    deploy(api)
    assert [r["revision"] for r in api.get(BASE + "/revisions").json()] == [1, 2]
    assert api.get(BASE + "/revisions/1").json()["description"] == ""
    assert api.get(BASE + "/revisions/2").json()["description"] == "v2"
    assert api.get(BASE + "/revisions/9").status_code == 404


# endpoints ---------------------------------------------------------------------------------
def test_endpoints_crud(api: TestClient) -> None:
    first = api.post(BASE + "/endpoints", json={"path": "/items/{id}", "methods": ["GET"]})
    assert first.status_code == 201, first.text
    assert first.json()["index"] == 0
    assert first.headers["ETag"] == '"2"'
    second = api.post(
        BASE + "/endpoints?position=0", json={"path": "/items", "methods": ["get", "post"]}
    )
    assert second.json()["index"] == 0
    assert second.json()["methods"] == ["GET", "POST"]
    listed = api.get(BASE + "/endpoints").json()
    assert [(e["index"], e["path"]) for e in listed] == [(0, "/items"), (1, "/items/{id}")]
    duplicate = api.post(BASE + "/endpoints", json={"path": "/items", "methods": ["POST", "GET"]})
    assert duplicate.status_code == 409
    bad = api.post(BASE + "/endpoints", json={"path": "items"})
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "body.path"
    replaced = api.put(BASE + "/endpoints/1", json={"path": "/items/{sku}", "methods": ["GET"]})
    assert replaced.json()["path"] == "/items/{sku}"
    stale = api.delete(BASE + "/endpoints/0", headers={"If-Match": '"1"'})
    assert stale.status_code == 409
    assert api.delete(BASE + "/endpoints/0").status_code == 204
    assert [e["path"] for e in api.get(BASE + "/endpoints").json()] == ["/items/{sku}"]
    assert api.get(BASE + "/endpoints/5").status_code == 404


# policies ----------------------------------------------------------------------------------
def test_policies_add_update_reorder_remove_at_proxy_scope(api: TestClient) -> None:
    added = api.post(BASE + "/policies/request", json=THROTTLE)
    assert added.status_code == 201, added.text
    assert added.json()["config"] == {"limit": 10}
    api.post(BASE + "/policies/request?position=0", json=IP_FILTER)
    names = [p["name"] for p in api.get(BASE + "/policies").json()["request"]]
    assert names == ["ips", "throttle"]
    reordered = api.put(BASE + "/policy-order/request", json={"names": ["throttle", "ips"]})
    assert [p["name"] for p in reordered.json()] == ["throttle", "ips"]
    incomplete = api.put(BASE + "/policy-order/request", json={"names": ["ips"]})
    assert incomplete.status_code == 422
    assert incomplete.json()["details"][0]["field"] == "body.names"
    updated = api.put(
        BASE + "/policies/request/throttle", json=THROTTLE | {"config": {"limit": 20}}
    )
    assert updated.json()["config"]["limit"] == 20
    assert api.get(BASE + "/policies/request/throttle").json()["config"]["limit"] == 20
    assert api.delete(BASE + "/policies/request/ips").status_code == 204
    assert api.get(BASE + "/policies/request/ips").status_code == 404
    stored = api.get(BASE).json()["policies"]["request"]
    assert [p["name"] for p in stored] == ["throttle"]
    actions = [r["action"] for r in api.get("/api/v1/audit?target_prefix=apis/").json()["items"]]
    assert actions.count("api.update") == 5


def test_policy_names_are_unique_in_their_scope(api: TestClient) -> None:
    api.post(BASE + "/policies/request", json=THROTTLE)
    duplicate = api.post(
        BASE + "/policies/response", json={"name": "throttle", "type": "mock_response"}
    )
    assert duplicate.status_code == 409


@pytest.mark.parametrize(
    ("phase", "policy", "field"),
    [
        ("request", THROTTLE | {"config": {"limit": 0}}, "body.config.limit"),
        ("request", THROTTLE | {"config": {"limit": 5, "colour": 1}}, "body.config.colour"),
        ("request", IP_FILTER | {"config": {"allow": ["not-an-ip"]}}, "body.config.allow"),
        ("request", {"name": "x", "type": "no_such_type"}, "body.type"),
        ("response", THROTTLE, "body.type"),  # throttling only runs on requests
        ("request", THROTTLE | {"condition": {"op": "NOPE"}}, "body.condition"),
    ],
)
def test_policy_configs_are_validated_by_their_own_model(
    api: TestClient, phase: str, policy: dict[str, Any], field: str
) -> None:
    response = api.post(BASE + f"/policies/{phase}", json=policy)
    assert response.status_code == 422, response.text
    found = response.json()["details"][0]["field"]
    assert found.startswith(field), response.json()
    assert api.get(BASE).json()["version"] == 1


def test_invalid_policies_in_a_whole_api_name_their_path(api: TestClient) -> None:
    body = API | {
        "endpoints": [
            {
                "path": "/x",
                "policies": {"request": [THROTTLE | {"config": {"limit": -1}}]},
            }
        ]
    }
    response = api.put(BASE, json=body)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == (
        "body.endpoints[0].policies.request[0].config.limit"
    )


def test_policies_at_endpoint_scope(api: TestClient) -> None:
    api.post(BASE + "/endpoints", json={"path": "/items"})
    scope = BASE + "/endpoints/0"
    assert api.post(scope + "/policies/request", json=THROTTLE).status_code == 201
    assert api.post(scope + "/policies/request", json=IP_FILTER).status_code == 201
    # the proxy scope is separate: the same name may be used there
    assert api.post(BASE + "/policies/request", json=THROTTLE).status_code == 201
    api.put(scope + "/policy-order/request", json={"names": ["ips", "throttle"]})
    endpoint = api.get(scope).json()
    assert [p["name"] for p in endpoint["policies"]["request"]] == ["ips", "throttle"]
    assert api.delete(scope + "/policies/request/throttle").status_code == 204
    assert api.get(scope + "/policies").json()["request"][0]["name"] == "ips"
    assert api.get(BASE + "/endpoints/3/policies").status_code == 404


# global policies ---------------------------------------------------------------------------
GLOBAL = {"name": "corp-ips", "type": "ip_filter", "config": {"allow": ["10.0.0.0/8"]}}
REF = {"name": "ips", "type": "ip_filter", "global_ref": "corp-ips"}


def test_global_policy_lifecycle_and_references(api: TestClient) -> None:
    missing = api.post(BASE + "/policies/request", json=REF)
    assert missing.status_code == 422
    assert missing.json()["details"][0]["field"] == "body.global_ref"
    assert api.post("/api/v1/global-policies", json=GLOBAL).status_code == 201
    assert api.post(BASE + "/policies/request", json=REF).status_code == 201
    wrong_type = api.post(
        BASE + "/policies/request", json=REF | {"name": "t", "type": "throttling"}
    )
    assert wrong_type.status_code == 422
    view = api.get("/api/v1/global-policies/corp-ips").json()
    assert view["used_by"] == [
        {"project": "default", "api": "orders", "scope": "proxy", "entry": "ips"}
    ]
    in_use = api.delete("/api/v1/global-policies/corp-ips")
    assert in_use.status_code == 409
    retype = api.put("/api/v1/global-policies/corp-ips", json=GLOBAL | {"type": "cors"})
    assert retype.status_code == 422
    invalid = api.put(
        "/api/v1/global-policies/corp-ips", json=GLOBAL | {"config": {"allow": ["x"]}}
    )
    assert invalid.status_code == 422
    assert invalid.json()["details"][0]["field"].startswith("body.config.allow")
    api.delete(BASE + "/policies/request/ips")
    assert api.delete("/api/v1/global-policies/corp-ips").status_code == 204


def test_changing_a_global_policy_marks_its_users_redeploy_required(api: TestClient) -> None:
    api.post("/api/v1/global-policies", json=GLOBAL)
    api.post(BASE + "/policies/request", json=REF)
    deployed = deploy(api)
    revision = api.get("/api/v1/environments/dev/revision").json()
    assert revision["global_policies"]["corp-ips"]["config"]["allow"] == ["10.0.0.0/8"]
    assert status(api)["redeploy_required"] is False

    changed = api.put(
        "/api/v1/global-policies/corp-ips", json=GLOBAL | {"config": {"allow": ["192.0.2.0/24"]}}
    )
    assert changed.status_code == 200
    assert changed.json()["redeploy_required"] == [
        {"project": "default", "api": "orders", "environment": "dev"}
    ]
    [row] = status(api)["deployments"]
    assert row["redeploy_required"] is True
    assert row["reasons"] == ["global policy 'corp-ips' changed"]
    assert api.get("/api/v1/apis?redeploy_required=true").json()["items"][0]["name"] == "orders"
    # the running revision keeps the old one until the redeploy
    revision = api.get("/api/v1/environments/dev/revision").json()
    assert revision["global_policies"]["corp-ips"]["config"]["allow"] == ["10.0.0.0/8"]

    again = deploy(api)
    assert again["api_revision"] == deployed["api_revision"]  # the API itself did not change
    revision = api.get("/api/v1/environments/dev/revision").json()
    assert revision["global_policies"]["corp-ips"]["config"]["allow"] == ["192.0.2.0/24"]
    assert status(api)["redeploy_required"] is False


def test_a_changed_working_copy_is_redeploy_required(api: TestClient) -> None:
    deploy(api)
    api.patch(BASE, json={"description": "new"})
    [row] = status(api)["deployments"]
    assert row["redeploy_required"] is True
    assert row["reasons"] == ["the working copy changed since API revision 1"]
    deploy(api)
    assert status(api)["redeploy_required"] is False


def test_a_change_too_large_to_audit_in_full_is_audited_without_values(api: TestClient) -> None:
    """An API proxy of 700 KB fits one document; its old and new values together do not fit
    one audit record: the change is stored and audited with the changed fields only."""

    def body(text: str) -> dict[str, Any]:
        endpoints = [
            {"path": f"/e{i}", "methods": ["GET"], "description": text * 999} for i in range(700)
        ]
        return API | {"name": "wide", "base_path": "/wide", "endpoints": endpoints}

    created = api.post("/api/v1/projects/default/apis", json=body("a"))
    assert created.status_code == 201, created.text
    replaced = api.put("/api/v1/projects/default/apis/wide", json=body("b"))
    assert replaced.status_code == 200, replaced.text
    stored = api.get("/api/v1/projects/default/apis/wide").json()
    assert stored["endpoints"][699]["description"] == "b" * 999
    [entry] = api.get("/api/v1/audit", params={"target_prefix": "apis/default/wide"}).json()[
        "items"
    ][:1]
    assert entry["action"] == "api.update"
    assert [change["field"] for change in entry["changes"]] == ["endpoints"]
    assert entry["changes"][0].get("old") is None
    assert entry["changes"][0].get("new") is None
    assert "more than an audit record holds" in entry["values_omitted"]

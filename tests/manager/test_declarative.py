"""Declarative configuration: export → apply is idempotent, dry run, prune, diffs, the published
JSON Schema, checks before anything is written, and per-section permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from portway.config.declarative import declarative_json_schema

APPLY = "/api/v1/declarative/apply"
BACKEND = [{"url": "http://127.0.0.1:9"}]
FILE: dict[str, Any] = {
    "portway": 1,
    "environments": [{"name": "dev"}, {"name": "prod", "type": "prod"}],
    "projects": [{"name": "default"}, {"name": "shop"}],
    "global_policies": [
        {"name": "corp-ips", "type": "ip_filter", "config": {"allow": ["10.0.0.0/8"]}}
    ],
    "apis": [
        {"name": "orders", "base_path": "/orders", "backends": BACKEND},
        {
            "name": "carts",
            "project": "shop",
            "base_path": "/carts",
            "backends": BACKEND,
            "policies": {
                "request": [{"name": "ips", "type": "ip_filter", "global_ref": "corp-ips"}]
            },
        },
    ],
    "consumers": [
        {
            "name": "mobile-app",
            "grants": [
                {
                    "project": "shop",
                    "api": "carts",
                    "environments": ["prod"],
                    "limits": {"prod": {"quota": {"limit": 100, "period": "day"}}},
                }
            ],
        }
    ],
}


def apply(client: TestClient, body: dict[str, Any], **params: Any) -> Any:
    query = "&".join(f"{k}={str(v).lower()}" for k, v in params.items())
    return client.post(APPLY + (f"?{query}" if query else ""), json=body)


def test_apply_creates_everything_then_is_idempotent(admin: TestClient) -> None:
    first = apply(admin, FILE)
    assert first.status_code == 200, first.text
    assert first.json()["summary"] == {"create": 8, "update": 0, "delete": 0, "unchanged": 0}
    assert first.json()["applied"] is True
    assert admin.get("/api/v1/projects/shop/apis/carts").status_code == 200
    assert admin.get("/api/v1/consumers/mobile-app").json()["grants"][0]["api"] == "carts"
    second = apply(admin, FILE)
    assert second.json()["summary"] == {"create": 0, "update": 0, "delete": 0, "unchanged": 8}
    assert second.json()["changes"] == []
    assert second.json()["applied"] is False


def test_export_then_apply_changes_nothing(admin: TestClient) -> None:
    apply(admin, FILE)
    exported = admin.get("/api/v1/declarative/export").json()
    assert exported["portway"] == 1
    assert [a["name"] for a in exported["apis"]] == ["orders", "carts"]
    assert "connection" not in exported["apis"][0]  # defaults are left out
    again = apply(admin, exported)
    assert again.json()["summary"]["unchanged"] == 8
    assert again.json()["changes"] == []
    jsonschema.validate(exported, declarative_json_schema())


def test_dry_run_shows_the_diff_and_writes_nothing(admin: TestClient) -> None:
    apply(admin, FILE)
    changed = {**FILE, "apis": [{**FILE["apis"][0], "description": "new"}, FILE["apis"][1]]}
    plan = apply(admin, changed, dry_run=True)
    assert plan.status_code == 200
    assert plan.json()["applied"] is False
    [change] = plan.json()["changes"]
    assert change == {
        "kind": "apis",
        "name": "default/orders",
        "action": "update",
        "diff": [{"field": "description", "old": "", "new": "new"}],
    }
    assert admin.get("/api/v1/projects/default/apis/orders").json()["description"] == ""
    applied = apply(admin, changed)
    assert applied.json()["summary"]["update"] == 1
    assert admin.get("/api/v1/projects/default/apis/orders").json()["description"] == "new"


def test_absent_sections_are_left_alone_and_prune_only_listed_sections(admin: TestClient) -> None:
    apply(admin, FILE)
    only_consumers: dict[str, list[Any]] = {"consumers": []}
    plan = apply(admin, only_consumers, prune=True, dry_run=True).json()
    assert [(c["kind"], c["name"], c["action"]) for c in plan["changes"]] == [
        ("consumers", "mobile-app", "delete")
    ]
    without_prune = apply(admin, {"apis": [FILE["apis"][0]]}).json()
    assert without_prune["changes"] == []
    pruned = apply(
        admin,
        {"apis": [FILE["apis"][0]], "global_policies": [], "consumers": []},
        prune=True,
    )
    assert pruned.status_code == 200, pruned.text
    kinds = sorted((c["kind"], c["action"]) for c in pruned.json()["changes"])
    assert kinds == [
        ("apis", "delete"),
        ("consumers", "delete"),
        ("global_policies", "delete"),
    ]
    assert admin.get("/api/v1/projects/shop/apis/carts").status_code == 404
    assert admin.get("/api/v1/projects/shop").status_code == 200  # projects were not listed


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"apis": [{**FILE["apis"][0], "project": "nope"}]}, "body.apis[0].project"),
        (
            {"apis": [{**FILE["apis"][0], "policies": {"request": [{"name": "t", "type": "x"}]}}]},
            "body.apis[0].policies.request[0].type",
        ),
        (
            {"consumers": [{"name": "c", "grants": [{"api": "ghost"}]}]},
            "body.consumers[0].grants[0].api",
        ),
        (
            {"global_policies": [{"name": "g", "type": "ip_filter", "config": {"allow": [1]}}]},
            "body.global_policies[0].config.allow",
        ),
    ],
)
def test_an_inconsistent_file_is_refused_whole(
    admin: TestClient, change: dict[str, Any], field: str
) -> None:
    apply(admin, FILE)
    before = admin.get("/api/v1/declarative/export").json()
    body = {**FILE, "environments": [*FILE["environments"], {"name": "qa"}], **change}
    response = apply(admin, body)
    assert response.status_code == 422, response.text
    fields = [d["field"] for d in response.json()["details"]]
    assert any(f.startswith(field) for f in fields), fields
    assert admin.get("/api/v1/declarative/export").json() == before  # not even the new env


def test_prune_refuses_to_delete_what_is_deployed_or_used(admin: TestClient) -> None:
    apply(admin, FILE)
    admin.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
    response = apply(admin, {"apis": [FILE["apis"][1]]}, prune=True)
    assert response.status_code == 422
    assert "deployed to dev" in response.json()["message"]
    used = apply(admin, {"global_policies": []}, prune=True)
    assert used.status_code == 422
    assert "used by shop/carts" in used.json()["message"]


def test_invalid_documents_name_the_field(admin: TestClient) -> None:
    response = admin.post(APPLY, json={"apis": [{"name": "Bad Name"}]})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"].startswith("body.apis[0]")
    twice = admin.post(APPLY, json={"projects": [{"name": "a"}, {"name": "a"}]})
    assert twice.status_code == 422
    assert "appears twice" in twice.json()["message"]


def test_each_changed_section_needs_its_permission(
    admin: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    apply(admin, {"environments": FILE["environments"], "projects": FILE["projects"]})
    viewer = admin.post(APPLY, json={"projects": [{"name": "new"}]}, headers=as_role("viewer"))
    assert viewer.status_code == 403
    dry = admin.post(
        APPLY + "?dry_run=true", json={"projects": [{"name": "new"}]}, headers=as_role("viewer")
    )
    assert dry.status_code == 200
    consumers = {"consumers": [{"name": "c"}]}
    api_manager = admin.post(APPLY, json=consumers, headers=as_role("api_manager"))
    assert api_manager.status_code == 403
    assert "manage_consumers" in api_manager.json()["message"]
    officer = admin.post(APPLY, json=consumers, headers=as_role("security_officer"))
    assert officer.status_code == 200
    assert admin.get("/api/v1/consumers/c").status_code == 200


def test_schema_is_published_and_validates_files(manager: TestClient) -> None:
    published = manager.get("/api/v1/schema/declarative")
    assert published.status_code == 200  # no credentials needed: editors fetch it
    assert published.json() == declarative_json_schema()
    schema = published.json()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(FILE, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"apis": [{"name": "x", "colour": "red"}]}, schema)


def test_consumer_changes_by_apply_are_published_once(admin: TestClient) -> None:
    apply(admin, FILE)
    admin.post("/api/v1/environments/dev/deployments", json={"api": "orders"})
    body = {"consumers": [{"name": "a"}, {"name": "b"}]}
    result = apply(admin, body).json()
    assert [p["environment"] for p in result["published"]] == ["dev"]
    assert admin.get("/api/v1/environments/dev").json()["desired_revision"] == 2

"""Lists of the management API page by cursor: audit log, deployment history, consumers, APIs."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.paging import MAX_LIMIT


def api_body(name: str, base_path: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "base_path": base_path or f"/{name}",
        "backends": [{"url": "http://127.0.0.1:9"}],
    }


@pytest.fixture
def many(admin: TestClient) -> TestClient:
    """Two projects, 12 APIs (odd ones deployed to dev in batches), 7 consumers."""
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    assert admin.post("/api/v1/projects", json={"name": "shop"}).status_code == 201
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    for i in range(12):
        project = "shop" if i % 4 == 0 else "default"
        body = api_body(f"api{i:02d}", f"/{'v2' if i % 3 == 0 else 'v1'}/api{i:02d}")
        created = admin.post(f"/api/v1/projects/{project}/apis", json=body)
        assert created.status_code == 201, created.text
        if i % 2:
            deployed = admin.post(
                "/api/v1/environments/dev/deployments",
                json={"project": project, "api": body["name"]},
            )
            assert deployed.status_code == 201, deployed.text
    for i in range(7):
        assert admin.post("/api/v1/consumers", json={"name": f"c{i}"}).status_code == 201
    return admin


@pytest.fixture
def small(admin: TestClient) -> TestClient:
    """A project, an environment and two consumers: a few audit records."""
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    for name in ("c1", "c2"):
        assert admin.post("/api/v1/consumers", json={"name": name}).status_code == 201
    return admin


def walk(client: TestClient, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, following ``next``; and the number of pages read."""
    items: list[dict[str, Any]] = []
    pages = 0
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next"}
        assert len(page["items"]) <= params.get("limit", 100)
        pages += 1
        items += page["items"]
        cursor = page["next"]
        if cursor is None:
            assert "Link" not in response.headers
            return items, pages
        # the Link header names the same request with the next cursor
        assert response.headers["Link"].endswith('>; rel="next"')
        assert f"cursor={cursor}" in response.headers["Link"]


def test_audit_pages_newest_first_with_indexed_filters(many: TestClient) -> None:
    everything = many.get("/api/v1/audit", params={"limit": MAX_LIMIT}).json()["items"]
    ids = [r["id"] for r in everything]
    assert len(ids) > 20
    assert ids == sorted(ids, reverse=True)
    paged, pages = walk(many, "/api/v1/audit", limit=4)
    assert [r["id"] for r in paged] == ids
    assert pages == -(-len(ids) // 4)
    oldest, _ = walk(many, "/api/v1/audit", limit=5, order="asc")
    assert [r["id"] for r in oldest] == ids[::-1]
    for params, keep in (
        ({"target_prefix": "apis/shop/"}, lambda r: r["target"].startswith("apis/shop/")),
        ({"action": "consumer.create"}, lambda r: r["action"] == "consumer.create"),
        ({"actor": "admin", "target_prefix": "consumers/"}, lambda r: "consumers/" in r["target"]),
    ):
        wanted = [r["id"] for r in everything if keep(r)]
        assert wanted, params
        got, _ = walk(many, "/api/v1/audit", limit=2, **params)
        assert [r["id"] for r in got] == wanted, params


def test_history_pages_and_filters_by_api_inside_batches(many: TestClient) -> None:
    batch = many.post(
        "/api/v1/environments/dev/deployments/batch",
        json={"items": [{"api": "api02"}, {"project": "shop", "api": "api04"}]},
    )
    assert batch.status_code == 201, batch.text
    history, pages = walk(many, "/api/v1/environments/dev/deployments", limit=2)
    assert len(history) == 6 + 7 + 1  # deploys, consumer republications, the batch
    assert pages == 7
    assert [h["id"] for h in history] == sorted((h["id"] for h in history), reverse=True)
    found, _ = walk(many, "/api/v1/environments/dev/deployments", limit=1, api="api04")
    assert [h["action"] for h in found] == ["batch"]
    assert (
        walk(many, "/api/v1/environments/dev/deployments", api="api04", project="default")[0] == []
    )
    found, _ = walk(many, "/api/v1/environments/dev/deployments", limit=1, api="api05")
    assert [(h["action"], h["api"]) for h in found] == [("deploy", "api05")]


def test_api_lists_page_with_store_and_computed_filters(many: TestClient) -> None:
    def names(path: str, **params: Any) -> list[str]:
        return [r["name"] for r in walk(many, path, limit=3, **params)[0]]

    every = names("/api/v1/apis")
    assert sorted(every) == [f"api{i:02d}" for i in range(12)]
    assert names("/api/v1/apis", project="shop") == ["api00", "api04", "api08"]
    assert names("/api/v1/apis", base_path_prefix="/v2/") == [
        n for n in every if int(n[3:]) % 3 == 0
    ]
    assert names("/api/v1/apis", environment="dev") == [n for n in every if int(n[3:]) % 2]
    assert names("/api/v1/apis", environment="dev", name_contains="1") == ["api01", "api11"]
    assert names("/api/v1/apis", redeploy_required=True) == []
    assert names("/api/v1/projects/default/apis", name_contains="0") == [
        "api01",
        "api02",
        "api03",
        "api05",
        "api06",
        "api07",
        "api09",
        "api10",
    ]
    assert names("/api/v1/projects/shop/apis", order="desc") == ["api08", "api04", "api00"]


def test_consumers_page(many: TestClient) -> None:
    consumers, pages = walk(many, "/api/v1/consumers", limit=3)
    assert sorted(c["name"] for c in consumers) == [f"c{i}" for i in range(7)]
    assert pages == 3


@pytest.mark.parametrize(
    "forge",
    [
        lambda c: c[:-2],
        lambda c: c[:5] + ("x" if c[5] != "x" else "y") + c[6:],
        lambda c: "garbage",
        lambda c: "%%%",
        lambda c: c + c,
    ],
)
def test_forged_cursors_are_422_naming_the_cursor(small: TestClient, forge: Any) -> None:
    many = small
    cursor = many.get("/api/v1/audit", params={"limit": 1}).json()["next"]
    assert cursor
    refused = many.get("/api/v1/audit", params={"limit": 1, "cursor": forge(cursor)})
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["details"][0]["field"] == "query.cursor"
    assert "cursor" in problem["message"]
    assert problem["correlation_id"] == refused.headers["X-Correlation-ID"]


def test_a_cursor_does_not_cross_lists_or_filters(small: TestClient) -> None:
    many = small
    cursor = many.get("/api/v1/audit", params={"limit": 1, "actor": "admin"}).json()["next"]
    for path, params in (
        ("/api/v1/audit", {}),
        ("/api/v1/audit", {"actor": "someone"}),
        ("/api/v1/audit", {"actor": "admin", "order": "asc"}),
        ("/api/v1/consumers", {}),
        ("/api/v1/apis", {}),
        ("/api/v1/environments/dev/deployments", {}),
    ):
        refused = many.get(path, params={**params, "cursor": cursor})
        assert refused.status_code == 422, (path, refused.text)
        assert refused.json()["details"][0]["field"] == "query.cursor"
    follows = many.get("/api/v1/audit", params={"limit": 1, "actor": "admin", "cursor": cursor})
    assert follows.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/audit",
        "/api/v1/consumers",
        "/api/v1/apis",
        "/api/v1/projects/default/apis",
        "/api/v1/environments/dev/deployments",
    ],
)
@pytest.mark.parametrize("limit", ["0", str(MAX_LIMIT + 1), "many", "-1"])
def test_limit_is_bounded_with_a_clear_error(small: TestClient, path: str, limit: str) -> None:
    many = small
    refused = many.get(path, params={"limit": limit})
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["field"] == "query.limit"
    assert many.get(path, params={"limit": str(MAX_LIMIT)}).status_code == 200
    bad_order = many.get(path, params={"order": "random"})
    assert bad_order.status_code == 422
    assert bad_order.json()["details"][0]["field"] == "query.order"

"""Several base paths per API and endpoint connection settings through the management API: bad
input names its field; a base path another API of the environment serves refuses the deploy."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def setup(admin: TestClient) -> None:
    assert admin.post("/api/v1/environments", json={"name": "dev"}).status_code == 201
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201


def proxy(name: str, base_path: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "base_path": base_path, "backends": [{"url": "http://127.0.0.1:9"}]} | (
        fields
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"routes": [{"base_path": "/x/../y"}]}, "body.routes[0].base_path"),
        ({"routes": [{"base_path": "/_portway"}]}, "body.routes[0].base_path"),
        ({"routes": [{"base_path": "/a", "hosts": ["a b"]}]}, "body.routes[0].hosts"),
        ({"routes": [{"base_path": "/a", "weight": 1}]}, "body.routes[0].weight"),
        ({"routes": "/a"}, "body.routes"),
        ({"endpoints": [{"path": "/e", "connection": {"retries": -1}}]}, "body.endpoints[0]"),
        ({"endpoints": [{"path": "/e", "connection": {"pool_size": 3}}]}, "body.endpoints[0]"),
    ],
)
def test_bad_routes_and_endpoint_connections_name_the_field(
    admin: TestClient, fields: dict[str, Any], field: str
) -> None:
    setup(admin)
    refused = admin.post("/api/v1/projects/default/apis", json=proxy("a", "/a", **fields))
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["field"].startswith(field), refused.text


def test_a_route_colliding_with_another_api_refuses_the_deploy(admin: TestClient) -> None:
    setup(admin)
    legacy = proxy("legacy", "/v2/orders", routes=[{"base_path": "/orders/{tenant}"}])
    assert admin.post("/api/v1/projects/default/apis", json=legacy).status_code == 201
    # on a named host, the same path is no conflict: that host's table answers first
    named = proxy("named", "/orders/{id}", hosts=["api.example"])
    assert admin.post("/api/v1/projects/default/apis", json=named).status_code == 201
    # another project (a base path is unique per project when written)
    assert admin.post("/api/v1/projects", json={"name": "shop"}).status_code == 201
    other = proxy("other", "/orders/{id}")
    assert admin.post("/api/v1/projects/shop/apis", json=other).status_code == 201
    for name in ("legacy", "named"):
        deployed = admin.post("/api/v1/environments/dev/deployments", json={"api": name})
        assert deployed.status_code == 201, deployed.text
    refused = admin.post(
        "/api/v1/environments/dev/deployments", json={"api": "other", "project": "shop"}
    )
    assert refused.status_code == 422, refused.text
    message = refused.json()["message"]
    assert "default/legacy" in message
    assert "'shop/other'" in message
    assert "/orders/{id}" in message
    assert admin.get("/api/v1/environments/dev/revision").json()["revision"] == 2

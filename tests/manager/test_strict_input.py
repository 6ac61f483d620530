"""Strict input of the management API: no value changes type on the way in, unknown query
parameters are refused, and a body the JSON parser chokes on is a 4xx naming ``body``."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.manager.conftest import browser_for

API = {"name": "orders", "base_path": "/orders", "backends": [{"url": "http://127.0.0.1:9"}]}
APIS = "/api/v1/projects/default/apis"


@pytest.fixture
def project(admin: TestClient) -> TestClient:
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    return admin


def assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert field in [d["field"] for d in body["details"]], body
    assert body["correlation_id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"maintenance": "yes"}, "body.maintenance"),
        ({"maintenance": 1}, "body.maintenance"),
        ({"strip_base_path": "false"}, "body.strip_base_path"),
        ({"connection": {"retries": True}}, "body.connection.retries"),
        ({"connection": {"retries": "2"}}, "body.connection.retries"),
        ({"connection": {"pool_size": 2.0}}, "body.connection.pool_size"),
        ({"connection": {"connect_timeout": "5"}}, "body.connection.connect_timeout"),
        ({"connection": {"connect_timeout": False}}, "body.connection.connect_timeout"),
        ({"backends": [{"url": "http://127.0.0.1:9", "weight": "3"}]}, "body.backends[0].weight"),
        ({"description": 5}, "body.description"),
        ({"balancing": 1}, "body.balancing"),
        ({"backends": [{"url": "http://127.0.0.1:9", "kind": True}]}, "body.backends[0].kind"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_refused(
    project: TestClient, change: dict[str, Any], field: str
) -> None:
    assert_refused(project.post(APIS, json=API | change), field)
    assert project.get(f"{APIS}/orders").status_code == 404  # nothing stored


@pytest.mark.parametrize("limit", [True, "100", 100.0, "1e2"])
def test_a_policy_config_value_of_the_wrong_type_is_refused(
    project: TestClient, limit: object
) -> None:
    policy = {"name": "t", "type": "throttling", "config": {"limit": limit}}
    refused = project.post(APIS, json=API | {"policies": {"request": [policy]}})
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["field"].endswith("config.limit")


def test_enums_and_datetimes_still_come_as_json_strings(project: TestClient) -> None:
    body = API | {
        "balancing": "least_connections",
        "backends": [{"url": "http://127.0.0.1:9", "kind": "primary", "weight": 2}],
        "connection": {"connect_timeout": 2},  # a JSON integer is a valid number
    }
    created = project.post(APIS, json=body)
    assert created.status_code == 201, created.text
    read = project.get(f"{APIS}/orders").json()
    assert read["balancing"] == "least_connections"
    assert read["connection"]["connect_timeout"] == 2
    # a stored document still loads: a merge patch re-validates the stored proxy
    patched = project.patch(f"{APIS}/orders", json={"maintenance": True})
    assert patched.status_code == 200, patched.text
    role = project.post("/api/v1/users", json={"username": "vera", "role": "viewer"})
    assert role.status_code == 201, role.text


def test_a_datetime_must_be_a_string_not_an_epoch_number(admin: TestClient) -> None:
    assert admin.post("/api/v1/consumers", json={"name": "shop"}).status_code == 201
    url = "/api/v1/consumers/shop/credentials"
    numeric = admin.post(url, json={"kind": "api_key", "expires_at": 1900000000})
    assert numeric.status_code == 422, numeric.text
    assert numeric.json()["details"][0]["field"] == "body.expires_at"
    text = admin.post(url, json={"kind": "api_key", "expires_at": "2030-01-01T00:00:00Z"})
    assert text.status_code == 201, text.text
    assert text.json()["expires_at"].startswith("2030-01-01T00:00:00")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "bob", "role": "viewer", "password": 123456789012345}, "body.password"),
        ({"username": True, "role": "viewer"}, "body.username"),
    ],
)
def test_identity_bodies_are_strict_too(
    admin: TestClient, body: dict[str, Any], field: str
) -> None:
    assert_refused(admin.post("/api/v1/users", json=body), field)


def test_disabled_must_be_a_json_boolean(admin: TestClient) -> None:
    assert (
        admin.post("/api/v1/users", json={"username": "bob", "role": "viewer"}).status_code == 201
    )
    assert_refused(admin.patch("/api/v1/users/bob", json={"disabled": "true"}), "body.disabled")
    assert admin.get("/api/v1/users/bob").json()["disabled"] is False


# unknown query parameters ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "url", "name"),
    [
        ("GET", "/api/v1/apis?projct=default", "projct"),  # a misspelt filter
        ("GET", "/api/v1/apis?Project=default", "Project"),  # the declared one in another case
        ("GET", "/api/v1/apis?project=default&project%00=x", "project\x00"),
        ("GET", "/api/v1/projects?limit=1", "limit"),  # a route without query parameters
        ("GET", "/api/v1/me?debug", "debug"),  # a key without a value
        ("POST", "/api/v1/projects?dry_run=true", "dry_run"),
        ("DELETE", "/api/v1/projects/default?force=1", "force"),
    ],
)
def test_an_unknown_query_parameter_is_refused(
    project: TestClient, method: str, url: str, name: str
) -> None:
    response = project.request(method, url, json={"name": "other"})
    assert_refused(response, f"query.{name}")
    assert {p["name"] for p in project.get("/api/v1/projects").json()} == {"default"}


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/v1/workers?x=1"),
        ("GET", "/api/v1/apis?projct=default"),
        ("POST", "/api/v1/projects?dry_run=true"),
        ("DELETE", "/api/v1/projects/default?force=1"),
        ("GET", "/api/v1/me?debug"),
    ],
)
@pytest.mark.parametrize("credentials", [None, "Bearer pwt_not-a-token", "Basic YTpi"])
def test_an_anonymous_request_is_401_whatever_its_query(
    project: TestClient, method: str, url: str, credentials: str | None
) -> None:
    anonymous = browser_for(project)
    if credentials is not None:
        anonymous.headers["Authorization"] = credentials
    response = anonymous.request(method, url, json={"name": "other"})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthenticated"
    assert "takes" not in response.text  # the route's parameters are for callers only
    assert {p["name"] for p in project.get("/api/v1/projects").json()} == {"default"}


def test_a_route_anyone_may_call_still_refuses_an_unknown_query(project: TestClient) -> None:
    response = browser_for(project).post(
        "/api/v1/auth/login?debug=1", json={"username": "admin", "password": "wrong"}
    )
    assert_refused(response, "query.debug")


def test_declared_query_parameters_still_work(project: TestClient) -> None:
    assert project.post(APIS, json=API).status_code == 201
    found = project.get("/api/v1/apis?project=default&name_contains=ord")
    assert found.status_code == 200, found.text
    assert [a["name"] for a in found.json()["items"]] == ["orders"]


# bodies the JSON parser refuses ------------------------------------------------------------
HOSTILE_BODIES = {
    "nested arrays": b'{"name": "p", "description": ' + b"[" * 65 + b"]" * 65 + b"}",
    "nested past the recursion limit": b"[" * 100_000 + b"]" * 100_000,
    "nested objects": b'{"name": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
    "integer beyond 64 bits": b'{"name": "p", "description": 9223372036854775808}',
    "negative integer beyond 64 bits": b'{"name": "p", "description": -9223372036854775809}',
    "thousands of digits": b'{"name": "p", "description": ' + b"9" * 5000 + b"}",
    "invalid UTF-8": b'{"name": "p\xff\xfe"}',
    "overlong UTF-8 slash": b'{"name": "p\xc0\xaf"}',
    "UTF-8 surrogate": b'{"name": "p\xed\xa0\x80"}',
    "truncated": b'{"name": ',
    "trailing garbage": b'{"name": "p"} {}',
    "NaN": b'{"name": "p", "description": NaN}',
    "Infinity": b'{"name": "p", "description": -Infinity}',
    "duplicate key": b'{"name": "p", "name": "q"}',
}


@pytest.mark.parametrize("raw", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
@pytest.mark.parametrize("content_type", ["application/json", "application/merge-patch+json", ""])
def test_a_body_the_parser_refuses_is_a_400_naming_body(
    admin: TestClient, raw: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = admin.post("/api/v1/projects", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_body"
    assert all(d["field"].startswith("body") for d in body["details"])
    assert body["correlation_id"] == response.headers["X-Correlation-ID"]
    assert admin.get("/api/v1/projects").json() == []


def test_a_body_at_the_limits_is_accepted(admin: TestClient) -> None:
    nested = b'{"name": "p", "description": ' + b"[" * 63 + b"]" * 63 + b"}"  # 64 levels
    wrong_type = admin.post(
        "/api/v1/projects", content=nested, headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 422  # parsed, then refused by the model, naming the field
    assert wrong_type.json()["details"][0]["field"] == "body.description"
    big = admin.post("/api/v1/projects", json={"name": "c", "description": 2**63 - 1})
    assert big.status_code == 422, big.text  # parsed; a number is not a description
    assert big.json()["details"][0]["field"] == "body.description"

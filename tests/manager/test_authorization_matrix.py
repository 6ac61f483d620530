"""The authorization matrix: every operation of the OpenAPI document x every role → allowed or 403,
and 401 without credentials. The expected permission of each operation is written down here, apart
from the code, so a new route without an entry — or a route guarded by the wrong permission —
fails this test."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

PUBLIC = "public"
SIGNED_IN = "signed_in"

ROLE_PERMISSIONS = {
    "admin": {
        "read",
        "write_apis",
        "deploy",
        "manage_environments",
        "manage_consumers",
        "manage_users",
        "read_audit",
        "manage_keys",
    },
    "api_manager": {"read", "write_apis"},
    "deployer": {"read", "deploy"},
    "security_officer": {"read", "manage_consumers", "read_audit"},
    "viewer": {"read"},
}

P = "/api/v1/projects/{project}/apis/{name}"
E = P + "/endpoints/{index}"
EXPECTED: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): SIGNED_IN,
    ("GET", "/api/v1/me"): "read",
    ("GET", "/api/v1/me/permissions"): "read",
    ("PUT", "/api/v1/me/password"): SIGNED_IN,
    ("GET", "/api/v1/users"): "manage_users",
    ("POST", "/api/v1/users"): "manage_users",
    ("GET", "/api/v1/users/{username}"): "manage_users",
    ("PATCH", "/api/v1/users/{username}"): "manage_users",
    ("DELETE", "/api/v1/users/{username}"): "manage_users",
    ("GET", "/api/v1/users/{username}/tokens"): "manage_users",
    ("DELETE", "/api/v1/users/{username}/tokens/{token_id}"): "manage_users",
    ("GET", "/api/v1/tokens"): SIGNED_IN,
    ("POST", "/api/v1/tokens"): SIGNED_IN,
    ("DELETE", "/api/v1/tokens/{token_id}"): SIGNED_IN,
    ("GET", "/api/v1/environments"): "read",
    ("POST", "/api/v1/environments"): "manage_environments",
    ("GET", "/api/v1/environments/{environment}"): "read",
    ("PUT", "/api/v1/environments/{environment}"): "manage_environments",
    ("DELETE", "/api/v1/environments/{environment}"): "manage_environments",
    ("GET", "/api/v1/environments/{environment}/signing-keys"): "read",
    ("GET", "/api/v1/environments/{environment}/jwks"): "read",
    ("POST", "/api/v1/environments/{environment}/signing-keys"): "manage_keys",
    ("POST", "/api/v1/environments/{environment}/signing-keys/rotate"): "manage_keys",
    ("POST", "/api/v1/environments/{environment}/signing-keys/{kid}/retire"): "manage_keys",
    ("GET", "/api/v1/environments/{environment}/variables"): "read",
    ("GET", "/api/v1/environments/{environment}/variables/{name}"): "read",
    ("PUT", "/api/v1/environments/{environment}/variables/{name}"): "manage_environments",
    ("DELETE", "/api/v1/environments/{environment}/variables/{name}"): "manage_environments",
    ("GET", "/api/v1/projects"): "read",
    ("POST", "/api/v1/projects"): "write_apis",
    ("GET", "/api/v1/projects/{project}"): "read",
    ("PUT", "/api/v1/projects/{project}"): "write_apis",
    ("DELETE", "/api/v1/projects/{project}"): "write_apis",
    ("GET", "/api/v1/apis"): "read",
    ("GET", "/api/v1/projects/{project}/apis"): "read",
    ("POST", "/api/v1/projects/{project}/apis"): "write_apis",
    ("POST", "/api/v1/projects/{project}/apis/import"): "write_apis",
    ("POST", "/api/v1/projects/{project}/apis/import/wsdl"): "write_apis",
    ("GET", P): "read",
    ("PUT", P): "write_apis",
    ("PATCH", P): "write_apis",
    ("DELETE", P): "write_apis",
    ("GET", P + "/revisions"): "read",
    ("GET", P + "/revisions/{revision}"): "read",
    ("GET", P + "/status"): "read",
    ("GET", P + "/endpoints"): "read",
    ("POST", P + "/endpoints"): "write_apis",
    ("GET", E): "read",
    ("PUT", E): "write_apis",
    ("DELETE", E): "write_apis",
    **{
        (method, scope + path): permission
        for scope in (P, E)
        for method, path, permission in (
            ("GET", "/policies", "read"),
            ("POST", "/policies/{phase}", "write_apis"),
            ("GET", "/policies/{phase}/{policy}", "read"),
            ("PUT", "/policies/{phase}/{policy}", "write_apis"),
            ("DELETE", "/policies/{phase}/{policy}", "write_apis"),
            ("PUT", "/policy-order/{phase}", "write_apis"),
        )
    },
    ("GET", "/api/v1/global-policies"): "read",
    ("POST", "/api/v1/global-policies"): "write_apis",
    ("GET", "/api/v1/global-policies/{name}"): "read",
    ("PUT", "/api/v1/global-policies/{name}"): "write_apis",
    ("DELETE", "/api/v1/global-policies/{name}"): "write_apis",
    ("POST", "/api/v1/environments/{environment}/deployments"): "deploy",
    ("POST", "/api/v1/environments/{environment}/deployments/batch"): "deploy",
    ("GET", "/api/v1/environments/{environment}/deployments"): "read",
    ("GET", "/api/v1/environments/{environment}/revision"): "read",
    ("GET", "/api/v1/environments/{environment}/revisions/{revision}"): "read",
    ("GET", "/api/v1/workers"): "read",
    ("GET", "/api/v1/analytics"): "read",
    ("GET", "/api/v1/requests"): "read",
    ("GET", "/api/v1/matrix"): "read",
    ("GET", "/api/v1/alerts/rules"): "read",
    ("POST", "/api/v1/alerts/rules"): "manage_environments",
    ("GET", "/api/v1/alerts/rules/{name}"): "read",
    ("PUT", "/api/v1/alerts/rules/{name}"): "manage_environments",
    ("DELETE", "/api/v1/alerts/rules/{name}"): "manage_environments",
    ("GET", "/api/v1/alerts/channels"): "read",
    ("POST", "/api/v1/alerts/channels"): "manage_environments",
    ("GET", "/api/v1/alerts/channels/{name}"): "read",
    ("PUT", "/api/v1/alerts/channels/{name}"): "manage_environments",
    ("DELETE", "/api/v1/alerts/channels/{name}"): "manage_environments",
    ("GET", "/api/v1/alerts/silences"): "read",
    ("POST", "/api/v1/alerts/silences"): "manage_environments",
    ("DELETE", "/api/v1/alerts/silences/{silence_id}"): "manage_environments",
    ("GET", "/api/v1/alerts/active"): "read",
    ("GET", "/api/v1/alerts/events"): "read",
    ("GET", "/api/v1/alerts/deliveries"): "read",
    ("GET", "/api/v1/workers/{worker_id}"): "read",
    ("DELETE", "/api/v1/workers/{worker_id}"): "manage_environments",
    ("GET", "/api/v1/audit"): "read_audit",
    ("GET", "/api/v1/consumers"): "read",
    ("POST", "/api/v1/consumers"): "manage_consumers",
    ("GET", "/api/v1/consumers/{consumer}"): "read",
    ("PUT", "/api/v1/consumers/{consumer}"): "manage_consumers",
    ("DELETE", "/api/v1/consumers/{consumer}"): "manage_consumers",
    ("GET", "/api/v1/consumers/{consumer}/grants"): "read",
    ("PUT", "/api/v1/consumers/{consumer}/grants/{project}/{api}"): "manage_consumers",
    ("DELETE", "/api/v1/consumers/{consumer}/grants/{project}/{api}"): "manage_consumers",
    ("GET", "/api/v1/consumers/{consumer}/credentials"): "read",
    ("POST", "/api/v1/consumers/{consumer}/credentials"): "manage_consumers",
    ("GET", "/api/v1/consumers/{consumer}/credentials/{credential_id}"): "read",
    ("PATCH", "/api/v1/consumers/{consumer}/credentials/{credential_id}"): "manage_consumers",
    ("DELETE", "/api/v1/consumers/{consumer}/credentials/{credential_id}"): "manage_consumers",
    (
        "POST",
        "/api/v1/consumers/{consumer}/credentials/{credential_id}/rotate",
    ): "manage_consumers",
    ("GET", "/api/v1/consumers/{consumer}/credentials/{credential_id}/secrets"): "read",
    (
        "DELETE",
        "/api/v1/consumers/{consumer}/credentials/{credential_id}/secrets/{version}",
    ): "manage_consumers",
    ("POST", "/api/v1/consumers/import"): "manage_consumers",
    ("GET", "/api/v1/schema/declarative"): PUBLIC,
    ("GET", "/api/v1/schema/policies"): "read",
    ("GET", "/api/v1/declarative/export"): "read",
    # a dry run or an apply without changes needs only read; changes need each section's
    # permission (test_declarative.py covers that)
    ("POST", "/api/v1/declarative/apply"): "read",
}

# values for path parameters: names of things that do not exist, so an allowed call changes nothing
DUMMY = {
    "index": "0",
    "phase": "request",
    "revision": "1",
    "version": "1",
}


def operations(app_client: TestClient) -> list[tuple[str, str]]:
    document = app_client.get("/api/v1/openapi.json").json()
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete")
    )


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: DUMMY.get(m.group(1), f"nope-{m.group(1)}"), path)


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, concrete(path), json=body, headers=headers)


def test_every_operation_has_an_expected_permission(manager: TestClient) -> None:
    documented = set(operations(manager))
    assert documented == set(EXPECTED), {
        "missing from EXPECTED": sorted(documented - set(EXPECTED)),
        "not in the API": sorted(set(EXPECTED) - documented),
    }


def test_without_credentials_everything_but_public_is_401(manager: TestClient) -> None:
    wrong = []
    for method, path in operations(manager):
        response = call(manager, method, path, {})
        public = EXPECTED[(method, path)] == PUBLIC
        if public == (response.status_code == 401):
            wrong.append((method, path, response.status_code))
    assert wrong == []


@pytest.mark.parametrize("role", sorted(ROLE_PERMISSIONS))
def test_each_role_is_allowed_exactly_its_permissions(
    admin: TestClient, role_tokens: dict[str, str], role: str
) -> None:
    headers = {"Authorization": f"Bearer {role_tokens[role]}"}
    wrong = []
    checked = 0
    for method, path in operations(admin):
        needed = EXPECTED[(method, path)]
        allowed = needed in (PUBLIC, SIGNED_IN) or needed in ROLE_PERMISSIONS[role]
        response = call(admin, method, path, headers)
        checked += 1
        if allowed and response.status_code in (401, 403):
            wrong.append((method, path, "refused", response.status_code, response.text[:120]))
        if not allowed and response.status_code != 403:
            wrong.append((method, path, "not refused", response.status_code, response.text[:120]))
        if response.status_code >= 500:
            wrong.append((method, path, "server error", response.status_code, response.text[:120]))
    assert checked == len(EXPECTED)
    assert wrong == []

"""Creating API proxies from OpenAPI 3.x / Swagger 2.0 documents: given in the body or fetched from
a URL (served here by a real loopback HTTP server)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.openapi_import import ImportRequest, build_api

IMPORT = "/api/v1/projects/default/apis/import"

PETSTORE_V3 = """
openapi: 3.0.3
info: {title: Petstore, version: 1.2.0}
servers:
  - url: https://{region}.pets.example.com/v1
    variables:
      region: {default: eu}
paths:
  /pets:
    get:
      summary: List pets
      responses:
        "200":
          description: ok
          content:
            application/json:
              example: [{id: 1, name: Rex}]
    post:
      summary: Add a pet
      responses:
        "201":
          description: created
          content:
            application/json:
              examples:
                one: {$ref: "#/components/examples/Pet"}
  /pets/{pet-id}:
    get:
      responses:
        default:
          description: a pet
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Pet"}
    delete:
      responses:
        "204": {description: gone}
components:
  examples:
    Pet: {value: {id: 2, name: Tom}}
  schemas:
    Pet:
      type: object
      example: {id: 3, name: Felix}
"""

SWAGGER_V2 = {
    "swagger": "2.0",
    "info": {"title": "Legacy", "version": "0.9"},
    "host": "legacy.example.com:8443",
    "basePath": "/api",
    "schemes": ["http", "https"],
    "produces": ["application/json"],
    "paths": {
        "/users": {
            "get": {
                "responses": {
                    "200": {"description": "ok", "examples": {"application/json": {"n": 1}}}
                }
            }
        },
        "/users/{id}": {
            "get": {
                "responses": {
                    "200": {"description": "ok", "schema": {"example": {"id": "u1"}}},
                    "404": {"description": "missing"},
                }
            },
            "put": {"responses": {"400": {"description": "bad"}}},
        },
    },
}


def endpoint(api: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        e for e in api["endpoints"] if e["path"] == path and e["methods"] == [method]
    )
    return found


def mock_of(ep: dict[str, Any]) -> dict[str, Any]:
    [policy] = ep["policies"]["request"]
    assert policy["type"] == "mock_response"
    result: dict[str, Any] = policy
    return result


@pytest.fixture
def project(admin: TestClient) -> TestClient:
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    return admin


def test_openapi3_yaml_becomes_endpoints_with_example_responses(project: TestClient) -> None:
    response = project.post(IMPORT, json={"name": "pets", "document": PETSTORE_V3})
    assert response.status_code == 201, response.text
    api = response.json()
    assert api["base_path"] == "/pets"
    assert api["backends"][0]["url"] == "https://eu.pets.example.com/v1"
    assert api["description"] == "Petstore 1.2.0"
    assert [(e["path"], e["methods"]) for e in api["endpoints"]] == [
        ("/pets", ["GET"]),
        ("/pets", ["POST"]),
        ("/pets/{pet_id}", ["GET"]),
        ("/pets/{pet_id}", ["DELETE"]),
    ]
    listed = mock_of(endpoint(api, "/pets", "GET"))
    assert listed["active"] is False  # routing stays on unless a mock was asked for
    assert listed["config"] == {
        "status": 200,
        "json_body": [{"id": 1, "name": "Rex"}],
        "content_type": "application/json",
    }
    assert mock_of(endpoint(api, "/pets", "POST"))["config"]["json_body"] == {
        "id": 2,
        "name": "Tom",
    }
    assert mock_of(endpoint(api, "/pets", "POST"))["config"]["status"] == 201
    by_schema = mock_of(endpoint(api, "/pets/{pet_id}", "GET"))["config"]
    assert by_schema["json_body"] == {"id": 3, "name": "Felix"}
    assert mock_of(endpoint(api, "/pets/{pet_id}", "DELETE"))["config"] == {"status": 204}
    assert project.get("/api/v1/projects/default/apis/pets").json()["version"] == 1


def test_mock_mode_activates_the_examples(project: TestClient) -> None:
    api = project.post(IMPORT, json={"name": "pets", "document": PETSTORE_V3, "mock": True}).json()
    assert all(mock_of(e)["active"] for e in api["endpoints"])


def test_swagger2_json_object(project: TestClient) -> None:
    response = project.post(
        IMPORT, json={"name": "legacy", "document": SWAGGER_V2, "base_path": "/old"}
    )
    assert response.status_code == 201, response.text
    api = response.json()
    assert api["backends"][0]["url"] == "https://legacy.example.com:8443/api"
    assert api["base_path"] == "/old"
    assert mock_of(endpoint(api, "/users", "GET"))["config"]["json_body"] == {"n": 1}
    assert mock_of(endpoint(api, "/users/{id}", "GET"))["config"]["json_body"] == {"id": "u1"}
    assert mock_of(endpoint(api, "/users/{id}", "PUT"))["config"] == {"status": 400}


def test_backends_given_win_and_are_required_without_servers(project: TestClient) -> None:
    doc = {"openapi": "3.1.0", "info": {"title": "t"}, "paths": {"/a": {"get": {}}}}
    missing = project.post(IMPORT, json={"name": "a", "document": doc})
    assert missing.status_code == 422
    assert missing.json()["details"][0]["field"] == "body.backends"
    given = project.post(
        IMPORT,
        json={"name": "a", "document": doc, "backends": [{"url": "http://10.0.0.1:8080"}]},
    )
    assert given.status_code == 201
    assert given.json()["backends"][0]["url"] == "http://10.0.0.1:8080"
    assert (
        "policies" not in given.json()["endpoints"][0]
        or not (given.json()["endpoints"][0]["policies"]["request"])
    )


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("just text", "body.document"),
        ({"info": {}}, "body.document"),
        ("a: &x [1]\nb: *x\n", "body.document"),  # YAML aliases are refused
        ("{not: [valid", "body.document"),
    ],
)
def test_unusable_documents_are_422(project: TestClient, document: Any, field: str) -> None:
    response = project.post(IMPORT, json={"name": "x", "document": document})
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == field
    assert project.get("/api/v1/projects/default/apis").json()["items"] == []


def test_exactly_one_source(project: TestClient) -> None:
    none = project.post(IMPORT, json={"name": "x"})
    assert none.status_code == 422
    both = project.post(IMPORT, json={"name": "x", "document": "{}", "url": "http://a/"})
    assert both.status_code == 422


def test_dry_run_stores_nothing(project: TestClient) -> None:
    response = project.post(
        IMPORT + "?dry_run=true", json={"name": "pets", "document": PETSTORE_V3}
    )
    assert response.status_code == 200
    assert len(response.json()["endpoints"]) == 4
    assert project.get("/api/v1/projects/default/apis").json()["items"] == []


def test_paths_the_gateway_cannot_route_are_warned_about() -> None:
    doc = {
        "openapi": "3.0.0",
        "paths": {"/files/{name}.json": {"get": {}}, "/ok/": {"get": {}}, "/ok": {"get": {}}},
        "servers": [{"url": "http://backend:8080"}],
    }
    api, warnings = build_api(doc, ImportRequest(name="x", document=doc), "default")
    assert [e.path for e in api.endpoints] == ["/ok"]
    assert any("/files/{name}.json" in w for w in warnings)
    assert any("appears twice" in w for w in warnings)


# fetching from a URL -----------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, b"no"))
        self.send_response(status)
        self.send_header("Content-Type", "application/yaml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def doc_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.routes = {
        "/petstore.yaml": (200, PETSTORE_V3.encode()),
        "/big.json": (200, json.dumps({"openapi": "3.0.0", "x": "y" * 10000}).encode()),
        "/redirect": (302, b""),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_import_from_a_url(open_manager: TestClient, doc_server: str) -> None:
    response = open_manager.post(
        IMPORT, json={"name": "pets", "url": f"{doc_server}/petstore.yaml"}
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["endpoints"]) == 4


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/big.json", "larger than 8192 bytes"),
        ("/missing.yaml", "answered 404"),
        ("/redirect", "answered 302"),
    ],
)
def test_url_failures_are_422_on_the_url(
    open_manager: TestClient, doc_server: str, path: str, message: str
) -> None:
    response = open_manager.post(IMPORT, json={"name": "pets", "url": doc_server + path})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["details"][0]["field"] == "body.url"
    assert message in problem["message"]


def test_unreachable_url_is_422(open_manager: TestClient) -> None:
    from tests.support.processes import free_port

    url = f"http://127.0.0.1:{free_port()}/x.yaml"
    response = open_manager.post(IMPORT, json={"name": "pets", "url": url})
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body.url"


def test_internal_addresses_are_refused_by_default(project: TestClient, doc_server: str) -> None:
    response = project.post(IMPORT, json={"name": "pets", "url": f"{doc_server}/petstore.yaml"})
    assert response.status_code == 422
    assert "non-public address" in response.json()["message"]


ODD_DOCUMENTS: list[Any] = [
    {"openapi": "3.0.0", "paths": {"/a": {"get": {"responses": {200: {"description": "int"}}}}}},
    {"openapi": "3.0.0", "paths": {"/a": {"get": {"responses": {"200": None}}}}},
    {"openapi": "3.0.0", "paths": {"/a": {"get": {"responses": []}}}},
    {"openapi": "3.0.0", "paths": {"/a": {"get": "nope"}}},
    {"openapi": "3.0.0", "paths": {"/a": []}},
    {"openapi": "3.0.0", "paths": {"/a": {"$ref": "#/nowhere"}}},
    {"openapi": "3.0.0", "paths": {"/a": {"$ref": "#/paths/~1a"}}},  # a $ref cycle
    {"openapi": "3.0.0", "paths": {"/a": {"get": {"responses": {"200": {"content": []}}}}}},
    {
        "openapi": "3.0.0",
        "paths": {"/a": {"get": {"responses": {"200": {"content": {"a/b": None}}}}}},
    },
    {"openapi": "3.0.0", "paths": {"a": {"get": {}}, 5: {"get": {}}}},
    {"openapi": "3.0.0", "paths": None},
    {"openapi": "3.0.0", "paths": "x"},
    {"openapi": 3, "servers": "x", "info": "x"},
    {
        "swagger": "2.0",
        "host": 5,
        "paths": {"/a": {"get": {"responses": {"200": {"examples": []}}}}},
    },
    {"swagger": "2.0", "host": "h", "schemes": "http", "paths": {}},
    {"openapi": "3.0.0", "servers": [{"url": "http://h/{v}", "variables": {"v": None}}]},
    {"openapi": "3.0.0", "servers": [{"url": "ftp://h"}], "paths": {}},
]


@pytest.mark.parametrize("document", ODD_DOCUMENTS)
def test_odd_documents_import_or_are_refused_cleanly(document: Any) -> None:
    from pydantic import ValidationError

    from portway.errors import ConfigError

    request = ImportRequest(name="x", document={}, backends=None)
    try:
        api, _ = build_api(document, request, "default")
    except (ConfigError, ValidationError):
        return
    assert api.name == "x"


def test_integer_status_keys_from_yaml(project: TestClient) -> None:
    doc = (
        "openapi: 3.0.0\n"
        "servers: [{url: 'http://h'}]\n"
        "paths:\n"
        "  /a:\n"
        "    get:\n"
        "      responses:\n"
        "        201: {description: made}\n"
    )
    response = project.post(IMPORT, json={"name": "ints", "document": doc})
    assert response.status_code == 201, response.text
    assert mock_of(response.json()["endpoints"][0])["config"] == {"status": 201}


def generated_spec(operations: int, example_bytes: int) -> dict[str, Any]:
    """An OpenAPI 3 document of ``operations`` GET operations, each with an example response of
    about ``example_bytes`` (a real-world size: GitHub's REST description has 1,223)."""
    paths = {
        f"/repos/{{owner}}/r{i:04d}": {
            "get": {
                "operationId": f"op{i}",
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {"example": {"id": i, "text": "x" * example_bytes}}
                        },
                    }
                },
            }
        }
        for i in range(operations)
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Big", "version": "1"},
        "servers": [{"url": "http://127.0.0.1:9"}],
        "paths": paths,
    }


def test_an_api_too_large_to_store_is_refused_in_the_users_terms(project: TestClient) -> None:
    spec = generated_spec(1200, 1000)  # about 1.3 MB of endpoints and examples
    response = project.post(IMPORT, json={"name": "big", "document": spec, "mock": True})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["details"][0]["field"] == "body"
    message = problem["message"]
    assert "default/big" in message
    assert "1200 endpoints, 1200 with an example response" in message
    assert "at most 1,048,576" in message
    assert "Split it" in message
    assert '"examples": false' in message
    assert "data:" not in message
    assert project.get("/api/v1/projects/default/apis").json()["items"] == []
    assert project.get("/api/v1/projects/default/apis/big").status_code == 404
    # the routes alone fit: every operation becomes an endpoint, without example payloads
    routes = project.post(IMPORT, json={"name": "big", "document": spec, "examples": False})
    assert routes.status_code == 201, routes.text
    endpoints = project.get("/api/v1/projects/default/apis/big").json()["endpoints"]
    assert len(endpoints) == 1200
    assert all(e["policies"]["request"] == [] for e in endpoints)
    both = project.post(
        IMPORT, json={"name": "other", "document": spec, "examples": False, "mock": True}
    )
    assert both.status_code == 422, both.text
    assert "mock answers with the examples" in both.json()["message"]


def test_the_import_cap_names_its_setting(open_manager: TestClient) -> None:
    text = json.dumps(generated_spec(20, 500))  # above the 8 KiB cap of this manager
    response = open_manager.post(IMPORT, json={"name": "big", "document": text})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["details"][0]["field"] == "body.document"
    assert "import_max_bytes" in problem["message"]
    assert "--import-max-bytes" in problem["message"]

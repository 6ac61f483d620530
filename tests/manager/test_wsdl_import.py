"""Creating SOAP API proxies from WSDL documents: given in the body or fetched from a URL (served
by the real loopback SOAP backend of ``tests.support.soap``), with the URL rules of the OpenAPI
import, and the revision a worker would serve choosing endpoints by SOAPAction and element."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from portway.compile.routes import compile_router
from portway.compile.routing import Match
from portway.manager.wsdl_import import WsdlImportRequest, build_api
from tests.support.soap import NS, WSDL, SoapBackend, soap_backend
from tests.worker.support import revision

IMPORT = "/api/v1/projects/default/apis/import/wsdl"
BACKEND = [{"url": "http://127.0.0.1:9/soap"}]


@pytest.fixture
def project(admin: TestClient) -> TestClient:
    assert admin.post("/api/v1/projects", json={"name": "default"}).status_code == 201
    return admin


@pytest.fixture
def backend() -> Iterator[SoapBackend]:
    with soap_backend() as running:
        running.documents["/big.wsdl"] = WSDL.replace(
            "<wsdl:types>", "<!--" + "x" * 9000 + "-->"
        ).encode()
        running.documents["/include.wsdl"] = WSDL.replace(
            "<wsdl:types>",
            f'<wsdl:import namespace="urn:x" location="{running.url}/stock.wsdl"/><wsdl:types>',
        ).encode()
        yield running


def test_each_operation_becomes_an_endpoint(project: TestClient) -> None:
    response = project.post(IMPORT, json={"name": "stock", "document": WSDL})
    assert response.status_code == 201, response.text
    api = response.json()
    assert response.headers["location"] == "/api/v1/projects/default/apis/stock"
    assert (api["base_path"], api["soap_version"]) == ("/stock", "1.1")
    assert api["backends"][0]["url"] == "http://127.0.0.1:9/soap"
    assert api["description"] == "StockService (StockSoap11Port, SOAP 1.1)"
    assert [(e["path"], e["methods"], e["description"]) for e in api["endpoints"]] == [
        ("/", ["POST"], "SOAP operation GetQuote"),
        ("/", ["POST"], "SOAP operation PlaceOrder"),
    ]
    assert api["endpoints"][1]["soap"] == {
        "name": "PlaceOrder",
        "action": f"{NS}/PlaceOrder",
        "element": f"{{{NS}}}PlaceOrder",
    }
    stored = project.get("/api/v1/projects/default/apis/stock").json()
    assert stored["endpoints"] == api["endpoints"]


def test_the_port_is_chosen(project: TestClient) -> None:
    response = project.post(
        IMPORT,
        json={"name": "stock12", "document": WSDL, "port": "StockSoap12Port", "backends": BACKEND},
        params={"dry_run": "true"},
    )
    assert response.status_code == 200, response.text
    api = response.json()
    assert (api["soap_version"], api["version"]) == ("1.2", None)
    assert api["warnings"] == ["port StockSoap11Port is not imported (choose it with port)"]
    assert api["backends"] == [
        {**BACKEND[0], "weight": 1, "kind": "primary", "health_check": True, "http2": False}
    ]
    assert project.get("/api/v1/projects/default/apis/stock12").status_code == 404
    unknown = project.post(IMPORT, json={"name": "x", "document": WSDL, "port": "Nope"})
    assert unknown.status_code == 422
    assert unknown.json()["details"][0]["field"] == "body.port"
    assert "StockSoap11Port, StockSoap12Port" in unknown.json()["message"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"document": "<x"}, "body.document", "not acceptable XML"),
        ({"document": "<definitions/>"}, "body.document", "no SOAP 1.1 or 1.2 port"),
        (
            {"document": '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>'},
            "body.document",
            "DTDs and entity declarations are not accepted",
        ),
        (
            {"document": WSDL.replace("http://127.0.0.1:9/soap", "ftp://x/soap")},
            "body.backends",
            "no usable soap:address",
        ),
        ({"document": WSDL, "url": "http://x/"}, "body", "exactly one of url and document"),
        ({"document": WSDL, "base_path": "/a/"}, "body.base_path", "must not end with '/'"),
    ],
)
def test_unusable_requests_are_422(
    project: TestClient, body: dict[str, str], field: str, message: str
) -> None:
    response = project.post(IMPORT, json={"name": "bad", **body})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert message in problem["message"]
    assert problem["details"][0]["field"] == field


def test_import_from_a_url(open_manager: TestClient, backend: SoapBackend) -> None:
    response = open_manager.post(IMPORT, json={"name": "stock", "url": f"{backend.url}/stock.wsdl"})
    assert response.status_code == 201, response.text
    assert response.json()["backends"][0]["url"] == f"{backend.url}/soap"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/big.wsdl", "larger than 8192 bytes"),
        ("/missing.wsdl", "answered 404"),
        ("/include.wsdl", "imports and includes are not fetched"),
    ],
)
def test_url_failures_are_422_on_the_url(
    open_manager: TestClient, backend: SoapBackend, path: str, message: str
) -> None:
    fetched = len(backend.received)
    response = open_manager.post(IMPORT, json={"name": "stock", "url": backend.url + path})
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "body.url"
    assert message in response.json()["message"]
    assert len(backend.received) == fetched


def test_internal_addresses_are_refused_by_default(
    project: TestClient, backend: SoapBackend
) -> None:
    response = project.post(IMPORT, json={"name": "stock", "url": f"{backend.url}/stock.wsdl"})
    assert response.status_code == 422
    assert "non-public address" in response.json()["message"]


def test_the_document_cap_names_its_setting(open_manager: TestClient) -> None:
    big = WSDL.replace("<wsdl:types>", "<!--" + "x" * 9000 + "--><wsdl:types>")
    response = open_manager.post(IMPORT, json={"name": "big", "document": big})
    assert response.status_code == 422
    assert "import_max_bytes" in response.json()["message"]


def test_soap_endpoints_on_one_path_must_differ(project: TestClient) -> None:
    api = project.post(IMPORT, json={"name": "stock", "document": WSDL}, params={"dry_run": "true"})
    body = api.json()
    for key in ("version", "warnings"):
        body.pop(key)
    body["endpoints"][1]["soap"] = body["endpoints"][0]["soap"]
    same = project.post("/api/v1/projects/default/apis", json={**body, "name": "twice"})
    assert same.status_code == 422
    assert "same action and element" in same.json()["message"]
    body["endpoints"][1].pop("soap")
    plain = project.post("/api/v1/projects/default/apis", json={**body, "name": "plain"})
    assert plain.status_code == 422
    assert "declared twice" in plain.json()["message"]
    body["endpoints"][0]["soap"] = {"name": "x"}
    empty = project.post("/api/v1/projects/default/apis", json={**body, "name": "empty"})
    assert "give action, element or both" in empty.json()["message"]


def test_one_dispatch_route_holds_the_operations() -> None:
    """Both operations share ``POST /stock``: the router gives one route holding both, which
    the worker chooses from by the envelope (tests/e2e/test_soap_e2e.py)."""
    api, _ = build_api(WSDL, WsdlImportRequest(name="stock", document=WSDL), "default")
    match = compile_router(revision(api)).match("", "POST", "/stock")
    assert isinstance(match, Match)
    names = [r.endpoint.soap.name for r in match.value.operations if r.endpoint and r.endpoint.soap]
    assert names == ["GetQuote", "PlaceOrder"]


def test_the_import_body_cap_applies(project: TestClient) -> None:
    """A WSDL above the JSON routes' 1 MiB cap is an import body (16 MiB), not a 413."""
    big = WSDL.replace("<wsdl:types>", "<!--" + "x" * (3 << 19) + "--><wsdl:types>")
    response = project.post(IMPORT, json={"name": "big", "document": big})
    assert response.status_code == 201, response.text[:300]

"""SOAP through a real manager and worker: a WSDL imported into a SOAP API called by a real zeep
client, the ``soap_rest`` face called with httpx, SOAP faults for the gateway's own errors, and
hostile envelopes — all in front of a real SOAP backend on loopback (``tests.support.soap``)."""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree

from portway.policies.soap import MAX_ENVELOPE_BYTES
from tests.e2e.conftest import Platform
from tests.support.processes import free_port, wait_until
from tests.support.soap import ENV11, ENV12, NS, SoapBackend, soap_backend

BINDING11 = f"{{{NS}}}StockSoap11"
BINDING12 = f"{{{NS}}}StockSoap12"


@pytest.fixture
def backend() -> Iterator[SoapBackend]:
    with soap_backend() as running:
        yield running


def envelope(payload: str, env: str = ENV11) -> bytes:
    return f'<s:Envelope xmlns:s="{env}"><s:Body>{payload}</s:Body></s:Envelope>'.encode()


def quote(symbol: str = "ACME") -> str:
    return f'<q:GetQuote xmlns:q="{NS}"><q:symbol>{symbol}</q:symbol></q:GetQuote>'


def read_fault(response: httpx.Response) -> dict[str, str]:
    """The SOAP 1.1 fault of a gateway answer: code, string and the detail's fields."""
    assert response.headers["content-type"] == "text/xml; charset=utf-8", response.text
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{ENV11}}}Body/{{{ENV11}}}Fault")
    assert fault is not None, response.text
    out = {"faultcode": fault.findtext("faultcode"), "faultstring": fault.findtext("faultstring")}
    for item in fault.iterfind("detail/*/*"):
        out[etree.QName(item).localname] = item.text or ""
    return {k: v or "" for k, v in out.items()}


def wait_deployed(platform: Platform, api: str, port: int, path: str) -> str:
    deployed = platform.deploy(api)
    assert deployed["results"][0]["success"], deployed
    url = f"http://127.0.0.1:{port}{path}"
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        wait_until(lambda: client.post(url).status_code != 404, f"{api} reaches the worker")
    return url


def soap_client(backend: SoapBackend, binding: str, address: str) -> Any:
    client = zeep.Client(f"{backend.url}/stock.wsdl")  # type: ignore[no-untyped-call]
    return client.create_service(binding, address)  # type: ignore[no-untyped-call]


def test_wsdl_import_serves_each_operation_to_a_zeep_client(
    platform: Platform, backend: SoapBackend
) -> None:
    imported = platform.call(
        "POST",
        "/projects/default/apis/import/wsdl",
        {"name": "stock", "document": backend.wsdl()},
        expect=201,
    )
    assert imported["soap_version"] == "1.1"
    assert imported["backends"][0]["url"] == f"{backend.url}/soap"
    assert [e["soap"] for e in imported["endpoints"]] == [
        {"name": "GetQuote", "action": f"{NS}/GetQuote", "element": f"{{{NS}}}GetQuote"},
        {"name": "PlaceOrder", "action": f"{NS}/PlaceOrder", "element": f"{{{NS}}}PlaceOrder"},
    ]
    assert imported["warnings"] == ["port StockSoap12Port is not imported (choose it with port)"]
    # the PlaceOrder operation gets its own policy: nobody on loopback may order
    api = platform.call("GET", "/projects/default/apis/stock")
    api["endpoints"][1]["policies"] = {
        "request": [{"name": "no-orders", "type": "ip_filter", "config": {"deny": ["127.0.0.1"]}}]
    }
    api.pop("version", None)
    platform.call("PUT", "/projects/default/apis/stock", api, expect=200)
    platform.call(
        "POST",
        "/projects/default/apis/import/wsdl",
        {"name": "stock12", "document": backend.wsdl(), "port": "StockSoap12Port"},
        expect=201,
    )
    _, port = platform.start_worker("w1")
    url = wait_deployed(platform, "stock", port, "/stock")
    url12 = wait_deployed(platform, "stock12", port, "/stock12")
    service12 = soap_client(backend, BINDING12, url12)
    assert service12.GetQuote(symbol="INITECH").price == decimal.Decimal("3.25")
    assert backend.received[-1].path == "/soap12"
    with pytest.raises(zeep.exceptions.Fault) as fault12:
        service12.GetQuote(symbol="NOPE")
    assert fault12.value.message == "unknown symbol NOPE"

    service = soap_client(backend, BINDING11, url)
    answer = service.GetQuote(symbol="ACME", currency="EUR")
    assert (answer.symbol, answer.price, answer.currency) == (
        "ACME",
        decimal.Decimal("12.50"),
        "EUR",
    )
    sent = backend.received[-1]
    assert (sent.path, sent.headers["soapaction"]) == ("/soap", f'"{NS}/GetQuote"')
    with pytest.raises(zeep.exceptions.Fault) as backend_fault:
        service.GetQuote(symbol="NOPE")
    assert backend_fault.value.message == "unknown symbol NOPE"
    reached = len(backend.received)
    with pytest.raises(zeep.exceptions.Fault) as denied:
        service.PlaceOrder(symbol="ACME", quantity=3)
    assert denied.value.code == "soap:Client"
    assert len(backend.received) == reached  # the endpoint's policy refused it

    with httpx.Client(trust_env=False, timeout=10.0) as client:
        soap11 = {"Content-Type": "text/xml; charset=utf-8"}
        # the platform's own errors are SOAP faults: a policy denial, 404, 405
        order = f'<q:PlaceOrder xmlns:q="{NS}"><q:symbol>A</q:symbol><q:quantity>1</q:quantity>'
        refused = client.post(
            url,
            content=envelope(order + "</q:PlaceOrder>"),
            headers={**soap11, "SOAPAction": f'"{NS}/PlaceOrder"'},
        )
        assert refused.status_code == 403
        fault = read_fault(refused)
        assert (fault["faultcode"], fault["code"]) == ("soap:Client", "ip_denied")
        assert fault["correlationId"] == refused.headers["x-correlation-id"]
        missing = client.post(
            f"http://127.0.0.1:{port}/nothing",
            content=envelope(quote()),
            headers={**soap11, "SOAPAction": '""'},
        )
        assert (missing.status_code, read_fault(missing)["code"]) == (404, "not_found")
        wrong_method = client.get(url)
        assert (wrong_method.status_code, read_fault(wrong_method)["code"]) == (
            405,
            "method_not_allowed",
        )
        # a REST client of another API still gets JSON
        assert client.get(f"http://127.0.0.1:{port}/nothing").json()["error"] == "not_found"

        # hostile envelopes never reach the backend
        reached = len(backend.received)
        get_quote = {**soap11, "SOAPAction": f'"{NS}/GetQuote"'}
        mismatch = client.post(
            url,
            content=envelope(order + "</q:PlaceOrder>"),
            headers=get_quote,
        )
        assert (mismatch.status_code, read_fault(mismatch)["code"]) == (
            400,
            "soap_action_mismatch",
        )
        xxe = (
            b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            + envelope(quote("&x;"))
        )
        leaked = client.post(url, content=xxe, headers=get_quote)
        assert (leaked.status_code, read_fault(leaked)["code"]) == (400, "invalid_envelope")
        assert "root:" not in leaked.text
        laughs = (
            b'<!DOCTYPE s [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>' + envelope(quote("&c;"))
        )
        bomb = client.post(url, content=laughs, headers=get_quote)
        assert (bomb.status_code, read_fault(bomb)["code"]) == (400, "invalid_envelope")
        other_ns = client.post(
            url,
            content=envelope('<q:GetQuote xmlns:q="urn:evil"><q:symbol>A</q:symbol></q:GetQuote>'),
            headers=get_quote,
        )
        assert (other_ns.status_code, read_fault(other_ns)["code"]) == (400, "unknown_operation")
        not_envelope = client.post(
            url, content=envelope(quote(), env="urn:not-soap"), headers=get_quote
        )
        assert (not_envelope.status_code, read_fault(not_envelope)["code"]) == (
            400,
            "invalid_envelope",
        )
        as_12 = client.post(
            url,
            content=envelope(quote(), env=ENV12),
            headers=get_quote,
        )
        assert read_fault(as_12)["code"] == "invalid_envelope"
        plain = client.post(url, json={"symbol": "ACME"})
        assert (plain.status_code, read_fault(plain)["code"]) == (415, "unsupported_media_type")
        padding = "<q:symbol>A</q:symbol>" * 400_000
        oversize = envelope(f'<q:GetQuote xmlns:q="{NS}">{padding}</q:GetQuote>')
        assert len(oversize) > MAX_ENVELOPE_BYTES
        big = client.post(url, content=oversize, headers=get_quote)
        assert (big.status_code, read_fault(big)["code"]) == (413, "payload_too_large")
        assert len(backend.received) == reached


def test_backend_failures_are_soap_faults(platform: Platform, backend: SoapBackend) -> None:
    dead = f"http://127.0.0.1:{free_port()}/soap"
    platform.call(
        "POST",
        "/projects/default/apis/import/wsdl",
        {"name": "gone", "document": backend.wsdl(), "backends": [{"url": dead}]},
        expect=201,
    )
    _, port = platform.start_worker("w1")
    deployed = platform.deploy("gone")
    assert deployed["results"][0]["success"], deployed
    url = f"http://127.0.0.1:{port}/gone"
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        headers = {"Content-Type": "text/xml", "SOAPAction": f'"{NS}/GetQuote"'}

        def answered() -> bool:
            return client.post(url, content=envelope(quote()), headers=headers).status_code != 404

        wait_until(answered, "the API reaches the worker")
        failed = client.post(url, content=envelope(quote()), headers=headers)
        assert failed.status_code == 502
        fault = read_fault(failed)
        assert (fault["faultcode"], fault["code"]) == ("soap:Server", "bad_gateway")
        assert fault["faultstring"] == "the backend cannot be reached"
        # a SOAP 1.2 client gets a SOAP 1.2 fault
        soap12 = client.post(
            url,
            content=envelope(quote(), env=ENV12),
            headers={"Content-Type": f'application/soap+xml; action="{NS}/GetQuote"'},
        )
        assert soap12.status_code == 502
        assert soap12.headers["content-type"] == "application/soap+xml; charset=utf-8"
        root = etree.fromstring(soap12.content)
        assert root.findtext(f".//{{{ENV12}}}Code/{{{ENV12}}}Value") == "env:Receiver"


def test_soap_rest_face(platform: Platform, backend: SoapBackend) -> None:
    wsdl = backend.wsdl()

    def face(route: str, operation: str, **extra: Any) -> dict[str, Any]:
        config = {"wsdl": wsdl, "operation": operation, **extra}
        return {
            "path": route,
            "methods": ["POST"],
            "policies": {"request": [{"name": "soap", "type": "soap_rest", "config": config}]},
        }

    api = {
        "name": "quotes",
        "base_path": "/quotes",
        "backends": [{"url": backend.url}],
        "endpoints": [
            face("/quote", "GetQuote", path="/soap"),
            face("/order", "PlaceOrder", path="/soap"),
            face("/quote12", "GetQuote", port="StockSoap12Port", path="/soap12"),
        ],
    }
    platform.call("POST", "/projects/default/apis", api, expect=201)
    _, port = platform.start_worker("w1")
    base = f"http://127.0.0.1:{port}/quotes"
    wait_deployed(platform, "quotes", port, "/quotes/quote")
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        got = client.post(f"{base}/quote", json={"symbol": "ACME", "currency": "EUR"})
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "application/json"
        assert got.json() == {"symbol": "ACME", "price": "12.50", "currency": "EUR"}
        sent = backend.received[-1]
        assert (sent.path, sent.headers["soapaction"]) == ("/soap", f'"{NS}/GetQuote"')
        body = etree.fromstring(sent.body).find(f"{{{ENV11}}}Body/{{{NS}}}GetQuote")
        assert body is not None
        assert [etree.QName(c).text for c in body] == [f"{{{NS}}}symbol", f"{{{NS}}}currency"]

        order = client.post(f"{base}/order", json={"symbol": "ACME", "quantity": 5})
        assert order.json() == {"orderId": "o-5", "accepted": True}

        v12 = client.post(f"{base}/quote12", json={"symbol": "INITECH"})
        assert v12.json()["price"] == "3.25"
        sent = backend.received[-1]
        assert sent.path == "/soap12"
        assert sent.headers["content-type"].startswith("application/soap+xml")
        assert f'action="{NS}/GetQuote"' in sent.headers["content-type"]

        client_fault = client.post(f"{base}/quote", json={"symbol": "NOPE"})
        assert client_fault.status_code == 400
        assert client_fault.json()["error"] == "client_fault"
        assert client_fault.json()["message"] == "unknown symbol NOPE"
        server_fault = client.post(f"{base}/quote", json={"symbol": "CRASH"})
        assert (server_fault.status_code, server_fault.json()["message"]) == (
            502,
            "quote service down",
        )
        fault12 = client.post(f"{base}/quote12", json={"symbol": "NOPE"})
        assert (fault12.status_code, fault12.json()["error"]) == (400, "client_fault")
        wrong_ns = client.post(f"{base}/quote", json={"symbol": "WRONGNS"})
        assert (wrong_ns.status_code, wrong_ns.json()["error"]) == (502, "invalid_response")

        reached = len(backend.received)
        unknown = client.post(f"{base}/quote", json={"symbol": "A", "bogus": 1})
        assert unknown.status_code == 400
        assert unknown.json()["error"] == "invalid_request"
        assert "bogus" in unknown.json()["message"]
        missing = client.post(f"{base}/quote", json={})
        assert "symbol" in missing.json()["message"]
        assert client.post(f"{base}/quote", content=b"<x/>").json()["error"] == "invalid_json"
        assert client.post(f"{base}/quote", json=[1]).json()["error"] == "invalid_json"
        nested = client.post(f"{base}/quote", json={"symbol": {"a": 1}})
        assert nested.json()["error"] == "invalid_request"
        assert len(backend.received) == reached

    bad = {"name": "s", "type": "soap_rest", "config": {"wsdl": wsdl, "operation": "Nope"}}
    with platform.api() as admin:
        refused = admin.post(
            "/projects/default/apis",
            json={
                "name": "bad",
                "base_path": "/bad",
                "backends": [{"url": backend.url}],
                "policies": {"request": [bad]},
            },
        )
    assert refused.status_code == 422
    assert "operation 'Nope' is not in the WSDL" in refused.json()["message"]

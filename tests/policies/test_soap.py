"""SOAP on the wire (``portway.policies.soap``) and the ``soap_rest`` policy in a pipeline:
envelopes, faults a real SOAP client reads, WSDLs that try to reach outside, and hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zeep.exceptions
from zeep.loader import parse_xml

from portway.policies.contract import GatewayError
from portway.policies.render import render_error
from portway.policies.soap import (
    NotAnEnvelope,
    fault,
    read_envelope,
    read_fault,
    request_action,
    request_version,
)
from portway.policies.wsdl import SETTINGS, WsdlRejected, load_wsdl, operations
from tests.policies.helpers import World, make_ctx, make_response
from tests.policies.test_mediation import rejected
from tests.support.soap import ENV11, ENV12, NS, WSDL, answer

QUOTE = f'<q:GetQuote xmlns:q="{NS}"><q:symbol>ACME</q:symbol></q:GetQuote>'


def envelope(payload: str, env: str = ENV11, prolog: str = "") -> bytes:
    body = f'<s:Envelope xmlns:s="{env}"><s:Body>{payload}</s:Body></s:Envelope>'
    return (prolog + body).encode()


# -- versions, actions, envelopes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "action", "version"),
    [
        ("text/xml; charset=utf-8", '"urn:a"', "1.1"),
        ("TEXT/XML", "", "1.1"),
        ("text/xml", None, None),
        ('application/soap+xml; charset=utf-8; action="urn:a"', None, "1.2"),
        ("application/json", '"urn:a"', None),
        (None, None, None),
    ],
)
def test_request_version(content_type: str | None, action: str | None, version: str) -> None:
    assert request_version(content_type, action) == version


def test_request_action() -> None:
    assert request_action("text/xml", '"urn:a"') == "urn:a"
    assert request_action("text/xml", '""') is None
    assert request_action('application/soap+xml; action="urn:b"', None) == "urn:b"
    assert request_action("application/soap+xml; charset=utf-8", None) is None


def test_read_envelope() -> None:
    found = read_envelope(envelope(QUOTE), "1.1")
    assert (found.version, found.element) == ("1.1", f"{{{NS}}}GetQuote")
    assert read_envelope(envelope(QUOTE, ENV12)).version == "1.2"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            envelope(QUOTE, prolog='<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>'),
            "DTDs and entity declarations are not accepted",
        ),
        (
            envelope(
                QUOTE.replace("ACME", "&c;"),
                prolog='<!DOCTYPE s [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">'
                '<!ENTITY c "&b;&b;">]>',
            ),
            "DTDs and entity declarations are not accepted",
        ),
        (b"<s:Envelope", "not well-formed XML"),
        (envelope(QUOTE, "urn:fake"), "not a SOAP 1.1 or 1.2 Envelope"),
        (f'<s:Envelope xmlns:s="{ENV11}"/>'.encode(), "no Body"),
        (envelope(""), "Body is empty"),
        (envelope(QUOTE, ENV12), "a SOAP 1.2 envelope sent as SOAP 1.1"),
        (b"<a>" * 300 + b"</a>" * 300, "nested deeper than 256"),
    ],
)
def test_hostile_envelopes_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(NotAnEnvelope) as caught:
        read_envelope(body, "1.1")
    assert reason in str(caught.value)


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "status", "code"),
    [("1.1", 403, "soap:Client"), ("1.1", 504, "soap:Server"), ("1.2", 400, "env:Sender")],
)
def test_faults_are_read_by_zeep(version: str, status: int, code: str) -> None:
    """The faults the gateway sends are what a real SOAP client (zeep) understands."""
    content_type, body = fault(version, status, "ip_denied", "<denied> & gone", "c1")  # type: ignore[arg-type]
    assert content_type.startswith("text/xml" if version == "1.1" else "application/soap+xml")
    document = load_wsdl(WSDL)
    port = "StockSoap11Port" if version == "1.1" else "StockSoap12Port"
    binding = document.services["StockService"].ports[port].binding
    received = parse_xml(body, None, settings=SETTINGS)  # type: ignore[arg-type]
    with pytest.raises(zeep.exceptions.Fault) as caught:
        binding.process_error(received, None)
    assert caught.value.message == "<denied> & gone"
    assert caught.value.code == code
    found = read_fault(body)
    assert found is not None
    assert found.message == "<denied> & gone"


def test_read_fault_of_answers() -> None:
    status, body = answer("1.2", None, envelope(QUOTE.replace("ACME", "NOPE"), ENV12))
    assert status == 500
    assert read_fault(body) == type(read_fault(body))("Sender", "unknown symbol NOPE")  # type: ignore[misc]
    assert read_fault(answer("1.1", None, envelope(QUOTE))[1]) is None
    assert read_fault(b"<!DOCTYPE x []><x/>") is None


def test_the_error_renderer_answers_faults_to_soap_clients() -> None:
    ctx = make_ctx("POST", body=b"")
    ctx.soap_version = "1.2"
    reply = render_error(ctx, GatewayError(429, "throttled", "slow down"), {}, [], 0.0)
    assert reply.content_type == "application/soap+xml; charset=utf-8"
    found = read_fault(reply.body)
    assert found is not None
    assert (found.code, found.message) == ("Sender", "slow down")
    assert b"corr-123" in reply.body
    ctx.soap_version = None
    plain = render_error(ctx, GatewayError(429, "throttled", "slow down"), {}, [], 0.0)
    assert json.loads(plain.body)["error"] == "throttled"


# -- WSDL loading ------------------------------------------------------------------------------


def test_operations_of_the_wsdl() -> None:
    found = operations(load_wsdl(WSDL))
    assert [(o.port, o.name, o.version) for o in found] == [
        ("StockSoap11Port", "GetQuote", "1.1"),
        ("StockSoap11Port", "PlaceOrder", "1.1"),
        ("StockSoap12Port", "GetQuote", "1.2"),
        ("StockSoap12Port", "PlaceOrder", "1.2"),
    ]
    first = found[0]
    assert (first.action, first.element, first.address) == (
        f"{NS}/GetQuote",
        f"{{{NS}}}GetQuote",
        "http://127.0.0.1:9/soap",
    )


def test_wsdls_reaching_outside_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xsd"
    secret.write_text('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>')
    include = WSDL.replace(
        '<xsd:schema targetNamespace="urn:example:stock" elementFormDefault="qualified">',
        '<xsd:schema targetNamespace="urn:example:stock" elementFormDefault="qualified">'
        f'<xsd:include schemaLocation="{secret.as_uri()}"/>',
    )
    with pytest.raises(WsdlRejected) as caught:
        load_wsdl(include)
    assert f"refers to {secret.as_uri()}" in str(caught.value)
    remote = WSDL.replace(
        "<wsdl:types>",
        '<wsdl:import namespace="urn:x" location="http://127.0.0.1:9/other.wsdl"/><wsdl:types>',
    )
    with pytest.raises(WsdlRejected) as caught:
        load_wsdl(remote)
    assert "http://127.0.0.1:9/other.wsdl" in str(caught.value)
    xxe = '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + WSDL.split("?>", 1)[1]
    with pytest.raises(WsdlRejected) as caught:
        load_wsdl(xxe)
    assert "DTDs and entity declarations are not accepted" in str(caught.value)
    assert operations(load_wsdl("<definitions/>")) == []


# -- soap_rest -----------------------------------------------------------------------------------


def config(**extra: object) -> dict[str, object]:
    return {"wsdl": WSDL, "operation": "GetQuote", **extra}


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"operation": "Nope"}, "p.config", "operation 'Nope' is not in the WSDL"),
        ({"port": "Nope"}, "p.config", "port 'Nope' is not a SOAP port"),
        ({"wsdl": "<x"}, "p.config", "wsdl: the WSDL is not acceptable XML"),
        ({"path": "soap"}, "p.config.path", "should match pattern"),
        ({"path": "/a/../b"}, None, None),
        ({"operation": 5}, "p.config.operation", "Input should be a valid string"),
    ],
)
def test_config_is_checked(extra: dict[str, object], field: str | None, message: str) -> None:
    if field is None:
        return
    where, text = rejected("soap_rest", config(**extra))
    assert where == field
    assert message in text


async def test_json_becomes_an_envelope_and_back(world: World) -> None:
    pipeline = world.one("soap_rest", config(path="/soap"))
    ctx = make_ctx("PUT", "/quotes/x", body=b'{"symbol": "ACME", "currency": "EUR"}')
    assert await pipeline.on_request(ctx) is None
    request = ctx.request
    assert (request.method, request.path) == ("POST", "/soap")
    assert request.headers.get("soapaction") == f'"{NS}/GetQuote"'
    assert request.headers.get("content-type") == "text/xml; charset=utf-8"
    sent = await request.body()
    status, reply = answer("1.1", f"{NS}/GetQuote", sent)
    assert status == 200
    ctx.response = make_response(status, reply, [("Content-Type", "text/xml")])
    assert await pipeline.on_response(ctx) is None
    assert json.loads(ctx.response.body_override or b"") == {
        "symbol": "ACME",
        "price": "12.50",
        "currency": "EUR",
    }
    assert ctx.response.headers.get("content-type") == "application/json"


async def test_soap12_carries_the_action_in_the_content_type(world: World) -> None:
    pipeline = world.one("soap_rest", config(port="StockSoap12Port"))
    ctx = make_ctx("POST", body=b'{"symbol": "ACME"}', headers=[("SOAPAction", "x")])
    assert await pipeline.on_request(ctx) is None
    assert ctx.request.headers.get("content-type") == (
        f'application/soap+xml; charset=utf-8; action="{NS}/GetQuote"'
    )
    assert ctx.request.headers.get("soapaction") is None
    assert ctx.request.path == ""  # the backend URL itself


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"{nope", "invalid_json", "the body is not a JSON object"),
        (b'"ACME"', "invalid_json", "the body is not a JSON object"),
        (b'{"symbol": "A", "evil": 1}', "invalid_request", "unexpected keyword argument 'evil'"),
        (b"{}", "invalid_request", "Missing element symbol"),
        (b'{"symbol": ["a", "b"]}', "invalid_request", "doesn't accept collections"),
    ],
)
async def test_bad_json_is_refused(world: World, body: bytes, code: str, message: str) -> None:
    pipeline = world.one("soap_rest", config())
    reply = await pipeline.on_request(make_ctx("POST", body=body))
    assert reply is not None
    assert reply.status == 400
    answer_ = json.loads(reply.body)
    assert answer_["error"] == code
    assert message in answer_["message"]


@pytest.mark.parametrize(
    ("symbol", "status", "code", "message"),
    [
        ("NOPE", 400, "client_fault", "unknown symbol NOPE"),
        ("CRASH", 502, "server_fault", "quote service down"),
        ("WRONGNS", 502, "invalid_response", "the backend's answer is not the operation's output"),
    ],
)
async def test_backend_faults_become_errors(
    world: World, symbol: str, status: int, code: str, message: str
) -> None:
    pipeline = world.one("soap_rest", config())
    body = json.dumps({"symbol": symbol}).encode()
    ctx = make_ctx("POST", body=body)
    assert await pipeline.on_request(ctx) is None
    backend_status, reply = answer("1.1", None, await ctx.request.body())
    ctx.response = make_response(backend_status, reply)
    refused = await pipeline.on_response(ctx)
    assert refused is not None
    assert refused.status == status
    assert (json.loads(refused.body)["error"], json.loads(refused.body)["message"]) == (
        code,
        message,
    )


@pytest.mark.parametrize(
    "reply",
    [
        b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
        envelope(QUOTE, ENV12),
        b"not xml",
        b"",
    ],
)
async def test_unusable_backend_answers_are_502(world: World, reply: bytes) -> None:
    pipeline = world.one("soap_rest", config())
    ctx = make_ctx("POST", body=b'{"symbol": "ACME"}')
    assert await pipeline.on_request(ctx) is None
    ctx.response = make_response(200, reply)
    refused = await pipeline.on_response(ctx)
    assert refused is not None
    assert (refused.status, json.loads(refused.body)["error"]) == (502, "invalid_response")
    assert b"root:" not in refused.body

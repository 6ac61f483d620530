"""xml_schema: XSD validation of request and response bodies, and what a schema may not do."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.policies.helpers import World, make_ctx, make_response
from tests.policies.test_mediation import rejected

XS = 'xmlns:xs="http://www.w3.org/2001/XMLSchema"'
ORDER_XSD = f"""<xs:schema {XS}>
  <xs:element name="order">
    <xs:complexType><xs:sequence>
      <xs:element name="item" maxOccurs="unbounded">
        <xs:complexType>
          <xs:sequence><xs:element name="qty" type="xs:positiveInteger"/></xs:sequence>
          <xs:attribute name="sku" type="xs:string" use="required"/>
        </xs:complexType>
      </xs:element>
    </xs:sequence></xs:complexType>
  </xs:element>
</xs:schema>"""


async def deny(world: World, body: bytes, **config: object) -> dict[str, str]:
    pipeline = world.one("xml_schema", {"schema": ORDER_XSD, **config})
    reply = await pipeline.on_request(make_ctx(body=body))
    assert reply is not None
    assert reply.status == 400
    answer: dict[str, str] = json.loads(reply.body)
    assert answer["correlation_id"] == "corr-123"
    return answer


async def test_a_valid_document_passes(world: World) -> None:
    pipeline = world.one("xml_schema", {"schema": ORDER_XSD})
    body = b'<order><item sku="a"><qty>2</qty></item></order>'
    assert await pipeline.on_request(make_ctx(body=body)) is None


async def test_the_first_violation_is_named(world: World) -> None:
    body = b'<order><item sku="a"><qty>2</qty></item><item sku="b"><qty>0</qty></item></order>'
    answer = await deny(world, body)
    assert (answer["error"], answer["path"], answer["reason"]) == (
        "schema_violation",
        "/order/item[2]/qty",
        "value must be positive",
    )
    missing = await deny(world, b"<order><item><qty>1</qty></item></order>")
    assert (missing["path"], missing["reason"]) == (
        "/order/item",
        "missing required attribute 'sku'",
    )
    other = await deny(world, b"<invoice/>")
    assert other["reason"] == "'invoice' is not an element of the schema"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<order>",
        b"\xff\xfe<",
        b'<?xml version="1.0"?><!DOCTYPE order [<!ENTITY x "y">]><order>&x;</order>',
        b'<!DOCTYPE order SYSTEM "file:///etc/passwd"><order/>',
        b"<a>" * 300 + b"</a>" * 300,
    ],
)
async def test_hostile_or_broken_xml_is_400_invalid_xml(world: World, body: bytes) -> None:
    assert (await deny(world, body))["error"] == "invalid_xml"


async def test_location_hints_in_the_document_are_ignored(world: World) -> None:
    body = (
        b'<order xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:noNamespaceSchemaLocation="http://127.0.0.1:1/lax.xsd">'
        b'<item sku="a"><qty>-1</qty></item></order>'
    )
    assert (await deny(world, body))["path"] == "/order/item/qty"


async def test_content_type_can_be_required(world: World) -> None:
    body = b'<order><item sku="a"><qty>2</qty></item></order>'
    answer = await deny(world, body, require_xml_content_type=True)
    assert answer["error"] == "invalid_xml"
    pipeline = world.one("xml_schema", {"schema": ORDER_XSD, "require_xml_content_type": True})
    ctx = make_ctx(body=body, headers=[("Content-Type", "application/xml")])
    assert await pipeline.on_request(ctx) is None


async def test_namespaced_schema(world: World) -> None:
    xsd = (
        f'<xs:schema {XS} targetNamespace="urn:o" elementFormDefault="qualified">'
        '<xs:element name="total" type="xs:decimal"/></xs:schema>'
    )
    pipeline = world.one("xml_schema", {"schema": xsd})
    assert await pipeline.on_request(make_ctx(body=b'<total xmlns="urn:o">1.5</total>')) is None
    reply = await pipeline.on_request(make_ctx(body=b'<total xmlns="urn:o">lots</total>'))
    assert reply is not None
    assert json.loads(reply.body)["path"] == "/{urn:o}total"


async def test_response_validation_is_502(world: World) -> None:
    pipeline = world.one("xml_schema", {"schema": ORDER_XSD}, phase="response")
    ctx = make_ctx()
    ctx.response = make_response(body=b"<order/>")
    reply = await pipeline.on_response(ctx)
    assert reply is not None
    assert reply.status == 502
    assert json.loads(reply.body)["error"] == "invalid_response"


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        body = f'<xs:schema {XS}><xs:element name="x"/></xs:schema>'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def schema_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.hits.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_imports_and_includes_are_refused_and_never_fetched(
    schema_server: str, tmp_path: Path
) -> None:
    local = tmp_path / "part.xsd"
    local.write_text(f'<xs:schema {XS}><xs:element name="x"/></xs:schema>')
    hostile = [
        f'<xs:import namespace="urn:x" schemaLocation="{schema_server}/x.xsd"/>',
        f'<xs:include schemaLocation="{schema_server}/inc.xsd"/>',
        f'<xs:include schemaLocation="{local}"/>',
        f'<xs:redefine schemaLocation="{local.as_uri()}"/>',
    ]
    for construct in hostile:
        field, message = rejected(
            "xml_schema", {"schema": f"<xs:schema {XS}>{construct}</xs:schema>"}
        )
        assert field == "p.config"
        assert "imports and includes are not fetched" in message or "block access" in message
    assert _Recorder.hits == []


def test_schema_config_rules() -> None:
    assert rejected("xml_schema", {})[0] == "p.config.schema"
    field, message = rejected("xml_schema", {"schema": "not xml"})
    assert (field, message.split(":")[0]) == ("p.config", "schema is not a usable XML Schema")
    entity = f'<!DOCTYPE s [<!ENTITY a "b">]><xs:schema {XS}/>'
    assert "Entities are forbidden" in rejected("xml_schema", {"schema": entity})[1]
    unknown = f'<xs:schema {XS}><xs:element name="a" type="nope"/></xs:schema>'
    assert rejected("xml_schema", {"schema": unknown})[1] == (
        "schema is not a usable XML Schema: unknown type 'nope'"
    )


def test_a_deeply_nested_schema_is_refused_not_a_crash() -> None:
    open_, close = (
        "<xs:element name='e'><xs:complexType><xs:sequence>",
        "</xs:sequence></xs:complexType></xs:element>",
    )
    for levels in (330, 2000):
        schema = f"<xs:schema {XS}>" + open_ * levels + close * levels + "</xs:schema>"
        field, message = rejected("xml_schema", {"schema": schema})
        assert field == "p.config"
        assert message.startswith("schema is not a usable XML Schema")


async def test_a_recursive_type_validates_the_deepest_accepted_document(world: World) -> None:
    recursive = (
        f'<xs:schema {XS}><xs:complexType name="t"><xs:sequence>'
        '<xs:element name="e" type="t" minOccurs="0"/></xs:sequence></xs:complexType>'
        '<xs:element name="e" type="t"/></xs:schema>'
    )
    pipeline = world.one("xml_schema", {"schema": recursive})
    assert await pipeline.on_request(make_ctx(body=b"<e>" * 256 + b"</e>" * 256)) is None
    reply = await pipeline.on_request(make_ctx(body=b"<e>" * 255 + b"<x/>" + b"</e>" * 255))
    assert reply is not None
    assert json.loads(reply.body)["error"] == "schema_violation"

"""Mediation policies configured through the management API, deployed, and run by a real
worker in front of the echo backend (which answers with what it received, as JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Platform
from tests.support.processes import wait_until

XS = 'xmlns:xs="http://www.w3.org/2001/XMLSchema"'
ORDER_XSD = (
    f'<xs:schema {XS}><xs:element name="order"><xs:complexType><xs:sequence>'
    '<xs:element name="qty" type="xs:positiveInteger"/>'
    "</xs:sequence></xs:complexType></xs:element></xs:schema>"
)


def deploy(platform: Platform, policies: dict[str, Any]) -> str:
    """Deploy an API ``/orders`` with ``policies``; the worker's URL for it once it answers."""
    _, port = platform.start_worker("w1")
    api = {
        "name": "orders",
        "base_path": "/orders",
        "backends": [{"url": platform.backend_url}],
        "policies": policies,
    }
    platform.call("POST", "/projects/default/apis", api, expect=201)
    deployed = platform.deploy("orders")
    assert deployed["results"][0]["success"], deployed
    url = f"http://127.0.0.1:{port}/orders/items"
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        wait_until(lambda: client.get(url).status_code != 404, "the API reaches the worker")
    return url


def refused(platform: Platform, entry: dict[str, Any]) -> str:
    """Saving an API with ``entry`` in its request list fails with 422; the message."""
    api = {"name": "bad", "base_path": "/bad", "backends": [{"url": platform.backend_url}]}
    with platform.api() as client:
        response = client.post(
            "/projects/default/apis", json={**api, "policies": {"request": [entry]}}
        )
    assert response.status_code == 422, response.text
    message: str = response.json()["message"]
    return message


def test_xml_schema(platform: Platform) -> None:
    schema = {"name": "xsd", "type": "xml_schema", "config": {"schema": ORDER_XSD}}
    url = deploy(platform, {"request": [schema]})
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        good = client.post(url, content=b"<order><qty>3</qty></order>")
        assert good.status_code == 200
        assert good.json()["body"] == "<order><qty>3</qty></order>"
        bad = client.post(url, content=b"<order><qty>0</qty></order>")
        assert bad.status_code == 400
        answer = bad.json()
        assert (answer["error"], answer["path"]) == ("schema_violation", "/order/qty")
        assert answer["correlation_id"] == bad.headers["X-Correlation-ID"]
        xxe = b'<!DOCTYPE order [<!ENTITY x SYSTEM "file:///etc/passwd">]><order>&x;</order>'
        assert client.post(url, content=xxe).json()["error"] == "invalid_xml"
    broken = {"name": "xsd", "type": "xml_schema", "config": {"schema": "<nope"}}
    assert "policies.request[0].config" in refused(platform, broken)


def test_redact(platform: Platform) -> None:
    request = {
        "name": "mask-card",
        "type": "redact",
        "config": {"json_paths": ["$.card.number"], "headers": ["X-Card"], "keep_last": 4},
    }
    response = {
        "name": "hide-secret",
        "type": "redact",
        "config": {"json_paths": ["$.headers['x-secret']"], "action": "remove"},
    }
    url = deploy(platform, {"request": [request], "response": [response]})
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        sent = client.post(
            url,
            json={"card": {"number": "4111111111111111"}},
            headers={"X-Card": "4111111111111111", "X-Secret": "s3cret"},
        )
        assert sent.status_code == 200
        echoed = sent.json()
        assert echoed["body"] == '{"card": {"number": "****1111"}}'
        assert echoed["headers"]["x-card"] == "****1111"
        assert "x-secret" not in echoed["headers"]  # removed from the backend's answer
        assert "s3cret" not in sent.text
        unreadable = client.post(url, content=b"card=4111111111111111")
        assert unreadable.status_code == 400
        assert unreadable.json()["error"] == "unreadable_body"


def test_content_filter(platform: Platform) -> None:
    config = {
        "patterns": [{"name": "sql", "pattern": r"(?i)\bunion\s+select\b"}],
        "targets": ["body", "query"],
        "max_body_bytes": 2000,
        "max_json_depth": 4,
    }
    url = deploy(
        platform, {"request": [{"name": "filter", "type": "content_filter", "config": config}]}
    )
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        assert client.post(url, json={"q": "union of sets"}).status_code == 200
        sql = client.post(url, json={"q": "1 UNION SELECT password"})
        assert (sql.status_code, sql.json()["rule"]) == (400, "sql")
        query = client.get(url, params={"q": "x union select y"})
        assert (query.status_code, query.json()["target"]) == (400, "query")
        deep = client.post(url, content=b"[" * 50 + b"]" * 50)
        assert (deep.status_code, deep.json()["rule"]) == (400, "max_json_depth")
        big = client.post(url, content=b"x" * 2001)
        assert (big.status_code, big.json()["rule"]) == (413, "max_body_bytes")
    bad = {
        "name": "filter",
        "type": "content_filter",
        "config": {"patterns": [{"name": "x", "pattern": "(?<=a)"}]},
    }
    assert "policies.request[0].config.patterns[0].pattern" in refused(platform, bad)


def test_xslt(platform: Platform, tmp_path: Path) -> None:
    stylesheet = (
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:output omit-xml-declaration="yes"/>'
        '<xsl:template match="/order"><purchase quantity="{qty}"/></xsl:template>'
        "</xsl:stylesheet>"
    )
    config = {"stylesheet": stylesheet, "content_type": "application/xml"}
    url = deploy(platform, {"request": [{"name": "to-purchase", "type": "xslt", "config": config}]})
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        sent = client.post(url, content=b"<order><qty>3</qty></order>")
        assert sent.status_code == 200
        echoed = sent.json()
        assert echoed["body"] == '<purchase quantity="3"/>\n'
        assert echoed["headers"]["content-type"] == "application/xml"
        assert client.post(url, content=b"{}").json()["error"] == "invalid_xml"
    secret = tmp_path / "secret.xsl"
    secret.write_text(stylesheet)
    hostile = stylesheet.replace(
        "<xsl:output", f'<xsl:include href="{secret.as_uri()}"/><xsl:output'
    )
    entry = {"name": "x", "type": "xslt", "config": {"stylesheet": hostile}}
    assert "xsl:include is not allowed" in refused(platform, entry)


def test_json_transform(platform: Platform) -> None:
    request = {
        "name": "reshape",
        "type": "json_transform",
        "config": {"expression": "{id: order.id, skus: order.items[*].sku}"},
    }
    response = {
        "name": "summary",
        "type": "json_transform",
        "config": {"expression": "{method: method, forwarded: body}"},
    }
    url = deploy(platform, {"request": [request], "response": [response]})
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        order = {"order": {"id": 7, "items": [{"sku": "a"}, {"sku": "b"}], "secret": "x"}}
        sent = client.post(url, json=order)
        assert sent.status_code == 200
        assert sent.json() == {"method": "POST", "forwarded": '{"id": 7, "skus": ["a", "b"]}'}
        broken = client.post(url, content=b"{nope")
        assert (broken.status_code, broken.json()["error"]) == (400, "invalid_json")
    entry = {"name": "x", "type": "json_transform", "config": {"expression": "eval(a)"}}
    assert "unknown JMESPath function 'eval'" in refused(platform, entry)

"""xslt: XSLT 1.0 with lxml, and proof that hostile stylesheets reach no file and no network."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from portway.policies.contract import GatewayError
from tests.policies.helpers import World, make_ctx, make_response
from tests.policies.test_mediation import rejected

HEAD = '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
TAIL = "</xsl:stylesheet>"
RENAME = (
    HEAD + '<xsl:output method="xml" omit-xml-declaration="yes"/>'
    '<xsl:template match="/order"><purchase total="{sum(item/@price)}">'
    '<xsl:for-each select="item"><line sku="{@sku}"/></xsl:for-each></purchase></xsl:template>'
    + TAIL
)


def sheet(template_body: str, extra: str = "") -> str:
    return HEAD + extra + f'<xsl:template match="/">{template_body}</xsl:template>' + TAIL


async def run(world: World, stylesheet: str, body: bytes) -> tuple[int | None, bytes]:
    ctx = make_ctx(method="POST", body=body, headers=[("Content-Length", str(len(body)))])
    config = {"stylesheet": stylesheet, "content_type": "application/xml"}
    reply = await world.one("xslt", config).on_request(ctx)
    if reply is not None:
        return reply.status, reply.body
    assert ctx.request.headers.get("Content-Length") is None
    assert ctx.request.headers.get("Content-Type") == "application/xml"
    return None, await ctx.request.body()


async def test_transforms_the_request(world: World) -> None:
    body = b'<order><item sku="a" price="2"/><item sku="b" price="3.5"/></order>'
    assert await run(world, RENAME, body) == (
        None,
        b'<purchase total="5.5"><line sku="a"/><line sku="b"/></purchase>\n',
    )


async def test_transforms_the_response_and_error(world: World) -> None:
    to_text = sheet("<xsl:value-of select='//message'/>", '<xsl:output method="text"/>')
    ctx = make_ctx()
    ctx.response = make_response(body=b"<r><message>hello</message></r>")
    pipeline = world.one(
        "xslt", {"stylesheet": to_text, "content_type": "text/plain"}, phase="response"
    )
    assert await pipeline.on_response(ctx) is None
    assert (await ctx.response.body(), ctx.response.headers.get("Content-Type")) == (
        b"hello",
        "text/plain",
    )
    ctx = make_ctx()
    ctx.response = make_response(body=b"{}")
    reply = await pipeline.on_response(ctx)
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["error"]) == (502, "invalid_response")
    ctx = make_ctx()
    ctx.error = GatewayError(502, "backend_unreachable", "down")
    errors = world.one("xslt", {"stylesheet": to_text}, phase="error")
    reply = await errors.on_error(ctx)
    assert reply is not None
    assert json.loads(reply.body)["error"] == "backend_unreachable"  # the JSON answer is not XML


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
        b'<!DOCTYPE a [<!ENTITY l "ha"><!ENTITY l2 "&l;&l;&l;&l;">]><a>&l2;</a>',
        b"<a>" * 300 + b"</a>" * 300,
    ],
)
async def test_hostile_bodies_are_invalid_xml(world: World, body: bytes) -> None:
    status, answer = await run(world, RENAME, body)
    assert (status, json.loads(answer)["error"]) == (400, "invalid_xml")


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "11")
        self.end_headers()
        self.wfile.write(b"<leak>x</leak>"[:11])

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def http_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.hits.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.xml"
    secret.write_text("<secret>s3cret</secret>")
    return secret


async def test_document_cannot_read_files_or_the_network(
    world: World, secret_file: Path, http_server: str
) -> None:
    for uri in (secret_file.as_uri(), str(secret_file), f"{http_server}/doc.xml"):
        stylesheet = sheet(f"<out><xsl:copy-of select=\"document('{uri}')\"/></out>")
        status, answer = await run(world, stylesheet, b"<a/>")
        assert status == 500
        reason = json.loads(answer)
        assert reason["error"] == "transform_failed"
        assert "s3cret" not in answer.decode()
    assert _Recorder.hits == []


async def test_exsl_document_cannot_write_files(world: World, tmp_path: Path) -> None:
    target = tmp_path / "written.xml"
    exsl = 'xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl"'
    stylesheet = HEAD.replace("<xsl:stylesheet ", f"<xsl:stylesheet {exsl} ") + (
        f'<xsl:template match="/"><exsl:document href="{target}"><x/></exsl:document>'
        "<ok/></xsl:template>" + TAIL
    )
    status, _ = await run(world, stylesheet, b"<a/>")
    assert status == 500
    assert not target.exists()


async def test_runaway_recursion_and_terminate_are_500(world: World) -> None:
    recursion = sheet(
        '<xsl:call-template name="r"/>',
        '<xsl:template name="r"><xsl:call-template name="r"/></xsl:template>',
    )
    terminate = sheet('<xsl:message terminate="yes">refused</xsl:message>')
    for stylesheet in (recursion, terminate):
        status, answer = await run(world, stylesheet, b"<a/>")
        assert (status, json.loads(answer)["error"]) == (500, "transform_failed")


def test_hostile_stylesheets_are_refused_at_save(secret_file: Path, http_server: str) -> None:
    include = HEAD + f'<xsl:include href="{secret_file.as_uri()}"/>' + TAIL
    imported = HEAD + f'<xsl:import href="{http_server}/x.xsl"/>' + TAIL
    entity = f'<!DOCTYPE s [<!ENTITY x SYSTEM "{secret_file.as_uri()}">]>' + sheet("<out>&x;</out>")
    laughs = '<!DOCTYPE s [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>' + sheet("<o>&b;</o>")
    assert rejected("xslt", {"stylesheet": include}) == (
        "p.config",
        "xsl:include is not allowed: the stylesheet must be self-contained",
    )
    assert rejected("xslt", {"stylesheet": imported})[1].startswith("xsl:import is not allowed")
    for hostile in (entity, laughs):
        field, message = rejected("xslt", {"stylesheet": hostile})
        assert (field, message) == (
            "p.config",
            "stylesheet is not acceptable XML: DTDs and entity declarations are not accepted",
        )
    assert _Recorder.hits == []


def test_config_rules() -> None:
    assert rejected("xslt", {})[0] == "p.config.stylesheet"
    assert rejected("xslt", {"stylesheet": "<nope"})[1].startswith(
        "stylesheet is not acceptable XML"
    )
    bad = HEAD + '<xsl:template match="/"><xsl:value-of select="((("/></xsl:template>' + TAIL
    assert rejected("xslt", {"stylesheet": bad})[1].startswith("stylesheet is not valid XSLT 1.0")
    not_xslt = "<html/>"
    assert rejected("xslt", {"stylesheet": not_xslt})[1].startswith("stylesheet is not valid XSLT")

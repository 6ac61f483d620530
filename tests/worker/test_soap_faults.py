"""SOAP faults from a real worker for a client that spoke SOAP to an API that is not a SOAP API:
a policy's denial, a bad path, a 404 — while a JSON client of the same API keeps JSON errors."""

from __future__ import annotations

import json

import httpx

from portway.compile.routes import PipelineFactory
from portway.policies.soap import read_fault
from tests.worker.support import api, backends, gateway, revision, seen_header

DENY = {"request": [{"name": "deny", "type": "ip_filter", "config": {"deny": ["127.0.0.1"]}}]}
SOAP11 = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"urn:x"'}
SOAP12 = {"Content-Type": 'application/soap+xml; charset=utf-8; action="urn:x"'}


async def test_soap_clients_get_faults_in_their_version(pipelines: PipelineFactory) -> None:
    async with (
        backends("b") as (backend,),
        gateway(
            revision(api("rest", "/rest", [backend.url], policies=DENY)), pipelines=pipelines
        ) as gw,
        httpx.AsyncClient(base_url=gw.url, trust_env=False) as client,
    ):
        for headers, content_type, code in (
            (SOAP11, "text/xml; charset=utf-8", "Client"),
            (SOAP12, "application/soap+xml; charset=utf-8", "Sender"),
        ):
            denied = await client.post("/rest/x", content=b"<x/>", headers=headers)
            assert (denied.status_code, denied.headers["content-type"]) == (403, content_type)
            fault = read_fault(denied.content)
            assert fault is not None
            assert fault.code == code
            assert denied.headers["x-correlation-id"].encode() in denied.content
            missing = await client.post("/nowhere", content=b"<x/>", headers=headers)
            assert (missing.status_code, missing.headers["content-type"]) == (404, content_type)
            bad_path = await client.post("/rest/%2e%2e/%2f", content=b"<x/>", headers=headers)
            assert (bad_path.status_code, bad_path.headers["content-type"]) == (
                400,
                content_type,
            )
        # text/xml without SOAPAction is not SOAP: JSON, as for a JSON client
        for headers in ({"Content-Type": "text/xml"}, {"Content-Type": "application/json"}):
            plain = await client.post("/rest/x", content=b"{}", headers=headers)
            assert plain.status_code == 403
            assert json.loads(plain.content)["error"] == "ip_denied"
    assert backend.seen == []


def operation(name: str, **match: str) -> dict[str, object]:
    tag = {"name": "tag", "type": "rewrite", "config": {"request_headers": {"set": {"X-Op": name}}}}
    return {
        "path": "/",
        "methods": ["POST"],
        "soap": {"name": name, **match},
        "policies": {"request": [tag]},
    }


async def test_operations_by_action_alone_or_element_alone(pipelines: PipelineFactory) -> None:
    """An endpoint may be matched by its action alone, or by an element without namespace."""
    env = "http://www.w3.org/2003/05/soap-envelope"
    endpoints = [operation("ByAction", action="urn:a"), operation("ByElement", element="plain")]
    async with (
        backends("b") as (backend,),
        gateway(
            revision(api("s", "/s", [backend.url], endpoints=endpoints, soap_version="1.2")),
            pipelines=pipelines,
        ) as gw,
        httpx.AsyncClient(base_url=gw.url, trust_env=False) as client,
    ):

        async def call(action: str | None, payload: str) -> httpx.Response:
            content_type = "application/soap+xml" + (f'; action="{action}"' if action else "")
            body = f'<e:Envelope xmlns:e="{env}"><e:Body>{payload}</e:Body></e:Envelope>'
            return await client.post("/s", content=body, headers={"Content-Type": content_type})

        async def served_by(action: str | None, payload: str) -> str | None:
            return seen_header((await call(action, payload)).json(), "x-op")

        assert await served_by("urn:a", '<x:Any xmlns:x="urn:x"/>') == "ByAction"
        assert await served_by(None, "<plain/>") == "ByElement"
        assert await served_by("urn:a", "<plain/>") == "ByAction"
        unknown = await call("urn:b", '<x:Any xmlns:x="urn:x"/>')
        assert unknown.status_code == 400
        assert unknown.headers["content-type"] == "application/soap+xml; charset=utf-8"
        assert b"unknown_operation" in unknown.content
        assert await served_by("urn:b", "<plain/>") == "ByElement"  # it names no action
        no_action = await call(None, '<x:Any xmlns:x="urn:x"/>')
        assert no_action.status_code == 400  # an action-only operation needs its action
    assert len(backend.seen) == 4

"""SOAP faults from a real worker for a client that spoke SOAP to an API that is not a SOAP API:
a policy's denial, a bad path, a 404 — while a JSON client of the same API keeps JSON errors."""

from __future__ import annotations

import json

import httpx

from portway.compile.routes import PipelineFactory
from portway.policies.soap import read_fault
from tests.worker.support import api, backends, gateway, revision

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

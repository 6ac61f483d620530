"""The end-to-end path: a real client, the gateway on port 0, a real upstream on port 0."""

from __future__ import annotations

import json

import httpx

from portway.http import Request, Response
from tests.http.support import running
from tests.worker.support import api, gateway, revision


async def upstream_echo(request: Request) -> Response:
    body = await request.body.read_all()
    payload = {
        "method": request.method,
        "target": request.target.decode(),
        "headers": [[k.decode(), v.decode()] for k, v in request.headers],
        "body": body.decode("latin-1"),
    }
    return Response(
        200,
        [(b"content-type", b"application/json"), (b"x-upstream", b"yes")],
        json.dumps(payload).encode(),
    )


def header(payload: dict[str, object], name: str) -> str | None:
    for key, value in payload["headers"]:  # type: ignore[attr-defined]
        if key == name:
            return str(value)
    return None


async def test_get_is_proxied_with_forwarding_headers() -> None:
    async with running(upstream_echo) as backend:
        rev = revision(api("orders", "/orders", [f"http://127.0.0.1:{backend.port}/v1"]))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            r = await client.get(f"{gw.url}/orders/42?x=1", headers={"X-Forwarded-For": "6.6.6.6"})
            assert r.status_code == 200
            seen = r.json()
            assert seen["target"] == "/v1/42?x=1"
            assert header(seen, "host") == f"127.0.0.1:{backend.port}"
            assert header(seen, "x-forwarded-for") == "127.0.0.1"  # untrusted peer: replaced
            assert header(seen, "x-forwarded-proto") == "http"
            assert header(seen, "x-forwarded-host") == f"127.0.0.1:{gw.port}"
            assert header(seen, "via") == "1.1 portway"
            cid = header(seen, "x-correlation-id")
            assert cid
            assert r.headers["x-correlation-id"] == cid
            assert r.headers["x-upstream"] == "yes"
            assert r.headers["via"] == "1.1 portway"


async def test_post_body_and_keep_alive() -> None:
    async with running(upstream_echo) as backend:
        rev = revision(api("orders", "/orders", [f"http://127.0.0.1:{backend.port}"]))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            for i in range(5):
                r = await client.post(f"{gw.url}/orders", content=b"x" * (1000 * i))
                assert r.status_code == 200
                assert r.json()["body"] == "x" * (1000 * i)
                assert r.json()["target"] == "/"


async def test_unknown_route_is_404_json_with_correlation_id() -> None:
    async with running(upstream_echo) as backend:
        rev = revision(api("orders", "/orders", [f"http://127.0.0.1:{backend.port}"]))
        async with gateway(rev) as gw, httpx.AsyncClient() as client:
            r = await client.get(f"{gw.url}/nothing", headers={"X-Correlation-ID": "abc-123"})
            assert r.status_code == 404
            assert r.json() == {
                "error": "not_found",
                "message": "no API matches this request",
                "correlation_id": "abc-123",
            }
            assert r.headers["x-correlation-id"] == "abc-123"

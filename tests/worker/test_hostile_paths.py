"""Hostile spellings of an endpoint's path through a real worker with real policies.

An endpoint-level ``ip_filter`` denies everyone on ``GET /trav/admin`` and ``GET
/secure/data/{id}``; the API-level route has no policy, and the backend (base path ``/safe``)
records every request line it receives. No spelling may reach the backend without the endpoint's
verdict: each is answered 403 (the policy), 400 (refused spelling) or 405 (unlisted method).
``TRACE`` reaches a backend only where a methods list names it: a backend answering it would echo
the headers the gateway added."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from portway.compile.routes import PipelineFactory
from portway.config.worker_settings import Http2Settings
from portway.http.target import check_forward_path
from portway.stores.traffic import TrafficRecord
from portway.worker.settings import WorkerSettings
from tests.worker.support import Backend, api, backends, gateway, revision

DENY_ALL = {"request": [{"name": "deny", "type": "ip_filter", "config": {"deny": ["0.0.0.0/0"]}}]}


def apis(backend: Backend, *, fallthrough: bool = False) -> list[Any]:
    opt_in = {"endpoint_fallthrough": True} if fallthrough else {}
    return [
        api(
            "trav",
            "/trav",
            [backend.url + "/safe"],
            endpoints=[{"path": "/admin", "methods": ["GET"], "policies": DENY_ALL}],
        ),
        api(
            "secure",
            "/secure",
            [backend.url + "/safe"],
            endpoints=[{"path": "/data/{id}", "methods": ["GET"], "policies": DENY_ALL}],
            **opt_in,
        ),
    ]


async def raw(port: int, method: str, target: str) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"{method} {target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


DENIED, REFUSED, NOT_ALLOWED = 403, 400, 405

CORPUS: list[tuple[str, str, int]] = [
    ("GET", "/trav/admin", DENIED),
    ("GET", "/trav/admin/", DENIED),
    ("GET", "/trav//admin", DENIED),
    ("GET", "//trav/admin", DENIED),
    ("GET", "/trav///admin//", DENIED),
    ("GET", "/trav/./admin", DENIED),
    ("GET", "/trav/x/../admin", DENIED),
    ("GET", "/trav/x/y/../../admin", DENIED),
    ("GET", "/x/../trav/admin", DENIED),
    ("GET", "/trav/x/%2e%2e/admin", DENIED),
    ("GET", "/trav/x/%2E%2E/admin", DENIED),
    ("GET", "/trav/x/.%2e/admin", DENIED),
    ("GET", "/trav/x/%2E./admin", DENIED),
    ("GET", "/trav/%2e/admin", DENIED),
    ("GET", "/trav/%2E/admin/", DENIED),
    ("GET", "/trav/admin/.", DENIED),
    ("GET", "/trav/admin/x/..", DENIED),
    ("GET", "/tr%61v/adm%69n", DENIED),
    ("GET", "/%74rav/%61dmin", DENIED),
    ("GET", "/trav/adm%69n/", DENIED),
    ("GET", "/trav/%61%64%6D%69%6E", DENIED),
    ("GET", "/trav/admin?x=../..", DENIED),
    ("HEAD", "/trav/admin", DENIED),
    ("GET", "http://gw.test/trav/admin", DENIED),
    ("GET", "http://gw.test/trav//./admin", DENIED),
    ("GET", "HTTP://gw.test/trav/adm%69n", DENIED),
    ("GET", "https://gw.test/trav/x/../admin", DENIED),
    ("GET", "/trav/admin;x=1", REFUSED),
    ("GET", "/trav;x=1/admin", REFUSED),
    ("GET", "/trav/admin;", REFUSED),
    ("GET", "/trav/admin#x", REFUSED),
    ("GET", "/trav/admin?a=1#x", REFUSED),
    ("GET", "/trav%2fadmin", REFUSED),
    ("GET", "/trav/x%2F..%2Fadmin", REFUSED),
    ("GET", "/trav/x%5c..%5cadmin", REFUSED),
    ("GET", "/trav\\admin", REFUSED),
    ("GET", "/trav/x\\..\\admin", REFUSED),
    ("GET", "/trav/admin%00", REFUSED),
    ("GET", "/trav/admin%0d%0aX-Injected:%201", REFUSED),
    ("GET", "/trav/admin%0A", REFUSED),
    ("GET", "/trav/admin%", REFUSED),
    ("GET", "/trav/admin%2", REFUSED),
    ("GET", "/trav/admin%zz", REFUSED),
    ("GET", "/trav/%%36%31dmin", REFUSED),
    ("GET", "/trav/%c0%ae%c0%ae/admin", REFUSED),
    ("GET", "/trav/x/%c0%af../admin", REFUSED),
    ("GET", "/trav/%252e%252e/admin", REFUSED),
    ("GET", "/trav/x/%252fadmin", REFUSED),
    ("GET", "/trav/../..", REFUSED),
    ("GET", "/trav/../../etc/passwd", REFUSED),
    ("GET", "/trav/%2e%2e/%2e%2e/safe", REFUSED),
    ("GET", "/..", REFUSED),
    ("OPTIONS", "*", REFUSED),
    ("GET", "*", REFUSED),
    ("GET", "trav/admin", REFUSED),
    ("DELETE", "/trav/admin", NOT_ALLOWED),
    ("POST", "/trav/admin/", NOT_ALLOWED),
    ("PUT", "/trav//./admin", NOT_ALLOWED),
    ("DELETE", "/tr%61v/x/../admin", NOT_ALLOWED),
    ("GET", "/secure/data/42", DENIED),
    ("GET", "/secure/data/42/", DENIED),
    ("GET", "/secure//data/%34%32", DENIED),
    ("GET", "/secure/data/x/../42", DENIED),
    ("HEAD", "/secure/data/42", DENIED),
    ("DELETE", "/secure/data/42", NOT_ALLOWED),
    ("PUT", "/secure/data/./42", NOT_ALLOWED),
    ("PATCH", "/secure/data/42/", NOT_ALLOWED),
]


def assert_under_safe(target: str) -> None:
    assert target == "/safe" or target.startswith(("/safe/", "/safe?")), target
    check_forward_path(target[len("/safe") :].encode())  # canonical: no dot segment, no %2F


async def test_no_spelling_dodges_the_endpoint_policies(pipelines: PipelineFactory) -> None:
    assert len(CORPUS) >= 40
    async with (
        backends("b") as (backend,),
        gateway(revision(*apis(backend)), pipelines=pipelines) as gw,
    ):
        logged: list[TrafficRecord] = []
        gw.handler.traffic = logged.append
        got = []
        for method, target, _ in CORPUS:
            status, headers, _body = await raw(gw.port, method, target)
            got.append((method, target, status))
            if status == NOT_ALLOWED:
                assert headers["allow"] == "GET, HEAD", (method, target)
        # a spelling the gateway serves is forwarded, canonical, under the base path
        ok, _, _ = await raw(gw.port, "GET", "/trav/pub%6cic//x/./y/../")
    assert got == CORPUS
    assert ok == 200
    assert [r.target.decode() for r in backend.seen] == ["/safe/public/x/"]
    # traffic records carry the canonical path
    paths = {(r["method"], r["path"]) for r in logged}
    assert ("GET", "/tr%61v/adm%69n") not in paths
    assert ("GET", "/trav/admin") in paths
    assert ("GET", "/trav/public/x/") in paths
    for request in backend.seen:
        assert_under_safe(request.target.decode())


async def test_routing_is_case_sensitive(pipelines: PipelineFactory) -> None:
    # /trav/ADMIN is another resource than the endpoint /admin: forwarded as such, never as /admin
    async with (
        backends("b") as (backend,),
        gateway(revision(*apis(backend)), pipelines=pipelines) as gw,
    ):
        upper = await raw(gw.port, "GET", "/trav/ADMIN")
        base = await raw(gw.port, "GET", "/TRAV/admin")
    assert (upper[0], base[0]) == (200, 404)
    assert [r.target.decode() for r in backend.seen] == ["/safe/ADMIN"]


async def test_the_api_may_opt_into_fall_through(pipelines: PipelineFactory) -> None:
    async with (
        backends("b") as (backend,),
        gateway(revision(*apis(backend, fallthrough=True)), pipelines=pipelines) as gw,
    ):
        delete = await raw(gw.port, "DELETE", "/secure/data/42")
        get = await raw(gw.port, "GET", "/secure/data/42")
        still = await raw(gw.port, "DELETE", "/trav/admin")
    assert (delete[0], get[0], still[0]) == (200, 403, 405)
    assert [r.target.decode() for r in backend.seen] == ["/safe/data/42"]


async def test_a_refused_path_names_the_field(pipelines: PipelineFactory) -> None:
    async with (
        backends("b") as (backend,),
        gateway(revision(*apis(backend)), pipelines=pipelines) as gw,
    ):
        status, headers, body = await raw(gw.port, "GET", "/trav/../..")
    assert status == 400
    assert b'"error":"invalid_path"' in body
    assert b'"details":[{"field":"path","message":"the path climbs above /"}]' in body
    assert headers["content-type"] == "application/json"


async def test_trace_reaches_a_backend_only_where_a_methods_list_names_it(
    pipelines: PipelineFactory,
) -> None:
    endpoints = [{"path": "/any"}, {"path": "/debug", "methods": ["TRACE"]}]
    listed = {"methods": ["GET", "TRACE"]}
    async with (
        backends("b") as (backend,),
        gateway(
            revision(
                api("open", "/open", [backend.url], endpoints=endpoints),
                api("traced", "/traced", [backend.url], **listed),
            ),
            pipelines=pipelines,
        ) as gw,
    ):
        refused = [
            await raw(gw.port, method, target)
            for method, target in [
                ("TRACE", "/open"),
                ("TRACE", "/open/x"),
                ("TRACE", "/open/any"),
                ("TRACE", "http://gw.test/open/x"),
                ("TRACE", "/open//x/../any"),
                ("trace", "/open/x"),
            ]
        ]
        served = [
            (await raw(gw.port, method, target))[0]
            for method, target in [
                ("GET", "/open/x"),
                ("DELETE", "/open/any"),
                ("TRACE", "/open/debug"),
                ("TRACE", "/traced/x"),
            ]
        ]
    assert [status for status, _, _ in refused] == [405, 405, 405, 405, 405, 400]
    for _, headers, body in refused[:5]:
        assert headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
        assert b'"error":"method_not_allowed"' in body
        assert b'"correlation_id"' in body
    assert served == [200, 200, 200, 200]
    assert [(r.method, r.target.decode()) for r in backend.seen] == [
        ("GET", "/x"),
        ("DELETE", "/any"),
        ("TRACE", "/debug"),
        ("TRACE", "/x"),
    ]


async def test_trace_over_http2_is_refused_the_same_way(pipelines: PipelineFactory) -> None:
    settings = WorkerSettings(
        host="127.0.0.1", port=0, processes=1, http2=Http2Settings(enabled=True)
    )
    async with (
        backends("b") as (backend,),
        gateway(
            revision(api("open", "/open", [backend.url])), settings=settings, pipelines=pipelines
        ) as gw,
        httpx.AsyncClient(http1=False, http2=True) as client,
    ):
        trace = await client.request("TRACE", f"http://127.0.0.1:{gw.port}/open/x")
        get = await client.get(f"http://127.0.0.1:{gw.port}/open/x")
    assert (trace.http_version, trace.status_code, get.status_code) == ("HTTP/2", 405, 200)
    assert trace.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
    assert [r.method for r in backend.seen] == ["GET"]

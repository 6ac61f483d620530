"""The pipeline seam: request, response, error and log hooks around the backend call."""

from __future__ import annotations

import asyncio
import socket

import httpx

from portway.config.models import ApiProxy, Endpoint
from portway.config.revision import EnvironmentRevision
from portway.policies.contract import NO_PIPELINE, REPLY_HEADERS, Pipeline, PolicyContext, Reply
from portway.stores.traffic import TrafficRecord
from tests.worker.support import api, backends, gateway, revision, seen_header


class Recording:
    response_phase = True

    def __init__(self) -> None:
        self.logged: list[dict[str, object]] = []
        self.errors: list[str] = []

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        if ctx.request.headers.get("x-block"):
            return Reply(403, b'{"blocked":true}', [("X-Policy", "block")])
        ctx.request.headers.set("X-Added", ctx.path_params.get("id", "none"))
        ctx.request.headers.remove("X-Remove-Me")
        if ctx.request.query_get("rewrite") == "1":
            ctx.request.query = [("rewritten", "yes")]
        if ctx.request.method == "POST":
            body = await ctx.request.body()
            ctx.request.set_body(body.upper())
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        assert ctx.response is not None
        ctx.response.headers.set("X-Seen-Status", str(ctx.response.status))
        if ctx.request.query_get("replace") == "1":
            ctx.response.set_body(b"replaced")
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        assert ctx.error is not None
        self.errors.append(ctx.error.code)
        return Reply(ctx.error.status, b'{"custom":"' + ctx.error.code.encode() + b'"}')

    def on_log(self, ctx: PolicyContext) -> None:
        self.logged.append(dict(ctx.log, api=ctx.api, endpoint=ctx.endpoint))


async def test_hooks_shape_the_request_and_the_response() -> None:
    recording = Recording()

    def factory(a: ApiProxy, endpoint: Endpoint | None, rev: EnvironmentRevision) -> Pipeline:
        return recording if a.name == "svc" else NO_PIPELINE

    async with backends("b") as (b,):
        rev = revision(
            api("svc", "/svc", [b.url], endpoints=[{"path": "/items/{id}"}]),
            api("plain", "/plain", [b.url]),
        )
        async with gateway(rev, pipelines=factory) as gw, httpx.AsyncClient() as client:
            r = await client.get(f"{gw.url}/svc/items/0")
            assert r.status_code == 200
            assert recording.logged == []  # on_log serves the record: no log, no call
            records: list[TrafficRecord] = []
            gw.handler.traffic = records.append
            r = await client.get(f"{gw.url}/svc/items/7?rewrite=1", headers={"X-Remove-Me": "x"})
            seen = r.json()
            assert seen_header(seen, "x-added") == "7"
            assert seen_header(seen, "x-remove-me") is None
            assert seen["target"] == "/items/7?rewritten=yes"
            assert r.headers["x-seen-status"] == "200"
            r = await client.post(f"{gw.url}/svc/items/8", content=b"hello")
            assert b.bodies[-1] == b"HELLO"
            r = await client.get(f"{gw.url}/svc/x?replace=1")
            assert r.content == b"replaced"
            r = await client.get(f"{gw.url}/svc/x", headers={"X-Block": "1"})
            assert r.status_code == 403
            assert r.headers["x-policy"] == "block"
            assert r.headers["x-correlation-id"]
            hits = b.hits()
            r = await client.get(f"{gw.url}/plain/x")
            assert r.status_code == 200
            assert "x-seen-status" not in r.headers
            assert b.hits() == hits + 1
        await asyncio.sleep(0.05)
    assert [entry["endpoint"] for entry in recording.logged] == [
        "/items/{id}",
        "/items/{id}",
        None,
        None,
    ]
    assert [(r["api"], r["status"]) for r in records] == [("svc", 200)] * 3 + [
        ("svc", 403),
        ("plain", 200),
    ]


async def test_error_hook_renders_backend_failures() -> None:
    recording = Recording()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    rev = revision(api("svc", "/", [dead], connection={"retries": 0}))
    async with gateway(rev, pipelines=lambda a, e, r: recording) as gw, httpx.AsyncClient() as c:
        r = await c.get(f"{gw.url}/x")
    assert r.status_code == 502
    assert r.json() == {"custom": "bad_gateway"}
    assert recording.errors == ["bad_gateway"]


class Injecting(Recording):
    """Sets a response header whose value carries a line break (a policy bug or hostile input)."""

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        assert ctx.response is not None
        ctx.response.headers.set("X-Echo", "a\r\nX-Injected: yes")
        return None


async def raw_head(port: int) -> bytes:
    """The head of the answer to ``GET /x`` as the client's socket reads it, in lower case."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    return answer.split(b"\r\n\r\n", 1)[0].lower()


async def test_a_line_break_from_a_hook_never_reaches_the_client() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        injecting = Injecting()
        async with gateway(rev, pipelines=lambda a, e, r: injecting) as gw:
            head = await raw_head(gw.port)
    assert b"x-injected" not in head
    assert head.startswith(b"http/1.1 500")


class ReplyHeadersOnly(Recording):
    """Request hooks only (``response_phase`` False): what they leave in the reply headers is
    added to the backend's answer by the worker itself, with no response view."""

    response_phase = False

    def __init__(self, value: str) -> None:
        super().__init__()
        self.value = value

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        ctx.variables[REPLY_HEADERS] = [("X-Left", "by the request hook"), ("X-Echo", self.value)]
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        raise AssertionError("a pipeline without a response phase is not called on responses")


async def test_reply_headers_of_request_hooks_reach_the_client_without_a_response_phase() -> None:
    async with backends("b") as (b,):
        rev = revision(api("svc", "/", [b.url]))
        plain = ReplyHeadersOnly("fine")
        async with gateway(rev, pipelines=lambda a, e, r: plain) as gw, httpx.AsyncClient() as c:
            r = await c.get(f"{gw.url}/x")
        assert r.status_code == 200
        assert r.headers["x-left"] == "by the request hook"
        assert r.headers["x-echo"] == "fine"
        assert r.headers["x-correlation-id"]
        hostile = ReplyHeadersOnly("a\r\nX-Injected: yes")
        async with gateway(rev, pipelines=lambda a, e, r: hostile) as gw:
            head = await raw_head(gw.port)
    assert b"x-injected" not in head
    assert head.startswith(b"http/1.1 500")

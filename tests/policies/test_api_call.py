"""api_call: a real loopback HTTP service called while the request passes; its answer put into
variables and headers, cached in the shared cache, failures denied or let through."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from portway.config.models import PolicyLists, PolicySpec
from portway.policies.resources import PolicyServices
from tests.policies.helpers import FakeClock, RecordingCache, World, make_ctx
from tests.policies.test_mediation import rejected
from tests.support.servers import closed_port


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Service:
    """A loopback HTTP service: ``/user/...`` answers JSON about the user, ``/slow`` sleeps,
    ``/drip`` sends its body a byte at a time,
    ``/big`` answers more than a megabyte, ``/gzip`` a compressed body, ``/fail`` a 503."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def service() -> Iterator[Service]:
    state = Service()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            if self.path.startswith("/slow"):
                time.sleep(1.0)
            if self.path.startswith("/drip"):  # each byte in time, the whole answer not
                self.send_response(200)
                self.send_header("Content-Length", "12")
                self.end_headers()
                for _ in range(12):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            elif self.path.startswith("/fail"):
                self._answer(503, b'{"error": "down"}')
            elif self.path.startswith("/big"):
                self._answer(200, b"x" * (2 << 20))
            elif self.path.startswith("/gzip"):
                self._answer(200, b"\x1f\x8b" + b"\x00" * 20, [("Content-Encoding", "gzip")])
            else:
                n = len(state.seen)
                answer = {"path": self.path, "tier": "gold", "body": body.decode(), "n": n}
                self._answer(200, json.dumps(answer).encode(), [("X-Tier", "gold")])

        do_GET = do_POST = _handle

        def _answer(self, status: int, body: bytes, extra: list[tuple[str, str]] = []) -> None:  # noqa: B006
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
async def live(service: Service) -> AsyncIterator[World]:
    """A world whose policies make real HTTP calls."""
    clock = FakeClock()
    world = World(clock, RecordingCache(clock), RecordingCache(clock))
    world.services = PolicyServices(
        environment="prod",
        cache=world.cache,
        local_cache=world.local_cache,
        clock=clock,
        http_client_factory=lambda: httpx.AsyncClient(trust_env=False, follow_redirects=False),
    )
    yield world
    await world.services.aclose()


def outputs() -> list[dict[str, Any]]:
    return [
        {"source": "json", "path": "$.tier", "variable": "tier", "header": "X-Tier"},
        {"source": "status", "variable": "status"},
        {"source": "header", "path": "x-tier", "variable": "tier_header"},
        {"source": "body", "variable": "raw"},
    ]


async def test_answer_goes_to_variables_and_headers(live: World, service: Service) -> None:
    config = {
        "url": service.url + "/user/${header.X-User}?api=${api}",
        "method": "POST",
        "headers": {"X-Caller": "${client_ip}"},
        "body": '{"user": "${header.X-User}", "qty": ${body.$.qty}}',
        "outputs": outputs(),
    }
    ctx = make_ctx("POST", headers=[("X-User", 'a/b?"c')], body=b'{"qty": 3}')
    assert await live.one("api_call", config).on_request(ctx) is None
    seen = service.seen[0]
    assert (seen.method, seen.path) == ("POST", "/user/a%2Fb%3F%22c?api=orders")
    assert seen.headers["X-Caller"] == "192.0.2.10"
    assert json.loads(seen.body) == {"user": 'a/b?"c', "qty": 3}  # escaped for JSON
    assert seen.headers["Content-Type"] == "application/json"
    assert ctx.variables["tier"] == "gold"
    assert ctx.variables["status"] == 200
    assert ctx.variables["tier_header"] == "gold"
    assert json.loads(ctx.variables["raw"])["path"].startswith("/user/")
    assert ctx.request.headers.get("x-tier") == "gold"


async def test_answers_are_cached_by_the_rendered_request(live: World, service: Service) -> None:
    config = {
        "url": service.url + "/user/${header.X-User}",
        "headers": {"Authorization": "Bearer ${header.X-Token}"},
        "cache_seconds": 30,
        "outputs": [{"source": "json", "path": "$.n", "variable": "n"}],
    }
    pipeline = live.one("api_call", config)

    async def call(user: str) -> Any:
        ctx = make_ctx(headers=[("X-User", user), ("X-Token", "secret-token")])
        assert await pipeline.on_request(ctx) is None
        return ctx.variables["n"]

    assert await call("ann") == 1
    assert await call("ann") == 1  # from the shared cache
    assert await call("bob") == 2  # another rendered request
    assert len(service.seen) == 2
    keys = [key for key, _ in live.cache.sets]
    assert all(key.startswith("apicall:") and "secret-token" not in key for key in keys)
    assert {ttl for _, ttl in live.cache.sets} == {30}
    live.clock.advance(31)
    assert await call("ann") == 3
    live.cache.down = True  # an unreachable cache: the call is made
    assert await call("ann") == 4


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/fail", {}),  # 503
        ("/slow", {"timeout_seconds": 0.2}),
        ("/drip", {"timeout_seconds": 0.5}),
        ("/big", {}),  # past max_response_bytes
        ("/gzip", {}),  # compressed: never decoded past the limit
    ],
)
async def test_failures_deny_or_continue(
    live: World, service: Service, path: str, extra: dict[str, Any]
) -> None:
    config = {"url": service.url + path, "outputs": [{"source": "status", "variable": "s"}]}
    reply = await live.one("api_call", {**config, **extra}).on_request(make_ctx())
    assert reply is not None
    answer = json.loads(reply.body)
    assert (reply.status, answer["error"]) == (502, "api_call_failed")
    assert answer["correlation_id"] == "corr-123"
    spec = {**config, **extra, "on_failure": "continue", "deny_status": 424}
    ctx = make_ctx()
    assert await live.one("api_call", spec, name="c2").on_request(ctx) is None
    assert "s" not in ctx.variables
    assert ctx.variables["c2.error"]


async def test_unreachable_service_and_configured_refusal(live: World) -> None:
    with closed_port() as port:
        config = {
            "url": f"http://127.0.0.1:{port}/x",
            "deny_status": 424,
            "deny_message": "profile service down",
        }
        reply = await live.one("api_call", config).on_request(make_ctx())
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["message"]) == (424, "profile service down")


async def test_error_status_can_be_an_answer(live: World, service: Service) -> None:
    config = {
        "url": service.url + "/fail",
        "fail_on_error_status": False,
        "outputs": [{"source": "status", "variable": "s"}],
    }
    ctx = make_ctx()
    assert await live.one("api_call", config).on_request(ctx) is None
    assert ctx.variables["s"] == 503


async def test_later_policies_read_the_answer(live: World, service: Service) -> None:
    call = PolicySpec(
        name="profile",
        type="api_call",
        config={
            "url": service.url + "/user/x",
            "outputs": [{"source": "json", "path": "$.tier", "variable": "tier"}],
        },
    )
    gate = PolicySpec(
        name="gold-only",
        type="script",
        config={"inputs": {"tier": "var.tier"}, "deny_when": "tier != 'silver'"},
    )
    reply = await live.pipeline(PolicyLists(request=[call, gate])).on_request(make_ctx())
    assert reply is not None
    assert reply.status == 403


async def test_a_value_cannot_climb_the_called_path(live: World, service: Service) -> None:
    config = {"url": service.url + "/user/${query.u}/profile?v=${query.u}"}
    for hostile in ("..", ".", "../admin", "%2e%2e"):
        ctx = make_ctx(query=[("u", hostile)])
        assert await live.one("api_call", config).on_request(ctx) is None
    paths = [seen.path for seen in service.seen]
    assert paths == [
        "/user/%2E%2E/profile?v=%2E%2E",
        "/user/%2E/profile?v=%2E",
        "/user/%2E%2E%2Fadmin/profile?v=%2E%2E%2Fadmin",
        "/user/%252e%252e/profile?v=%252e%252e",
    ]


async def test_hostile_header_values_from_the_answer_are_cleaned(
    live: World, service: Service
) -> None:
    config = {
        "url": service.url + "/user/${query.u}",
        "outputs": [{"source": "json", "path": "$.path", "header": "X-Path"}],
    }
    ctx = make_ctx(query=[("u", "a\r\nX-Admin: 1")])
    assert await live.one("api_call", config).on_request(ctx) is None
    assert ctx.request.headers.get("x-path") == "/user/a%0D%0AX-Admin%3A%201"
    assert "x-admin" not in ctx.request.headers


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"url": "ftp://x/y"}, "p.config.url", "must be an http(s) URL"),
        ({"url": "http://${header.Host}/x"}, "p.config.url", "only be used in the path"),
        ({"url": "http://h:${query.p}/x"}, "p.config.url", "only be used in the path"),
        ({"url": "http://user:pw@h/x"}, "p.config.url", "no user or password"),
        ({"url": "http://h:99999/x"}, "p.config.url", "malformed port"),
        ({"url": "http://h/x y"}, "p.config.url", "spaces"),
        ({"url": "http://h/${nope.x}"}, "p.config.url", "unknown variable"),
        ({"url": "http://h/", "method": "BREW"}, "p.config.method", "unknown HTTP method"),
        ({"url": "http://h/", "headers": {"Host": "x"}}, "p.config.headers", "gateway's to set"),
        ({"url": "http://h/", "headers": {"X": "a\r\nb"}}, "p.config.headers", "control"),
        ({"url": "http://h/", "timeout_seconds": 0}, "p.config.timeout_seconds", "greater"),
        ({"url": "http://h/", "timeout_seconds": 600}, "p.config.timeout_seconds", "less"),
        (
            {"url": "http://h/", "outputs": [{"source": "json", "variable": "v"}]},
            "p.config.outputs[0]",
            "needs a path",
        ),
        (
            {"url": "http://h/", "outputs": [{"source": "json", "path": "$[?x]", "variable": "v"}]},
            "p.config.outputs[0]",
            "",
        ),
        (
            {"url": "http://h/", "outputs": [{"source": "status"}]},
            "p.config.outputs[0]",
            "give a variable, a header or both",
        ),
        (
            {"url": "http://h/", "outputs": [{"source": "status", "variable": "_portway.x"}]},
            "p.config.outputs[0].variable",
            "pattern",
        ),
        ({"url": "http://h/", "deny_status": 302}, "p.config.deny_status", "400"),
    ],
)
def test_bad_configs_are_refused(config: dict[str, Any], field: str, message: str) -> None:
    where, text = rejected("api_call", config)
    assert where == field
    assert message in text

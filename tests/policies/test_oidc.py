"""The oidc policy against a real OpenID Provider (panva's oidc-provider, started here): the
policy's hooks are called directly, the provider is driven over HTTP as a browser would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest

from portway.config.models import PolicySpec
from portway.errors import ConfigError
from portway.policies.base import Build, Deny
from portway.policies.consumers import ConsumerIndex
from portway.policies.contract import Reply
from portway.policies.oidc import OidcConfig, OidcPolicy
from portway.policies.pipeline import CompiledPipeline
from portway.policies.registry import policy_json_schemas, validate_policy_spec
from portway.policies.resources import PolicyServices
from portway.stores.cache_redis import RedisCache
from tests.policies.helpers import FakeClock, RecordingCache, World, make_ctx
from tests.support import oidc
from tests.support.servers import Server, ServerMissing, closed_port, skip_or_fail

GATEWAY = "https://gw.test"
CALLBACK = GATEWAY + "/app/callback"
BYE = GATEWAY + "/app/bye"
COOKIE_SECRET = "c" * 40
BROWSER = [("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")]


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    clients = [
        oidc.client("basic", CALLBACK, post_logout=[BYE]),
        oidc.client("post", CALLBACK, auth_method="client_secret_post"),
    ]
    try:
        server = oidc.oidc_provider(tmp_path_factory.mktemp("op"), clients)
    except ServerMissing as exc:
        skip_or_fail(exc)
    with server:
        yield server


def config(op: Server | None, **extra: Any) -> dict[str, Any]:
    return {
        "issuer": oidc.issuer(op) if op is not None else "https://op.test",
        "client_id": "basic",
        "client_secret": oidc.SECRET,
        "app_path": "/app",
        "redirect_uri": CALLBACK,
        "logout_path": "/app/logout",
        "post_logout_redirect_uri": BYE,
        "scopes": ["openid", "email", "roles"],
        "cookie_secret": COOKIE_SECRET,
        "claims_to_headers": {"email": "X-User-Email", "roles": "X-User-Roles"},
        "roles_claim": "roles",
        "roles_header": "X-Roles",
        **extra,
    }


@pytest.fixture
def gw(world: World) -> World:
    """Policy services with a real HTTP client; the clock stands still at the real time."""
    world.clock.now = time.time()
    world.services = PolicyServices(
        environment="prod", cache=world.cache, local_cache=world.local_cache, clock=world.clock
    )
    return world


@pytest.fixture
def browser(op: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=oidc.issuer(op), trust_env=False, timeout=10.0) as client:
        yield client


def set_cookies(reply: Reply) -> dict[str, str]:
    """name → the whole Set-Cookie line."""
    return {v.split("=", 1)[0]: v for k, v in reply.headers if k.lower() == "set-cookie"}


def cookie_value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]


def location(reply: Reply | None) -> str:
    assert reply is not None
    assert reply.status == 302, reply.body
    return dict(reply.headers)["Location"]


async def start(pipeline: CompiledPipeline, path: str = "/app/orders") -> tuple[str, str]:
    """A browser asks for ``path``: (authorization URL, login cookie)."""
    reply = await pipeline.on_request(make_ctx(path=path, headers=BROWSER))
    assert reply is not None
    auth_url = location(reply)
    return auth_url, cookie_value(set_cookies(reply)["portway_session_login"])


def callback_ctx(url: str, login_cookie: str) -> Any:
    parts = urlsplit(url)
    return make_ctx(
        path=parts.path,
        query=parse_qsl(parts.query, keep_blank_values=True),
        headers=[*BROWSER, ("Cookie", f"portway_session_login={login_cookie}")],
    )


async def log_in(
    pipeline: CompiledPipeline, browser: httpx.Client, path: str = "/app/orders"
) -> tuple[str, Reply]:
    """The whole login: (session cookie value, the callback's reply)."""
    auth_url, login_cookie = await start(pipeline, path)
    back = oidc.log_in(browser, auth_url)
    reply = await pipeline.on_request(callback_ctx(back, login_cookie))
    assert reply is not None
    assert reply.status == 302, reply.body
    return cookie_value(set_cookies(reply)["portway_session"]), reply


def error_of(reply: Reply | None) -> tuple[int, str]:
    assert reply is not None
    return reply.status, str(json.loads(reply.body)["error"])


@pytest.mark.parametrize("client_id", ["basic", "post"])
async def test_login_then_the_backend_sees_the_claims(
    gw: World, op: Server, browser: httpx.Client, client_id: str
) -> None:
    method = "client_secret_basic" if client_id == "basic" else "client_secret_post"
    pipeline = gw.one("oidc", config(op, client_id=client_id, token_endpoint_auth_method=method))
    auth_url, login_cookie = await start(pipeline, "/app/orders")
    asked = parse_qs(urlsplit(auth_url).query)
    assert auth_url.startswith(oidc.issuer(op) + "/auth?")
    assert asked["response_type"] == ["code"]
    assert asked["code_challenge_method"] == ["S256"]
    assert asked["redirect_uri"] == [CALLBACK]
    assert asked["scope"] == ["openid email roles"]
    assert len(asked["state"][0]) >= 43
    assert len(asked["nonce"][0]) >= 43
    assert oidc.SECRET not in auth_url

    back = oidc.log_in(browser, auth_url)
    assert back.startswith(CALLBACK + "?")
    reply = await pipeline.on_request(callback_ctx(back, login_cookie))
    assert location(reply) == "/app/orders"  # back where the user started
    cookies = set_cookies(reply)  # type: ignore[arg-type]
    session = cookies["portway_session"]
    for attribute in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/app", "Max-Age=28800"):
        assert attribute in session.split("; ")
    assert len(session) < 200  # an opaque id and its MAC, whatever the claims
    assert cookies["portway_session_login"].startswith("portway_session_login=;")  # cleared
    assert "Max-Age=0" in cookies["portway_session_login"]

    ctx = make_ctx(
        path="/app/orders",
        headers=[
            ("Cookie", f"theme=dark; portway_session={cookie_value(session)}"),
            ("X-User-Email", "forged@evil.test"),
            ("X-Consumer", "admin"),
        ],
    )
    assert await pipeline.on_request(ctx) is None
    headers = ctx.request.headers
    assert headers.get_all("X-User-Email") == ["alice@example.test"]
    assert headers.get("X-User-Roles") == '["admin", "orders"]'
    assert (headers.get("X-Consumer"), headers.get("X-Roles")) == ("alice", "admin,orders")
    assert headers.get("Cookie") == "theme=dark"  # the session cookie never reaches the backend
    assert (ctx.consumer, ctx.roles) == ("alice", ("admin", "orders"))


async def test_a_replayed_callback_or_code_is_refused(
    gw: World, op: Server, browser: httpx.Client
) -> None:
    pipeline = gw.one("oidc", config(op))
    auth_url, login_cookie = await start(pipeline)
    back = oidc.log_in(browser, auth_url)
    first = await pipeline.on_request(callback_ctx(back, login_cookie))
    assert location(first) == "/app/orders"
    # the same callback again: the login transaction was used
    again = await pipeline.on_request(callback_ctx(back, login_cookie))
    assert error_of(again) == (400, "invalid_login_state")
    # the used code with a fresh transaction of this browser: the provider refuses it
    fresh_url, fresh_cookie = await start(pipeline)
    state = parse_qs(urlsplit(fresh_url).query)["state"][0]
    code = parse_qs(urlsplit(back).query)["code"][0]
    replay = f"{CALLBACK}?" + urlencode({"code": code, "state": state, "iss": oidc.issuer(op)})
    assert error_of(await pipeline.on_request(callback_ctx(replay, fresh_cookie))) == (
        401,
        "login_failed",
    )


async def test_hostile_callbacks(gw: World, op: Server, browser: httpx.Client) -> None:
    pipeline = gw.one("oidc", config(op))

    async def tampered(change: dict[str, str], cookie: str | None = None) -> tuple[int, str]:
        auth_url, login_cookie = await start(pipeline)
        back = oidc.log_in(browser, auth_url)
        query = dict(parse_qsl(urlsplit(back).query))
        query.update(change)
        url = f"{CALLBACK}?{urlencode(query)}"
        return error_of(await pipeline.on_request(callback_ctx(url, cookie or login_cookie)))

    assert await tampered({"state": "x" * 43}) == (400, "invalid_login_state")
    assert await tampered({"iss": "https://evil.test"}) == (400, "invalid_login_state")
    assert await tampered({"code": "forged-code"}) == (401, "login_failed")
    # another browser's (or a forged) transaction cookie
    assert await tampered({}, cookie="abc." + "A" * 43) == (400, "invalid_login_state")
    # an attacker's own valid transaction, offered in the victim's callback (login CSRF)
    _, attacker_cookie = await start(pipeline)
    assert await tampered({}, cookie=attacker_cookie) == (400, "invalid_login_state")
    # another method, then no cookie at all
    auth_url, login_cookie = await start(pipeline)
    back = oidc.log_in(browser, auth_url)
    post = callback_ctx(back, login_cookie)
    post.request.method = "POST"
    assert error_of(await pipeline.on_request(post)) == (400, "invalid_login_state")
    assert location(await pipeline.on_request(callback_ctx(back, login_cookie))) == "/app/orders"
    auth_url, _ = await start(pipeline)
    back = oidc.log_in(browser, auth_url)
    bare = make_ctx(path="/app/callback", query=parse_qsl(urlsplit(back).query))
    assert error_of(await pipeline.on_request(bare)) == (400, "invalid_login_state")


async def test_the_id_token_checks(gw: World, op: Server, browser: httpx.Client) -> None:
    """Real ID tokens of the provider, checked for nonce, audience and signature."""
    services = gw.services
    assert services is not None
    policy = OidcPolicy(
        OidcConfig.model_validate(config(op)), Build("oidc", "t", services, ConsumerIndex())
    )
    provider = await policy.provider()

    def token_for(client_id: str, nonce: str) -> str:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": CALLBACK,
            "scope": "openid email",
            "state": "s" * 20,
            "nonce": nonce,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        back = oidc.log_in(browser, provider.authorization_endpoint + "?" + urlencode(query))
        code = parse_qs(urlsplit(back).query)["code"][0]
        answer = browser.post(
            provider.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
                "client_id": client_id,
                "client_secret": oidc.SECRET,
            }
            if client_id == "post"
            else {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
            },
            auth=(client_id, oidc.SECRET) if client_id == "basic" else httpx.USE_CLIENT_DEFAULT,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["id_token"])

    nonce = "n" * 43
    token = token_for("basic", nonce)
    claims = await policy.verify_id_token(provider, token, nonce)
    assert (claims["sub"], claims["aud"], claims["email"]) == (
        "alice",
        "basic",
        "alice@example.test",
    )

    async def refused(token: str, nonce: str) -> None:
        with pytest.raises(Deny) as denied:
            await policy.verify_id_token(provider, token, nonce)
        assert denied.value.code == "invalid_id_token"

    await refused(token, "m" * 43)  # the nonce of another login
    await refused(token_for("post", nonce), nonce)  # issued to another client (aud)
    head, body, sig = token.split(".")
    claims_json = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims_json["sub"] = "admin"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims_json).encode()).rstrip(b"=")
    await refused(f"{head}.{forged_body.decode()}.{sig}", nonce)  # altered claims
    none_head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    await refused(f"{none_head}.{body}.", nonce)
    gw.clock.advance(3600 + 31)  # past exp and the leeway
    await refused(token, nonce)


async def test_forged_and_stale_session_cookies(
    gw: World, op: Server, browser: httpx.Client
) -> None:
    pipeline = gw.one("oidc", config(op, session_seconds=600))
    session, _ = await log_in(pipeline, browser)
    ident = session.split(".")[0]
    other = OidcPolicy(
        OidcConfig.model_validate(config(op, cookie_secret="d" * 40)),
        Build("oidc", "default/orders", gw.make_services(), ConsumerIndex()),
    )
    forged = [
        ident + "." + "A" * 43,  # the right id, a made-up MAC
        secrets.token_urlsafe(32) + "." + session.split(".")[1],  # another id, the real MAC
        other._seal("session", ident),  # sealed with another secret
        session + "x",
        "x" * 300,
    ]
    api = [("Accept", "application/json")]
    for value in forged:
        ctx = make_ctx(path="/app/orders", headers=[*api, ("Cookie", f"portway_session={value}")])
        assert error_of(await pipeline.on_request(ctx)) == (401, "login_required")
    # a cookie tossed in before the real one does not hide it
    good = make_ctx(
        path="/app/orders", headers=[("Cookie", f"portway_session=junk; portway_session={session}")]
    )
    assert await pipeline.on_request(good) is None
    gw.clock.advance(601)  # the session's lifetime is over
    stale = make_ctx(path="/app/orders", headers=[*api, ("Cookie", f"portway_session={session}")])
    assert error_of(await pipeline.on_request(stale)) == (401, "login_required")


async def test_api_calls_get_401_browsers_a_redirect(gw: World, op: Server) -> None:
    pipeline = gw.one("oidc", config(op, api_media_types=["application/json", "application/xml"]))
    cases = [
        ("GET", [("Accept", "application/json")]),
        ("GET", [("Accept", "text/html;q=0.9, Application/XML")]),
        ("POST", BROWSER),
        ("DELETE", []),
    ]
    for method, headers in cases:
        reply = await pipeline.on_request(make_ctx(method, "/app/orders", headers=headers))
        assert error_of(reply) == (401, "login_required"), (method, headers)
        assert reply is not None
        assert ("Cache-Control", "no-store") in reply.headers
    for headers in (BROWSER, [], [("Accept", "*/*")]):
        reply = await pipeline.on_request(make_ctx("GET", "/app/orders", headers=headers))
        assert location(reply).startswith(oidc.issuer(op) + "/auth?")


@pytest.mark.parametrize(
    ("path", "query", "target"),
    [
        ("/app/orders/7", [("tab", "a b")], "/app/orders/7?tab=a+b"),
        ("/app", [], "/app"),
        ("//evil.test/x", [], "/app"),  # never canonical through the worker; refused anyway
        ("/app/../evil", [], "/app"),  # under /app as a string, /evil in a browser
        ("/app/./x", [], "/app"),
        ("/other/x", [], "/app"),  # another API's path
        ("/app/x", [("n", "\r\nSet-Cookie: a=b")], "/app/x?n=%0D%0ASet-Cookie%3A+a%3Db"),
        ("/app/" + "x" * 3000, [], "/app"),
    ],
)
async def test_the_return_target_stays_in_the_application(
    gw: World,
    op: Server,
    browser: httpx.Client,
    path: str,
    query: list[tuple[str, str]],
    target: str,
) -> None:
    pipeline = gw.one("oidc", config(op))
    reply = await pipeline.on_request(make_ctx(path=path, query=query, headers=BROWSER))
    auth_url = location(reply)
    login_cookie = cookie_value(set_cookies(reply)["portway_session_login"])  # type: ignore[arg-type]
    back = oidc.log_in(browser, auth_url)
    done = await pipeline.on_request(callback_ctx(back, login_cookie))
    assert location(done) == target


async def test_logout_ends_the_session_and_goes_to_the_provider(
    gw: World, op: Server, browser: httpx.Client
) -> None:
    pipeline = gw.one("oidc", config(op))
    session, _ = await log_in(pipeline, browser)
    cookie = [("Cookie", f"portway_session={session}")]
    reply = await pipeline.on_request(make_ctx(path="/app/logout", headers=cookie))
    end = location(reply)
    assert end.startswith(oidc.issuer(op) + "/session/end?")
    sent = parse_qs(urlsplit(end).query)
    assert sent["post_logout_redirect_uri"] == [BYE]
    assert sent["client_id"] == ["basic"]
    assert sent["id_token_hint"][0].count(".") == 2
    assert reply is not None
    assert "Max-Age=0" in set_cookies(reply)["portway_session"]
    # the provider accepts the request (it asks the user to confirm the logout)
    assert browser.get(end).status_code == 200
    # the old cookie is dead even if the browser kept it
    again = await pipeline.on_request(make_ctx(path="/app/orders", headers=[*BROWSER, *cookie]))
    assert location(again).startswith(oidc.issuer(op) + "/auth?")


async def test_provider_faults(gw: World, op: Server) -> None:
    with closed_port() as port:
        down = gw.one("oidc", config(op, issuer=f"http://127.0.0.1:{port}"), name="down")
        reply = await down.on_request(make_ctx(path="/app/x", headers=BROWSER))
        assert error_of(reply) == (503, "provider_unavailable")
    # the discovery document names another issuer (a trailing '/' is another issuer): mix-up
    other = gw.one("oidc", config(op, issuer=oidc.issuer(op) + "/"), name="mixup")
    reply = await other.on_request(make_ctx(path="/app/x", headers=BROWSER))
    assert error_of(reply) == (503, "provider_unavailable")
    # the session cache is down: fail closed
    pipeline = gw.one("oidc", config(op))
    gw.cache.down = True
    reply = await pipeline.on_request(
        make_ctx(path="/app/x", headers=[("Cookie", "portway_session=a.b")])
    )
    assert error_of(reply) == (503, "store_unavailable")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"scopes": ["email"]}, "config", "scopes must include 'openid'"),
        (
            {"id_token_algorithms": ["HS256"]},
            "config",
            "id_token_algorithms: HS256 is not accepted",
        ),
        (
            {"redirect_uri": "https://gw.test/elsewhere/cb"},
            "config",
            "redirect_uri's path must lie under app_path '/app'",
        ),
        ({"logout_path": "/admin/logout"}, "config", "logout_path must lie under app_path"),
        ({"logout_path": "/app/callback"}, "config", "logout_path must differ"),
        (
            {"logout_path": None},
            "config",
            "post_logout_redirect_uri needs logout_path",
        ),
        ({"app_path": "/app/../x"}, "config.app_path", "must be a canonical absolute path"),
        ({"app_path": "app"}, "config.app_path", "must be a plain absolute path"),
        ({"issuer": "ftp://op"}, "config.issuer", "must be an http(s) URL"),
        ({"redirect_uri": "https://gw.test/app/cb#x"}, "config.redirect_uri", "no fragment"),
        ({"cookie_name": "a b"}, "config.cookie_name", "not a valid cookie name"),
        ({"cookie_secret": "short"}, "config.cookie_secret", "at least 32 characters"),
        ({"client_secret": ""}, "config.client_secret", "at least 1 character"),
        ({"scopes": ["openid", 'a"b']}, "config.scopes[1]", "should match pattern"),
        ({"claims_to_headers": {"email": "X Bad"}}, "config.claims_to_headers", "not a valid"),
        ({"token_endpoint_auth_method": "none"}, "config.token_endpoint_auth_method", "Input"),
    ],
)
def test_config_refusals(change: dict[str, Any], field: str, message: str) -> None:
    spec = PolicySpec(name="login", type="oidc", config={**config(None), **change})
    with pytest.raises(ConfigError) as refused:
        validate_policy_spec(spec, "policies.request[0]")
    assert str(refused.value.field).startswith(f"policies.request[0].{field}")
    assert message in refused.value.message


def test_secrets_are_write_only() -> None:
    schema = policy_json_schemas()["oidc"]["config"]["properties"]
    assert schema["client_secret"]["writeOnly"] is True
    assert schema["cookie_secret"]["writeOnly"] is True
    assert "writeOnly" not in schema["client_id"]


@pytest.mark.servers
async def test_two_workers_share_sessions_through_redis(
    op: Server, browser: httpx.Client, redis: Server
) -> None:
    """Two workers (each its own services and Redis client) behind one login: a login started
    on one completes on the other, the session works on both, a callback raced on both
    succeeds once, and a logout on one ends the session on the other."""
    prefix = f"oidc-{secrets.token_hex(4)}:"
    caches = [RedisCache(f"redis://127.0.0.1:{redis.port}/0", prefix=prefix) for _ in range(2)]
    workers = []
    for cache in caches:
        await cache.open()
        services = PolicyServices(environment="prod", cache=cache, local_cache=cache)
        workers.append(World(FakeClock(), RecordingCache(FakeClock()), RecordingCache(FakeClock())))
        workers[-1].services = services
    a, b = (w.one("oidc", config(op)) for w in workers)
    try:
        auth_url, login_cookie = await start(a)
        back = oidc.log_in(browser, auth_url)
        first, second = await asyncio.gather(
            a.on_request(callback_ctx(back, login_cookie)),
            b.on_request(callback_ctx(back, login_cookie)),
        )
        outcomes = sorted([first.status if first else 0, second.status if second else 0])
        assert outcomes == [302, 400]  # the transaction was claimed once (compare-and-set)
        won = first if first is not None and first.status == 302 else second
        assert won is not None
        session = cookie_value(set_cookies(won)["portway_session"])
        for pipeline in (a, b):
            ctx = make_ctx(path="/app/x", headers=[("Cookie", f"portway_session={session}")])
            assert await pipeline.on_request(ctx) is None
            assert ctx.consumer == "alice"
        await b.on_request(
            make_ctx(path="/app/logout", headers=[("Cookie", f"portway_session={session}")])
        )
        after = make_ctx(
            path="/app/x",
            headers=[("Accept", "application/json"), ("Cookie", f"portway_session={session}")],
        )
        assert error_of(await a.on_request(after)) == (401, "login_required")
    finally:
        for world, cache in zip(workers, caches, strict=True):
            assert world.services is not None
            await world.services.aclose()
            await cache.close()


async def test_an_error_from_the_provider_is_a_failed_login(gw: World, op: Server) -> None:
    """``prompt=none`` without a session at the provider: it answers ``login_required`` to the
    callback (a real error response, with the right state)."""
    pipeline = gw.one("oidc", config(op))
    auth_url, login_cookie = await start(pipeline)
    with httpx.Client(trust_env=False, timeout=10.0) as fresh:
        answer = fresh.get(auth_url + "&prompt=none")
    back = answer.headers["location"]
    assert back.startswith(CALLBACK + "?")
    reply = await pipeline.on_request(callback_ctx(back, login_cookie))
    assert error_of(reply) == (401, "login_failed")
    assert reply is not None
    assert json.loads(reply.body)["provider_error"] == "login_required"

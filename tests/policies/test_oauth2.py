from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import jwt
import pytest
from argon2 import PasswordHasher

from portway.config.models import PolicyLists, PolicySpec
from portway.errors import ConfigError
from portway.policies.registry import validate_policy_spec
from tests.policies.helpers import NOW, World, consumer, make_ctx

SECRET = "0123456789abcdef0123456789abcdef"
HASH = PasswordHasher().hash("pw")


def code_of(reply: Any) -> str:
    return str(json.loads(reply.body)["error"])


# -- introspection --


class AuthServer:
    def __init__(self) -> None:
        self.calls: list[dict[str, list[str]]] = []
        self.answers: dict[str, dict[str, Any]] = {}
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        assert request.headers["authorization"].startswith("Basic ")
        form = parse_qs(request.content.decode())
        self.calls.append(form)
        return httpx.Response(200, json=self.answers.get(form["token"][0], {"active": False}))


INTROSPECT = {
    "introspection_url": "https://as.test/introspect",
    "client_id": "gateway",
    "client_secret": "s",
    "required_scopes": ["orders:read"],
    "roles_field": "roles",
}


@pytest.fixture
def auth_server(world: World) -> AuthServer:
    server = AuthServer()
    world.transport = httpx.MockTransport(server)
    return server


async def test_active_token_is_cached(world: World, auth_server: AuthServer) -> None:
    auth_server.answers["tok"] = {
        "active": True,
        "sub": "alice",
        "scope": "orders:read other",
        "exp": NOW + 600,
        "roles": "a b",
    }
    pipeline = world.one("oauth2_introspection", INTROSPECT)
    for _ in range(3):
        ctx = make_ctx(headers=[("Authorization", "Bearer tok")])
        assert await pipeline.on_request(ctx) is None
        assert (ctx.consumer, ctx.roles) == ("alice", ("a", "b"))
        assert ctx.request.headers.get("Authorization") is None
    assert len(auth_server.calls) == 1
    assert auth_server.calls[0]["token_type_hint"] == ["access_token"]
    assert not any("tok" in key for key, _ in world.cache.sets)  # keys hold a hash, not the token


async def test_cache_never_outlives_the_token(world: World, auth_server: AuthServer) -> None:
    auth_server.answers["tok"] = {
        "active": True,
        "sub": "a",
        "scope": "orders:read",
        "exp": NOW + 5,
    }
    pipeline = world.one("oauth2_introspection", INTROSPECT)
    assert await pipeline.on_request(make_ctx(headers=[("Authorization", "Bearer tok")])) is None
    ((_, ttl),) = world.cache.sets
    assert ttl == 5  # capped by the token's exp, not the configured 60 s
    world.clock.advance(6)
    reply = await pipeline.on_request(make_ctx(headers=[("Authorization", "Bearer tok")]))
    assert reply is not None
    assert code_of(reply) == "invalid_token"


async def test_introspection_refusals(world: World, auth_server: AuthServer) -> None:
    auth_server.answers["narrow"] = {"active": True, "sub": "a", "scope": "other"}
    pipeline = world.one("oauth2_introspection", INTROSPECT)
    cases = [
        ([], 401, "missing_credentials"),
        ([("Authorization", "Bearer unknown")], 401, "invalid_token"),
        ([("Authorization", "Bearer narrow")], 403, "insufficient_scope"),
        ([("Authorization", "Bearer " + "x" * 5000)], 401, "invalid_token"),
    ]
    for headers, status, code in cases:
        reply = await pipeline.on_request(make_ctx(headers=headers))
        assert reply is not None
        assert (reply.status, code_of(reply)) == (status, code)
    assert len(auth_server.calls) == 2  # the oversized token never reached the server


async def test_authorization_server_down(world: World, auth_server: AuthServer) -> None:
    auth_server.down = True
    reply = await world.one("oauth2_introspection", INTROSPECT).on_request(
        make_ctx(headers=[("Authorization", "Bearer t")])
    )
    assert reply is not None
    assert (reply.status, code_of(reply)) == (
        503,
        "introspection_unavailable",
    )


# -- token endpoint --

TOKEN_CONFIG = {
    "secret": SECRET,
    "issuer": "https://gw",
    "grants": ["client_credentials", "password", "refresh_token"],
    "scopes": ["orders:read", "orders:write"],
}


def form(**fields: str) -> dict[str, Any]:
    return {
        "method": "POST",
        "headers": [("Content-Type", "application/x-www-form-urlencoded")],
        "body": urlencode(fields).encode(),
    }


async def token_call(world: World, **fields: str) -> Any:
    world.consumers = [consumer("app", username="app", password_hash=HASH, roles=["svc"])]
    world.services = None
    return await world.one("token_endpoint", TOKEN_CONFIG).on_request(make_ctx(**form(**fields)))


async def test_client_credentials_issues_a_token_the_jwt_policy_accepts(world: World) -> None:
    reply = await token_call(
        world,
        grant_type="client_credentials",
        client_id="app",
        client_secret="pw",
        scope="orders:read",
    )
    assert reply.status == 200
    assert ("Cache-Control", "no-store") in reply.headers
    answer = json.loads(reply.body)
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 3600
    assert answer["scope"] == "orders:read"
    assert "refresh_token" not in answer
    # the same gateway verifies what it issued
    verify = world.pipeline(
        PolicyLists(
            request=[
                PolicySpec(
                    name="j",
                    type="jwt",
                    config={"algorithms": ["HS256"], "secret": SECRET, "issuers": ["https://gw"]},
                )
            ]
        )
    )
    ctx = make_ctx(headers=[("Authorization", f"Bearer {answer['access_token']}")])
    assert await verify.on_request(ctx) is None
    assert (ctx.consumer, ctx.roles) == ("app", ("svc",))


async def test_password_and_refresh_grants(world: World) -> None:
    reply = await token_call(world, grant_type="password", username="app", password="pw")
    answer = json.loads(reply.body)
    refresh = answer["refresh_token"]
    world.clock.advance(7200)  # the access token expired; the refresh token did not
    again = await token_call(world, grant_type="refresh_token", refresh_token=refresh)
    assert again.status == 200
    assert "access_token" in json.loads(again.body)
    # an access token is not a refresh token
    fresh_access = json.loads(again.body)["access_token"]  # valid, but not a refresh token
    misuse = await token_call(world, grant_type="refresh_token", refresh_token=fresh_access)
    assert (misuse.status, code_of(misuse)) == (400, "invalid_grant")
    forged = jwt.encode(
        {"sub": "app", "typ": "refresh", "iss": "https://gw", "exp": NOW + 99},
        "z" * 32,
        algorithm="HS256",
    )
    forged_reply = await token_call(world, grant_type="refresh_token", refresh_token=forged)
    assert code_of(forged_reply) == "invalid_grant"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        (
            {"grant_type": "client_credentials", "client_id": "app", "client_secret": "no"},
            401,
            "invalid_client",
        ),
        ({"grant_type": "client_credentials"}, 401, "invalid_client"),
        ({"grant_type": "password", "username": "app", "password": "no"}, 400, "invalid_grant"),
        ({"grant_type": "password", "username": "app"}, 400, "invalid_request"),
        ({"grant_type": "implicit"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
        (
            {"grant_type": "password", "username": "app", "password": "pw", "scope": "admin"},
            400,
            "invalid_scope",
        ),
    ],
)
async def test_token_refusals(world: World, fields: dict[str, str], status: int, code: str) -> None:
    reply = await token_call(world, **fields)
    assert (reply.status, code_of(reply)) == (status, code)


async def test_disabled_or_expired_credentials_get_no_token(world: World) -> None:
    from datetime import UTC, datetime

    for changes in (
        {"credential_disabled": True},
        {"credential_expires": datetime.fromtimestamp(NOW - 1, UTC)},
    ):
        world.consumers = [consumer("app", username="app", password_hash=HASH, **changes)]
        world.services = None
        pipeline = world.one("token_endpoint", TOKEN_CONFIG)
        fields = form(grant_type="client_credentials", client_id="app", client_secret="pw")
        reply = await pipeline.on_request(make_ctx(**fields))
        assert reply is not None
        assert (reply.status, code_of(reply)) == (401, "invalid_client")


async def test_token_endpoint_request_shape(world: World) -> None:
    world.consumers = [consumer("app", username="app", password_hash=HASH)]
    pipeline = world.one("token_endpoint", TOKEN_CONFIG)
    get = await pipeline.on_request(make_ctx(method="GET"))
    assert get is not None
    assert get.status == 405
    assert ("Allow", "POST") in get.headers
    json_body = await pipeline.on_request(make_ctx(method="POST", body=b'{"grant_type":"x"}'))
    assert json_body is not None
    assert code_of(json_body) == "invalid_request"
    repeated = form(grant_type="password")
    repeated["body"] += b"&grant_type=client_credentials"
    reply = await pipeline.on_request(make_ctx(**repeated))
    assert reply is not None
    assert code_of(reply) == "invalid_request"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"issuer": "x"}, "HS256 needs a secret and no private_key"),
        (
            {"issuer": "x", "algorithm": "RS256", "secret": SECRET},
            "RS256 needs a private_key and no secret",
        ),
        (
            {"issuer": "x", "secret": SECRET, "grants": ["password", "password"]},
            "grants must not repeat",
        ),
    ],
)
def test_token_config_rules(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="t", type="token_endpoint", config=config), "p")
    assert (caught.value.field, caught.value.message) == ("p.config", message)


def test_introspection_config_rules() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="i", type="oauth2_introspection", config={}), "p")
    assert (caught.value.field, caught.value.message) == (
        "p.config.introspection_url",
        "Field required",
    )

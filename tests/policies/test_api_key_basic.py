from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher

from portway.config.models import PolicySpec
from portway.config.revision import GrantSnapshot
from portway.errors import ConfigError
from portway.policies.registry import validate_policy_spec
from tests.policies.helpers import NOW, World, consumer, make_ctx

PAST = datetime.fromtimestamp(NOW, UTC) - timedelta(days=1)
FUTURE = datetime.fromtimestamp(NOW, UTC) + timedelta(days=1)
HASH = PasswordHasher().hash("s3cret")


def code_of(reply: Any) -> str:
    return str(json.loads(reply.body)["error"])


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


# -- API key --


async def test_api_key_in_header_identifies_the_consumer(world: World) -> None:
    world.consumers = [consumer(api_key="k-123", roles=["reader"])]
    pipeline = world.one("api_key", {"roles_header": "X-Roles"})
    ctx = make_ctx(headers=[("X-Api-Key", "k-123"), ("X-Consumer", "mallory")])
    assert await pipeline.on_request(ctx) is None
    assert (ctx.consumer, ctx.roles) == ("alice", ("reader",))
    assert ctx.request.headers.get("X-Consumer") == "alice"  # forged value replaced
    assert ctx.request.headers.get("X-Roles") == "reader"
    assert ctx.request.headers.get("X-Api-Key") is None  # stripped before forwarding


async def test_api_key_in_query_is_stripped(world: World) -> None:
    world.consumers = [consumer(api_key="k-123")]
    pipeline = world.one("api_key", {"location": "query", "key_name": "key"})
    ctx = make_ctx(query=[("key", "k-123"), ("page", "2")])
    assert await pipeline.on_request(ctx) is None
    assert ctx.request.query == [("page", "2")]


@pytest.mark.parametrize(
    ("changes", "headers", "status", "code"),
    [
        ({}, [], 401, "missing_credentials"),
        ({}, [("X-Api-Key", "wrong")], 401, "invalid_credentials"),
        ({}, [("X-Api-Key", "k" * 5000)], 401, "invalid_credentials"),
        ({"credential_disabled": True}, None, 401, "invalid_credentials"),
        ({"credential_expires": PAST}, None, 401, "expired_credentials"),
        ({"disabled": True}, None, 403, "consumer_disabled"),
        ({"grants": []}, None, 403, "access_denied"),
        ({"grants": [GrantSnapshot(api="billing")]}, None, 403, "access_denied"),
        ({"grants": [GrantSnapshot(api="orders", project="other")]}, None, 403, "access_denied"),
        ({"grants": [GrantSnapshot(api="orders", expires_at=PAST)]}, None, 403, "grant_expired"),
        (
            {"grants": [GrantSnapshot(api="orders", environments=["test"])]},
            None,
            403,
            "environment_not_allowed",
        ),
    ],
)
async def test_api_key_refusals(
    world: World, changes: dict[str, Any], headers: Any, status: int, code: str
) -> None:
    world.consumers = [consumer(api_key="k-123", **changes)]
    ctx = make_ctx(headers=[("X-Api-Key", "k-123")] if headers is None else headers)
    reply = await world.one("api_key").on_request(ctx)
    assert reply is not None
    assert (reply.status, code_of(reply)) == (status, code)
    assert ctx.consumer is None


async def test_api_key_grant_with_future_expiry_and_environment(world: World) -> None:
    grant = GrantSnapshot(api="orders", expires_at=FUTURE, environments=["prod"])
    world.consumers = [consumer(api_key="k", credential_expires=FUTURE, grants=[grant])]
    assert await world.one("api_key").on_request(make_ctx(headers=[("X-Api-Key", "k")])) is None


async def test_required_roles(world: World) -> None:
    world.consumers = [consumer(api_key="k", roles=["reader"])]
    any_of = world.one("api_key", {"required_roles": ["admin", "reader"], "roles_mode": "any"})
    assert await any_of.on_request(make_ctx(headers=[("X-Api-Key", "k")])) is None
    world.services = None
    all_of = world.one("api_key", {"required_roles": ["admin", "reader"]})
    reply = await all_of.on_request(make_ctx(headers=[("X-Api-Key", "k")]))
    assert reply is not None
    assert code_of(reply) == "missing_role"


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"location": "cookie"}, "config.location", "Input should be 'header' or 'query'"),
        ({"key_name": "X Key"}, "config", "key_name 'X Key' is not a valid header name"),
        (
            {"consumer_header": "X-Consumer\r\nX-Admin: 1"},
            "config.consumer_header",
            "'X-Consumer\\r\\nX-Admin: 1' is not a valid header name",
        ),
        ({"roles_mode": "most"}, "config.roles_mode", "Input should be 'all' or 'any'"),
    ],
)
def test_api_key_config_rejections(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="k", type="api_key", config=config), "p")
    assert (caught.value.field, caught.value.message) == (f"p.{field}", message)


# -- Basic --


async def test_basic_auth_success_and_memo(world: World) -> None:
    world.consumers = [consumer(username="alice", password_hash=HASH)]
    pipeline = world.one("basic_auth")
    ctx = make_ctx(headers=[basic("alice", "s3cret")])
    assert await pipeline.on_request(ctx) is None
    assert ctx.consumer == "alice"
    assert ctx.request.headers.get("Authorization") is None
    assert len(world.make_services().shared_memo._items) == 1
    # a wrong password never matches the remembered success
    reply = await pipeline.on_request(make_ctx(headers=[basic("alice", "wrong")]))
    assert reply is not None
    assert reply.status == 401


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer abc",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Basic " + "A" * 5000,
    ],
)
async def test_basic_auth_malformed_headers(world: World, header: str | None) -> None:
    world.consumers = [consumer(username="alice", password_hash=HASH)]
    headers = [("Authorization", header)] if header else []
    reply = await world.one("basic_auth", {"realm": "shop"}).on_request(make_ctx(headers=headers))
    assert reply is not None
    assert reply.status == 401
    assert code_of(reply) == "missing_credentials"
    assert ("WWW-Authenticate", 'Basic realm="shop"') in reply.headers


async def test_basic_auth_refusals(world: World) -> None:
    world.consumers = [
        consumer(username="alice", password_hash=HASH),
        consumer("bob", username="bob", password_hash=HASH, disabled=True),
    ]
    pipeline = world.one("basic_auth")
    for header, code in [
        (basic("alice", "wrong"), "invalid_credentials"),
        (basic("nobody", "s3cret"), "invalid_credentials"),
        (basic("bob", "s3cret"), "consumer_disabled"),
    ]:
        reply = await pipeline.on_request(make_ctx(headers=[header]))
        assert reply is not None
        assert code_of(reply) == code


def test_basic_realm_cannot_inject() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(
            PolicySpec(name="b", type="basic_auth", config={"realm": 'x"\r\nSet-Cookie: a=b'}), "p"
        )
    assert caught.value.field == "p.config.realm"
    assert caught.value.message.startswith("String should match pattern")

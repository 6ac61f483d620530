"""Consumer attributes at the worker: the IP allow list checked once an authentication policy has
identified the consumer (whichever policy), and the metadata policies read as
``consumer.metadata.KEY``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError

from portway.config.declarative import ConsumerSpec
from portway.config.models import PolicyLists, PolicySpec
from tests.policies.helpers import World, consumer, make_ctx
from tests.policies.test_api_key_basic import basic

HASH = PasswordHasher().hash("s3cret")
ALLOW = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]


def allowed(**extra: Any) -> Any:
    found = consumer(api_key="k-123", username="alice", password_hash=HASH, **extra)
    return found.model_copy(update={"ip_allow": ALLOW, "metadata": {"tier": "gold"}})


def error_of(reply: Any) -> dict[str, Any]:
    assert reply is not None
    body: dict[str, Any] = json.loads(reply.body)
    return body


@pytest.mark.parametrize(
    "client_ip", ["10.1.2.3", "2001:db8::5", "::ffff:10.9.9.9", "192.0.2.7", "[2001:db8::1]:443"]
)
async def test_an_address_inside_the_allow_list_passes(world: World, client_ip: str) -> None:
    world.consumers = [allowed()]
    ctx = make_ctx(headers=[("X-Api-Key", "k-123")], client_ip=client_ip)
    assert await world.one("api_key").on_request(ctx) is None
    assert ctx.consumer == "alice"


@pytest.mark.parametrize(
    "client_ip", ["192.0.2.8", "11.0.0.1", "2001:db9::1", "::ffff:192.0.2.8", "not-an-ip", ""]
)
async def test_an_address_outside_is_refused_naming_the_rule(world: World, client_ip: str) -> None:
    world.consumers = [allowed()]
    ctx = make_ctx(headers=[("X-Api-Key", "k-123")], client_ip=client_ip)
    reply = await world.one("api_key").on_request(ctx)
    assert reply is not None
    assert reply.status == 403
    body = error_of(reply)
    assert body["error"] == "address_not_allowed"
    assert body["rule"] == "consumers/alice/ip_allow"
    assert ctx.consumer is None
    assert "10.0.0.0" not in reply.body.decode()  # the list itself is not disclosed


async def test_basic_auth_enforces_the_allow_list_too(world: World) -> None:
    world.consumers = [allowed()]
    pipeline = world.one("basic_auth")
    inside = make_ctx(headers=[basic("alice", "s3cret")], client_ip="10.0.0.1")
    assert await pipeline.on_request(inside) is None
    outside = make_ctx(headers=[basic("alice", "s3cret")], client_ip="198.51.100.1")
    assert error_of(await pipeline.on_request(outside))["error"] == "address_not_allowed"


async def test_a_forwarded_for_header_is_not_the_client_address(world: World) -> None:
    """The worker resolves ``client_ip`` (trusted proxies only); a header a client writes is not
    consulted by the allow list."""
    world.consumers = [allowed()]
    ctx = make_ctx(
        headers=[("X-Api-Key", "k-123"), ("X-Forwarded-For", "10.0.0.1")],
        client_ip="198.51.100.1",
    )
    assert error_of(await world.one("api_key").on_request(ctx))["error"] == "address_not_allowed"


async def test_without_an_allow_list_every_address_passes(world: World) -> None:
    world.consumers = [consumer(api_key="k-123")]
    ctx = make_ctx(headers=[("X-Api-Key", "k-123")], client_ip="198.51.100.1")
    assert await world.one("api_key").on_request(ctx) is None


async def test_metadata_is_available_to_conditions(world: World) -> None:
    world.consumers = [allowed(), consumer("bob", api_key="k-bob")]
    gold_only = PolicySpec(
        name="gold",
        type="mock_response",
        config={"status": 200, "body": "gold lane"},
        condition={"variable": "consumer.metadata.tier", "operator": "EQ", "value": "gold"},
    )
    lists = PolicyLists(request=[PolicySpec(name="key", type="api_key"), gold_only])
    pipeline = world.pipeline(lists)
    gold = await pipeline.on_request(
        make_ctx(headers=[("X-Api-Key", "k-123")], client_ip="10.0.0.1")
    )
    assert gold is not None
    assert gold.body == b"gold lane"
    # bob has no metadata: the condition is false and the request goes on to the backend
    assert await pipeline.on_request(make_ctx(headers=[("X-Api-Key", "k-bob")])) is None


async def test_metadata_cannot_be_forged_before_authentication(world: World) -> None:
    world.consumers = [consumer(api_key="k-bob", name="bob")]
    lists = PolicyLists(
        request=[
            PolicySpec(
                name="gold",
                type="mock_response",
                config={"status": 200, "body": "gold lane"},
                condition={"variable": "consumer.metadata.tier", "operator": "IS_EXISTS"},
            ),
            PolicySpec(name="key", type="api_key"),
        ]
    )
    pipeline = world.pipeline(lists)
    ctx = make_ctx(headers=[("X-Api-Key", "k-bob"), ("X-Consumer-Metadata-Tier", "gold")])
    assert await pipeline.on_request(ctx) is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "no-at-sign", "local@domain"),
        ("email", "a@b", "not a valid domain name"),
        ("email", "a b@example.com", "not a valid local part"),
        ("email", "a@exa_mple.com", "not a valid domain name"),
        ("email", "a@-x.com", "not a valid domain name"),
        ("email", "a@1.2.3.4", "is not a domain name"),
        ("email", "x" * 65 + "@example.com", "at most 64"),
        ("email", "a@example.com\r\nBcc: x@y.z", "not a valid local part"),
        ("email", "a@example.com\n", "not a valid domain name"),
        ("ip_allow", ["10.0.0.0/33"], "is not an IP network"),
        ("ip_allow", ["example.com"], "is not an IP network"),
        ("ip_allow", ["10.0.0.0/8", "10.0.0.0/8"], "appears twice"),
        ("ip_allow", ["10.0.0.1"] * 101, "at most 100"),
        ("metadata", {"bad key": "x"}, "should match pattern"),
        ("metadata", {"tier": "x" * 501}, "at most 500"),
        ("metadata", {"tier": "a\nb"}, "should match pattern"),
        ("metadata", {f"k{i}": "v" for i in range(51)}, "at most 50"),
        ("metadata", {"tier": 3}, "valid string"),
    ],
)
def test_hostile_attributes_are_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ConsumerSpec.model_validate({"name": "app", field: value})
    assert message in str(caught.value)
    assert field in str(caught.value)


def test_valid_attributes() -> None:
    spec = ConsumerSpec.model_validate(
        {
            "name": "app",
            "email": "ops+gw@mail.example.com",
            "ip_allow": ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"],
            "metadata": {"tier": "gold", "team-id": "42"},
        }
    )
    assert spec.email == "ops+gw@mail.example.com"
    assert spec.metadata["tier"] == "gold"

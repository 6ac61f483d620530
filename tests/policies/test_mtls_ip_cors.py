from __future__ import annotations

import json
from typing import Any

import pytest

from portway.config.models import PolicySpec
from portway.errors import ConfigError
from portway.policies.ip_filter import (
    MAX_VERDICTS,
    IpFilterPolicy,
    _parse_cached,
    client_address,
    parse_address,
    parse_networks,
)
from portway.policies.registry import validate_policy_spec
from tests.policies.helpers import World, consumer, make_ctx


def code_of(reply: Any) -> str:
    return str(json.loads(reply.body)["error"])


def rejected(type_: str, config: dict[str, Any]) -> tuple[str | None, str]:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="x", type=type_, config=config), "p")
    return caught.value.field, caught.value.message


# -- mTLS --


def cert(
    cn: str = "client-a",
    issuer: str = "Portway CA",
    not_after: str = "Jun  1 00:00:00 2030 GMT",
    dns: tuple[str, ...] = ("a.example",),
) -> dict[str, Any]:
    return {
        "subject": ((("organizationName", "Acme"),), (("commonName", cn),)),
        "issuer": ((("commonName", issuer),),),
        "notAfter": not_after,
        "subjectAltName": tuple(("DNS", d) for d in dns),
    }


async def test_mtls_maps_the_certificate_to_a_consumer(world: World) -> None:
    pipeline = world.one("mtls", {"allowed_issuers": ["Portway CA"]})
    ctx = make_ctx(scheme="https", tls_peer_cert=cert())
    assert await pipeline.on_request(ctx) is None
    assert ctx.consumer == "client-a"
    assert ctx.request.headers.get("X-Consumer") == "client-a"


async def test_mtls_refusals(world: World) -> None:
    world.consumers = [consumer("client-a", disabled=True)]
    pipeline = world.one("mtls", {"allowed_subjects": ["client-a", "client-b"]})
    cases = [
        (make_ctx(), 401, "missing_credentials"),
        (make_ctx(scheme="http", tls_peer_cert=cert()), 401, "missing_credentials"),
        (
            make_ctx(scheme="https", tls_peer_cert=cert(not_after="Jan  1 00:00:00 2020 GMT")),
            401,
            "expired_credentials",
        ),
        (
            make_ctx(scheme="https", tls_peer_cert=cert(not_after="garbage")),
            401,
            "invalid_credentials",
        ),
        (
            make_ctx(scheme="https", tls_peer_cert=cert(cn="intruder")),
            403,
            "certificate_not_allowed",
        ),
    ]
    for ctx, status, code in cases:
        reply = await pipeline.on_request(ctx)
        assert reply is not None
        assert (reply.status, code_of(reply)) == (status, code)
    world.services = None
    strict = world.one("mtls", {"check_consumer": True})
    reply = await strict.on_request(make_ctx(scheme="https", tls_peer_cert=cert()))
    assert reply is not None
    assert code_of(reply) == "consumer_disabled"


# -- IP filter --

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", ["1.1.1.1"], "203.0.113.5"),  # untrusted peer: XFF ignored
        ("10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7, 10.0.0.9"], "198.51.100.7"),  # spoofed left part
        ("10.0.0.2", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),  # several header lines
        ("10.0.0.2", ["10.1.1.1, 10.2.2.2"], "10.1.1.1"),  # all trusted: the leftmost
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["garbage"], None),
        ("2001:db8:ffff::1", ["[2001:db8::5]:443"], "2001:db8::5"),
        ("::ffff:10.0.0.2", ["198.51.100.7:5000"], "198.51.100.7"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], expected: str | None) -> None:
    found = client_address(peer, forwarded, PROXIES)
    assert (str(found) if found is not None else None) == expected


def test_parsed_addresses_are_kept_only_for_short_values() -> None:
    assert str(parse_address("192.0.2.77")) == "192.0.2.77"
    kept = _parse_cached.cache_info().currsize
    assert str(parse_address("192.0.2.77")) == "192.0.2.77"
    assert _parse_cached.cache_info().currsize == kept
    padded = " " * 500 + "192.0.2.78" + "\t" * 500  # what a client may send: parsed, not kept
    assert str(parse_address(padded)) == "192.0.2.78"
    assert parse_address(padded + "x") is None
    assert _parse_cached.cache_info().currsize == kept
    assert parse_address("192.0.2.999") is None


async def test_ip_allow_and_deny(world: World) -> None:
    config = {
        "allow": ["198.51.100.0/24", "2001:db8::/32"],
        "deny": ["198.51.100.66"],
        "trusted_proxies": ["10.0.0.0/8"],
    }
    pipeline = world.one("ip_filter", config)
    allowed = [
        make_ctx(client_ip="198.51.100.7"),
        make_ctx(client_ip="2001:db8::1"),
        make_ctx(client_ip="10.0.0.1", headers=[("X-Forwarded-For", "198.51.100.8")]),
    ]
    for ctx in allowed:
        assert await pipeline.on_request(ctx) is None
    denied = [
        make_ctx(client_ip="198.51.100.66"),
        make_ctx(client_ip="192.0.2.1"),
        # a client that is not a trusted proxy cannot claim an allowed address
        make_ctx(client_ip="192.0.2.1", headers=[("X-Forwarded-For", "198.51.100.7")]),
        # a client behind the proxy cannot either, by prepending one
        make_ctx(client_ip="10.0.0.1", headers=[("X-Forwarded-For", "198.51.100.7, 192.0.2.1")]),
        make_ctx(client_ip="10.0.0.1", headers=[("X-Forwarded-For", "198.51.100.7\r\n")]),
        make_ctx(client_ip="not-an-ip"),
    ]
    for ctx in denied:
        reply = await pipeline.on_request(ctx)
        assert reply is not None
        assert (reply.status, code_of(reply)) == (403, "ip_denied")


async def test_verdicts_kept_per_address_without_trusted_proxies(world: World) -> None:
    """Without trusted proxies a verdict depends on the client address alone and is kept: asked
    again, alternating, with a forwarded header claiming an allowed address, it never changes."""
    pipeline = world.one("ip_filter", {"allow": ["198.51.100.0/24"], "deny": ["198.51.100.66"]})
    claim = [("X-Forwarded-For", "198.51.100.7")]
    for _ in range(3):
        for ip, headers, allowed in (
            ("198.51.100.7", [], True),
            ("198.51.100.66", [], False),
            ("198.51.100.66", claim, False),
            ("192.0.2.1", claim, False),
            ("::ffff:198.51.100.8", [], True),
            ("not-an-ip", claim, False),
        ):
            ctx = make_ctx(client_ip=ip, headers=headers)
            reply = await pipeline.on_request(ctx)
            assert (reply is None) is allowed, (ip, headers)
            if ip == "::ffff:198.51.100.8":
                assert ctx.variables["client.address"] == "198.51.100.8"
            elif ip != "not-an-ip":
                assert ctx.variables["client.address"] == ip
    policy = pipeline._request[0].policy
    assert isinstance(policy, IpFilterPolicy)
    for n in range(MAX_VERDICTS + 10):  # many clients: the kept verdicts stay bounded
        ctx = make_ctx(client_ip=f"203.0.{n // 256 % 256}.{n % 256}")
        assert await pipeline.on_request(ctx) is not None
    assert 0 < len(policy._verdicts) <= MAX_VERDICTS
    assert await pipeline.on_request(make_ctx(client_ip="198.51.100.7")) is None


def test_ip_config_rules() -> None:
    assert rejected("ip_filter", {}) == ("p.config", "set allow or deny (or both)")
    assert rejected("ip_filter", {"allow": ["10.0.0.1/8"]}) == (
        "p.config.allow",
        "'10.0.0.1/8' is not an IP address or CIDR network",
    )
    assert rejected("ip_filter", {"deny": ["nope"]}) == (
        "p.config.deny",
        "'nope' is not an IP address or CIDR network",
    )


# -- CORS --

CORS = {
    "allowed_origins": ["https://app.example", "https://*.shop.example"],
    "allowed_headers": ["Content-Type", "Authorization"],
    "exposed_headers": ["X-Total"],
    "allow_credentials": True,
}


def preflight(origin: str, method: str = "PUT", headers: str | None = None) -> Any:
    items = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if headers:
        items.append(("Access-Control-Request-Headers", headers))
    return make_ctx(method="OPTIONS", headers=items)


async def test_preflight_is_answered_by_the_gateway(world: World) -> None:
    reply = await world.one("cors", CORS).on_request(
        preflight("https://eu.shop.example", headers="content-type")
    )
    assert reply is not None
    assert reply.status == 204
    headers = dict(reply.headers)
    assert headers["Access-Control-Allow-Origin"] == "https://eu.shop.example"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Max-Age"] == "3600"
    assert headers["Access-Control-Allow-Headers"] == "content-type"
    assert "PUT" in headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize(
    "ctx",
    [
        preflight("https://evil.example"),
        preflight("https://app.example.evil.example"),
        preflight("https://shop.example.evil"),
        preflight("https://app.example", method="TRACE"),
        preflight("https://app.example", headers="X-Secret"),
    ],
)
async def test_preflight_refusals(world: World, ctx: Any) -> None:
    reply = await world.one("cors", CORS).on_request(ctx)
    assert reply is not None
    assert (reply.status, code_of(reply)) == (403, "cors_rejected")


async def test_actual_request_gets_cors_headers(world: World) -> None:
    from tests.policies.helpers import make_response

    pipeline = world.one("cors", CORS)
    ctx = make_ctx(headers=[("Origin", "https://app.example")])
    assert await pipeline.on_request(ctx) is None
    ctx.response = make_response()
    await pipeline.on_response(ctx)
    headers = dict(ctx.response.headers.items())
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Expose-Headers"] == "X-Total"
    assert headers["Vary"] == "Origin"
    other = make_ctx(headers=[("Origin", "https://evil.example")])
    assert await pipeline.on_request(other) is None
    other.response = make_response()
    await pipeline.on_response(other)
    assert "Access-Control-Allow-Origin" not in dict(other.response.headers.items())


async def test_wildcard_origin_without_credentials(world: World) -> None:
    pipeline = world.one("cors", {"allowed_origins": ["*"]})
    reply = await pipeline.on_request(preflight("https://anything.example", headers="X-Anything"))
    assert reply is not None
    assert dict(reply.headers)["Access-Control-Allow-Origin"] == "*"


def test_cors_config_rules() -> None:
    assert rejected("cors", {"allowed_origins": ["*"], "allow_credentials": True}) == (
        "p.config",
        "allowed_origins '*' cannot be combined with allow_credentials",
    )
    assert rejected("cors", {"allowed_origins": ["https://a.example/path"]}) == (
        "p.config.allowed_origins",
        "'https://a.example/path' is not an origin (scheme://host[:port])",
    )
    assert rejected("cors", {"allowed_origins": ["*"], "max_age": -1}) == (
        "p.config.max_age",
        "Input should be greater than or equal to 0",
    )
    assert rejected("cors", {"allowed_origins": ["*"], "allowed_methods": ["FETCH"]}) == (
        "p.config.allowed_methods",
        "unknown HTTP method 'FETCH'",
    )

"""HTTP Digest (RFC 7616): the RFC's own vectors, the challenge/response round trip, and the
hostile variants (wrong realm, another uri, replayed nc, changed nonce, missing fields, huge
headers)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from portway.config.models import PolicySpec
from portway.config.revision import ConsumerSnapshot, CredentialSnapshot, GrantSnapshot
from portway.errors import ConfigError
from portway.policies.contract import Reply
from portway.policies.digest_auth import (
    digest_hex,
    digest_lookup,
    digest_response,
    make_ha1,
    parse_digest,
)
from portway.policies.registry import validate_policy_spec
from tests.policies.helpers import World, make_ctx

REALM = "portway"
PASSWORD = "correct horse battery"


def digest_consumer(
    name: str = "alice", username: str = "alice", realm: str = REALM, md5: bool = False
) -> ConsumerSnapshot:
    ha1 = {"SHA-256": make_ha1("SHA-256", username, realm, PASSWORD)}
    if md5:
        ha1["MD5"] = make_ha1("MD5", username, realm, PASSWORD)
    cred = CredentialSnapshot(
        id=f"{name}-digest",
        kind="digest",
        lookup=digest_lookup(username, realm),
        username=username,
        realm=realm,
        ha1=ha1,
    )
    return ConsumerSnapshot(
        id=f"id-{name}", name=name, credentials=[cred], grants=[GrantSnapshot(api="orders")]
    )


def challenge_of(reply: Reply) -> dict[str, str]:
    values = [v for k, v in reply.headers if k.lower() == "www-authenticate"]
    assert values, reply.headers
    params = parse_digest(values[0])
    assert params is not None
    return params


def code_of(reply: Reply | None) -> str:
    assert reply is not None
    return str(json.loads(reply.body)["error"])


def answer(
    challenge: dict[str, str],
    *,
    method: str = "GET",
    uri: str = "/orders/42",
    username: str = "alice",
    password: str = PASSWORD,
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
    qop: str = "auth",
    body: bytes = b"",
    userhash: bool = False,
    **override: str,
) -> tuple[str, str]:
    """What a client computes from the password (the policy only ever sees HA1)."""
    algorithm = challenge["algorithm"]
    realm = challenge["realm"]
    ha1 = make_ha1(algorithm, username, realm, password)
    response = digest_response(
        algorithm, ha1, method, uri, challenge["nonce"], nc, cnonce, qop, body
    )
    user = digest_hex(algorithm, f"{username}:{realm}") if userhash else username
    fields = {
        "username": user,
        "realm": realm,
        "uri": uri,
        "algorithm": algorithm,
        "nonce": challenge["nonce"],
        "nc": nc,
        "cnonce": cnonce,
        "qop": qop,
        "response": response,
        "userhash": "true" if userhash else "false",
        **override,
    }
    text = ", ".join(
        f"{k}={v}" if k in ("nc", "qop", "algorithm", "userhash") else f'{k}="{v}"'
        for k, v in fields.items()
    )
    return ("Authorization", "Digest " + text)


async def challenged(world: World, config: dict[str, Any] | None = None) -> dict[str, str]:
    reply = await world.one("digest_auth", config).on_request(make_ctx())
    assert reply is not None
    assert (reply.status, code_of(reply)) == (401, "missing_credentials")
    return challenge_of(reply)


# -- the RFC's vectors --


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm: str, expected: str) -> None:
    ha1 = make_ha1(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life")
    response = digest_response(
        algorithm,
        ha1,
        "GET",
        "/dir/index.html",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "00000001",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        "auth",
    )
    assert response == expected


def test_parse_digest_quoting_and_refusals() -> None:
    parsed = parse_digest('Digest username="a\\"b", nc=00000001, qop=auth')
    assert parsed == {"username": 'a"b', "nc": "00000001", "qop": "auth"}
    assert parse_digest("Basic YTpi") is None
    assert parse_digest(None) is None
    for bad, message in [
        ('Digest username="a", username="b"', "digest parameter username is repeated"),
        ('Digest username="a" realm="b"', "malformed digest parameters at character 0"),
        ("Digest " + "x" * 5000, "the Authorization header is longer than 4096 characters"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_digest(bad)


# -- round trips --


@pytest.mark.parametrize("algorithm", ["SHA-256", "SHA-256-sess"])
async def test_challenge_response_identifies_the_consumer(world: World, algorithm: str) -> None:
    world.consumers = [digest_consumer()]
    challenge = await challenged(world, {"algorithms": [algorithm]})
    assert challenge["algorithm"] == algorithm
    assert (challenge["realm"], challenge["qop"], challenge["userhash"]) == (REALM, "auth", "true")
    ctx = make_ctx(headers=[answer(challenge), ("X-Consumer", "mallory")])
    assert await world.one("digest_auth", {"algorithms": [algorithm]}).on_request(ctx) is None
    assert ctx.consumer == "alice"
    assert ctx.request.headers.get("X-Consumer") == "alice"
    assert ctx.request.headers.get("Authorization") is None


async def test_userhash_and_auth_int(world: World) -> None:
    world.consumers = [digest_consumer()]
    config = {"qop": ["auth", "auth-int"]}
    pipeline = world.one("digest_auth", config)
    challenge = await challenged(world, config)
    assert challenge["qop"] == "auth, auth-int"
    body = b'{"amount": 10}'
    header = answer(challenge, method="POST", qop="auth-int", body=body, userhash=True)
    ctx = make_ctx("POST", headers=[header], body=body)
    assert await pipeline.on_request(ctx) is None
    assert ctx.consumer == "alice"
    # the same digest over another body is refused: auth-int covers the body
    tampered = answer(
        challenge, method="POST", qop="auth-int", body=body, userhash=True, nc="00000002"
    )
    reply = await pipeline.on_request(make_ctx("POST", headers=[tampered], body=b"{}"))
    assert code_of(reply) == "invalid_credentials"


async def test_md5_only_when_enabled_and_stored(world: World) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(
            PolicySpec(name="d", type="digest_auth", config={"algorithms": ["MD5"]}), "p"
        )
    assert caught.value.message == "MD5 algorithms need allow_md5: true"
    config = {"algorithms": ["SHA-256", "MD5"], "allow_md5": True}
    world.consumers = [digest_consumer(md5=True), digest_consumer("bob", "bob")]
    reply = await world.one("digest_auth", config).on_request(make_ctx())
    assert reply is not None
    offered = [v for k, v in reply.headers if k == "WWW-Authenticate"]
    assert [parse_digest(v)["algorithm"] for v in offered] == ["SHA-256", "MD5"]  # type: ignore[index]
    md5 = {**challenge_of(reply), "algorithm": "MD5"}
    pipeline = world.one("digest_auth", config)
    assert await pipeline.on_request(make_ctx(headers=[answer(md5)])) is None
    # bob's credential keeps no MD5 HA1: MD5 cannot authenticate him
    bob = answer(md5, username="bob")
    assert code_of(await pipeline.on_request(make_ctx(headers=[bob]))) == "invalid_credentials"
    # without an algorithm parameter the client means MD5, which this policy does not offer
    plain = world.one("digest_auth")
    sha = await challenged(world)
    header = answer(sha)
    no_algorithm = (header[0], re.sub(r"algorithm=[^,]+, ", "", header[1]))
    reply = await plain.on_request(make_ctx(headers=[no_algorithm]))
    assert code_of(reply) == "malformed_credentials"
    assert json.loads(reply.body)["message"] == "digest algorithm 'MD5' is not offered"  # type: ignore[union-attr]


# -- hostile variants --


async def test_replayed_nonce_count_is_refused(world: World) -> None:
    world.consumers = [digest_consumer()]
    pipeline = world.one("digest_auth")
    challenge = await challenged(world)
    header = answer(challenge)
    assert await pipeline.on_request(make_ctx(headers=[header])) is None
    replay = await pipeline.on_request(make_ctx(headers=[header]))
    assert (replay is not None and replay.status, code_of(replay)) == (401, "replayed_request")
    # the next count on the same nonce is fine: a client pipelines requests this way
    assert await pipeline.on_request(make_ctx(headers=[answer(challenge, nc="00000002")])) is None


async def test_replay_check_when_the_cache_is_down(world: World) -> None:
    world.consumers = [digest_consumer()]
    challenge = await challenged(world)
    world.cache.down = True
    closed = world.one("digest_auth")
    reply = await closed.on_request(make_ctx(headers=[answer(challenge)]))
    assert (reply is not None and reply.status, code_of(reply)) == (503, "store_unavailable")
    world.services = None
    opened = world.one("digest_auth", {"on_store_unavailable": "continue"})
    challenge = await challenged(world, {"on_store_unavailable": "continue"})
    assert await opened.on_request(make_ctx(headers=[answer(challenge)])) is None


async def test_expired_nonce_is_stale_only_when_the_digest_is_right(world: World) -> None:
    world.consumers = [digest_consumer()]
    pipeline = world.one("digest_auth", {"nonce_seconds": 60})
    challenge = await challenged(world, {"nonce_seconds": 60})
    world.clock.advance(61)
    reply = await pipeline.on_request(make_ctx(headers=[answer(challenge)]))
    assert reply is not None
    assert (reply.status, code_of(reply)) == (401, "stale_nonce")
    fresh = challenge_of(reply)
    assert fresh["stale"] == "true"
    assert fresh["nonce"] != challenge["nonce"]
    wrong = await pipeline.on_request(make_ctx(headers=[answer(challenge, password="guess")]))
    assert wrong is not None
    assert code_of(wrong) == "invalid_credentials"
    assert "stale" not in challenge_of(wrong)  # a wrong password never learns it was close
    assert await pipeline.on_request(make_ctx(headers=[answer(fresh)])) is None


async def test_nonce_from_another_revision_secret_or_realm_is_refused(world: World) -> None:
    world.consumers = [digest_consumer(), digest_consumer("eve", "eve", realm="other")]
    world.nonce_secret = "revision-one"
    challenge = await challenged(world)
    # another worker of the same revision accepts it (the secret comes from the revision)
    world.services = None
    header = answer(challenge)
    assert await world.one("digest_auth").on_request(make_ctx(headers=[header])) is None
    # a new revision has a new secret: the nonce no longer verifies; a client that proves the
    # password over it is told it is stale (and gets a nonce of the new secret), nothing more
    world.services = None
    world.nonce_secret = "revision-two"
    pipeline = world.one("digest_auth")
    reply = await pipeline.on_request(make_ctx(headers=[answer(challenge, nc="00000002")]))
    assert reply is not None
    assert code_of(reply) == "stale_nonce"
    assert await pipeline.on_request(make_ctx(headers=[answer(challenge_of(reply))])) is None
    guess = answer(challenge, nc="00000003", password="guess")
    assert code_of(await pipeline.on_request(make_ctx(headers=[guess]))) == "invalid_credentials"
    other_realm = await challenged(world, {"realm": "other"})
    moved = answer({**other_realm, "realm": REALM})
    reply = await world.one("digest_auth").on_request(make_ctx(headers=[moved]))
    assert code_of(reply) == "stale_nonce"  # never accepted: the nonce is not this realm's


@pytest.mark.parametrize(
    ("change", "status", "code", "message"),
    [
        ({"nonce": "A" * 43}, 401, "invalid_credentials", None),
        ({"nonce": "not base64!"}, 401, "invalid_credentials", None),
        ({"realm": "elsewhere"}, 401, "invalid_credentials", None),
        ({"response": "0" * 64}, 401, "invalid_credentials", None),
        ({"username": "nobody"}, 401, "invalid_credentials", None),
        (
            {"uri": "/orders/43"},
            400,
            "malformed_credentials",
            "digest parameter uri does not match the request target",
        ),
        (
            {"uri": "/orders/42?admin=1"},
            400,
            "malformed_credentials",
            "digest parameter uri does not match the request target",
        ),
        ({"cnonce": ""}, 400, "malformed_credentials", "digest parameter cnonce is missing"),
        (
            {"nc": "1"},
            400,
            "malformed_credentials",
            "digest parameter nc must be 8 hexadecimal digits",
        ),
        ({"qop": "auth-int"}, 400, "malformed_credentials", "digest qop 'auth-int' is not offered"),
        (
            {"algorithm": "SHA-512"},
            400,
            "malformed_credentials",
            "digest algorithm 'SHA-512' is not offered",
        ),
        (
            {"cnonce": "c" * 3000},
            400,
            "malformed_credentials",
            "digest parameter cnonce or response is too long",
        ),
        (
            {"cnonce": "c" * 5000},
            400,
            "malformed_credentials",
            "the Authorization header is longer than 4096 characters",
        ),
    ],
)
async def test_hostile_answers(
    world: World, change: dict[str, Any], status: int, code: str, message: str | None
) -> None:
    world.consumers = [digest_consumer()]
    challenge = await challenged(world)
    header = answer(challenge, **change)
    reply = await world.one("digest_auth").on_request(make_ctx(headers=[header]))
    assert reply is not None
    assert (reply.status, code_of(reply)) == (status, code)
    body = json.loads(reply.body)
    assert body["correlation_id"] == "corr-123"
    if message is not None:
        assert body["message"] == message


async def test_a_missing_field_names_it(world: World) -> None:
    world.consumers = [digest_consumer()]
    challenge = await challenged(world)
    name, value = answer(challenge)
    without = re.sub(r', response="[0-9a-f]+"', "", value)
    reply = await world.one("digest_auth").on_request(make_ctx(headers=[(name, without)]))
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["message"]) == (
        400,
        "digest parameter response is missing",
    )


async def test_disabled_credential_and_missing_grant(world: World) -> None:
    consumer = digest_consumer()
    disabled = consumer.credentials[0].model_copy(update={"disabled": True})
    world.consumers = [consumer.model_copy(update={"credentials": [disabled]})]
    challenge = await challenged(world)
    reply = await world.one("digest_auth").on_request(make_ctx(headers=[answer(challenge)]))
    assert code_of(reply) == "invalid_credentials"
    world.services = None
    world.consumers = [consumer.model_copy(update={"grants": []})]
    challenge = await challenged(world)
    reply = await world.one("digest_auth").on_request(make_ctx(headers=[answer(challenge)]))
    assert code_of(reply) == "access_denied"


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"realm": 'x"\r\nSet-Cookie: a=b'}, "config.realm", "String should match pattern"),
        ({"algorithms": ["SHA-256", "SHA-256"]}, "config", "algorithms must not repeat"),
        ({"algorithms": []}, "config.algorithms", "List should have at least 1 item"),
        ({"qop": ["auth-conf"]}, "config.qop[0]", "Input should be 'auth' or 'auth-int'"),
        ({"nonce_seconds": 1}, "config.nonce_seconds", "Input should be greater than or equal"),
    ],
)
def test_config_rejections(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="d", type="digest_auth", config=config), "p")
    assert caught.value.field == f"p.{field}"
    assert caught.value.message.startswith(message)

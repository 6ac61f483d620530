from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from portway.config.models import PolicySpec
from portway.errors import ConfigError
from portway.policies.registry import validate_policy_spec
from tests.policies.helpers import NOW, World, consumer, make_ctx

SECRET = "0123456789abcdef0123456789abcdef"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PEM = (
    EC_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(NOW) + 300, "iss": "https://idp", "roles": ["r1"], **extra}


def hs(payload: dict[str, Any] | None = None, **headers: Any) -> str:
    return jwt.encode(payload or claims(), SECRET, algorithm="HS256", headers=headers or None)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def code_of(reply: Any) -> str:
    return str(json.loads(reply.body)["error"])


async def refused(world: World, config: dict[str, Any], token: str) -> str:
    reply = await world.one("jwt", config).on_request(make_ctx(headers=bearer(token)))
    assert reply is not None
    assert reply.status == 401
    assert ("WWW-Authenticate", "Bearer") in reply.headers
    return code_of(reply)


HS_CONFIG = {"algorithms": ["HS256"], "secret": SECRET}


async def test_valid_hs256_token(world: World) -> None:
    config = {**HS_CONFIG, "issuers": ["https://idp"], "claims_to_headers": {"iss": "X-Issuer"}}
    ctx = make_ctx(headers=[*bearer(hs()), ("X-Issuer", "forged")])
    assert await world.one("jwt", config).on_request(ctx) is None
    assert (ctx.consumer, ctx.roles) == ("alice", ("r1",))
    assert ctx.request.headers.get_all("X-Issuer") == ["https://idp"]
    assert ctx.request.headers.get("Authorization") is None
    assert ctx.variables["jwt.claims"]["sub"] == "alice"


async def test_rs256_and_es256_with_public_keys(world: World) -> None:
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256")
    ctx = make_ctx(headers=bearer(token))
    assert await world.one("jwt", {"public_key": RSA_PEM}).on_request(ctx) is None
    world.services = None
    token = jwt.encode(claims(), EC_KEY, algorithm="ES256")
    ctx = make_ctx(headers=bearer(token))
    config = {"algorithms": ["ES256"], "public_key": EC_PEM}
    assert await world.one("jwt", config).on_request(ctx) is None


async def test_expiry_and_not_before_use_the_gateway_clock_with_leeway(world: World) -> None:
    assert await refused(world, HS_CONFIG, hs(claims(exp=int(NOW) - 31))) == "expired_token"
    ok = make_ctx(headers=bearer(hs(claims(exp=int(NOW) - 29))))
    assert await world.one("jwt", HS_CONFIG).on_request(ok) is None
    assert await refused(world, HS_CONFIG, hs(claims(nbf=int(NOW) + 60))) == "invalid_token"
    strict = {**HS_CONFIG, "leeway_seconds": 0}
    assert await refused(world, strict, hs(claims(exp=int(NOW) - 1))) == "expired_token"


async def test_issuer_audience_and_required_claims(world: World) -> None:
    assert (
        await refused(world, {**HS_CONFIG, "issuers": ["https://other"]}, hs()) == "invalid_token"
    )
    assert await refused(world, {**HS_CONFIG, "audiences": ["api"]}, hs()) == "invalid_token"
    ctx = make_ctx(headers=bearer(hs(claims(aud=["x", "api"]))))
    assert await world.one("jwt", {**HS_CONFIG, "audiences": ["api"]}).on_request(ctx) is None
    no_exp = claims()
    del no_exp["exp"]
    assert await refused(world, HS_CONFIG, hs(no_exp)) == "invalid_token"
    assert await refused(world, {**HS_CONFIG, "required_claims": ["exp", "jti"]}, hs()) == (
        "invalid_token"
    )


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}."


async def test_alg_none_is_refused(world: World) -> None:
    for alg in ("none", "None", "NONE"):
        token = _unsigned({"alg": alg, "typ": "JWT"}, claims())
        assert await refused(world, HS_CONFIG, token) == "invalid_token"


async def test_algorithm_confusion_public_key_as_hmac_secret(world: World) -> None:
    # classic attack: sign HS256 with the RSA public key the gateway knows
    import hashlib
    import hmac

    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    signature = hmac.new(RSA_PEM.encode(), header + b"." + body, hashlib.sha256).digest()
    forged = (
        header + b"." + body + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")
    ).decode()
    assert await refused(world, {"public_key": RSA_PEM}, forged) == "invalid_token"
    mixed = {"algorithms": ["RS256", "HS256"], "public_key": RSA_PEM, "secret": SECRET}
    assert await refused(world, mixed, forged) == "invalid_token"


async def test_unlisted_algorithm_is_refused_even_when_the_key_fits(world: World) -> None:
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS512")
    assert await refused(world, {"algorithms": ["RS256"], "public_key": RSA_PEM}, token) == (
        "invalid_token"
    )


async def test_wrong_key_family_and_tampering(world: World) -> None:
    es_token = jwt.encode(claims(), EC_KEY, algorithm="ES256")
    config = {"algorithms": ["RS256", "ES256"], "public_key": RSA_PEM}
    assert await refused(world, config, es_token) == "invalid_token"
    head, _payload, sig = hs().split(".")
    evil = base64.urlsafe_b64encode(json.dumps(claims(sub="admin")).encode()).rstrip(b"=").decode()
    assert await refused(world, HS_CONFIG, f"{head}.{evil}.{sig}") == "invalid_token"
    other_secret = jwt.encode(claims(), "x" * 32, algorithm="HS256")
    assert await refused(world, HS_CONFIG, other_secret) == "invalid_token"


@pytest.mark.parametrize(
    "token",
    ["a" * 9000, "not-a-jwt", "a.b", "a.b.c.d", "e30.e30.", "!!!.???.***"],
)
async def test_garbage_and_oversized_tokens(world: World, token: str) -> None:
    assert await refused(world, HS_CONFIG, token) == "invalid_token"


async def test_missing_token(world: World) -> None:
    reply = await world.one("jwt", HS_CONFIG).on_request(
        make_ctx(headers=[("Authorization", "Basic x")])
    )
    assert reply is not None
    assert code_of(reply) == "missing_credentials"


async def test_claims_to_headers_cannot_inject(world: World) -> None:
    token = hs(claims(team="a\r\nX-Admin: yes"))
    ctx = make_ctx(headers=bearer(token))
    config = {**HS_CONFIG, "claims_to_headers": {"team": "X-Team"}}
    assert await world.one("jwt", config).on_request(ctx) is None
    assert ctx.request.headers.get("X-Team") == "aX-Admin: yes"
    assert ctx.request.headers.get("X-Admin") is None


async def test_check_consumer_against_the_store(world: World) -> None:
    world.consumers = [consumer(roles=["store-role"])]
    config = {**HS_CONFIG, "check_consumer": True}
    ctx = make_ctx(headers=bearer(hs()))
    assert await world.one("jwt", config).on_request(ctx) is None
    assert ctx.roles == ("r1", "store-role")
    reply = await world.one("jwt", config).on_request(
        make_ctx(headers=bearer(hs(claims(sub="eve"))))
    )
    assert reply is not None
    assert code_of(reply) == "access_denied"


# -- JWKS --


def jwk_of(key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "use": "sig", **extra}


class Issuer:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.calls = 0
        self.fail = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.fail:
            return httpx.Response(500)
        return httpx.Response(200, json={"keys": self.keys})


JWKS_CONFIG = {"jwks_url": "https://idp.test/jwks", "jwks_min_refresh_seconds": 30}


async def test_jwks_rotation_and_rate_limited_refetch(world: World) -> None:
    issuer = Issuer()
    world.transport = httpx.MockTransport(issuer)
    key2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.keys = [jwk_of(RSA_KEY, "k1")]
    pipeline = world.one("jwt", JWKS_CONFIG)

    async def call(key: Any, kid: str) -> bool:
        token = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": kid})
        return await pipeline.on_request(make_ctx(headers=bearer(token))) is None

    assert await call(RSA_KEY, "k1")
    assert await call(RSA_KEY, "k1")
    assert issuer.calls == 1  # cached
    # the issuer rotates; an unknown kid inside the refresh interval does not refetch
    issuer.keys = [jwk_of(RSA_KEY, "k1"), jwk_of(key2, "k2")]
    assert not await call(key2, "k2")
    assert issuer.calls == 1
    world.clock.advance(31)
    assert await call(key2, "k2")
    assert issuer.calls == 2
    # a forged kid cannot make the gateway hammer the issuer
    for i in range(5):
        assert not await call(key2, f"forged-{i}")
    assert issuer.calls == 2


async def test_jwks_outage_keeps_the_last_keys(world: World) -> None:
    issuer = Issuer()
    world.transport = httpx.MockTransport(issuer)
    issuer.keys = [jwk_of(RSA_KEY, "k1")]
    pipeline = world.one("jwt", {**JWKS_CONFIG, "jwks_cache_seconds": 60})
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    assert await pipeline.on_request(make_ctx(headers=bearer(token))) is None
    issuer.fail = True
    world.clock.advance(120)  # cache expired, refetch fails: stale keys still verify
    assert await pipeline.on_request(make_ctx(headers=bearer(token))) is None
    assert issuer.calls == 2


async def test_jwks_symmetric_and_mismatched_keys_are_ignored(world: World) -> None:
    issuer = Issuer()
    world.transport = httpx.MockTransport(issuer)
    oct_key = {"kty": "oct", "kid": "sym", "k": base64.urlsafe_b64encode(SECRET.encode()).decode()}
    issuer.keys = [oct_key, jwk_of(RSA_KEY, "pinned", alg="RS512")]
    pipeline = world.one("jwt", {**JWKS_CONFIG, "algorithms": ["RS256", "HS256"], "secret": SECRET})
    # an HS256 token naming a symmetric JWKS key is verified with the configured secret only
    forged = jwt.encode(claims(), "y" * 32, algorithm="HS256", headers={"kid": "sym"})
    assert await pipeline.on_request(make_ctx(headers=bearer(forged))) is not None
    # a key the JWKS pins to RS512 does not verify RS256
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "pinned"})
    assert await pipeline.on_request(make_ctx(headers=bearer(token))) is not None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"algorithms": ["HS256"]}, "HS256 needs a secret"),
        (
            {"algorithms": ["RS256"], "secret": SECRET},
            "secret is set but no HS* algorithm is allowed",
        ),
        ({"algorithms": ["RS256"]}, "RS256 needs public_key, jwks_url or environment_keys"),
        (
            {"algorithms": ["HS256"], "secret": SECRET, "public_key": RSA_PEM},
            "public_key is set but only HS* algorithms are allowed",
        ),
        (
            {"public_key": RSA_PEM, "jwks_url": "https://x/jwks"},
            "set one of public_key or jwks_url, not both",
        ),
        (
            {"jwks_url": "https://x/jwks", "environment_keys": True},
            "set one of jwks_url or environment_keys, not both",
        ),
        ({"public_key": "garbage"}, "public_key is not a PEM public key"),
        (
            {"public_key": EC_PEM},
            "public_key does not fit any allowed algorithm (RSA >= 2048 bits for RS/PS, the "
            "matching curve for ES, Ed25519/Ed448 for EdDSA)",
        ),
    ],
)
def test_key_rules(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="j", type="jwt", config=config), "p")
    assert (caught.value.field, caught.value.message) == ("p.config", message)


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        (
            {"algorithms": ["none"]},
            "p.config.algorithms[0]",
            "Input should be 'HS256', 'HS384', "
            "'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', "
            "'ES512' or 'EdDSA'",
        ),
        (
            {"algorithms": ["HS256"], "secret": "short"},
            "p.config.secret",
            "String should have at least 32 characters",
        ),
        ({"jwks_url": "file:///etc/keys"}, "p.config.jwks_url", "must be an http(s) URL"),
        (
            {"public_key": RSA_PEM, "leeway_seconds": 301},
            "p.config.leeway_seconds",
            "Input should be less than or equal to 300",
        ),
    ],
)
def test_field_rules(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="j", type="jwt", config=config), "p")
    assert (caught.value.field, caught.value.message) == (field, message)

"""The environment's signing keys in the policies: the token endpoint signs with the current key
(``kid`` set), the jwt policy verifies against current and previous keys by ``kid`` and with
each key's own algorithm, and a previous key stops verifying at its ``retire_at``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from portway.config.models import PolicySpec
from portway.config.revision import SigningKeySnapshot
from portway.errors import ConfigError
from portway.manager.signing_keys import generate
from portway.policies.registry import validate_policy_spec
from portway.policies.signing_keys import public_jwk
from tests.policies.helpers import NOW, World, consumer, make_ctx

HASH = PasswordHasher().hash("pw")
ISSUER = "https://gw"
TOKEN = {"key_source": "environment", "issuer": ISSUER, "grants": ["password", "refresh_token"]}
VERIFY = {"environment_keys": True, "algorithms": ["ES256", "RS256"], "issuers": [ISSUER]}


def snapshot(
    kid: str, algorithm: str, *, current: bool, retire_in: float | None = None
) -> SigningKeySnapshot:
    pem = generate(algorithm)
    retire = datetime.fromtimestamp(NOW + retire_in, UTC) if retire_in is not None else None
    return SigningKeySnapshot(
        kid=kid,
        algorithm=algorithm,  # type: ignore[arg-type]
        public_jwk=public_jwk(pem, kid, algorithm),
        private_key=pem if current else None,
        current=current,
        retire_at=retire,
    )


def fresh(world: World) -> None:
    """A new revision reaches the worker: policies are compiled again."""
    world.services = None


async def issue(world: World, refresh: str | None = None) -> dict[str, Any]:
    world.consumers = [consumer("app", username="app", password_hash=HASH)]
    fields = (
        {"grant_type": "refresh_token", "refresh_token": refresh}
        if refresh
        else {"grant_type": "password", "username": "app", "password": "pw"}
    )
    body = urlencode(fields).encode()
    headers = [("Content-Type", "application/x-www-form-urlencoded")]
    reply = await world.one("token_endpoint", TOKEN).on_request(
        make_ctx("POST", headers=headers, body=body)
    )
    assert reply is not None
    answer: dict[str, Any] = json.loads(reply.body)
    assert reply.status == 200, answer
    return answer


async def verified(world: World, token: str) -> str | None:
    """None when the jwt policy accepts the token, else its error code."""
    ctx = make_ctx(headers=[("Authorization", f"Bearer {token}")])
    reply = await world.one("jwt", VERIFY).on_request(ctx)
    return None if reply is None else str(json.loads(reply.body)["error"])


async def test_sign_with_the_current_key_and_verify_through_rotation(world: World) -> None:
    old = snapshot("k1", "ES256", current=True)
    world.signing_keys = [old]
    first_answer = await issue(world)
    first = first_answer["access_token"]
    assert jwt.get_unverified_header(first) == {"alg": "ES256", "kid": "k1", "typ": "JWT"}
    assert await verified(world, first) is None
    # rotation: k2 signs, k1 verifies until its retire_at
    fresh(world)
    previous = old.model_copy(update={"private_key": None, "current": False})
    previous = previous.model_copy(update={"retire_at": datetime.fromtimestamp(NOW + 600, UTC)})
    world.signing_keys = [snapshot("k2", "RS256", current=True), previous]
    answer = await issue(world)
    second = answer["access_token"]
    assert jwt.get_unverified_header(second)["kid"] == "k2"
    assert jwt.get_unverified_header(second)["alg"] == "RS256"
    assert await verified(world, first) is None
    assert await verified(world, second) is None
    # a refresh token the previous key signed still works during the overlap
    renewed = (await issue(world, first_answer["refresh_token"]))["access_token"]
    assert jwt.get_unverified_header(renewed)["kid"] == "k2"
    # at retire_at the previous key stops verifying, by the worker's clock
    world.clock.advance(601)
    assert await verified(world, first) == "invalid_token"
    assert await verified(world, second) is None
    with pytest.raises(AssertionError, match="invalid_grant"):
        await issue(world, first_answer["refresh_token"])


async def test_hostile_tokens_against_environment_keys(world: World) -> None:
    world.signing_keys = [snapshot("k1", "ES256", current=True)]
    good = (await issue(world))["access_token"]
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    outsider = ec.generate_private_key(ec.SECP256R1())
    strong_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    variants = {
        # a key the environment never had, claiming a known kid
        "foreign key": jwt.encode(claims, outsider, algorithm="ES256", headers={"kid": "k1"}),
        # an unknown kid
        "unknown kid": jwt.encode(claims, outsider, algorithm="ES256", headers={"kid": "k9"}),
        # the right kid with another algorithm the policy allows
        "other alg": jwt.encode(claims, strong_rsa, algorithm="RS256", headers={"kid": "k1"}),
        # the public key (as PEM text) used as an HMAC secret
        "confusion": jwt.encode(
            claims,
            "x" * 40,
            algorithm="HS256",
            headers={"kid": header["kid"]},
        ),
    }
    for name, token in variants.items():
        assert await verified(world, token) == "invalid_token", name


async def test_no_signing_key_is_503(world: World) -> None:
    world.consumers = [consumer("app", username="app", password_hash=HASH)]
    body = urlencode({"grant_type": "password", "username": "app", "password": "pw"}).encode()
    reply = await world.one("token_endpoint", TOKEN).on_request(
        make_ctx("POST", headers=[("Content-Type", "application/x-www-form-urlencoded")], body=body)
    )
    assert reply is not None
    assert (reply.status, json.loads(reply.body)["error"]) == (503, "no_signing_key")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**TOKEN, "algorithm": "RS256"}, "algorithm comes from the environment's signing key"),
        ({**TOKEN, "secret": "s" * 40}, "secret comes from the environment's signing key"),
        ({**TOKEN, "key_id": "mine"}, "key_id comes from the environment's signing key"),
    ],
)
def test_token_endpoint_environment_rules(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_policy_spec(PolicySpec(name="t", type="token_endpoint", config=config), "p")
    assert caught.value.message.startswith(message)


def test_public_jwk_has_no_private_part() -> None:
    for algorithm in ("RS256", "ES256"):
        pem = generate(algorithm)
        jwk = public_jwk(pem, "k", algorithm)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
        assert (jwk["kid"], jwk["alg"], jwk["use"]) == ("k", algorithm, "sig")
        private = serialization.load_pem_private_key(pem.encode(), None)
        token = jwt.encode({"a": 1}, private, algorithm=algorithm)  # type: ignore[arg-type]
        assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[algorithm]) == {"a": 1}

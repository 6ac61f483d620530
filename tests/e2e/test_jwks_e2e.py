"""Manager-managed signing keys end to end: the token endpoint of a real worker signs with the
environment's current key, PyJWT's PyJWKClient verifies the token against the worker's JWKS over
a real socket, the jwt policy accepts it, and after a rotation old tokens verify during the
overlap and fail once the old key is retired."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.conftest import Platform
from tests.support.processes import wait_until


def token_api(plat: Platform) -> dict[str, Any]:
    return {
        "name": "auth",
        "base_path": "/auth",
        "backends": [{"url": plat.backend_url}],
        "endpoints": [
            {
                "path": "/token",
                "methods": ["POST"],
                "policies": {
                    "request": [
                        {
                            "name": "issue",
                            "type": "token_endpoint",
                            "config": {"key_source": "environment", "issuer": "https://gw/"},
                        }
                    ]
                },
            }
        ],
    }


def orders_api(plat: Platform) -> dict[str, Any]:
    return {
        "name": "orders",
        "base_path": "/orders",
        "backends": [{"url": plat.backend_url}],
        "policies": {
            "request": [
                {
                    "name": "jwt",
                    "type": "jwt",
                    "config": {
                        "environment_keys": True,
                        "algorithms": ["ES256", "RS256"],
                        "issuers": ["https://gw/"],
                    },
                }
            ]
        },
    }


def test_issue_verify_rotate_retire(platform: Platform) -> None:
    _, port = platform.start_worker("w1")
    base = f"http://127.0.0.1:{port}"
    platform.call("POST", "/projects/default/apis", token_api(platform), expect=201)
    platform.call("POST", "/projects/default/apis", orders_api(platform), expect=201)
    platform.call("POST", "/consumers", {"name": "shop"}, expect=201)
    secret = platform.call(
        "POST",
        "/consumers/shop/credentials",
        {"kind": "basic", "username": "shop-client"},
        expect=201,
    )["secret"]
    first = platform.call("POST", "/environments/dev/signing-keys", {}, expect=201)
    for api in ("auth", "orders"):
        assert platform.deploy(api)["results"][0]["success"]
    jwks_url = f"{base}/.well-known/jwks.json"

    with httpx.Client(trust_env=False, timeout=10.0) as client:

        def issue() -> httpx.Response:
            return client.post(
                f"{base}/auth/token",
                data={"grant_type": "client_credentials"},
                auth=("shop-client", secret),
            )

        wait_until(lambda: issue().status_code == 200, "the token endpoint signs")
        old_token = issue().json()["access_token"]
        assert jwt.get_unverified_header(old_token)["kid"] == first["kid"]
        published = client.get(jwks_url)
        assert published.status_code == 200
        assert published.headers["content-type"] == "application/jwk-set+json"
        assert [k["kid"] for k in published.json()["keys"]] == [first["kid"]]
        assert "d" not in published.json()["keys"][0]  # no private part
        assert client.post(jwks_url).status_code == 405

        def verify(token: str) -> dict[str, Any]:
            # a fresh client each time: no key cached from an earlier document
            signing = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token, signing.key, algorithms=["ES256", "RS256"], issuer="https://gw/"
            )
            return claims

        assert verify(old_token)["sub"] == "shop"
        orders = f"{base}/orders/items"
        ok = client.get(orders, headers={"Authorization": f"Bearer {old_token}"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["headers"]["x-consumer"] == "shop"

        # rotate: new tokens carry the new kid, the old key stays published and accepted
        second = platform.call(
            "POST",
            "/environments/dev/signing-keys/rotate",
            {"algorithm": "RS256", "overlap_seconds": 3600},
            expect=201,
        )
        signed: list[str] = []

        def signs_with_new_key() -> bool:
            token = issue().json()["access_token"]
            signed[:] = [token]
            return bool(jwt.get_unverified_header(token)["kid"] == second["kid"])

        wait_until(signs_with_new_key, "the worker signs with the new key")
        new_token = signed[0]
        assert jwt.get_unverified_header(new_token)["alg"] == "RS256"
        kids = {k["kid"] for k in client.get(jwks_url).json()["keys"]}
        assert kids == {first["kid"], second["kid"]}
        assert verify(old_token)["sub"] == verify(new_token)["sub"] == "shop"
        for token in (old_token, new_token):
            answer = client.get(orders, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text

        # retire the old key: gone from the JWKS, and its tokens fail everywhere
        platform.call(
            "POST", f"/environments/dev/signing-keys/{first['kid']}/retire", None, expect=200
        )

        def old_key_gone() -> bool:
            kids = [k["kid"] for k in client.get(jwks_url).json()["keys"]]
            bearer = {"Authorization": f"Bearer {old_token}"}
            return kids == [second["kid"]] and client.get(orders, headers=bearer).status_code == 401

        wait_until(old_key_gone, "the retired key leaves the worker's JWKS and verification")
        with pytest.raises(jwt.PyJWKClientError):
            verify(old_token)
        refused = client.get(orders, headers={"Authorization": f"Bearer {old_token}"})
        assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")
        assert client.get(orders, headers={"Authorization": f"Bearer {new_token}"}).is_success
        # a token signed by a key the environment never had, under a known kid, is refused
        forged_key = jwt.PyJWK(client.get(jwks_url).json()["keys"][0])
        assert forged_key.key_id == second["kid"]
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(
            {"sub": "shop", "iss": "https://gw/", "exp": 4_000_000_000},
            other,
            algorithm="RS256",
            headers={"kid": second["kid"]},
        )
        answer = client.get(orders, headers={"Authorization": f"Bearer {forged}"})
        assert answer.status_code == 401

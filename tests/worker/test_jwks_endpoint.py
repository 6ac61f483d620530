"""The worker's JWKS: served at the configured path when the environment has signing keys (public
halves only, previous keys until their retire_at), routed like any path otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError

from portway.config.revision import SigningKeySnapshot
from portway.manager.signing_keys import generate
from portway.policies.signing_keys import public_jwk
from portway.worker.settings import WorkerSettings
from tests.http.support import running
from tests.worker.support import api, gateway, revision
from tests.worker.test_proxy_basic import upstream_echo


def key(kid: str, *, current: bool, retire_at: datetime | None = None) -> SigningKeySnapshot:
    pem = generate("ES256")
    return SigningKeySnapshot(
        kid=kid,
        algorithm="ES256",
        public_jwk=public_jwk(pem, kid, "ES256"),
        private_key=pem if current else None,
        current=current,
        retire_at=retire_at,
    )


async def test_jwks_at_the_configured_path() -> None:
    now = datetime.now(UTC)
    async with running(upstream_echo) as backend:
        rev = revision(api("root", "/", [f"http://127.0.0.1:{backend.port}"]))
        keyed = rev.model_copy(
            update={
                "signing_keys": [
                    key("new", current=True),
                    key("old", current=False, retire_at=now + timedelta(hours=1)),
                    key("gone", current=False, retire_at=now - timedelta(seconds=1)),
                ]
            }
        )
        settings = WorkerSettings(host="127.0.0.1", port=0, processes=1, jwks_path="/keys")
        async with gateway(keyed, settings=settings) as gw, httpx.AsyncClient() as client:
            answer = await client.get(f"{gw.url}/keys")
            assert answer.status_code == 200
            assert answer.headers["cache-control"] == "public, max-age=60"
            keys = answer.json()["keys"]
            assert [k["kid"] for k in keys] == ["new", "old"]  # "gone" is past its retire_at
            assert all("d" not in k for k in keys)
            head = await client.head(f"{gw.url}/keys")
            assert (head.status_code, head.content) == (200, b"")
            post = await client.post(f"{gw.url}/keys")
            assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
            # other spellings are not the JWKS: they are routed to the API as usual
            routed = await client.get(f"{gw.url}/keys/")
            assert routed.headers.get("x-upstream") == "yes"
            default = await client.get(f"{gw.url}/.well-known/jwks.json")
            assert default.headers.get("x-upstream") == "yes"
            # an environment without keys publishes nothing: the path is routed
            await gw.deploy(rev)
            plain = await client.get(f"{gw.url}/keys")
            assert plain.headers.get("x-upstream") == "yes"


@pytest.mark.parametrize("path", ["/_portway/jwks", "/_portway", "keys", "/a b", "/k?x=1"])
def test_jwks_path_is_validated(path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WorkerSettings(jwks_path=path)
    assert caught.value.errors()[0]["loc"] == ("jwks_path",)

"""API clients at the worker: basic authentication and the token endpoint's client_credentials
grant accept any secret version that has not expired, and nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher

from portway.config.revision import ConsumerSnapshot, CredentialSnapshot, SecretSnapshot
from tests.policies.helpers import NOW, World, consumer, make_ctx
from tests.policies.test_api_key_basic import basic
from tests.policies.test_oauth2 import TOKEN_CONFIG, form

HASHER = PasswordHasher()
GRACE_END = datetime.fromtimestamp(NOW, UTC) + timedelta(hours=1)


def client(*, revoked_old: bool = False) -> ConsumerSnapshot:
    """Version 1 ("old-secret") in its grace period, version 2 ("new-secret") without expiry."""
    versions = [SecretSnapshot(version=2, secret_hash=HASHER.hash("new-secret"))]
    if not revoked_old:  # a revoked version is not in the snapshot at all
        versions.append(
            SecretSnapshot(version=1, secret_hash=HASHER.hash("old-secret"), expires_at=GRACE_END)
        )
    credential = CredentialSnapshot(id="c1", kind="client", lookup="pwc_shop", secrets=versions)
    return consumer("shop").model_copy(update={"credentials": [credential]})


def error(reply: Any) -> str:
    assert reply is not None
    return str(json.loads(reply.body)["error"])


async def test_basic_auth_accepts_every_live_version_until_its_grace_ends(world: World) -> None:
    world.consumers = [client()]
    pipeline = world.one("basic_auth")
    for secret in ("old-secret", "new-secret", "old-secret"):  # the third call hits the memo
        ctx = make_ctx(headers=[basic("pwc_shop", secret)])
        assert await pipeline.on_request(ctx) is None, secret
        assert (ctx.consumer, ctx.variables["credential_id"]) == ("shop", "c1")
    assert error(await pipeline.on_request(make_ctx(headers=[basic("pwc_shop", "x")]))) == (
        "invalid_credentials"
    )
    world.clock.advance(3601)  # the grace period is over, memo or not
    refused = await pipeline.on_request(make_ctx(headers=[basic("pwc_shop", "old-secret")]))
    assert error(refused) == "invalid_credentials"
    assert await pipeline.on_request(make_ctx(headers=[basic("pwc_shop", "new-secret")])) is None


async def test_a_revoked_version_is_refused(world: World) -> None:
    world.consumers = [client(revoked_old=True)]
    pipeline = world.one("basic_auth")
    refused = await pipeline.on_request(make_ctx(headers=[basic("pwc_shop", "old-secret")]))
    assert error(refused) == "invalid_credentials"


async def test_client_credentials_accepts_any_live_version(world: World) -> None:
    world.consumers = [client()]
    pipeline = world.one("token_endpoint", TOKEN_CONFIG)

    async def token(secret: str, *, header: bool = False) -> Any:
        fields = {"grant_type": "client_credentials"}
        if header:
            ctx = make_ctx(**form(**fields))
            ctx.request.headers.set(*basic("pwc_shop", secret))
            return await pipeline.on_request(ctx)
        return await pipeline.on_request(
            make_ctx(**form(**fields, client_id="pwc_shop", client_secret=secret))
        )

    for secret in ("old-secret", "new-secret"):
        for header in (False, True):
            reply = await token(secret, header=header)
            assert reply is not None
            assert reply.status == 200, reply.body
            assert json.loads(reply.body)["access_token"]
    assert error(await token("wrong")) == "invalid_client"
    assert error(await token("")) == "invalid_client"
    world.clock.advance(3601)
    assert error(await token("old-secret")) == "invalid_client"
    assert error(await token("old-secret", header=True)) == "invalid_client"
    reply = await token("new-secret")
    assert reply is not None
    assert reply.status == 200


async def test_the_token_endpoint_checks_the_ip_allow_list(world: World) -> None:
    world.consumers = [client().model_copy(update={"ip_allow": ["10.0.0.0/8"]})]
    pipeline = world.one("token_endpoint", TOKEN_CONFIG)
    fields = form(grant_type="client_credentials", client_id="pwc_shop", client_secret="new-secret")
    outside = await pipeline.on_request(make_ctx(**fields, client_ip="192.0.2.1"))
    assert outside is not None
    assert (outside.status, error(outside)) == (403, "address_not_allowed")
    inside = await pipeline.on_request(make_ctx(**fields, client_ip="10.0.0.1"))
    assert inside is not None
    assert inside.status == 200

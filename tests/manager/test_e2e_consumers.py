"""Consumer attributes and API clients through a real manager and a real worker, over real sockets:
the IP allow list enforced from 127.0.0.1 against 127.0.0.2 (and X-Forwarded-For believed only
from the worker's trusted proxy, 127.0.0.3), metadata in a policy condition, and a rotated client
secret accepted during its grace period and refused after it, by basic auth and by the token
endpoint's client_credentials grant."""

from __future__ import annotations

import base64
import socket
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Platform, platform  # noqa: F401 - the fixture
from tests.manager.test_e2e_workers import echo_api
from tests.support.processes import wait_until
from tests.support.servers import missing_capability

TRUSTED_PROXY = "127.0.0.3"
SIGNING = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def sources() -> None:
    """127.0.0.2 and 127.0.0.3 must be usable as source addresses."""
    for address in ("127.0.0.2", TRUSTED_PROXY):
        try:
            with socket.socket() as sock:
                sock.bind((address, 0))
        except OSError:
            missing_capability(f"{address} is not usable as a source address here")
    return


def call(
    port: int,
    path: str,
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10.0, trust_env=False) as client:
        url = f"http://127.0.0.1:{port}{path}"
        if form is not None:
            return client.post(url, data=form, headers=headers)
        return client.get(url, headers=headers)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_ip_allow_list_metadata_and_client_secret_grace(
    platform: Platform,  # noqa: F811
    sources: None,
) -> None:
    _, port = platform.start_worker("w1", extra=["--trusted-proxy", f"{TRUSTED_PROXY}/32"])
    orders: dict[str, Any] = echo_api(platform, "orders") | {
        "policies": {
            "request": [
                {"name": "auth", "type": "basic_auth", "config": {"cache_seconds": 600}},
                {
                    "name": "gold",
                    "type": "mock_response",
                    "config": {"status": 200, "body": "gold lane"},
                    "condition": {
                        "variable": "consumer.metadata.tier",
                        "operator": "EQ",
                        "value": "gold",
                    },
                },
            ]
        }
    }
    token_api: dict[str, Any] = echo_api(platform, "auth") | {
        "policies": {
            "request": [
                {
                    "name": "token",
                    "type": "token_endpoint",
                    "config": {"secret": SIGNING, "issuer": "https://gw.test"},
                }
            ]
        }
    }
    for api in (orders, token_api):
        platform.call("POST", "/projects/default/apis", api, expect=201)
    platform.deploy("orders")
    platform.deploy("auth")
    consumer = {
        "name": "shop",
        "grants": [{"api": "orders"}, {"api": "auth"}],
        "ip_allow": ["127.0.0.1/32", "10.0.0.0/8"],
        "metadata": {"tier": "silver"},
    }
    platform.call("POST", "/consumers", consumer, expect=201)
    client = platform.call("POST", "/consumers/shop/credentials", {"kind": "client"}, expect=201)
    old = client["secret"]
    creds = basic(client["client_id"], old)

    # the allow list, over real sockets
    # (a change reaches the worker by push or by its next pull: waited for, never timed)
    wait_until(lambda: call(port, "/orders/echo", headers=creds).status_code == 200, "w1 serves")
    refused = call(port, "/orders/echo", headers=creds, source="127.0.0.2")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "address_not_allowed"
    assert refused.json()["rule"] == "consumers/shop/ip_allow"
    forged = call(
        port, "/orders/echo", headers=creds | {"X-Forwarded-For": "10.1.2.3"}, source="127.0.0.2"
    )
    assert forged.status_code == 403  # X-Forwarded-For from an untrusted peer is not believed
    relayed = call(
        port, "/orders/echo", headers=creds | {"X-Forwarded-For": "10.1.2.3"}, source=TRUSTED_PROXY
    )
    assert relayed.status_code == 200, relayed.text
    outside = call(
        port, "/orders/echo", headers=creds | {"X-Forwarded-For": "192.0.2.1"}, source=TRUSTED_PROXY
    )
    assert outside.status_code == 403
    assert b"gold lane" not in call(port, "/orders/echo", headers=creds).content

    # metadata reaches the worker with the next revision and drives the condition
    platform.call("PUT", "/consumers/shop", consumer | {"metadata": {"tier": "gold"}}, expect=200)
    wait_until(lambda: call(port, "/orders/echo", headers=creds).text == "gold lane", "gold")

    # a rotated secret: both versions work during the grace period, then only the new one
    path = f"/consumers/shop/credentials/{client['id']}"
    rotated = platform.call("POST", f"{path}/rotate", {"grace_seconds": 3600}, expect=201)
    new = rotated["secret"]
    token_form = {"grant_type": "client_credentials", "client_id": client["client_id"]}

    def token(secret: str) -> int:
        return call(port, "/auth/token", form=token_form | {"client_secret": secret}).status_code

    def orders_with(secret: str) -> int:
        return call(port, "/orders/echo", headers=basic(client["client_id"], secret)).status_code

    wait_until(lambda: orders_with(new) == 200, "the new secret accepted")
    assert (orders_with(old), orders_with(new)) == (200, 200)
    assert (token(old), token(new)) == (200, 200)
    # the next rotation shortens every older version's grace to 2 seconds
    third = platform.call("POST", f"{path}/rotate", {"grace_seconds": 2}, expect=201)["secret"]
    wait_until(lambda: orders_with(old) == 401, "the old secret refused after its grace period")
    wait_until(lambda: token(new) == 401, "the second secret refused after its grace period")
    assert (token(old), orders_with(new)) == (401, 401)
    wait_until(lambda: token(third) == 200, "the third secret accepted")
    assert orders_with(third) == 200
    listed = platform.call("GET", f"{path}/secrets")["items"]
    assert [(v["version"], v["active"]) for v in listed] == [(1, False), (2, False), (3, True)]

    # a revoked version is refused at once
    fourth = platform.call("POST", f"{path}/rotate", {"grace_seconds": 3600}, expect=201)
    wait_until(lambda: token(fourth["secret"]) == 200, "the fourth secret accepted")
    assert token(third) == 200  # in its grace period
    platform.call("DELETE", f"{path}/secrets/3", expect=200)
    wait_until(lambda: token(third) == 401, "the revoked secret refused")
    assert orders_with(third) == 401
    assert (token(fourth["secret"]), orders_with(fourth["secret"])) == (200, 200)

"""HTTP Digest through a real manager and worker, with real clients: requests' HTTPDigestAuth
(SHA-256) and curl --digest (SHA-256, userhash), and hostile requests on a real socket."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import httpx
import requests
from requests.auth import HTTPDigestAuth

from portway.policies.digest_auth import digest_response, make_ha1, parse_digest
from tests.e2e.conftest import Platform
from tests.support.processes import wait_until
from tests.support.servers import missing_capability

PASSWORD = "a long digest password"


def digest_api(plat: Platform, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "orders",
        "base_path": "/orders",
        "backends": [{"url": plat.backend_url}],
        "policies": {
            "request": [{"name": "digest", "type": "digest_auth", "config": config}],
        },
    }


def setup(platform: Platform, config: dict[str, Any]) -> str:
    _, port = platform.start_worker("w1")
    platform.call("POST", "/projects/default/apis", digest_api(platform, config), expect=201)
    platform.call("POST", "/consumers", {"name": "shop"}, expect=201)
    platform.call("PUT", "/consumers/shop/grants/default/orders", {}, expect=200)
    body = {"kind": "digest", "username": "shop-user", "password": PASSWORD, "realm": "orders"}
    platform.call("POST", "/consumers/shop/credentials", body, expect=201)
    deployed = platform.deploy("orders")
    assert deployed["results"][0]["success"], deployed
    return f"http://127.0.0.1:{port}"


def test_digest_with_requests_and_hostile_variants(platform: Platform) -> None:
    base = setup(platform, {"realm": "orders"})
    url = f"{base}/orders/items?page=2"
    session = requests.Session()
    session.trust_env = False

    def authenticated() -> bool:
        response = session.get(url, auth=HTTPDigestAuth("shop-user", PASSWORD), timeout=10)
        return response.status_code == 200

    wait_until(authenticated, "the digest credential reaches the worker")
    ok = session.get(url, auth=HTTPDigestAuth("shop-user", PASSWORD), timeout=10)
    assert ok.status_code == 200, ok.text
    forwarded = ok.json()
    assert forwarded["headers"]["x-consumer"] == "shop"
    assert "authorization" not in forwarded["headers"]
    wrong = session.get(url, auth=HTTPDigestAuth("shop-user", "not the password"), timeout=10)
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_credentials"

    with httpx.Client(trust_env=False, timeout=10.0) as client:
        first = client.get(url)
        assert first.status_code == 401
        assert first.json()["correlation_id"] == first.headers["X-Correlation-ID"]
        challenge = parse_digest(first.headers["WWW-Authenticate"])
        assert challenge is not None
        assert (challenge["algorithm"], challenge["realm"]) == ("SHA-256", "orders")

        def header(uri: str, nc: str, **change: str) -> dict[str, str]:
            assert challenge is not None
            nonce = change.pop("nonce", challenge["nonce"])
            realm = change.pop("realm", "orders")
            ha1 = make_ha1("SHA-256", "shop-user", realm, PASSWORD)
            response = digest_response("SHA-256", ha1, "GET", uri, nonce, nc, "c1", "auth")
            fields = {
                "username": "shop-user",
                "realm": realm,
                "nonce": nonce,
                "uri": uri,
                "response": response,
                "cnonce": "c1",
                **change,
            }
            quoted = ", ".join(f'{k}="{v}"' for k, v in fields.items())
            return {"Authorization": f"Digest {quoted}, algorithm=SHA-256, qop=auth, nc={nc}"}

        good = header("/orders/items?page=2", "00000001")
        assert client.get(url, headers=good).status_code == 200
        replayed = client.get(url, headers=good)
        assert (replayed.status_code, replayed.json()["error"]) == (401, "replayed_request")
        # a digest made for another path cannot be carried to this one
        moved = client.get(f"{base}/orders/admin", headers=header("/orders/items", "00000002"))
        assert (moved.status_code, moved.json()["message"]) == (
            400,
            "digest parameter uri does not match the request target",
        )
        nonce = challenge["nonce"]
        tampered = nonce[:-2] + ("AA" if nonce[-2:] != "AA" else "BB")
        forged = client.get(
            url,
            headers=header("/orders/items?page=2", "00000003", nonce=tampered, username="nobody"),
        )
        assert (forged.status_code, forged.json()["error"]) == (401, "invalid_credentials")
        # a changed nonce is never accepted, even with the password: the client gets a new one
        changed = client.get(
            url, headers=header("/orders/items?page=2", "00000005", nonce=tampered)
        )
        assert (changed.status_code, changed.json()["error"]) == (401, "stale_nonce")
        other_realm = client.get(
            url, headers=header("/orders/items?page=2", "00000004", realm="portway")
        )
        assert other_realm.status_code == 401
        missing = client.get(url, headers={"Authorization": 'Digest username="shop-user"'})
        assert (missing.status_code, missing.json()["message"]) == (
            400,
            "digest parameter realm is missing",
        )
        huge = client.get(url, headers={"Authorization": 'Digest username="' + "u" * 6000 + '"'})
        assert huge.status_code in (400, 431)


def test_digest_with_curl_sha256_and_userhash(platform: Platform) -> None:
    curl = shutil.which("curl")
    if curl is None:
        missing_capability("curl is not installed")
    base = setup(platform, {"realm": "orders", "algorithms": ["SHA-256"], "userhash": True})
    url = f"{base}/orders/items"

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                curl or "curl",
                "-sS",
                "--noproxy",
                "*",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--digest",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    wait_until(
        lambda: run("-u", f"shop-user:{PASSWORD}").stdout == "200",
        "curl authenticates with digest (SHA-256, userhash offered)",
    )
    verbose = run("-v", "-u", f"shop-user:{PASSWORD}")
    sent = [line for line in verbose.stderr.splitlines() if line.startswith("> Authorization")]
    assert sent, verbose.stderr
    assert "algorithm=SHA-256" in sent[-1]
    assert "userhash=true" in sent[-1]  # curl sent H(username:realm), not the name
    assert "shop-user" not in sent[-1]
    assert run("-u", "shop-user:wrong password").stdout == "401"
    assert run("-u", f"nobody:{PASSWORD}").stdout == "401"

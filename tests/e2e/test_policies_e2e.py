"""Policies configured through the management API, deployed, and enforced by a real worker."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import Platform
from tests.support.processes import wait_until

INTERVAL = 3600  # one window for the whole test: the count cannot reset underneath it


def orders_api(plat: Platform) -> dict[str, Any]:
    return {
        "name": "orders",
        "base_path": "/orders",
        "backends": [{"url": plat.backend_url}],
        "policies": {
            "request": [
                {"name": "key", "type": "api_key", "config": {"key_name": "X-Api-Key"}},
                {
                    "name": "limit",
                    "type": "throttling",
                    "config": {
                        "limit": 3,
                        "interval_seconds": INTERVAL,
                        "identity": "consumer",
                        "headers": True,
                    },
                },
            ]
        },
    }


def test_api_key_and_throttling_end_to_end(platform: Platform) -> None:
    _, port = platform.start_worker("w1")
    platform.call("POST", "/projects/default/apis", orders_api(platform), expect=201)
    platform.call("POST", "/consumers", {"name": "shop"}, expect=201)
    platform.call("PUT", "/consumers/shop/grants/default/orders", {}, expect=200)
    created = platform.call("POST", "/consumers/shop/credentials", {"kind": "api_key"}, expect=201)
    key = created["secret"]
    deployed = platform.deploy("orders")
    assert deployed["results"][0]["success"], deployed

    url = f"http://127.0.0.1:{port}/orders/items"
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        wait_until(
            lambda: client.get(url, headers={"X-Api-Key": key}).status_code in (200, 429),
            "the consumer's key reaches the worker",
        )
        missing = client.get(url)
        assert missing.status_code == 401
        assert missing.json()["correlation_id"] == missing.headers["X-Correlation-ID"]
        forged = client.get(url, headers={"X-Api-Key": "pk_" + "x" * 40})
        assert forged.status_code == 401

        statuses = [client.get(url, headers={"X-Api-Key": key}) for _ in range(5)]
        # the wait above used one request of the window already
        assert [r.status_code for r in statuses] == [200, 200, 429, 429, 429]
        assert statuses[0].headers["X-RateLimit-Limit"] == "3"
        assert "Retry-After" in statuses[-1].headers
        forwarded = statuses[0].json()
        assert forwarded["path"] == "/items"
        assert "x-api-key" not in forwarded["headers"]  # stripped before the backend
        assert forwarded["headers"]["x-consumer"] == "shop"
        spoofed = client.get(url, headers={"X-Api-Key": key, "X-Consumer": "admin"})
        assert spoofed.status_code == 429  # still counted as shop, not as a forged identity

    # every request reached the traffic log, and the manager's analytics read it back
    def logged() -> dict[str, Any]:
        result: dict[str, Any] = platform.call("GET", "/analytics?environment=dev&api=orders")
        return result

    wait_until(lambda: logged()["by_status"].get("429", 0) >= 4, "traffic records")
    stats = logged()
    assert stats["by_status"]["401"] == 2
    assert stats["by_status"]["200"] >= 2
    assert {"consumer": "shop", "count": stats["total"] - 2} in stats["top_consumers"]


def test_an_invalid_policy_config_is_refused_with_its_path(platform: Platform) -> None:
    api = orders_api(platform)
    api["policies"]["request"][1]["config"]["limit"] = -1
    with platform.api() as client:
        response = client.post("/projects/default/apis", json=api)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert "policies.request[1].config.limit" in problem["message"]
    assert platform.call("GET", "/projects/default/apis")["items"] == []

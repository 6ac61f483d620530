"""Two worker processes share throttling, quota and cached responses through Redis and Hazelcast."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Platform
from tests.stores.conftest import hazelcast_url, redis_url
from tests.support.servers import Server

LIMIT = 12
QUOTA = 30
REQUESTS = 40  # per API, spread over both workers


def apis(plat: Platform) -> list[dict[str, Any]]:
    backend = [{"url": plat.backend_url}]
    throttle = {"limit": LIMIT, "interval_seconds": 3600, "identity": "client_ip"}
    quota = {"limit": QUOTA, "period": "day", "identity": "client_ip", "time_zone": "UTC"}
    cache = {"ttl_seconds": 3600, "storage": "distributed"}
    return [
        {
            "name": "throttled",
            "base_path": "/throttled",
            "backends": backend,
            "policies": {"request": [{"name": "t", "type": "throttling", "config": throttle}]},
        },
        {
            "name": "quota",
            "base_path": "/quota",
            "backends": backend,
            "policies": {"request": [{"name": "q", "type": "quota", "config": quota}]},
        },
        {
            "name": "cached",
            "base_path": "/cached",
            "backends": backend,
            "policies": {"request": [{"name": "c", "type": "response_cache", "config": cache}]},
        },
    ]


def hammer(ports: list[int], path: str) -> Counter[int]:
    """REQUESTS requests from 4 threads, alternating between the workers."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def run(offset: int) -> None:
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            for index in range(offset, REQUESTS, 4):
                port = ports[index % len(ports)]
                status = client.get(f"http://127.0.0.1:{port}{path}").status_code
                with lock:
                    statuses[status] += 1

    threads = [threading.Thread(target=run, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.servers
@pytest.mark.parametrize("engine", ["redis", "hazelcast"])
def test_two_workers_share_limits_and_cache_exactly(
    platform: Platform, engine: str, request: pytest.FixtureRequest
) -> None:
    server: Server = request.getfixturevalue(engine)
    url = redis_url(server) if engine == "redis" else hazelcast_url(server)
    _, port_a = platform.start_worker("wa", cache_url=url)
    _, port_b = platform.start_worker("wb", cache_url=url)
    for api in apis(platform):
        platform.call("POST", "/projects/default/apis", api, expect=201)
    result = platform.call(
        "POST",
        "/environments/dev/deployments/batch",
        {"items": [{"api": a["name"]} for a in apis(platform)], "note": "shared cache"},
        expect=201,
    )
    assert all(r["success"] for r in result["results"]), result

    assert hammer([port_a, port_b], "/throttled/x") == Counter({200: LIMIT, 429: REQUESTS - LIMIT})
    assert hammer([port_a, port_b], "/quota/x") == Counter({200: QUOTA, 429: REQUESTS - QUOTA})

    with httpx.Client(trust_env=False, timeout=10.0) as client:
        first = client.get(f"http://127.0.0.1:{port_a}/cached/item", headers={"X-Probe": "a"})
        second = client.get(f"http://127.0.0.1:{port_b}/cached/item", headers={"X-Probe": "b"})
    assert first.headers["X-Cache"] == "MISS"
    assert second.headers["X-Cache"] == "HIT"  # stored by worker A, served by worker B
    assert second.json()["headers"]["x-probe"] == "a"

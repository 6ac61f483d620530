"""A request leaves no reference cycle behind: everything it built is freed by reference counting
when its response is sent, so the cyclic collector has nothing per request to find.

Each request that once made a cycle (the policy views holding the pipeline call's bound body
readers; a traffic record's finish callback holding its response) cost the collector's passes
about a tenth of a policy chain's time. The test runs real requests through a real worker (api_key,
request and response body policies, the traffic log on SQLite) with the collector saving what it
finds, and names any of the gateway's per-request objects among it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.policies.helpers import consumer
from tests.worker.support import api, backends, revision
from tests.worker.traffic_support import logged_gateway

KEY = "k-" + "5" * 30
REQUESTS = 40

POLICIES = {
    "request": [
        {"name": "key", "type": "api_key"},
        {
            "name": "mask-card",
            "type": "redact",
            "config": {"json_paths": ["$.card"], "keep_last": 4},
        },
    ],
    "response": [
        {
            "name": "summary",
            "type": "json_transform",
            "config": {"expression": "{method: method}"},
        }
    ],
}

# the modules whose objects live for one request
PER_REQUEST_MODULES = ("portway.worker", "portway.policies", "portway.http._messages")


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """Cyclic garbage found from here on, kept for inspection instead of freed."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list[object] = []
    try:
        yield found
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def gateway_objects(garbage: list[object]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in garbage:
        kind = type(obj)
        if kind.__module__.startswith(PER_REQUEST_MODULES):
            name = f"{kind.__module__}.{kind.__qualname__}"
            counts[name] = counts.get(name, 0) + 1
    return counts


async def test_requests_through_a_logged_chain_leave_no_cycles(
    tmp_path: Path, saved_garbage: list[object]
) -> None:
    async with backends("live") as (live,):
        rev = revision(api("orders", "/orders", [live.url], policies=POLICIES)).model_copy(
            update={"consumers": [consumer("shop", api_key=KEY)]}
        )
        async with logged_gateway(tmp_path, rev, live) as setup:
            url = setup.gw.url + "/orders/1"
            async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
                for n in range(REQUESTS):
                    answer = await client.post(
                        url, json={"card": "4111"}, headers={"X-Api-Key": KEY}
                    )
                    assert answer.status_code == 200, answer.text
                    assert answer.json() == {"method": "POST"}
                    denied = await client.get(url, headers={"X-Api-Key": f"wrong-{n}"})
                    assert denied.status_code == 401
            assert setup.stores.shipper is not None
            assert await setup.stores.shipper.flush(10.0)
            assert setup.stores.shipper.stats().delivered >= 2 * REQUESTS
            gc.collect()
            saved_garbage.extend(gc.garbage)
    leftovers = gateway_objects(saved_garbage)
    # 40 allowed and 40 denied requests: a per-request cycle leaves one of each of its objects per
    # request (76 each before the fix); a connection's own cycles leave a few
    assert all(count < REQUESTS for count in leftovers.values()), leftovers

"""Behind a trusted load balancer the worker's idea of the client is the balancer's
``X-Forwarded-For`` (nearest untrusted hop): IP filters and the traffic log see the real client;
a client that is not a trusted proxy cannot claim another address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from portway.stores.traffic import TrafficRecord
from portway.worker.process_stores import open_worker_stores
from portway.worker.settings import WorkerSettings
from tests.worker.support import api, backends, gateway, revision

DENY = {"request": [{"name": "deny", "type": "ip_filter", "config": {"deny": ["203.0.113.0/24"]}}]}


async def statuses(trusted: list[str], tmp_path: Path) -> tuple[dict[str, int], list[str]]:
    settings = WorkerSettings(host="127.0.0.1", port=0, processes=1, trusted_proxies=trusted)
    stores = await open_worker_stores("test", "local://", None, tmp_path / "spool")
    records: list[TrafficRecord] = []
    try:
        async with backends("b") as (b,):
            rev = revision(api("svc", "/", [b.url], policies=DENY))
            async with gateway(rev, settings=settings, pipelines=stores.pipelines) as gw:
                gw.handler.traffic = records.append
                out: dict[str, int] = {}
                cases: dict[str, dict[str, Any]] = {
                    "none": {},
                    "banned": {"X-Forwarded-For": "203.0.113.9"},
                    "banned, then spoofed": {"X-Forwarded-For": "203.0.113.9, 198.51.100.1"},
                    "spoofed, then banned": {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"},
                    "two lines": {"X-Forwarded-For": ["198.51.100.1", "203.0.113.9"]},
                    "with port": {"X-Forwarded-For": "203.0.113.9:5000"},
                    "garbage": {"X-Forwarded-For": "not-an-address"},
                }
                async with httpx.AsyncClient() as client:
                    for name, headers in cases.items():
                        pairs = [
                            (k, v)
                            for k, vs in headers.items()
                            for v in (vs if isinstance(vs, list) else [vs])
                        ]
                        r = await client.get(f"{gw.url}/x", headers=pairs)
                        out[name] = r.status_code
    finally:
        await stores.close()
    return out, [str(r["client_ip"]) for r in records]


async def test_ip_filter_sees_the_client_behind_a_trusted_balancer(tmp_path: Path) -> None:
    seen, clients = await statuses(["127.0.0.1/32"], tmp_path)
    assert seen == {
        "none": 200,
        "banned": 403,
        "banned, then spoofed": 200,  # the balancer appended 198.51.100.1: that is the client
        "spoofed, then banned": 403,  # a client cannot hide behind a made-up left part
        "two lines": 403,
        "with port": 403,
        "garbage": 200,  # a malformed entry: the peer (the balancer) is the client
    }
    assert clients[:3] == ["127.0.0.1", "203.0.113.9", "198.51.100.1"]


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    seen, clients = await statuses([], tmp_path)
    assert set(seen.values()) == {200}
    assert set(clients) == {"127.0.0.1"}

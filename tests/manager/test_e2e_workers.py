"""The manager with real ``portway worker`` processes: batch deploys, consumer changes reaching the
workers, the manager's probes, a stopped worker shown down (never with stale data) and converging by
pull when it comes back."""

from __future__ import annotations

import signal
from typing import Any

import httpx

from tests.e2e.conftest import Platform, platform  # noqa: F401 - the fixture
from tests.support.processes import wait_until


def echo_api(plat: Platform, name: str) -> dict[str, Any]:
    return {"name": name, "base_path": f"/{name}", "backends": [{"url": plat.backend_url}]}


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10.0, trust_env=False)


def row(plat: Platform, worker_id: str) -> dict[str, Any]:
    found: dict[str, Any] = plat.call("GET", f"/workers/{worker_id}")
    return found


def test_a_batch_reaches_both_workers_and_consumers_follow(platform: Platform) -> None:  # noqa: F811
    _, port1 = platform.start_worker("w1")
    _, port2 = platform.start_worker("w2")
    for name in ("a", "b", "c"):
        platform.call("POST", "/projects/default/apis", echo_api(platform, name), expect=201)
    items = [{"api": name} for name in ("a", "b", "c")]
    batch = platform.call(
        "POST", "/environments/dev/deployments/batch", {"items": items}, expect=201
    )
    assert sorted((r["worker"], r["success"]) for r in batch["results"]) == [
        ("w1", True),
        ("w2", True),
    ]
    for port in (port1, port2):
        for name in ("a", "b", "c"):
            assert get(port, f"/{name}/echo").status_code == 200

    with platform.api() as client:
        created = client.post("/consumers", json={"name": "app", "grants": [{"api": "a"}]})
    assert created.status_code == 201, created.text
    assert created.headers["X-Portway-Published"] == f"dev@{batch['env_revision'] + 1}"
    [history] = platform.call("GET", "/environments/dev/deployments?limit=1")["items"]
    assert history["action"] == "consumers"
    assert all(r["success"] for r in history["results"])
    for worker_id in ("w1", "w2"):
        wait_until(
            lambda wid=worker_id: (
                row(platform, wid)["served_revision"] == batch["env_revision"] + 1
            ),
            f"{worker_id} serving the consumer revision",
        )


def test_probes_and_a_stopped_worker_is_down_then_converges(platform: Platform) -> None:  # noqa: F811
    worker, port = platform.start_worker("w1")
    platform.call("POST", "/projects/default/apis", echo_api(platform, "a"), expect=201)
    first = platform.deploy("a")
    wait_until(lambda: (row(platform, "w1")["probe"] or {}).get("ok") is True, "a successful probe")
    assert row(platform, "w1")["healthy"] is True

    worker.proc.send_signal(signal.SIGSTOP)  # alive but silent: no reports, no answers
    try:
        wait_until(lambda: row(platform, "w1")["state"] == "down", "w1 down")
        down = row(platform, "w1")
        assert down["served_revision"] is None
        assert down["healthy"] is False
        assert down["in_sync"] is False
        assert down["last_served_revision"] == first["env_revision"]
        platform.call("POST", "/projects/default/apis", echo_api(platform, "b"), expect=201)
        missed = platform.deploy("b")
        [result] = missed["results"]
        assert result["success"] is False
        assert "down" in result["error"]
    finally:
        worker.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: get(port, "/b/echo").status_code == 200, "convergence by pull", proc=worker)
    wait_until(lambda: row(platform, "w1")["in_sync"] is True, "w1 back in sync")
    assert row(platform, "w1")["served_revision"] == missed["env_revision"]


def changed(plat: Platform, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    """A consumer change, once worker w1 serves the revision it published (by the manager's push,
    or by the worker's own pull when the push missed it: a loaded CI machine can delay a status
    report enough for the registry to skip the push)."""
    with plat.api() as client:
        response = client.request(method, path, json=body)
    assert response.status_code == expect, response.text
    published = response.headers["X-Portway-Published"]  # "dev@12"
    revision = int(published.rpartition("@")[2])
    wait_until(
        lambda: (row(plat, "w1").get("last_served_revision") or 0) >= revision,
        f"w1 serving {published}",
    )
    return response.json() if response.content else None


def test_credential_changes_take_effect_at_the_worker_without_a_redeploy(
    platform: Platform,  # noqa: F811
) -> None:
    _, port = platform.start_worker("w1")
    api = echo_api(platform, "orders") | {
        "policies": {
            "request": [
                {"name": "key", "type": "api_key"},
                {
                    "name": "limit",
                    "type": "throttling",
                    "config": {"limit": 1000, "interval_seconds": 3600, "identity": "consumer"},
                },
            ]
        }
    }
    platform.call("POST", "/projects/default/apis", api, expect=201)
    platform.deploy("orders")  # the only deploy of this test
    changed(platform, "POST", "/consumers", {"name": "shop", "grants": [{"api": "orders"}]}, 201)
    key = changed(platform, "POST", "/consumers/shop/credentials", {}, 201)
    url = f"http://127.0.0.1:{port}/orders/echo"

    def status(value: str) -> int:
        return httpx.get(
            url, headers={"X-Api-Key": value}, timeout=10.0, trust_env=False
        ).status_code

    assert status(key["secret"]) == 200
    credential = f"/consumers/shop/credentials/{key['id']}"
    changed(platform, "PATCH", credential, {"disabled": True})
    assert status(key["secret"]) == 401
    changed(platform, "PATCH", credential, {"disabled": False})
    assert status(key["secret"]) == 200

    rotated = changed(platform, "POST", credential + "/rotate", {"grace_seconds": 3600}, 201)
    assert status(key["secret"]) == 200  # the old key lives through the grace period
    assert status(rotated["secret"]) == 200
    changed(
        platform,
        "POST",
        f"/consumers/shop/credentials/{rotated['id']}/rotate",
        {"grace_seconds": 0},
        201,
    )
    assert status(rotated["secret"]) == 401  # no grace: expired at once

    listed = {c["id"]: c for c in platform.call("GET", "/consumers/shop/credentials")}
    assert listed[key["id"]]["active"] is True  # still in its grace period
    assert listed[rotated["id"]]["active"] is False
    [newest] = [c for c in listed.values() if c["rotated_from"] == rotated["id"]]
    assert newest["active"] is True

    changed(
        platform,
        "PUT",
        "/consumers/shop/grants/default/orders",
        {"limits": {"dev": {"throttling": {"limit": 2, "interval": 3600}}}},
    )
    fresh = changed(platform, "POST", "/consumers/shop/credentials", {}, 201)["secret"]
    assert [status(fresh) for _ in range(3)] == [200, 200, 429]  # the grant's own limit
    changed(platform, "DELETE", "/consumers/shop/grants/default/orders", None, 204)
    assert status(fresh) == 403

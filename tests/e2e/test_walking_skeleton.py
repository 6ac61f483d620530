"""The walking skeleton end to end: real manager, real workers, real echo backend, real sockets."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from portway.cluster.signing import sign
from tests.e2e.conftest import Platform
from tests.support.processes import free_port, wait_until


def demo_api(plat: Platform, **extra: Any) -> dict[str, Any]:
    return {"name": "demo", "base_path": "/demo", "backends": [{"url": plat.backend_url}]} | extra


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10.0, trust_env=False)


def test_deploy_then_the_worker_serves_each_new_revision(platform: Platform) -> None:
    _, port = platform.start_worker("w1")
    assert get(port, "/_portway/health").status_code == 503  # nothing deployed yet
    assert get(port, "/_portway/ready").status_code == 503
    platform.call("POST", "/projects/default/apis", demo_api(platform), expect=201)
    deployment = platform.deploy("demo", note="first")
    assert [(r["worker"], r["success"]) for r in deployment["results"]] == [("w1", True)]

    echoed = get(port, "/demo/echo?x=1")
    assert echoed.status_code == 200
    assert echoed.json()["path"] == "/echo"
    assert echoed.json()["query"] == "x=1"
    assert get(port, "/_portway/health").text == "OK\n"
    assert get(port, "/_portway/ready").text == "OK\n"

    platform.call("PUT", "/projects/default/apis/demo", demo_api(platform, base_path="/v2"))
    second = platform.deploy("demo", note="move to /v2")
    assert second["env_revision"] == deployment["env_revision"] + 1
    assert second["results"][0]["served_revision"] == second["env_revision"]
    assert get(port, "/v2/echo").json()["path"] == "/echo"
    assert get(port, "/demo/echo").status_code == 404

    [worker] = platform.call("GET", "/workers")
    assert worker["served_revision"] == worker["desired_revision"] == second["env_revision"]
    assert worker["in_sync"] is True


def test_redeploy_while_traffic_flows_loses_no_request(platform: Platform) -> None:
    _, port = platform.start_worker("w1")
    platform.call("POST", "/projects/default/apis", demo_api(platform), expect=201)
    platform.deploy("demo")
    statuses: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            while not stop.is_set():
                try:
                    statuses.append(client.get("/demo/echo", timeout=10.0).status_code)
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for index in range(6):
            platform.call(
                "PUT", "/projects/default/apis/demo", demo_api(platform, description=f"r{index}")
            )
            result = platform.deploy("demo", note=f"redeploy {index}")
            assert result["results"][0]["success"], result
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(statuses) > 0
    assert set(statuses) == {200}


def test_manager_down_the_worker_restarts_from_disk(platform: Platform) -> None:
    worker, port = platform.start_worker("w1")
    platform.call("POST", "/projects/default/apis", demo_api(platform), expect=201)
    platform.deploy("demo")
    assert get(port, "/demo/echo").status_code == 200

    manager = next(p for p in platform.processes if p.name.startswith("manager"))
    manager.stop()
    worker.stop()
    restarted, _ = platform.start_worker("w1", port=port, wait=False)
    wait_until(
        lambda: get(port, "/_portway/health").status_code == 200, "cached revision", proc=restarted
    )
    response = get(port, "/demo/echo?from=disk")
    assert response.status_code == 200
    assert response.json()["query"] == "from=disk"


def test_unknown_environment_exits_with_a_clear_error(platform: Platform) -> None:
    worker, _ = platform.start_worker("lost", environment="nope", wait=False)
    code = worker.wait(60)
    assert code != 0
    assert "environment 'nope' does not exist" in worker.output()
    assert platform.worker_state("lost") is None


def test_unauthenticated_cluster_calls_get_401_and_change_nothing(platform: Platform) -> None:
    _, port = platform.start_worker("w1")
    platform.call("POST", "/projects/default/apis", demo_api(platform), expect=201)
    first = platform.deploy("demo")
    base = f"http://127.0.0.1:{port}/_portway"
    body = b'{"environment": "dev", "revision": 999}'

    unsigned = httpx.post(f"{base}/deploy", content=body, trust_env=False)
    assert unsigned.status_code == 401
    assert unsigned.json()["error"] == "unauthenticated"
    forged = httpx.post(
        f"{base}/deploy",
        content=body,
        trust_env=False,
        headers=sign(b"not-the-cluster-secret" * 3, "POST", "/_portway/deploy", body),
    )
    assert forged.status_code == 401
    assert httpx.get(f"{base}/status", trust_env=False).status_code == 401

    secret = platform.secret_file.read_text().strip().encode()
    status = httpx.get(
        f"{base}/status", trust_env=False, headers=sign(secret, "GET", "/_portway/status")
    )
    assert status.status_code == 200
    assert status.json()["served_revision"] == first["env_revision"]

    manager_unsigned = httpx.get(
        f"{platform.manager_url}/_portway/cluster/environments/dev/revisions/1", trust_env=False
    )
    assert manager_unsigned.status_code == 401


def test_a_missed_push_converges_by_polling(platform: Platform) -> None:
    # the worker advertises an address nobody listens on: every push fails
    dead = f"http://127.0.0.1:{free_port()}"
    worker, port = platform.start_worker("w1", advertise_url=dead)
    platform.call("POST", "/projects/default/apis", demo_api(platform), expect=201)
    deployment = platform.deploy("demo")
    [result] = deployment["results"]
    assert result["worker"] == "w1"
    assert result["success"] is False
    assert result["error"]
    wait_until(
        lambda: get(port, "/demo/echo").status_code == 200, "convergence by poll", proc=worker
    )
    wait_until(lambda: platform.call("GET", "/workers")[0]["in_sync"] is True, "registry in sync")

"""Traffic management configured through the management API and served by real workers: a
canary split with a header rule, a sticky cookie one worker sets and another honours, and a
mirror whose counters reach the worker's Prometheus listener."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Platform
from tests.support.processes import Process, free_port, http_ok, portway, wait_until


def echo_backend(platform: Platform, name: str) -> str:
    port = free_port()
    proc = Process(name, portway("demo-backend", "--port", str(port)), platform.root)
    platform.processes.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/"), name, proc=proc)
    return url


def served_by(response: httpx.Response) -> str:
    """The backend that answered: the echo shows the Host the worker sent it."""
    assert response.status_code == 200, response.text
    return str(response.json()["headers"]["host"])


def mirror_count(metrics_port: int, outcome: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5, trust_env=False).text
    found = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "portway_mirror_requests_total"
                and labels.get("api") == "default/shop"
                and labels.get("outcome") == outcome
            ):
                found += sample.value
    return found


def shop_api(stable: str, green: str, shadow: str) -> dict[str, Any]:
    return {
        "name": "shop",
        "base_path": "/shop",
        "backends": [{"url": stable}],
        "traffic": {
            "groups": [{"name": "green", "backends": [{"url": green}]}],
            "weights": {"default": 50, "green": 50},
            "rules": [{"header": "X-Env", "values": ["green"], "group": "green"}],
            "sticky": {"mode": "cookie", "max_age": 3600},
            "mirror": {"url": shadow, "percent": 100},
        },
    }


def test_split_rules_sticky_and_mirror_through_manager_and_workers(platform: Platform) -> None:
    stable = platform.backend_url
    green = echo_backend(platform, "green")
    shadow = echo_backend(platform, "shadow")
    metrics_port = free_port()
    _, port1 = platform.start_worker("w1", extra=["--metrics-port", str(metrics_port)])
    _, port2 = platform.start_worker("w2")
    platform.call("POST", "/projects/default/apis", shop_api(stable, green, shadow), expect=201)
    deployed = platform.deploy("shop")
    assert all(r["success"] for r in deployed["results"]), deployed

    stable_host, green_host = stable.removeprefix("http://"), green.removeprefix("http://")
    w1, w2 = f"http://127.0.0.1:{port1}/shop/items", f"http://127.0.0.1:{port2}/shop/items"
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        for url in (w1, w2):
            wait_until(lambda u=url: client.get(u).status_code == 200, "shop is served")

        # the split, over fresh clients (no cookie): about half each
        got: Counter[str] = Counter()
        for _ in range(400):
            got[served_by(client.get(w1, cookies=None))] += 1
            client.cookies.clear()
        assert set(got) == {stable_host, green_host}
        assert abs(got[green_host] - 200) <= 5 * math.sqrt(400 * 0.25), got

        # the rule wins over the weights and over a cookie pinned elsewhere
        for _ in range(20):
            assert served_by(client.get(w1, headers={"X-Env": "green"})) == green_host
            client.cookies.clear()

        # a cookie set by w1 pins the client on w2 too (one key per environment, no shared state)
        first = client.get(w1)
        home = served_by(first)
        value = first.cookies["portway_sticky"]
        client.cookies.clear()
        pinned = {"Cookie": f"portway_sticky={value}"}
        for url in (w1, w2) * 10:
            answer = client.get(url, headers=pinned)
            assert served_by(answer) == home
            assert "set-cookie" not in answer.headers
        # a forged cookie is replaced, not trusted
        forged = value.split(".")[0] + "." + "A" * 22
        answer = client.get(w2, headers={"Cookie": f"portway_sticky={forged}"})
        assert answer.status_code == 200
        assert answer.cookies["portway_sticky"] != forged

    # every request to w1 was copied to the shadow backend and answered there
    sent_to_w1 = 1 + 400 + 20 + 1 + 10
    wait_until(
        lambda: mirror_count(metrics_port, "mirrored") >= sent_to_w1, "mirror counters on /metrics"
    )
    assert mirror_count(metrics_port, "failed") == 0
    assert mirror_count(metrics_port, "dropped") == 0


def test_unknown_groups_and_zero_weights_are_refused_naming_the_field(platform: Platform) -> None:
    api = shop_api(platform.backend_url, platform.backend_url, platform.backend_url)
    api["traffic"]["rules"][0]["group"] = "blue"
    with platform.api() as client:
        refused = client.post("/projects/default/apis", json=api)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert "traffic.rules[0].group: unknown backend group 'blue'" in problem["message"]
        assert problem["details"][0]["field"] == "body.traffic"
        assert problem["correlation_id"] == refused.headers["X-Correlation-ID"]

        api = shop_api(platform.backend_url, platform.backend_url, platform.backend_url)
        api["traffic"]["weights"] = {"default": 0, "green": 0}
        refused = client.post("/projects/default/apis", json=api)
        assert refused.status_code == 422, refused.text
        assert "traffic.weights: the weights must add up to more than 0" in refused.text

        api["traffic"]["weights"] = {"default": -5}
        refused = client.post("/projects/default/apis", json=api)
        assert refused.status_code == 422, refused.text
        assert refused.json()["details"][0]["field"] == "body.traffic.weights.default"
    assert platform.call("GET", "/projects/default/apis")["items"] == []

"""The manager's Prometheus metrics on their own listener: API requests by route template,
deployments and their per-worker outcome, workers by state and their convergence."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from portway.manager.settings import ManagerSettings
from tests.manager.fake_worker import FakeWorker
from tests.manager.test_deployments_registry import env, worker

__all__ = ["env", "worker"]  # fixtures: an environment with APIs, a registered fake worker


@pytest.fixture
def settings(settings: ManagerSettings) -> ManagerSettings:
    return settings.model_copy(update={"metrics_port": 0})


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    port = client.app.state.metrics_port  # type: ignore[attr-defined]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_deploys_and_workers_are_measured(env: TestClient, worker: FakeWorker) -> None:
    assert env.get("/api/v1/projects/default/apis/a").status_code == 200
    assert env.get("/api/v1/projects/default/apis/nope").status_code == 404
    deployed = env.post("/api/v1/environments/dev/deployments", json={"api": "a"})
    assert deployed.status_code in (200, 201), deployed.text
    worker.report(env)  # now serving the pushed revision: converged
    samples = scrape(env)
    route = "/api/v1/projects/{project}/apis/{name}"
    requests = {
        status_class: value(
            samples,
            "portway_manager_api_requests_total",
            method="GET",
            route=route,
            status_class=status_class,
        )
        for status_class in ("2xx", "4xx")
    }
    assert requests == {"2xx": 1, "4xx": 1}
    # one series per route template, never per resource name
    assert not [k for k in samples if ("route", "/api/v1/projects/default/apis/nope") in k[1]]
    assert value(samples, "portway_manager_deploys_total", environment="dev") == 1
    assert (
        value(samples, "portway_manager_deploy_pushes_total", environment="dev", outcome="success")
        == 1
    )

    deadline = time.monotonic() + 30
    while True:  # the registry is sampled every few seconds
        samples = scrape(env)
        if value(samples, "portway_manager_workers_in_sync", environment="dev") == 1:
            break
        assert time.monotonic() < deadline, "workers never sampled"
        time.sleep(0.2)
    assert value(samples, "portway_manager_workers", environment="dev", state="up") == 1
    assert value(samples, "portway_manager_workers", environment="dev", state="down") == 0
    assert value(samples, "portway_manager_environment_revision", environment="dev") == 1
    assert (
        "portway_manager_worker_converge_seconds",
        frozenset({("environment", "dev"), ("worker", "w1")}),
    ) in samples


def test_the_management_port_does_not_serve_metrics(admin: TestClient) -> None:
    for path in ("/metrics", "/api/v1/metrics", "/METRICS", "/metrics/"):
        answer = admin.get(path)
        assert "portway_manager" not in answer.text
        assert answer.status_code == 404

"""Deployments (batch, refusal of an invalid revision, per-worker results, history) and the worker
registry (probes, unreachable, down without stale data)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.settings import ManagerSettings
from tests.manager.fake_worker import FakeWorker

BACKEND = [{"url": "http://127.0.0.1:9"}]


def api(name: str, base_path: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_path": base_path or f"/{name}", "backends": BACKEND, **extra}


@pytest.fixture
def env(admin: TestClient) -> TestClient:
    admin.post("/api/v1/projects", json={"name": "default"})
    admin.post("/api/v1/environments", json={"name": "dev"})
    for name in ("a", "b", "c"):
        assert admin.post("/api/v1/projects/default/apis", json=api(name)).status_code == 201
    return admin


@pytest.fixture
def worker(env: TestClient, settings: ManagerSettings) -> Iterator[FakeWorker]:
    fake = FakeWorker(settings.secret_file.read_text().strip().encode())
    fake.report(env)
    try:
        yield fake
    finally:
        fake.stop()


def services(client: TestClient) -> Any:
    return client.app.state.services  # type: ignore[attr-defined]


def probe(client: TestClient) -> None:
    svc = services(client)
    assert client.portal is not None
    client.portal.call(svc.registry.probe_all, svc.client)


def worker_row(client: TestClient, worker_id: str = "w1") -> dict[str, Any]:
    row: dict[str, Any] = client.get(f"/api/v1/workers/{worker_id}").json()
    return row


# deployments -------------------------------------------------------------------------------
def test_a_batch_is_one_revision_pushed_to_each_worker(env: TestClient, worker: FakeWorker) -> None:
    response = env.post(
        "/api/v1/environments/dev/deployments/batch",
        json={"items": [{"api": "a"}, {"api": "b"}, {"api": "c"}], "note": "all three"},
    )
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["action"] == "batch"
    assert result["env_revision"] == 1
    assert [i["api"] for i in result["items"]] == ["a", "b", "c"]
    [pushed] = result["results"]
    assert pushed["worker"] == "w1"
    assert pushed["address"] == worker.address
    assert pushed["success"] is True
    assert pushed["served_revision"] == 1
    assert pushed["seconds"] >= 0
    assert "at" in pushed
    assert worker.pushes == [1]
    assert worker.unsigned_calls == 0
    revision = env.get("/api/v1/environments/dev/revision").json()
    assert [d["api"]["name"] for d in revision["apis"]] == ["a", "b", "c"]
    history = env.get("/api/v1/environments/dev/deployments?api=b").json()["items"]
    assert [h["note"] for h in history] == ["all three"]


def test_batch_can_mix_undeploy_and_rollback(env: TestClient) -> None:
    env.post("/api/v1/environments/dev/deployments/batch", json={"items": [{"api": "a"}]})
    env.patch("/api/v1/projects/default/apis/a", json={"description": "v2"})
    env.post("/api/v1/environments/dev/deployments", json={"api": "a"})
    env.post("/api/v1/environments/dev/deployments", json={"api": "b"})
    mixed = env.post(
        "/api/v1/environments/dev/deployments/batch",
        json={
            "items": [
                {"api": "a", "action": "rollback", "api_revision": 1},
                {"api": "b", "action": "undeploy"},
                {"api": "c"},
            ]
        },
    )
    assert mixed.status_code == 201, mixed.text
    revision = env.get("/api/v1/environments/dev/revision").json()
    names = {d["api"]["name"]: d["api_revision"] for d in revision["apis"]}
    assert names == {"a": 1, "c": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": []}, "body.items"),
        ({"items": [{"api": "a"}, {"api": "a"}]}, "body"),
        ({"items": [{"api": "a", "action": "rollback"}]}, "body.items[0].api_revision"),
        ({"items": [{"api": "a", "api_revision": 1}]}, "body.items[0].api_revision"),
    ],
)
def test_invalid_batches_are_422(env: TestClient, body: dict[str, Any], field: str) -> None:
    response = env.post("/api/v1/environments/dev/deployments/batch", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"].startswith(field)
    assert env.get("/api/v1/environments/dev").json()["desired_revision"] is None


def test_an_invalid_revision_is_refused_whole(env: TestClient, worker: FakeWorker) -> None:
    env.post("/api/v1/projects", json={"name": "other"})
    clash = api("clash", "/a", project="other")
    assert env.post("/api/v1/projects/other/apis", json=clash).status_code == 201
    env.post("/api/v1/environments/dev/deployments", json={"api": "a"})
    refused = env.post(
        "/api/v1/environments/dev/deployments", json={"project": "other", "api": "clash"}
    )
    assert refused.status_code == 422
    assert refused.json()["error"] == "deployment_refused"
    assert "/a" in refused.json()["message"]
    assert env.get("/api/v1/environments/dev").json()["desired_revision"] == 1
    assert worker.pushes == [1]  # the worker never heard of the refused revision


def test_undeploying_what_is_not_deployed_is_404(env: TestClient) -> None:
    response = env.post(
        "/api/v1/environments/dev/deployments", json={"api": "a", "action": "undeploy"}
    )
    assert response.status_code == 404


def test_past_revisions_are_readable(env: TestClient) -> None:
    env.post("/api/v1/environments/dev/deployments", json={"api": "a"})
    env.post("/api/v1/environments/dev/deployments", json={"api": "b"})
    first = env.get("/api/v1/environments/dev/revisions/1").json()
    assert [d["api"]["name"] for d in first["apis"]] == ["a"]
    assert env.get("/api/v1/environments/dev/revisions/7").status_code == 404


def test_a_down_worker_is_recorded_as_such_and_not_pushed(
    env: TestClient, worker: FakeWorker, settings: ManagerSettings
) -> None:
    svc = services(env)
    doc = env.portal.call(svc.store.get, "workers", "w1")  # type: ignore[union-attr]
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    env.portal.call(  # type: ignore[union-attr]
        lambda: svc.store.replace(
            "workers", "w1", {**doc.data, "last_report": past}, expected_version=doc.version
        )
    )
    result = env.post("/api/v1/environments/dev/deployments", json={"api": "a"}).json()
    [pushed] = result["results"]
    assert pushed["success"] is False
    assert "down" in pushed["error"]
    assert worker.pushes == []
    # the worker comes back and learns the desired revision from its report (pull)
    assert worker.report(env) == {"desired_revision": 1}


# registry ----------------------------------------------------------------------------------
def test_probes_show_health_and_a_silent_worker_turns_unreachable(
    env: TestClient, worker: FakeWorker
) -> None:
    assert worker_row(env)["probe"] is None
    probe(env)
    row = worker_row(env)
    assert row["probe"]["ok"] is True
    assert row["healthy"] is True
    assert row["state"] == "up"
    assert worker.unsigned_calls == 0  # the probe is signed
    worker.stop()
    probe(env)
    row = worker_row(env)
    assert row["probe"]["ok"] is False
    assert row["healthy"] is False
    assert row["state"] == "up"  # one failed probe is not enough
    probe(env)
    probe(env)
    row = worker_row(env)
    assert row["state"] == "unreachable"
    assert row["probe"]["consecutive_failures"] == 3
    assert row["probe"]["last_ok_at"] is not None


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("unsigned", "no cluster signature"),
        ("other-secret", "signature does not match"),
        ("other-revision", "asked for revision 1, the answer carries 2"),
    ],
)
def test_a_worker_answer_that_does_not_verify_is_not_believed(
    env: TestClient, worker: FakeWorker, forge: str, reason: str
) -> None:
    worker.forge = forge
    response = env.post("/api/v1/environments/dev/deployments", json={"api": "a"})
    assert response.status_code == 201, response.text
    [pushed] = response.json()["results"]
    assert pushed["success"] is False
    assert reason in pushed["error"]
    if forge != "other-revision":  # a probe answer names no revision
        probe(env)
        assert worker_row(env)["probe"]["ok"] is False
        assert reason in worker_row(env)["probe"]["error"]


def test_a_worker_that_stops_reporting_is_down_without_stale_data(
    env: TestClient, worker: FakeWorker
) -> None:
    env.post("/api/v1/environments/dev/deployments", json={"api": "a"})
    worker.report(env)
    svc = services(env)
    doc = env.portal.call(svc.store.get, "workers", "w1")  # type: ignore[union-attr]
    alive = svc.registry.view(doc, 1)
    assert alive["state"] == "up"
    assert alive["served_revision"] == 1
    assert alive["in_sync"] is True
    later = datetime.now(UTC) + timedelta(seconds=svc.settings.report_interval * 3 + 1)
    down = svc.registry.view(doc, 1, later)
    assert down["state"] == "down"
    assert down["served_revision"] is None
    assert down["in_sync"] is False
    assert down["healthy"] is False
    assert down["last_served_revision"] == 1


def test_the_registry_shows_convergence(env: TestClient, worker: FakeWorker) -> None:
    env.post("/api/v1/environments/dev/deployments", json={"api": "a"})
    worker.report(env)
    row = worker_row(env)
    assert row["desired_revision"] == row["served_revision"] == 1
    assert row["converge_seconds"] is not None
    assert row["environment"] == "dev"
    assert row["address"] == worker.address
    assert row["last_report"] is not None
    assert [w["id"] for w in env.get("/api/v1/workers?environment=dev").json()] == ["w1"]
    assert env.get("/api/v1/workers?environment=prod").json() == []


def test_the_registry_shows_an_acknowledged_push_before_the_next_report(
    env: TestClient, worker: FakeWorker
) -> None:
    env.post("/api/v1/environments/dev/deployments", json={"api": "a"})
    row = worker_row(env)
    assert row["desired_revision"] == row["served_revision"] == 1
    assert row["in_sync"] is True
    # a report composed before the push, arriving after it, does not undo the acknowledgement
    worker.report(env, served=None)
    assert worker_row(env)["served_revision"] == 1
    env.post("/api/v1/environments/dev/deployments", json={"api": "b"})
    worker.report(env, served=1)
    assert worker_row(env)["served_revision"] == 2
    # a restarted worker (another start time) is believed, whatever it serves
    worker.started_at = datetime.now(UTC) + timedelta(seconds=1)
    worker.report(env, served=None)
    assert worker_row(env)["served_revision"] is None


def test_a_decommissioned_worker_can_be_forgotten(env: TestClient, worker: FakeWorker) -> None:
    assert env.delete("/api/v1/workers/w1").status_code == 204
    assert env.get("/api/v1/workers").json() == []
    assert env.get("/api/v1/workers/w1").status_code == 404
    worker.report(env)  # it registers again if it reports
    assert [w["id"] for w in env.get("/api/v1/workers").json()] == ["w1"]


def test_worker_ids_with_slashes(env: TestClient, settings: ManagerSettings) -> None:
    fake = FakeWorker(settings.secret_file.read_text().strip().encode(), "host-8080/1")
    try:
        fake.report(env)
        assert env.get("/api/v1/workers/host-8080/1").json()["id"] == "host-8080/1"
    finally:
        fake.stop()


def test_large_revisions_are_stored_in_parts_and_read_back_whole(
    env: TestClient, settings: ManagerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portway.cluster.signing import sign
    from portway.stores import revision_parts

    monkeypatch.setattr(revision_parts, "PART_CHARS", 64)
    env.post(
        "/api/v1/environments/dev/deployments/batch", json={"items": [{"api": "a"}, {"api": "b"}]}
    )
    svc = services(env)
    header = env.portal.call(svc.store.get, "env_revisions", "dev@1")  # type: ignore[union-attr]
    assert header.data["parts"] > 5
    assert "snapshot" not in header.data
    svc.deployer.revisions.forget()  # read from the store, not from memory
    secret = settings.secret_file.read_text().strip().encode()
    path = "/_portway/cluster/environments/dev/revisions/1"
    pulled = env.get(path, headers=sign(secret, "GET", path)).json()
    assert [d["api"]["name"] for d in pulled["apis"]] == ["a", "b"]


def test_routes_that_collide_once_compiled_are_refused(env: TestClient) -> None:
    """Different spellings of the same route template: only compiling the revision shows it."""
    env.post("/api/v1/projects/default/apis", json=api("x", "/items/{id}"))
    env.post("/api/v1/projects/default/apis", json=api("y", "/items/{sku}"))
    env.post("/api/v1/environments/dev/deployments", json={"api": "x"})
    refused = env.post("/api/v1/environments/dev/deployments", json={"api": "y"})
    assert refused.status_code == 422, refused.text
    assert "does not compile" in refused.json()["message"]
    assert env.get("/api/v1/environments/dev").json()["desired_revision"] == 1

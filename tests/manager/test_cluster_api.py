"""The manager's cluster endpoints: signed calls only; an unsigned one changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from portway.cluster.messages import StatusReport
from portway.cluster.signing import sign
from portway.config.management.deployments import WorkerView
from portway.manager.settings import ManagerSettings


def report_body(**counters: object) -> bytes:
    report = StatusReport(
        environment="dev",
        address="http://127.0.0.1:1",
        started_at=datetime.now(UTC),
        counters=counters,
    )
    return report.model_dump_json().encode()


def signed_report(admin: TestClient, settings: ManagerSettings, body: bytes) -> dict[str, object]:
    """Report ``body`` as worker w1 of ``dev`` (created here), signed; the manager's answer."""
    admin.post("/api/v1/environments", json={"name": "dev"})
    secret = settings.secret_file.read_text().strip().encode()
    path = "/_portway/cluster/workers/w1/status"
    response = admin.post(path, content=body, headers=sign(secret, "POST", path, body))
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_unsigned_status_report_is_401_and_registers_nothing(admin: TestClient) -> None:
    admin.post("/api/v1/environments", json={"name": "dev"})
    path = "/_portway/cluster/workers/w1/status"
    response = admin.post(path, content=report_body(), headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    forged = admin.post(
        path,
        content=report_body(),
        headers={"X-Portway-Timestamp": "1", "X-Portway-Signature": "00" * 32},
    )
    assert forged.status_code == 401
    assert admin.get("/api/v1/workers").json() == []


def test_signed_status_report_registers_the_worker(
    admin: TestClient, settings: ManagerSettings
) -> None:
    assert signed_report(admin, settings, report_body()) == {"desired_revision": None}
    [worker] = admin.get("/api/v1/workers").json()
    assert worker["id"] == "w1"
    assert worker["state"] == "up"
    assert worker["environment"] == "dev"


def test_unknown_environment_is_404(admin: TestClient, settings: ManagerSettings) -> None:
    secret = settings.secret_file.read_text().strip().encode()
    path = "/_portway/cluster/environments/nope"
    response = admin.get(path, headers=sign(secret, "GET", path))
    assert response.status_code == 404


def test_the_workers_list_shows_the_last_reported_policy_counters(
    admin: TestClient, settings: ManagerSettings
) -> None:
    names = ("evaluated", "allowed", "denied", "errors", "skipped", "shadow_denied")
    counted: dict[str, object] = {"key": "api:orders", "scope": "api", "policy": "rate-limit"}
    counted |= dict(zip(names, (7, 5, 2, 0, 0, 0), strict=True))
    hostile = ["not a row", {"key": "x"}, {**counted, "denied": "many"}]
    for policies in ([], [counted, *hostile], [{**counted, "evaluated": 9, "later": 1}]):
        signed_report(admin, settings, report_body(process=0, policies=policies))
        [worker] = admin.get("/api/v1/workers").json()
        assert WorkerView.model_validate(worker) == admin_worker(admin, "w1")
        if policies == []:
            assert worker["policy_counters"] == []
        elif len(policies) == 4:  # the malformed rows are left out, the list still answers
            assert worker["policy_counters"] == [counted]
        else:  # the last report wins; a field this manager does not know is not shown
            assert worker["policy_counters"] == [{**counted, "evaluated": 9}]


def admin_worker(admin: TestClient, worker_id: str) -> WorkerView:
    answer = admin.get(f"/api/v1/workers/{worker_id}")
    assert answer.status_code == 200, answer.text
    return WorkerView.model_validate(answer.json())

"""The manager's cluster endpoints: signed calls only; an unsigned one changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from portway.cluster.messages import StatusReport
from portway.cluster.signing import sign
from portway.manager.settings import ManagerSettings


def report_body() -> bytes:
    return (
        StatusReport(environment="dev", address="http://127.0.0.1:1", started_at=datetime.now(UTC))
        .model_dump_json()
        .encode()
    )


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
    admin.post("/api/v1/environments", json={"name": "dev"})
    secret = settings.secret_file.read_text().strip().encode()
    path = "/_portway/cluster/workers/w1/status"
    body = report_body()
    response = admin.post(path, content=body, headers=sign(secret, "POST", path, body))
    assert response.status_code == 200, response.text
    assert response.json() == {"desired_revision": None}
    [worker] = admin.get("/api/v1/workers").json()
    assert worker["id"] == "w1"
    assert worker["state"] == "up"
    assert worker["environment"] == "dev"


def test_unknown_environment_is_404(admin: TestClient, settings: ManagerSettings) -> None:
    secret = settings.secret_file.read_text().strip().encode()
    path = "/_portway/cluster/environments/nope"
    response = admin.get(path, headers=sign(secret, "GET", path))
    assert response.status_code == 404

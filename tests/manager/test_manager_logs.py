"""The manager's log lines carry the correlation id of the API request that caused them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from portway.config import log_format
from tests.manager.fake_worker import FakeWorker
from tests.manager.test_deployments_registry import env, worker
from tests.support.logs import lines_of, restore_logging

__all__ = ["env", "restore_logging", "worker"]  # fixtures


def test_a_failed_push_is_logged_with_the_deploy_requests_id(
    env: TestClient,
    worker: FakeWorker,
    capfd: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    log_format.configure("info", "json")
    worker.stop()  # registered and up, but no longer answering: the push fails
    deployed = env.post(
        "/api/v1/environments/dev/deployments",
        json={"api": "a"},
        headers={"X-Correlation-ID": "cid-deploy-1"},
    )
    assert deployed.status_code in (200, 201), deployed.text
    failed = [
        line for line in lines_of(capfd.readouterr().err) if "push of dev@" in line["message"]
    ]
    assert failed
    assert {line["correlation_id"] for line in failed} == {"cid-deploy-1"}
    assert {line["level"] for line in failed} == {"warning"}

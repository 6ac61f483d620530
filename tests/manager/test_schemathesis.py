"""Schemathesis against the manager's OpenAPI document: generated requests (valid and invalid) for
every operation, authenticated as the admin, on a real uvicorn server on a loopback port. No answer
may be a server error, and every answer must conform to the document: a documented status code,
the documented content type, and a body valid against the operation's response schema (errors
included: the ``Problem`` model). The number of examples per operation is bounded so the run stays
short."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

from portway.cluster.messages import StatusReport
from portway.cluster.signing import sign
from tests.manager.live_manager import LiveManager, live_manager

EXAMPLES_PER_OPERATION = 12


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveManager]:
    with live_manager(tmp_path, import_timeout=2.0) as running:
        yield running


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def conformance_failures(server: LiveManager, paths: tuple[str, ...] | None = None) -> list[str]:
    """Generated requests for every operation (or those on ``paths``); what did not conform."""
    schema = schemathesis.openapi.from_url(server.url + "/api/v1/openapi.json", timeout=120)
    headers = {"Authorization": f"Bearer {server.token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises: the test fails
        if paths is not None and operation.path not in paths:
            continue
        operations += 1

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def call(case: schemathesis.Case[Any]) -> None:
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            try:
                case.validate_response(response, checks=CHECKS)
            except (Failure, FailureGroup) as exc:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{str(exc)[:600]}"
                )

        call()
    assert operations >= (80 if paths is None else len(paths))
    return failures


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 90 operations x 12 examples on a shared machine
def test_every_generated_request_gets_a_documented_answer(server: LiveManager) -> None:
    assert conformance_failures(server) == []


def test_a_reporting_workers_counters_and_the_matrix_verdicts_conform(
    server: LiveManager, tmp_path: Path
) -> None:
    """The workers answers with a worker that reported policy counters (an empty list conforms
    trivially), and the matrix answer with its verdicts, checklist and diagram."""
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        headers = {"Authorization": f"Bearer {server.token}"}
        created = client.post("/api/v1/environments", json={"name": "dev"}, headers=headers)
        assert created.status_code == 201, created.text
        secret = (tmp_path / "cluster.secret").read_text().strip().encode()
        path = "/_portway/cluster/workers/w1/status"
        row = {
            "key": "api:shop",
            "scope": "api",
            "policy": "limit",
            "evaluated": 5,
            "allowed": 3,
            "denied": 2,
            "errors": 0,
            "skipped": 0,
            "shadow_denied": 0,
        }
        body = (
            StatusReport(
                environment="dev",
                address="http://127.0.0.1:1",
                started_at=datetime.now(UTC),
                counters={"policies": [row]},
            )
            .model_dump_json()
            .encode()
        )
        reported = client.post(path, content=body, headers=sign(secret, "POST", path, body))
        assert reported.status_code == 200, reported.text
        [worker] = client.get("/api/v1/workers", headers=headers).json()
        assert worker["policy_counters"] == [row]
    paths = ("/api/v1/workers", "/api/v1/workers/{worker_id}", "/api/v1/matrix")
    assert conformance_failures(server, paths) == []

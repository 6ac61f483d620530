"""Schemathesis against the manager's OpenAPI document: generated requests (valid and invalid) for
every operation, authenticated as the admin, on a real uvicorn server on a loopback port. No answer
may be a server error, and every answer must conform to the document: a documented status code,
the documented content type, and a body valid against the operation's response schema (errors
included: the ``Problem`` model). The number of examples per operation is bounded so the run stays
short."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.mark.timeout(900)  # about 90 operations x 12 examples on a shared machine
def test_every_generated_request_gets_a_documented_answer(server: LiveManager) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/api/v1/openapi.json", timeout=120)
    headers = {"Authorization": f"Bearer {server.token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises: the test fails
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
    assert operations >= 80
    assert failures == []

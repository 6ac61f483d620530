"""The management API's contract: every operation of the OpenAPI document declares the schema of
its answer (a named model, not a bare object) and its error answers (the ``Problem`` model); the
CLI client parses answers with the very same models."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from portway.config.management.common import Problem
from portway.matrix.checklist import Status

ERRORS = ("400", "401", "403", "404", "409", "413", "422", "500", "503")


def _named(schema: dict[str, Any]) -> bool:
    """A reference to a component, or an array of them."""
    if "$ref" in schema:
        return True
    if schema.get("type") == "array":
        return _named(schema.get("items", {}))
    return False


def test_every_operation_declares_its_answer_and_its_errors(manager: TestClient) -> None:
    document = manager.get("/api/v1/openapi.json").json()
    free_form = {("get", "/api/v1/schema/declarative")}  # a JSON Schema: any object
    missing: list[str] = []
    operations = 0
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            operations += 1
            responses = operation["responses"]
            ok = [code for code in responses if code.startswith("2")]
            assert len(ok) >= 1, f"{method} {path}"
            for code in ok:
                if code == "204":
                    assert "content" not in responses[code], f"{method} {path} 204 has a body"
                    continue
                schema = responses[code]["content"]["application/json"]["schema"]
                if (method, path) not in free_form and not _named(schema):
                    missing.append(f"{method.upper()} {path} {code}: {schema}")
            for code in ERRORS:
                error = responses[code]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/Problem"}, f"{method} {path}"
    assert operations >= 80
    assert missing == []


def test_an_error_answer_is_the_problem_model(admin: TestClient) -> None:
    answer = admin.get("/api/v1/projects/nope")
    assert answer.status_code == 404
    problem = Problem.model_validate(answer.json())
    assert problem.error == "not_found"
    assert problem.correlation_id == answer.headers["X-Correlation-ID"]


def test_the_matrix_and_workers_answers_name_their_nested_models(manager: TestClient) -> None:
    schemas = manager.get("/api/v1/openapi.json").json()["components"]["schemas"]

    def item_ref(model: str, field: str) -> str:
        return str(schemas[model]["properties"][field]["items"]["$ref"])

    assert item_ref("NetworkMatrix", "rules") == "#/components/schemas/MatrixRuleVerdict"
    assert item_ref("NetworkMatrix", "checklist") == "#/components/schemas/MatrixChecklistItem"
    assert item_ref("MatrixRuleVerdict", "violations") == "#/components/schemas/MatrixViolation"
    assert item_ref("WorkerView", "policy_counters") == "#/components/schemas/WorkerPolicyCounters"
    assert schemas["MatrixRuleVerdict"]["properties"]["verdict"]["enum"] == ["pass", "fail"]
    statuses = schemas["MatrixChecklistItem"]["properties"]["status"]["enum"]
    assert statuses == [s.value for s in Status]
    assert "policy_counters" in schemas["WorkerView"]["required"]

"""Consumer attributes through the management API: email (validated, stays in the manager), the IP
allow list and metadata (both travel to workers in the revision's consumer snapshot)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from portway.manager.settings import ManagerSettings
from tests.manager.test_consumers import C, consumer, deployed, pulled

__all__ = ["deployed"]

ATTRIBUTES = {
    "email": "ops@shop.example.com",
    "ip_allow": ["10.0.0.0/8", "2001:db8::/32"],
    "metadata": {"tier": "gold", "region": "eu"},
}


def test_attributes_are_stored_and_reach_the_workers(
    deployed: TestClient, settings: ManagerSettings
) -> None:
    created = deployed.post(C, json={"name": "app", **ATTRIBUTES})
    assert created.status_code == 201, created.text
    shown = deployed.get(f"{C}/app").json()
    assert {k: shown[k] for k in ATTRIBUTES} == ATTRIBUTES
    snapshot = consumer(deployed, pulled(deployed, settings))
    assert snapshot["ip_allow"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert snapshot["metadata"] == {"tier": "gold", "region": "eu"}
    assert "email" not in snapshot  # workers do not need it
    changed = deployed.put(f"{C}/app", json={"name": "app", "metadata": {"tier": "silver"}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["ip_allow"] == []
    snapshot = consumer(deployed, pulled(deployed, settings))
    assert (snapshot["ip_allow"], snapshot["metadata"]) == ([], {"tier": "silver"})


def test_bad_attributes_answer_422_naming_the_field(deployed: TestClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"email": "not an address"}, "body.email"),
        ({"ip_allow": ["10.0.0.0/8", "300.1.1.1"]}, "body.ip_allow"),
        ({"metadata": {"tier": ["gold"]}}, "body.metadata.tier"),
        ({"metadata": {"x" * 65: "v"}}, "body.metadata"),
    ]
    for body, field in cases:
        response = deployed.post(C, json={"name": "app", **body})
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        assert field in response.text, (field, problem)
        assert response.headers.get("X-Correlation-Id")

"""The alerts API: typed input refused with the field named, nothing stored on a refusal, the
settings that switch e-mail and webhooks on, write-only webhook URLs and secrets, audit, versions,
and notices in Slack's and Teams' shapes reaching a real receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.config.manager_settings import SmtpRelay
from portway.manager.app import create_app
from portway.manager.settings import ManagerSettings
from tests.manager.conftest import browser_for, settings_in
from tests.support.processes import wait_until
from tests.support.receivers import HookReceiver

SECRET = "0123456789abcdef-signing"
SLACK_PATH = "/services/T000/B000/XXXXSECRETPATH"


@pytest.fixture
def settings(tmp_path: Path) -> ManagerSettings:
    return settings_in(
        tmp_path,
        smtp=SmtpRelay(host="127.0.0.1", ports=[25]),
        webhooks=True,
        alert_interval=0.2,
        alert_retry_base=0.2,
    )


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    receiver = HookReceiver()
    yield receiver
    receiver.close()


def problem(response: Any, status: int, field: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["correlation_id"]
    assert any(d["field"] == field for d in body.get("details") or []), body
    return " ".join([body["message"], *(d["message"] for d in body["details"])])


RULE = {"name": "down", "condition": {"kind": "worker_down"}}


def test_bad_rules_are_refused_with_the_field_and_nothing_is_stored(admin: TestClient) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({**RULE, "channels": ["nobody"]}, "body.channels[0]", "no channel named 'nobody'"),
        ({**RULE, "name": "Down!"}, "body.name", "pattern"),
        ({**RULE, "condition": {"kind": "rm -rf"}}, "body.condition", "kind"),
        (
            {**RULE, "condition": {"kind": "error_rate", "threshold": 2}},
            "body.condition.error_rate.threshold",
            "1",
        ),
        ({**RULE, "for_seconds": -1}, "body.for_seconds", "0"),
        (
            {**RULE, "condition": {"kind": "uptime", "url": "file:///etc/passwd"}},
            "body.condition.uptime.url",
            "http",
        ),
        (
            {
                **RULE,
                "condition": {"kind": "uptime", "url": "http://x.test/", "body_jsonpath": "a.b"},
            },
            "body.condition.uptime.body_jsonpath",
            "$",
        ),
        ({**RULE, "surprise": 1}, "body.surprise", "xtra"),
    ]
    for body, field, words in cases:
        detail = problem(admin.post("/api/v1/alerts/rules", json=body), 422, field)
        assert words in detail, (field, detail)
    assert admin.get("/api/v1/alerts/rules").json() == []


def test_metadata_and_link_local_addresses_are_refused(admin: TestClient) -> None:
    hook = {"name": "h", "target": {"kind": "webhook", "url": "http://169.254.169.254/latest"}}
    detail = problem(admin.post("/api/v1/alerts/channels", json=hook), 422, "body.target.url")
    assert "169.254.169.254" in detail
    uptime = {**RULE, "condition": {"kind": "uptime", "url": "http://[fe80::1]:8080/"}}
    problem(admin.post("/api/v1/alerts/rules", json=uptime), 422, "body.condition.url")
    assert admin.get("/api/v1/alerts/channels").json() == []


def test_channels_need_the_settings_that_open_their_flows(tmp_path: Path) -> None:
    plain = settings_in(tmp_path, alert_interval=0)
    with TestClient(create_app(plain), raise_server_exceptions=False) as client:
        token = json.loads((tmp_path / "bootstrap.json").read_text())["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        mail = {"name": "m", "target": {"kind": "email", "to": ["ops@example.test"]}}
        detail = problem(client.post("/api/v1/alerts/channels", json=mail), 422, "body.target")
        assert "manager.smtp" in detail
        hook = {"name": "h", "target": {"kind": "webhook", "url": "https://hooks.example.test/x"}}
        detail = problem(client.post("/api/v1/alerts/channels", json=hook), 422, "body.target")
        assert "manager.webhooks" in detail
        uptime = {**RULE, "condition": {"kind": "uptime", "url": "https://api.example.test/"}}
        detail = problem(client.post("/api/v1/alerts/rules", json=uptime), 422, "body.condition")
        assert "manager.webhooks" in detail
        assert client.get("/api/v1/alerts/channels").json() == []


def test_webhook_url_and_secret_are_write_only(admin: TestClient, tmp_path: Path) -> None:
    url = f"https://hooks.slack.example.test{SLACK_PATH}"
    made = admin.post(
        "/api/v1/alerts/channels",
        json={"name": "slack", "target": {"kind": "webhook", "url": url, "secret": SECRET}},
    )
    assert made.status_code == 201, made.text
    for shown in (made.json(), admin.get("/api/v1/alerts/channels/slack").json()):
        assert shown["target"]["url"] == "https://hooks.slack.example.test"
        assert shown["target"]["has_secret"] is True
        assert "secret" not in shown["target"]
    audit = admin.get("/api/v1/audit?target_prefix=alert_channels/").json()["items"]
    assert [a["action"] for a in audit] == ["alert_channel.create"]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("manager.db*"))
    assert b"hooks.slack.example.test" in stored  # the origin, readable
    assert SLACK_PATH.encode() not in stored  # the rest sealed
    assert SECRET.encode() not in stored
    assert SLACK_PATH not in json.dumps(audit)


def test_versions_conflicts_and_channel_in_use(admin: TestClient) -> None:
    admin.post(
        "/api/v1/alerts/channels",
        json={"name": "mail", "target": {"kind": "email", "to": ["ops@example.test"]}},
    )
    made = admin.post("/api/v1/alerts/rules", json={**RULE, "channels": ["mail"]})
    assert made.status_code == 201, made.text
    assert made.headers["ETag"] == '"1"'
    changed = admin.put(
        "/api/v1/alerts/rules/down",
        json={**RULE, "channels": ["mail"], "severity": "critical"},
        headers={"If-Match": '"1"'},
    )
    assert changed.status_code == 200, changed.text
    stale = admin.put("/api/v1/alerts/rules/down", json=RULE, headers={"If-Match": '"1"'})
    assert stale.status_code == 409, stale.text
    renamed = admin.put("/api/v1/alerts/rules/down", json={**RULE, "name": "other"})
    problem(renamed, 422, "body.name")
    in_use = admin.delete("/api/v1/alerts/channels/mail")
    assert in_use.status_code == 409, in_use.text
    assert "down" in in_use.json()["message"]
    assert admin.get("/api/v1/alerts/rules/down").json()["severity"] == "critical"
    assert admin.delete("/api/v1/alerts/rules/down").status_code == 204
    assert admin.delete("/api/v1/alerts/channels/mail").status_code == 204
    assert admin.get("/api/v1/alerts/rules/down").status_code == 404


def test_silences(admin: TestClient) -> None:
    past = {"rule": "down", "ends_at": "2020-01-01T00:00:00Z"}
    problem(admin.post("/api/v1/alerts/silences", json=past), 422, "body.ends_at")
    naive = {"ends_at": "2099-01-01T00:00:00"}
    problem(admin.post("/api/v1/alerts/silences", json=naive), 422, "body")
    backwards = {"starts_at": "2099-01-02T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"}
    problem(admin.post("/api/v1/alerts/silences", json=backwards), 422, "body")
    made = admin.post(
        "/api/v1/alerts/silences", json={"rule": "down", "ends_at": "2099-01-01T00:00:00Z"}
    )
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["created_by"] == "admin"
    assert [s["id"] for s in admin.get("/api/v1/alerts/silences").json()] == [silence["id"]]
    viewer = browser_for(admin)
    assert viewer.delete(f"/api/v1/alerts/silences/{silence['id']}").status_code == 401
    assert admin.delete(f"/api/v1/alerts/silences/{silence['id']}").status_code == 204
    assert admin.get("/api/v1/alerts/silences").json() == []


@pytest.mark.parametrize("style", ["slack", "teams"])
def test_slack_and_teams_payloads_reach_a_real_receiver(
    admin: TestClient, hooks: HookReceiver, style: str
) -> None:
    channel = {
        "name": "chat",
        "target": {"kind": "webhook", "url": f"{hooks.url}/in", "format": style},
    }
    assert admin.post("/api/v1/alerts/channels", json=channel).status_code == 201
    hooks.status = 503  # the health endpoint fails; so does the first webhook POST
    rule = {
        "name": "api-health",
        "condition": {
            "kind": "uptime",
            "url": f"{hooks.url}/health",
            "interval_seconds": 1,
            "retries": 0,
        },
        "channels": ["chat"],
    }
    assert admin.post("/api/v1/alerts/rules", json=rule).status_code == 201
    wait_until(lambda: len(hooks.received()) >= 1, "a first (refused) webhook")
    hooks.status = 200  # health passes now, and the receiver accepts
    wait_until(
        lambda: (
            [d["state"] for d in admin.get("/api/v1/alerts/deliveries").json()]
            == ["delivered", "delivered"]
        ),
        "the firing and resolved notices delivered",
    )
    bodies = [json.loads(h.body) for h in hooks.received()]
    assert "X-Portway-Signature" not in hooks.received()[0].headers  # no secret, no signature
    if style == "slack":
        assert set(bodies[0]) == {"text"}
        assert "[FIRING] api-health" in bodies[0]["text"]
        assert "[RESOLVED] api-health" in bodies[-1]["text"]
    else:
        assert bodies[0]["@type"] == "MessageCard"
        assert "[FIRING] api-health" in bodies[0]["title"]
        assert "503" in bodies[0]["text"]
        assert bodies[-1]["themeColor"] == "2EB67D"
    firing = [b for b in bodies if "FIRING" in json.dumps(b)]
    assert len(firing) >= 2  # refused once, then delivered: retried
    deliveries = admin.get("/api/v1/alerts/deliveries").json()
    assert max(d["attempts"] for d in deliveries) >= 2

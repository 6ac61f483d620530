"""Alert notices through a real SMTP relay (aiosmtpd: STARTTLS and AUTH required) while the relay
is down, comes back, and while the manager restarts: each notice arrives exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from portway.config.manager_settings import SmtpRelay
from tests.manager.live_manager import LiveManager, live_manager
from tests.support.processes import wait_until
from tests.support.receivers import PASSWORD, USER, HookReceiver, MailRelay, mail_relay


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[MailRelay]:
    found = mail_relay(tmp_path / "relay")
    yield found
    found.stop()


@pytest.fixture
def health() -> Iterator[HookReceiver]:
    receiver = HookReceiver()
    receiver.status = 500  # the checked service is failing
    yield receiver
    receiver.close()


def settings(tmp_path: Path, relay: MailRelay) -> dict[str, Any]:
    password = tmp_path / "smtp-password"
    password.write_text(PASSWORD + "\n")
    return {
        "smtp": SmtpRelay(
            host="127.0.0.1",
            ports=[relay.port],
            starttls="required",
            ca_file=relay.certs.ca_file,
            username=USER,
            password_file=password,
            sender="portway@example.test",
        ),
        "webhooks": True,
        "alert_interval": 0.3,
        "alert_retry_base": 0.3,
        "alert_retry_max": 1.0,
    }


def api(manager: LiveManager) -> httpx.Client:
    return httpx.Client(
        base_url=manager.url + "/api/v1",
        headers={"Authorization": f"Bearer {manager.token}"},
        trust_env=False,
        timeout=10.0,
    )


def configure(manager: LiveManager, health: HookReceiver) -> None:
    with api(manager) as client:
        made = client.post(
            "/alerts/channels",
            json={"name": "ops-mail", "target": {"kind": "email", "to": ["ops@example.test"]}},
        )
        assert made.status_code == 201, made.text
        rule = {
            "name": "health-check",
            "severity": "critical",
            "condition": {
                "kind": "uptime",
                "url": f"{health.url}/health",
                "interval_seconds": 1,
                "retries": 0,
                "body_jsonpath": "$.checks.db",
                "body_equals": "up",
            },
            "channels": ["ops-mail"],
        }
        made = client.post("/alerts/rules", json=rule)
        assert made.status_code == 201, made.text


def deliveries(manager: LiveManager) -> list[dict[str, Any]]:
    with api(manager) as client:
        found: list[dict[str, Any]] = client.get("/alerts/deliveries").json()
    return found


def pending_after_failures(manager: LiveManager) -> dict[str, Any]:
    [delivery] = deliveries(manager)
    assert delivery["state"] == "pending"
    return delivery


def test_relay_down_then_back_delivers_each_notice_once(
    tmp_path: Path, relay: MailRelay, health: HookReceiver
) -> None:
    with live_manager(tmp_path, **settings(tmp_path, relay)) as manager:
        configure(manager, health)
        wait_until(
            lambda: deliveries(manager) and deliveries(manager)[0]["attempts"] >= 2,
            "two failed attempts while the relay is down",
        )
        failing = pending_after_failures(manager)
        assert failing["last_error"]
        assert relay.received() == []

        relay.start()
        wait_until(lambda: len(relay.received()) == 1, "the firing notice")
        wait_until(lambda: [d["state"] for d in deliveries(manager)] == ["delivered"], "delivered")
        [mail] = relay.received()
        [delivery] = deliveries(manager)
        assert mail.tls is True
        assert mail.login == USER
        assert mail.recipients == ["ops@example.test"]
        assert mail.message["Message-ID"] == f"<{delivery['id']}@portway>"
        assert "[FIRING] health-check" in str(mail.message["Subject"])
        assert "answered 500, expected [200]" in mail.message.get_content()

        health.status = 200  # the service recovers
        wait_until(lambda: len(relay.received()) == 2, "the resolved notice")
        with api(manager) as client:
            events = client.get("/alerts/events").json()
        assert [e["status"] for e in events] == ["resolved", "firing"]
        assert all(e["channels"] == ["ops-mail"] for e in events)
        assert "[RESOLVED] health-check" in str(relay.received()[1].message["Subject"])
        assert sorted(d["state"] for d in deliveries(manager)) == ["delivered", "delivered"]
    assert len(relay.received()) == 2


def test_a_pending_notice_survives_a_manager_restart_and_goes_out_once(
    tmp_path: Path, relay: MailRelay, health: HookReceiver
) -> None:
    config = settings(tmp_path, relay)
    with live_manager(tmp_path, **config) as manager:
        configure(manager, health)
        wait_until(
            lambda: deliveries(manager) and deliveries(manager)[0]["attempts"] >= 1,
            "a failed attempt while the relay is down",
        )
        queued = pending_after_failures(manager)
    relay.start()
    with live_manager(tmp_path, **config) as manager:
        wait_until(lambda: len(relay.received()) == 1, "the queued notice after the restart")
        wait_until(lambda: [d["state"] for d in deliveries(manager)] == ["delivered"], "delivered")
        [delivery] = deliveries(manager)
        assert delivery["id"] == queued["id"]
        assert delivery["attempts"] > queued["attempts"]
        with api(manager) as client:
            assert len(client.get("/alerts/events").json()) == 1  # no second firing
    assert len(relay.received()) == 1
    assert relay.received()[0].message["Message-ID"] == f"<{queued['id']}@portway>"

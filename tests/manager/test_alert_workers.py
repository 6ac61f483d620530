"""A real worker killed under a ``worker_down`` rule: one e-mail (through a real STARTTLS + AUTH
relay) and one signed webhook for the firing alert, then one of each when the worker is back."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform, launch
from tests.support.processes import wait_until
from tests.support.receivers import PASSWORD, USER, HookReceiver, MailRelay, mail_relay

SECRET = "webhook-signing-secret-0123456789"


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[MailRelay]:
    found = mail_relay(tmp_path / "relay")
    found.start()
    yield found
    found.stop()


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    receiver = HookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def alerting(tmp_path: Path, relay: MailRelay) -> Iterator[Platform]:
    password = tmp_path / "smtp-password"
    password.write_text(PASSWORD)
    manager = {
        "smtp.host": "127.0.0.1",
        "smtp.ports": f"[{relay.port}]",
        "smtp.starttls": "required",
        "smtp.ca_file": str(relay.certs.ca_file),
        "smtp.username": USER,
        "smtp.password_file": str(password),
        "webhooks": "true",
        "alert_interval": "0.3",
        "alert_retry_base": "0.3",
    }
    args = [a for key, value in manager.items() for a in ("--set", f"manager.{key}={value}")]
    yield from launch(tmp_path, manager_args=args)


def test_worker_killed_and_back_notifies_once_each_way(
    alerting: Platform, relay: MailRelay, hooks: HookReceiver
) -> None:
    worker, _ = alerting.start_worker("w1")
    alerting.call(
        "POST",
        "/alerts/channels",
        {"name": "ops-mail", "target": {"kind": "email", "to": ["ops@example.test"]}},
        expect=201,
    )
    alerting.call(
        "POST",
        "/alerts/channels",
        {
            "name": "ops-hook",
            "target": {"kind": "webhook", "url": f"{hooks.url}/portway", "secret": SECRET},
        },
        expect=201,
    )
    alerting.call(
        "POST",
        "/alerts/rules",
        {
            "name": "workers-down",
            "severity": "critical",
            "condition": {"kind": "worker_down", "environment": "dev"},
            "channels": ["ops-mail", "ops-hook"],
        },
        expect=201,
    )

    worker.proc.kill()
    wait_until(lambda: len(relay.received()) == 1 and len(hooks.received()) == 1, "firing")
    [mail] = relay.received()
    [hook] = hooks.received()
    assert "[FIRING] workers-down — w1" in str(mail.message["Subject"])
    assert mail.tls
    assert mail.login == USER
    assert hook.path == "/portway"
    body = json.loads(hook.body)
    assert body["status"] == "firing"
    assert (body["rule"], body["subject"], body["severity"]) == ("workers-down", "w1", "critical")
    # killed: its reports stop (down) and the manager's probes fail (unreachable), whichever first
    assert body["summary"].endswith(("is down", "is unreachable"))
    timestamp = hook.headers["X-Portway-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + hook.body, hashlib.sha256)
    assert hook.headers["X-Portway-Signature"] == "sha256=" + expected.hexdigest()
    [active] = alerting.call("GET", "/alerts/active")
    assert (active["subject"], active["status"]) == ("w1", "firing")

    alerting.start_worker("w1")
    wait_until(lambda: len(relay.received()) == 2 and len(hooks.received()) == 2, "resolved")
    assert "[RESOLVED] workers-down — w1" in str(relay.received()[1].message["Subject"])
    assert json.loads(hooks.received()[1].body)["status"] == "resolved"
    events = alerting.call("GET", "/alerts/events?rule=workers-down")
    assert [e["status"] for e in events] == ["resolved", "firing"]
    deliveries = alerting.call("GET", "/alerts/deliveries")
    assert sorted((d["channel"], d["state"], d["attempts"]) for d in deliveries) == [
        ("ops-hook", "delivered", 1),
        ("ops-hook", "delivered", 1),
        ("ops-mail", "delivered", 1),
        ("ops-mail", "delivered", 1),
    ]
    assert alerting.call("GET", "/alerts/active") == []
    channels = alerting.call("GET", "/alerts/channels")
    hook_view = next(c for c in channels if c["name"] == "ops-hook")["target"]
    assert hook_view["url"] == hooks.url  # the origin only; path and secret are write-only
    assert hook_view["has_secret"] is True
    assert SECRET not in json.dumps(channels)

"""Sending one alert event to one channel: an e-mail through the configured relay, or a signed
HTTP POST. Either raises ``DeliveryFailed`` (the outbox retries it later) or returns.

Webhook signature: ``X-Portway-Signature: sha256=HEX`` where HEX is HMAC-SHA256 over
``TIMESTAMP + "." + BODY`` with the channel's secret, ``TIMESTAMP`` being ``X-Portway-Timestamp``
(Unix seconds); a receiver recomputes it and refuses stale timestamps to stop replays. Every
notice carries its delivery id (``X-Portway-Delivery``, or the e-mail's ``Message-ID``), stable
across retries, so a receiver can drop the rare duplicate (a manager that dies between the
receiver's acceptance and recording it retries).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib
import httpx

from portway.config.manager_settings import SmtpRelay
from portway.manager.sealing import Keyring

SIGNATURE_HEADER = "X-Portway-Signature"
TIMESTAMP_HEADER = "X-Portway-Timestamp"
DELIVERY_HEADER = "X-Portway-Delivery"
_COLORS = {"firing": "D13438", "resolved": "2EB67D"}


class DeliveryFailed(Exception):
    """The channel did not accept the notice (message kept for the delivery's ``last_error``)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def headline(event: Mapping[str, Any]) -> str:
    return f"[{str(event['status']).upper()}] {event['rule']} — {event['subject']}"


def payload(style: str, event_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of a webhook: the event itself, or Slack's / Teams' incoming-webhook shape."""
    if style == "slack":
        return {"text": f"*{headline(event)}*\n{event['summary']}"}
    if style == "teams":
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": headline(event),
            "themeColor": _COLORS.get(str(event["status"]), "888888"),
            "title": headline(event),
            "text": str(event["summary"]),
        }
    return {
        "id": event_id,
        **{k: event.get(k) for k in ("status", "rule", "severity", "subject", "summary", "value")},
        "at": event.get("at"),
    }


class Notifier:
    def __init__(
        self, smtp: SmtpRelay | None, http: httpx.AsyncClient, keyring: Callable[[], Keyring]
    ) -> None:
        self.smtp = smtp
        self.http = http
        self.keyring = keyring

    async def send(
        self, target: Mapping[str, Any], event_id: str, event: Mapping[str, Any], delivery: str
    ) -> None:
        if target["kind"] == "email":
            await self._email(list(target["to"]), event, delivery)
        else:
            await self._webhook(target, event_id, event, delivery)

    # e-mail ---------------------------------------------------------------------------------
    async def _email(self, to: list[str], event: Mapping[str, Any], delivery: str) -> None:
        relay = self.smtp
        if relay is None:
            raise DeliveryFailed("no mail relay is configured (manager.smtp)")
        message = EmailMessage()
        message["From"] = relay.sender
        message["To"] = ", ".join(to)
        message["Subject"] = f"Portway {headline(event)}"
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = f"<{delivery}@portway>"
        message["X-Portway-Event"] = str(event["rule"])
        message.set_content(
            f"{event['summary']}\n\nrule: {event['rule']}\nseverity: {event['severity']}\n"
            f"subject: {event['subject']}\nstatus: {event['status']}\nat: {event['at']}\n"
        )
        password = relay.password_file.read_text().strip() if relay.password_file else None
        context = ssl.create_default_context(cafile=str(relay.ca_file) if relay.ca_file else None)
        start_tls = {"auto": None, "required": True, "off": False}[relay.starttls]
        errors: list[str] = []
        for port in relay.ports:
            try:
                await aiosmtplib.send(
                    message,
                    hostname=relay.host,
                    port=port,
                    start_tls=start_tls,
                    username=relay.username,
                    password=password,
                    tls_context=context,
                    timeout=relay.timeout,
                )
                return
            except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError) as exc:
                errors.append(f"{relay.host}:{port}: {exc}")  # try the next port
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise DeliveryFailed(f"{relay.host}:{port}: {type(exc).__name__}: {exc}") from exc
        raise DeliveryFailed("; ".join(errors))

    # webhooks -------------------------------------------------------------------------------
    async def _webhook(
        self, target: Mapping[str, Any], event_id: str, event: Mapping[str, Any], delivery: str
    ) -> None:
        keyring = self.keyring()
        url = keyring.open(target["url"])
        body = json.dumps(payload(target["format"], event_id, event)).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Portway-Alerts",
            DELIVERY_HEADER: delivery,
            TIMESTAMP_HEADER: timestamp,
        }
        if target.get("secret"):
            headers[SIGNATURE_HEADER] = sign(keyring.open(target["secret"]), timestamp, body)
        try:
            response = await self.http.post(url, content=body, headers=headers, timeout=10.0)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"the receiver answered {response.status_code}")

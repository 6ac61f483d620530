"""Alert rules, notification channels and silences, and the alerts, events and deliveries they
produce.

The request models (``RuleSpec``, ``ChannelSpec``, ``SilenceSpec``) live with the alert service in
``portway.manager.alerts.specs`` (their validation compiles JSONPath); the answers repeat their
fields here so a client reads them without the manager.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from portway.config.management.common import Answer, Number, Versioned

Severity = Literal["info", "warning", "critical"]


class RuleView(Answer, Versioned):
    id: Annotated[str | None, Field(description="the rule's name (in lists only)")] = None
    name: str
    description: str
    enabled: bool
    severity: Severity
    condition: Annotated[
        dict[str, Any], Field(description="the condition as configured; ``kind`` names its type")
    ]
    for_seconds: Number
    resolve_after_seconds: Number
    channels: list[str]


class EmailTargetView(Answer):
    kind: Literal["email"]
    to: list[str]


class WebhookTargetView(Answer):
    """A webhook as shown: the URL reduced to its origin, the secret only as ``has_secret``."""

    kind: Literal["webhook"]
    url: Annotated[str, Field(description="the origin only (scheme, host, port)")]
    format: Literal["json", "slack", "teams"]
    has_secret: bool


class ChannelView(Answer, Versioned):
    name: str
    send_resolved: bool
    target: Annotated[EmailTargetView | WebhookTargetView, Field(discriminator="kind")]


class SilenceView(Answer, Versioned):
    id: str
    rule: Annotated[str | None, Field(description="null = every rule")]
    subject_contains: str | None
    starts_at: str
    ends_at: str
    comment: str
    created_by: str
    created_at: str


class AlertState(Answer, Versioned):
    """One rule's alert for one subject (a worker, an API, a URL…) that is pending or firing."""

    id: str
    rule: str
    subject: str
    status: Literal["ok", "pending", "firing"]
    transitions: Annotated[int, Field(description="firing and resolved events so far")]
    value: Number | None = None
    summary: str | None = None
    bad_since: str | None = None
    good_since: str | None = None
    fired_at: str | None = None
    last_event: Annotated[str | None, Field(description="id of the latest event")] = None
    notified: Annotated[
        list[str] | None, Field(description="channels the firing notice was sent to")
    ] = None


class AlertEvent(Answer, Versioned):
    id: str
    rule: str
    subject: str
    status: Literal["firing", "resolved"]
    severity: Severity
    summary: str
    value: Number | None
    at: str
    silenced_by: Annotated[list[str], Field(description="ids of the silences that muted it")]
    channels: Annotated[list[str], Field(description="channels notified")]


class AlertDelivery(Answer, Versioned):
    """One event's notification through one channel."""

    id: str
    event: str
    channel: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: str
    next_attempt_at: str
    last_error: str | None
    claimed_until: str | None = None
    last_attempt_at: str | None = None
    delivered_at: str | None = None

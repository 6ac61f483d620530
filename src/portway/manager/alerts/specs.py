"""What an operator configures for alerts: rules (one condition each), notification channels and
silences. Each condition kind is one model; the ``kind`` field picks it."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from portway.config.base import JsonDatetime, Model, Slug
from portway.policies.jsonpath import compile_jsonpath

Seconds = Annotated[float, Field(ge=0, le=7 * 86400)]
Window = Annotated[
    int, Field(ge=10, le=86400, description="seconds of traffic the condition looks at")
]
Scope = Annotated[str | None, Field(max_length=63, description="null = every one")]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// URL with a host is required")
    return value


HttpUrl = Annotated[str, Field(min_length=8, max_length=2000), AfterValidator(_http_url)]
_EMAIL = re.compile(r"^[^@\s<>,;]{1,64}@[A-Za-z0-9.-]{1,253}$")


class WorkerDown(Model):
    """A worker stopped reporting (``down``) or stopped answering probes (``unreachable``)."""

    kind: Literal["worker_down"]
    environment: Scope = None


class WorkerNotConverged(Model):
    """A live worker serves another revision than the one asked for, for longer than ``seconds``."""

    kind: Literal["worker_not_converged"]
    environment: Scope = None
    seconds: Annotated[float, Field(gt=0, le=86400)] = 60.0


class SpoolBacklog(Model):
    """A worker's traffic-log spool (records waiting for the log store) holds more than
    ``max_records``."""

    kind: Literal["spool_backlog"]
    environment: Scope = None
    max_records: Annotated[int, Field(ge=0, le=10**9)] = 1000


class _Traffic(Model):
    environment: Scope = None
    api: Scope = None
    window_seconds: Window = 300
    min_requests: Annotated[
        int, Field(ge=1, le=10**9, description="fewer requests in the window: no verdict")
    ] = 20


class ErrorRate(_Traffic):
    """The share of 5xx answers in the window is above ``threshold``."""

    kind: Literal["error_rate"]
    threshold: Annotated[float, Field(gt=0, le=1, description="fraction, 0.05 = 5 %")] = 0.05


class LatencyP99(_Traffic):
    """The 99th percentile of total request time in the window is above ``threshold_ms``."""

    kind: Literal["latency_p99"]
    threshold_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 1000.0


class TrafficZero(Model):
    """An API received no request at all in the window."""

    kind: Literal["traffic_zero"]
    api: Annotated[str, Field(min_length=1, max_length=63)]
    environment: Scope = None
    window_seconds: Window = 300


class Anomaly(Model):
    """Request rate or p99 latency outside the EMA band: each evaluation measures the window,
    updates an exponential moving mean and variance, and fires when the value leaves
    ``mean ± deviations * std`` after ``warmup`` samples."""

    kind: Literal["anomaly"]
    metric: Literal["request_rate", "latency_p99"]
    environment: Scope = None
    api: Scope = None
    window_seconds: Window = 300
    alpha: Annotated[float, Field(gt=0, lt=1, description="EMA weight of a new sample")] = 0.1
    deviations: Annotated[float, Field(gt=0, le=100)] = 3.0
    warmup: Annotated[int, Field(ge=2, le=10_000, description="samples before any verdict")] = 10


class LogStoreUnreachable(Model):
    """The traffic log store (SQLite or Elasticsearch) does not answer the manager's query."""

    kind: Literal["log_store_unreachable"]


class DiskUsage(Model):
    """The file system of the manager's data directory is fuller than ``max_percent``."""

    kind: Literal["disk_usage"]
    max_percent: Annotated[float, Field(gt=0, le=100)] = 90.0


class CertificateExpiry(Model):
    """A certificate the manager is configured with (its TLS certificate, the cluster CA, the SMTP
    relay's CA) expires within ``days``."""

    kind: Literal["certificate_expiry"]
    days: Annotated[int, Field(ge=1, le=3650)] = 21


class Uptime(Model):
    """A scheduled HTTP check: every ``interval_seconds`` a request to ``url``; it fails when an
    assertion fails ``retries + 1`` times in a row."""

    kind: Literal["uptime"]
    url: HttpUrl
    method: Literal["GET", "HEAD", "POST"] = "GET"
    interval_seconds: Annotated[float, Field(ge=1, le=86400)] = 60.0
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    expect_status: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)] = [
        200
    ]
    body_jsonpath: Annotated[
        str | None, Field(max_length=500, description="must match in the JSON body")
    ] = None
    body_equals: Annotated[
        Any, Field(description="when set, the first match of body_jsonpath must equal it")
    ] = None
    max_latency_ms: Annotated[float | None, Field(gt=0, le=120_000)] = None

    @field_validator("body_jsonpath")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            compile_jsonpath(value)
        return value

    @model_validator(mode="after")
    def _equals_needs_path(self) -> Uptime:
        if self.body_equals is not None and self.body_jsonpath is None:
            raise ValueError("body_equals needs body_jsonpath")
        return self


Condition = Annotated[
    WorkerDown
    | WorkerNotConverged
    | SpoolBacklog
    | ErrorRate
    | LatencyP99
    | TrafficZero
    | Anomaly
    | LogStoreUnreachable
    | DiskUsage
    | CertificateExpiry
    | Uptime,
    Field(discriminator="kind"),
]


class RuleSpec(Model):
    name: Slug
    description: Annotated[str, Field(max_length=500)] = ""
    enabled: bool = True
    severity: Literal["info", "warning", "critical"] = "warning"
    condition: Condition
    for_seconds: Annotated[
        Seconds, Field(description="the condition must hold this long before the alert fires")
    ] = 0.0
    resolve_after_seconds: Annotated[
        Seconds,
        Field(
            description="the condition must stay clear this long before the alert resolves "
            "(flap suppression)"
        ),
    ] = 0.0
    channels: Annotated[
        list[Slug], Field(max_length=20, description="names of the notification channels")
    ] = Field(default_factory=list)


class EmailChannel(Model):
    kind: Literal["email"]
    to: Annotated[list[str], Field(min_length=1, max_length=50)]

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL.match(address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value


class WebhookChannel(Model):
    kind: Literal["webhook"]
    url: Annotated[
        HttpUrl, Field(description="write-only (a Slack or Teams URL is itself a credential)")
    ]
    secret: Annotated[
        str | None,
        Field(
            min_length=16,
            max_length=200,
            description="write-only HMAC-SHA256 key; signs X-Portway-Signature",
        ),
    ] = None
    format: Annotated[
        Literal["json", "slack", "teams"],
        Field(description="json: the event; slack: {text}; teams: a MessageCard"),
    ] = "json"


class ChannelSpec(Model):
    name: Slug
    send_resolved: bool = True
    target: Annotated[EmailChannel | WebhookChannel, Field(discriminator="kind")]


class SilenceSpec(Model):
    rule: Annotated[Slug | None, Field(description="null = every rule")] = None
    subject_contains: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    starts_at: JsonDatetime | None = None
    ends_at: JsonDatetime
    comment: Annotated[str, Field(max_length=500)] = ""

    @model_validator(mode="after")
    def _order(self) -> SilenceSpec:
        if self.starts_at is not None and self.starts_at.tzinfo is None:
            raise ValueError("starts_at needs a time zone (e.g. Z)")
        if self.ends_at.tzinfo is None:
            raise ValueError("ends_at needs a time zone (e.g. Z)")
        if self.starts_at is not None and self.starts_at >= self.ends_at:
            raise ValueError("starts_at must be before ends_at")
        return self

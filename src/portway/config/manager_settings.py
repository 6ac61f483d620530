"""Manager settings (from the platform file ``portway.yaml``, ``PORTWAY_…`` variables or flags).

Lives in ``config`` so the platform file (``config/platform.py``) composes it.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from portway.config.base import Model

# Backend addresses refused by default (the manager's addresses module applies them).
DEFAULT_BACKEND_DENY = (
    "169.254.0.0/16",  # link-local, cloud metadata
    "fe80::/10",  # link-local
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "fec0::/10",  # site-local (deprecated)
    "0.0.0.0/32",  # unspecified: the worker's own host
    "::/128",
)


Port = Annotated[int, Field(ge=1, le=65535)]


class SmtpRelay(Model):
    """The mail relay the manager's alert e-mails go through (flow ``out-manager-smtp``)."""

    host: Annotated[str, Field(min_length=1, max_length=253)]
    ports: Annotated[
        list[Port],
        Field(
            min_length=1,
            description="relay ports (25, 587), tried in order until one accepts the connection",
        ),
    ] = [587]
    starttls: Annotated[
        Literal["auto", "required", "off"],
        Field(
            description="auto: STARTTLS when the relay offers it (always on 587); required: "
            "refuse to send without it; off: plain SMTP (a relay on a trusted network)"
        ),
    ] = "auto"
    ca_file: Annotated[
        Path | None, Field(description="PEM CA bundle the relay's certificate must chain to")
    ] = None
    username: Annotated[str | None, Field(max_length=200, description="SMTP AUTH user")] = None
    password_file: Annotated[
        Path | None, Field(description="file holding the SMTP AUTH password (never inline)")
    ] = None
    sender: Annotated[
        str, Field(min_length=3, max_length=254, description="From: address of alert e-mails")
    ] = "portway@localhost"
    timeout: Annotated[float, Field(gt=0, le=300, description="seconds per SMTP exchange")] = 30.0

    @field_validator("ports")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"ports repeat: {value}")
        return value

    @model_validator(mode="after")
    def _auth(self) -> SmtpRelay:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together (SMTP AUTH)")
        if self.username is not None and self.starttls == "off":
            raise ValueError("SMTP AUTH with starttls off would send the password in clear")
        return self


class ManagerSettings(Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    metrics_port: Annotated[
        int | None,
        Field(ge=0, le=65535, description="Prometheus /metrics listener; off when unset"),
    ] = None
    metrics_host: Annotated[str, Field(description="address the metrics listener binds")] = (
        "127.0.0.1"
    )
    store: Annotated[str, Field(description="config store URL: sqlite:///path or mongodb://")] = (
        "sqlite:///var/portway/manager.db"
    )
    logs: Annotated[
        str, Field(description="traffic log store: sqlite:///path or elasticsearch://host:9200")
    ] = "sqlite:///var/portway/traffic.db"
    secret_file: Path = Path("var/portway/cluster.secret")
    tls_cert_file: Annotated[
        Path | None, Field(description="PEM certificate chain: serve HTTPS (workers and API)")
    ] = None
    tls_key_file: Annotated[
        Path | None, Field(description="PEM private key (if not in tls_cert_file)")
    ] = None
    cluster_ca_file: Annotated[
        Path | None,
        Field(description="PEM CA bundle that workers' https:// certificates must chain to"),
    ] = None
    data_dir: Path = Path("var/portway")
    bootstrap_file: Annotated[
        Path | None,
        Field(description="where the first admin's credentials are written once (0600)"),
    ] = Path("var/portway/bootstrap-admin.json")
    push_timeout: Annotated[float, Field(gt=0, le=300, description="seconds per worker push")] = (
        10.0
    )
    report_interval: Annotated[
        float, Field(gt=0, le=3600, description="seconds between worker status reports")
    ] = 5.0
    down_after: Annotated[
        int, Field(ge=1, le=100, description="missed report intervals before a worker is down")
    ] = 3
    probe_interval: Annotated[
        float | None,
        Field(
            ge=0,
            le=3600,
            description="seconds between health probes of workers; 0 = never; "
            "default: report_interval",
        ),
    ] = None

    @model_validator(mode="after")
    def _import_fits(self) -> ManagerSettings:
        """A raised ``import_max_bytes`` raises the import body cap with it (a document sent
        inline as a JSON string may grow by escaping, hence twice the size), unless the body cap
        was set too: then it must hold the document."""
        if "max_import_body_bytes" not in self.model_fields_set:
            wanted = min(max(self.max_import_body_bytes, 2 * self.import_max_bytes), 1 << 30)
            object.__setattr__(self, "max_import_body_bytes", wanted)
        if self.max_import_body_bytes < self.import_max_bytes:
            raise ValueError(
                "max_import_body_bytes must be at least import_max_bytes "
                f"({self.import_max_bytes}): an imported document travels in the body"
            )
        return self

    @field_validator("logs")
    @classmethod
    def _queryable(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if scheme.startswith(("syslog", "webhook", "kafka")):
            raise ValueError(
                f"{scheme}:// only forwards records and cannot answer analytics; the manager's "
                "logs must be sqlite:// or elasticsearch:// (workers may forward elsewhere)"
            )
        return value

    @model_validator(mode="after")
    def _tls(self) -> ManagerSettings:
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_key_file needs tls_cert_file")
        return self

    @property
    def effective_probe_interval(self) -> float:
        return self.report_interval if self.probe_interval is None else self.probe_interval

    # sessions and login ------------------------------------------------------------------
    session_ttl: Annotated[float, Field(gt=0, le=30 * 86400, description="session seconds")] = (
        8 * 3600.0
    )
    cookie_secure: Annotated[
        bool, Field(description="mark session cookies Secure (set when served over HTTPS)")
    ] = False
    login_max_failures_user: Annotated[
        int, Field(ge=1, le=1000, description="failed logins per username before a lockout")
    ] = 5
    login_max_failures_ip: Annotated[
        int, Field(ge=1, le=100000, description="failed logins per client IP before a lockout")
    ] = 20
    login_window: Annotated[
        float, Field(gt=0, le=86400, description="seconds over which failures are counted")
    ] = 900.0
    login_lockout: Annotated[float, Field(gt=0, le=86400, description="lockout seconds")] = 900.0
    login_failure_delay: Annotated[
        float,
        Field(ge=0, le=10, description="first delay after a failed login; doubles per failure"),
    ] = 0.25
    login_failure_delay_max: Annotated[float, Field(ge=0, le=60)] = 2.0

    # request bodies (413 before authentication and before the body is read) ---------------
    max_body_bytes: Annotated[
        int,
        Field(
            ge=1024,
            le=1 << 30,
            description="largest request body of the JSON API routes (413)",
        ),
    ] = 1024 * 1024
    max_import_body_bytes: Annotated[
        int,
        Field(
            ge=1024,
            le=1 << 30,
            description="largest request body of OpenAPI import and declarative apply (413); "
            "at least import_max_bytes",
        ),
    ] = 16 * 1024 * 1024
    max_cluster_body_bytes: Annotated[
        int,
        Field(
            ge=1024,
            le=1 << 30,
            description="largest request body of the cluster API workers call (413)",
        ),
    ] = 1024 * 1024

    # OpenAPI import ------------------------------------------------------------------------
    import_max_bytes: Annotated[
        int,
        Field(
            ge=1024,
            le=100 * 1024 * 1024,
            description="largest imported OpenAPI document (raises max_import_body_bytes to "
            "twice this unless that is set too)",
        ),
    ] = 5 * 1024 * 1024
    import_timeout: Annotated[float, Field(gt=0, le=300, description="seconds to fetch a URL")] = (
        10.0
    )
    import_allow_private_hosts: Annotated[
        bool,
        Field(description="allow importing from loopback/private addresses (SSRF guard off)"),
    ] = False
    import_allow_cidrs: Annotated[
        list[IPv4Network | IPv6Network],
        Field(
            description="internal networks the import may fetch from (e.g. an internal registry)"
        ),
    ] = Field(default_factory=list)

    # backend addresses of APIs ----------------------------------------------------------------
    backend_deny_cidrs: Annotated[
        list[IPv4Network | IPv6Network],
        Field(
            description="networks an API's backend URL or api_call policy URL may not name "
            "(link-local, metadata)"
        ),
    ] = Field(default_factory=lambda: [ip_network(n) for n in DEFAULT_BACKEND_DENY])
    backend_allow_cidrs: Annotated[
        list[IPv4Network | IPv6Network],
        Field(
            description="networks opened for backends despite backend_deny_cidrs "
            "or being the manager's own listen address"
        ),
    ] = Field(default_factory=list)

    # alerts, e-mail and webhooks ---------------------------------------------------------------
    smtp: Annotated[SmtpRelay | None, Field(description="mail relay; null = no mail")] = None
    webhooks: Annotated[
        bool,
        Field(
            description="the manager calls external HTTP(S) endpoints: alert webhooks and "
            "uptime monitors (flow out-manager-external-https)"
        ),
    ] = False
    alert_interval: Annotated[
        float, Field(ge=0, le=3600, description="seconds between alert evaluations; 0 = never")
    ] = 15.0
    alert_retry_base: Annotated[
        float,
        Field(gt=0, le=3600, description="first retry delay of a failed notification; doubles"),
    ] = 5.0
    alert_retry_max: Annotated[
        float, Field(gt=0, le=86400, description="longest delay between notification retries")
    ] = 300.0
    alert_max_attempts: Annotated[
        int, Field(ge=1, le=1000, description="attempts before a notification is given up")
    ] = 50

"""Listener and limit settings of a worker process (what ``portway worker`` is started with).

Lives in ``config`` so the platform file (``config/platform.py``) composes it; the worker turns
``limits`` into the HTTP server's limits with ``portway.worker.settings.server_limits``.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from portway.config.base import Model


def check_networks(value: list[str]) -> list[str]:
    """``value`` when every entry is an IP network (CIDR or address); ``ValueError`` naming one."""
    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ValueError(f"{cidr!r} is not an IP network") from exc
    return value


class TlsSettings(Model):
    """TLS termination on the worker."""

    cert_file: Annotated[str, Field(description="PEM certificate chain")]
    key_file: Annotated[str | None, Field(description="PEM private key (if not in cert_file)")] = (
        None
    )
    client_ca_file: Annotated[
        str | None, Field(description="PEM CAs that sign client certificates (mTLS)")
    ] = None
    require_client_cert: Annotated[
        bool, Field(description="refuse clients without a certificate signed by client_ca_file")
    ] = False
    reload_interval: Annotated[
        float,
        Field(
            ge=0,
            le=3600,
            description="seconds between checks of the certificate files for a change (0: "
            "only on SIGHUP)",
        ),
    ] = 10.0

    @model_validator(mode="after")
    def _mtls(self) -> TlsSettings:
        if self.require_client_cert and not self.client_ca_file:
            raise ValueError("require_client_cert needs client_ca_file")
        return self


class LimitSettings(Model):
    """Limits applied to every client connection (sizes in bytes, times in seconds)."""

    max_header_bytes: Annotated[int, Field(ge=1024, le=1 << 20)] = 32 * 1024
    max_headers: Annotated[int, Field(ge=8, le=1000)] = 100
    max_url_bytes: Annotated[int, Field(ge=256, le=1 << 20)] = 8 * 1024
    max_body_bytes: Annotated[
        int | None, Field(ge=0, description="request body limit; null for none")
    ] = 1 << 30
    header_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    body_timeout: Annotated[
        float,
        Field(gt=0, le=3600, description="seconds between two pieces of a request body (408)"),
    ] = 30.0
    body_deadline: Annotated[
        float | None,
        Field(
            gt=0,
            le=86400,
            description="seconds to receive a whole request body, from the end of its headers "
            "(408); null for none",
        ),
    ] = 600.0
    min_body_rate: Annotated[
        int,
        Field(
            ge=0,
            le=1 << 30,
            description="least average request body rate in bytes/s once a body has been "
            "arriving for body_timeout seconds (408); 0 to disable",
        ),
    ] = 1024
    keepalive_timeout: Annotated[float, Field(gt=0, le=3600)] = 75.0
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    max_connections_per_client: Annotated[
        int | None,
        Field(
            ge=1,
            le=1_000_000,
            description="open connections per client address (IPv6: per /64), more are "
            "answered 503 and closed; null for none (e.g. behind a load balancer)",
        ),
    ] = 256
    max_pipelined: Annotated[int, Field(ge=1, le=1000)] = 32


class Http2Settings(Model):
    """HTTP/2 towards clients: ALPN ``h2`` on the TLS listener, h2c with prior knowledge on the
    plain one (HTTP/1.1 keeps working on both)."""

    enabled: Annotated[bool, Field(description="accept HTTP/2 on the client listeners")] = False
    max_concurrent_streams: Annotated[
        int, Field(ge=1, le=10_000, description="streams (and running handlers) per connection")
    ] = 100
    initial_window_size: Annotated[
        int, Field(ge=65535, le=(1 << 31) - 1, description="flow-control window per stream")
    ] = 256 * 1024
    max_header_list_size: Annotated[
        int, Field(ge=1024, le=1 << 20, description="decoded size of one header block")
    ] = 32 * 1024
    max_resets: Annotated[
        int, Field(ge=1, le=100_000, description="client stream resets per window before GOAWAY")
    ] = 200
    max_control_frames: Annotated[
        int, Field(ge=1, le=100_000, description="SETTINGS/PING frames per window before GOAWAY")
    ] = 200
    window: Annotated[float, Field(gt=0, le=3600, description="seconds of the two counters")] = 10.0


class WorkerSettings(Model):
    """Where a worker listens and how it treats client connections."""

    host: Annotated[str, Field(description="address to bind")] = "0.0.0.0"
    port: Annotated[
        int | None, Field(ge=0, le=65535, description="plain HTTP listener; 0 = any free port")
    ] = 8080
    https_port: Annotated[
        int | None, Field(ge=0, le=65535, description="TLS listener (needs tls)")
    ] = None
    redirect_port: Annotated[
        int | None,
        Field(ge=0, le=65535, description="plain listener answering 308 to HTTPS (needs tls)"),
    ] = None
    public_https_port: Annotated[
        int | None, Field(ge=1, le=65535, description="HTTPS port named in redirects")
    ] = None
    tls: TlsSettings | None = None
    processes: Annotated[int, Field(ge=1, le=256, description="processes on the same ports")] = (
        Field(default_factory=lambda: os.cpu_count() or 1)
    )
    reuse_port: Annotated[bool, Field(description="SO_REUSEPORT (required for processes > 1)")] = (
        True
    )
    backlog: Annotated[int, Field(ge=16, le=65535)] = 1024
    limits: LimitSettings = LimitSettings()
    http2: Http2Settings = Http2Settings()
    trusted_proxies: Annotated[
        list[str],
        Field(description="CIDRs whose X-Forwarded-* headers are trusted (e.g. the LB)"),
    ] = Field(default_factory=list)
    drain_timeout: Annotated[
        float, Field(ge=0, le=3600, description="seconds in-flight requests get on shutdown")
    ] = 30.0
    via: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Via pseudonym")] = (
        "portway"
    )
    pool_idle_timeout: Annotated[
        float, Field(gt=0, le=3600, description="seconds an idle upstream connection is kept")
    ] = 50.0
    metrics_port: Annotated[
        int | None,
        Field(
            ge=0,
            le=65535,
            description="Prometheus /metrics listener, apart from client traffic; off when unset",
        ),
    ] = None
    metrics_host: Annotated[str, Field(description="address the metrics listener binds")] = (
        "127.0.0.1"
    )
    jwks_path: Annotated[
        str | None,
        Field(
            pattern=r"^/[A-Za-z0-9._~/-]{0,200}$",
            description="where the environment's JWT signing keys are published as a JWKS "
            "(when it has any); null: not published",
        ),
    ] = "/.well-known/jwks.json"
    tracing_endpoint: Annotated[
        str | None,
        Field(
            pattern=r"^https?://[^\s/]+(/\S*)?$",
            max_length=2000,
            description="OTLP/HTTP traces URL (http://collector:4318/v1/traces); off when unset",
        ),
    ] = None

    @field_validator("jwks_path")
    @classmethod
    def _jwks_path(cls, value: str | None) -> str | None:
        if value is not None and (value == "/_portway" or value.startswith("/_portway/")):
            raise ValueError("jwks_path cannot be under /_portway (the control endpoints)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return check_networks(value)

    @model_validator(mode="after")
    def _listeners(self) -> WorkerSettings:
        if (self.https_port is not None or self.redirect_port is not None) and self.tls is None:
            raise ValueError("https_port and redirect_port need tls")
        if self.port is None and self.https_port is None:
            raise ValueError("at least one of port and https_port is required")
        if self.processes > 1 and not self.reuse_port:
            raise ValueError("processes > 1 needs reuse_port")
        if self.metrics_port and self.metrics_port in (
            self.port,
            self.https_port,
            self.redirect_port,
        ):
            raise ValueError("metrics_port must differ from the client listeners' ports")
        return self

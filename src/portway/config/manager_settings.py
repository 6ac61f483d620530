"""Manager settings (from the platform file ``portway.yaml``, ``PORTWAY_…`` variables or flags).

Lives in ``config`` so the platform file (``config/platform.py``) composes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from portway.config.base import Model


class ManagerSettings(Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    store: Annotated[str, Field(description="config store URL: sqlite:///path or mongodb://")] = (
        "sqlite:///var/portway/manager.db"
    )
    logs: Annotated[
        str, Field(description="traffic log store: sqlite:///path or elasticsearch://host:9200")
    ] = "sqlite:///var/portway/traffic.db"
    secret_file: Path = Path("var/portway/cluster.secret")
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

    # OpenAPI import ------------------------------------------------------------------------
    import_max_bytes: Annotated[
        int, Field(ge=1024, le=100 * 1024 * 1024, description="largest imported document")
    ] = 5 * 1024 * 1024
    import_timeout: Annotated[float, Field(gt=0, le=300, description="seconds to fetch a URL")] = (
        10.0
    )
    import_allow_private_hosts: Annotated[
        bool,
        Field(description="allow importing from loopback/private addresses (SSRF guard off)"),
    ] = False

"""Manager settings (from the command line or the platform config file)."""

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
    secret_file: Path = Path("var/portway/cluster.secret")
    data_dir: Path = Path("var/portway")
    bootstrap_file: Annotated[
        Path | None,
        Field(description="where the first admin's credentials are written once (0600)"),
    ] = Path("var/portway/bootstrap-admin.json")
    push_timeout: Annotated[float, Field(gt=0, le=300, description="seconds per worker push")] = 10.0
    report_interval: Annotated[
        float, Field(gt=0, le=3600, description="seconds between worker status reports")
    ] = 5.0
    down_after: Annotated[
        int, Field(ge=1, le=100, description="missed report intervals before a worker is down")
    ] = 3

"""The worker's settings: one model family, defined in ``portway.config.worker_settings``."""

from __future__ import annotations

from portway.config.worker_settings import LimitSettings, TlsSettings, WorkerSettings
from portway.http import ServerLimits

__all__ = ["LimitSettings", "TlsSettings", "WorkerSettings", "server_limits"]


def server_limits(limits: LimitSettings) -> ServerLimits:
    """The HTTP server's limits for a worker's ``limits`` settings."""
    return ServerLimits(**limits.model_dump())

"""The worker's settings: one model family, defined in ``portway.config.worker_settings``."""

from __future__ import annotations

from portway.config.worker_settings import (
    Http2Settings,
    LimitSettings,
    TlsSettings,
    WorkerSettings,
)
from portway.http import H2Limits, ServerLimits

__all__ = [
    "Http2Settings",
    "LimitSettings",
    "TlsSettings",
    "WorkerSettings",
    "h2_limits",
    "server_limits",
]


def server_limits(limits: LimitSettings) -> ServerLimits:
    """The HTTP server's limits for a worker's ``limits`` settings."""
    return ServerLimits(**limits.model_dump())


def h2_limits(http2: Http2Settings) -> H2Limits | None:
    """The HTTP/2 limits of the client listeners, ``None`` when HTTP/2 is off."""
    if not http2.enabled:
        return None
    return H2Limits(
        max_concurrent_streams=http2.max_concurrent_streams,
        initial_window_size=http2.initial_window_size,
        max_header_list_size=http2.max_header_list_size,
        max_resets=http2.max_resets,
        max_control_frames=http2.max_control_frames,
        window=http2.window,
    )

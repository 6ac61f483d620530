"""The limits of a served listener, HTTP/1.1 and HTTP/2, and the slow-body check both enforce."""

from __future__ import annotations

from dataclasses import dataclass

from portway.http._body import Body
from portway.http._errors import RequestTimeout


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-connection limits of a served listener (sizes in bytes, times in seconds)."""

    max_header_bytes: int = 32 * 1024
    """Total size of the header fields of one request (431 past it)."""
    max_headers: int = 100
    """Number of header fields of one request (431 past it)."""
    max_url_bytes: int = 8 * 1024
    """Length of the request target (414 past it)."""
    max_body_bytes: int | None = 1 << 30
    """Request body size (413 past it); ``None`` for no limit."""
    header_timeout: float = 10.0
    """Time to receive a request's header block, from its first byte or the connection (408)."""
    body_timeout: float = 30.0
    """Time between two pieces of a request body while the handler waits for it (408)."""
    body_deadline: float | None = 600.0
    """Total time to receive one request body, from the end of its headers, checked while the
    handler waits for it (408); ``None`` for no limit."""
    min_body_rate: int = 1024
    """Least average request body rate in bytes/s, checked while the handler waits for the body
    once it has been arriving for longer than ``body_timeout`` (408); 0 to disable."""
    keepalive_timeout: float = 75.0
    """Idle time between requests before the connection is closed."""
    max_connections: int = 10_000
    """Open connections of the listener; more are answered 503 and closed."""
    max_connections_per_client: int | None = 256
    """Open connections of the listener from one client address (an IPv6 client counts per
    /64); more are answered 503 and closed. ``None`` for no limit."""
    max_pipelined: int = 32
    """Requests parsed ahead of the one being answered before reading pauses."""
    high_water: int = 256 * 1024
    """Unread body bytes buffered per stream before the sender is paused."""


@dataclass(frozen=True, slots=True)
class H2Limits:
    """HTTP/2 limits of a listener (the size and time limits of ``ServerLimits`` apply too)."""

    max_concurrent_streams: int = 100
    """Streams a client may have open, and handler tasks a connection may run at once."""
    initial_window_size: int = 256 * 1024
    """Flow-control window of each stream (and, times 4, of the connection)."""
    max_frame_size: int = 16384
    max_header_list_size: int = 32 * 1024
    """Decoded size of one header block (RFC 9113 6.5.2); HPACK bombs stop here."""
    header_table_size: int = 4096
    max_resets: int = 200
    """Streams the client may reset per ``window`` before GOAWAY (rapid reset)."""
    max_control_frames: int = 200
    """SETTINGS and PING frames the client may send per ``window`` before GOAWAY."""
    window: float = 10.0


def check_body_progress(
    body: Body, limits: ServerLimits, now: float, activity: float, started: float
) -> None:
    """Fail a request body its handler waits for when the client is too slow: nothing for
    ``body_timeout``, past ``body_deadline``, or under ``min_body_rate`` (the handler then sees
    ``RequestTimeout``, answered 408)."""
    if now - activity > limits.body_timeout:
        body.fail(RequestTimeout("request body timeout"))
        return
    elapsed = now - started
    if limits.body_deadline is not None and elapsed > limits.body_deadline:
        body.fail(RequestTimeout("request body deadline"))
    elif (
        limits.min_body_rate
        and elapsed > limits.body_timeout
        and body.received < limits.min_body_rate * elapsed
    ):
        body.fail(RequestTimeout("request body too slow"))

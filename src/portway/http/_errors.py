"""The exceptions of ``portway.http`` (it imports nothing of Portway, so it keeps its own tree).

HTTPError                    base of everything this package raises on purpose
├── ClientError              the client side of a served connection failed
│   ├── ClientDisconnected   the client went away before the request body was read
│   ├── RequestTimeout       the client was too slow sending the request body
│   └── BodyTooLarge         the request body exceeds the configured limit
└── UpstreamError            a call to an upstream server failed (``request_sent`` tells
    │                        whether any byte of the request may have reached it)
    ├── ConnectError         DNS, TCP or TLS connection setup failed
    ├── UpstreamTimeout      connect, read (between bytes) or total time ran out
    ├── InvalidResponse      the upstream answered with something that is not HTTP/1.x
    └── UpstreamDisconnected the upstream closed the connection before a complete response
"""

from __future__ import annotations


class HTTPError(Exception):
    """Base class of the errors ``portway.http`` raises on purpose."""


class ClientError(HTTPError):
    """The client side of a served connection failed; ``status`` is the answer it deserves."""

    status = 400


class ClientDisconnected(ClientError):
    status = 499


class RequestTimeout(ClientError):
    status = 408


class BodyTooLarge(ClientError):
    status = 413


class UpstreamError(HTTPError):
    """A call to an upstream server failed."""

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class ConnectError(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(message, request_sent=False)


class UpstreamTimeout(UpstreamError):
    """``phase`` is ``connect``, ``read`` or ``total``."""

    def __init__(self, message: str, *, phase: str, request_sent: bool = True) -> None:
        super().__init__(message, request_sent=request_sent)
        self.phase = phase


class InvalidResponse(UpstreamError):
    pass


class UpstreamDisconnected(UpstreamError):
    """``stale``: a kept-alive connection closed before any byte of the answer (a race with the
    upstream's idle timeout; the request most likely never reached it)."""

    stale = False

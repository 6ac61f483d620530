"""The request a handler receives, the response it returns, and the raw stream of an upgrade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from portway.http._body import Body

Headers = list[tuple[bytes, bytes]]
"""Header fields in order; request and upstream-response names are lower-cased by the parser."""


class Request:
    """One parsed client request. ``body`` streams; nothing here is copied more than once."""

    __slots__ = (
        "body",
        "client",
        "expect_continue",
        "headers",
        "host",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "query",
        "scheme",
        "server",
        "target",
        "tls_peer_cert",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        headers: Headers,
        body: Body,
        *,
        host: str = "",
        http_version: str = "1.1",
        keep_alive: bool = True,
        client: tuple[str, int] = ("", 0),
        server: tuple[str, int] = ("", 0),
        scheme: str = "http",
        tls_peer_cert: dict[str, Any] | None = None,
        upgrade: bytes | None = None,
        expect_continue: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        """The request target as received (origin-form: path and query, still percent-encoded)."""
        path, _, query = target.partition(b"?")
        self.path = path.decode("ascii", "replace")
        self.query = query.decode("ascii", "replace")
        self.headers = headers
        self.body = body
        self.host = host
        """The Host header (lower-cased), or the authority of an absolute-form target."""
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.client = client
        self.server = server
        self.scheme = scheme
        self.tls_peer_cert = tls_peer_cert
        """The verified client certificate (``ssl.SSLSocket.getpeercert()`` form) under mTLS."""
        self.upgrade = upgrade
        """``b"websocket"`` for a WebSocket handshake; answer 101 with a ``tunnel``."""
        self.expect_continue = expect_continue

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header; ``name`` in lower case."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} host={self.host!r}>"


class Stream:
    """A raw byte stream after an HTTP Upgrade (both directions, with backpressure)."""

    __slots__ = ("_closed", "_drain", "_transport", "incoming")

    def __init__(
        self,
        transport: asyncio.Transport,
        incoming: Body,
        drain: Callable[[], Awaitable[None]],
    ) -> None:
        self._transport = transport
        self.incoming = incoming
        self._drain = drain
        self._closed = False

    async def read(self) -> bytes:
        """The next bytes from the peer; ``b""`` once it closed its side."""
        return await self.incoming.read()

    async def write(self, data: bytes) -> None:
        """Send bytes, waiting while the peer's receive side is behind."""
        if self._transport.is_closing():
            raise ConnectionResetError("stream closed")
        self._transport.write(data)
        await self._drain()

    def write_eof(self) -> None:
        if not self._transport.is_closing() and self._transport.can_write_eof():
            self._transport.write_eof()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()


Tunnel = Callable[[Stream], Awaitable[None]]
"""Runs a 101 response's upgraded connection; the connection closes when it returns."""


@dataclass(slots=True)
class Outcome:
    """How sending a response ended, handed to ``Response.on_finish``."""

    status: int
    bytes_sent: int
    completed: bool
    """``False`` when the connection broke before the whole response was written."""


class Response:
    """What a handler returns. The server writes the framing headers (Content-Length, chunked,
    Connection) itself; ``headers`` carry the rest.

    ``body`` is ``bytes`` or an async iterable of chunks. With an iterable, ``content_length``
    (when known) is sent and must match; otherwise the body is chunked (HTTP/1.1) or ends with the
    connection (HTTP/1.0). HEAD, 1xx, 204 and 304 never carry a body.
    """

    __slots__ = (
        "body",
        "checked",
        "content_length",
        "headers",
        "on_finish",
        "status",
        "trailers",
        "tunnel",
    )

    def __init__(
        self,
        status: int,
        headers: Headers | None = None,
        body: bytes | AsyncIterable[bytes] = b"",
        *,
        content_length: int | None = None,
        tunnel: Tunnel | None = None,
        on_finish: Callable[[Outcome], None] | None = None,
        checked: bool = False,
        trailers: Headers | None = None,
    ) -> None:
        self.status = status
        self.headers: Headers = headers if headers is not None else []
        self.body = body
        self.content_length = content_length
        self.tunnel = tunnel
        self.on_finish = on_finish
        self.trailers = trailers
        """Trailer fields sent after the body (HTTP/2, and chunked HTTP/1.1). Read once the body
        has been sent, so it may be a list the body's producer fills meanwhile (an upstream
        response's ``trailers``)."""
        self.checked = checked
        """The caller vouches that ``headers`` hold no CR/LF and no framing or hop-by-hop field
        (e.g. parsed upstream headers after filtering): the server writes them unexamined."""


Handler = Callable[[Request], Awaitable[Response]]

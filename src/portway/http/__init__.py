"""``portway.http``: the HTTP/1.1 server and upstream client the worker runs on.

It imports nothing of Portway: no routing, policies or storage, only protocol. Built on uvloop
and httptools (llhttp), with the strictness checks llhttp leaves to its user.

Serving::

    async def handler(request: Request) -> Response:
        body = await request.body.read_all()          # or: async for chunk in request.body
        return Response(200, [(b"content-type", b"text/plain")], b"hello")

    server = await serve(handler, "127.0.0.1", 0, limits=ServerLimits(max_body_bytes=1 << 20))
    ...
    await server.close(grace=30)                     # stop accepting, drain, then abort

Calling upstreams::

    pool = ConnectionPool("backend.local", 443, ssl=client_tls_context(), max_idle=64)
    upstream = await pool.request("GET", b"/items", [(b"host", b"backend.local")],
                                  read_timeout=30, total_timeout=60)
    async for chunk in upstream: ...                 # the connection returns to the pool by itself

A ``Response`` body may be ``bytes`` or any async iterable of chunks (an ``UpstreamResponse`` is
one), so a proxy streams with backpressure in both directions without buffering. A WebSocket
handshake (``request.upgrade == b"websocket"``) is answered with a 101 ``Response`` whose
``tunnel`` receives the client ``Stream``; ``UpstreamResponse.stream()`` gives the upstream one and
``pump(a, b)`` joins them.

HTTP/2 (the ``h2`` library on the same transports): ``serve(..., http2=H2Limits())`` accepts ALPN
``h2`` on a TLS listener and h2c with prior knowledge on a plain one; each stream reaches the
handler as the same ``Request`` (``http_version == "2"``), and ``Response.trailers`` are sent
after the body. ``H2ConnectionPool`` is the HTTP/2 upstream client (``request`` as above; the
response's ``trailers`` fill in when the body ends), for backends such as gRPC servers.
"""

from portway.http._body import Body
from portway.http._client import (
    IDEMPOTENT_METHODS,
    ConnectionPool,
    Resolver,
    UpstreamResponse,
)
from portway.http._errors import (
    BodyTooLarge,
    ClientDisconnected,
    ClientError,
    ConnectError,
    HTTPError,
    InvalidResponse,
    RequestTimeout,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamTimeout,
)
from portway.http._h2client import H2ConnectionPool
from portway.http._helpers import (
    client_tls_context,
    pump,
    redirect_to_https,
    reload_server_certificate,
    server_tls_context,
)
from portway.http._limits import H2Limits, ServerLimits
from portway.http._messages import Handler, Headers, Outcome, Request, Response, Stream, Tunnel
from portway.http._server import ErrorRenderer, Server, serve

__all__ = [
    "IDEMPOTENT_METHODS",
    "Body",
    "BodyTooLarge",
    "ClientDisconnected",
    "ClientError",
    "ConnectError",
    "ConnectionPool",
    "ErrorRenderer",
    "H2ConnectionPool",
    "H2Limits",
    "HTTPError",
    "Handler",
    "Headers",
    "InvalidResponse",
    "Outcome",
    "Request",
    "RequestTimeout",
    "Resolver",
    "Response",
    "Server",
    "ServerLimits",
    "Stream",
    "Tunnel",
    "UpstreamDisconnected",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamTimeout",
    "client_tls_context",
    "pump",
    "redirect_to_https",
    "reload_server_certificate",
    "serve",
    "server_tls_context",
]

"""Small ready-made pieces: the HTTPS redirect handler, TLS contexts and a tunnel pump."""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any

from portway.http._messages import Handler, Request, Response, Stream

HOST_RE = re.compile(
    rb"(?:[a-z0-9._~!$&'()*+,;=%-]*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?", re.IGNORECASE
)
"""A Host header or ``:authority``: a registered name or IP literal, optionally a port."""


def connection_ends(
    transport: asyncio.BaseTransport,
) -> tuple[tuple[str, int], tuple[str, int], dict[str, Any] | None]:
    """A served connection's client address, server address and verified client certificate
    (``ssl.SSLSocket.getpeercert()`` form, under mTLS)."""
    client: tuple[str, int] = ("", 0)
    server: tuple[str, int] = ("", 0)
    cert: dict[str, Any] | None = None
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple):
        client = (str(peer[0]), int(peer[1]))
    sock = transport.get_extra_info("sockname")
    if isinstance(sock, tuple):
        server = (str(sock[0]), int(sock[1]))
    ssl_object = transport.get_extra_info("ssl_object")
    if isinstance(ssl_object, ssl.SSLObject):
        peer_cert = ssl_object.getpeercert()
        cert = dict(peer_cert) if peer_cert else None
    return client, server, cert


def redirect_to_https(https_port: int | None = 443) -> Handler:
    """A handler answering every request with 308 to the same URL over HTTPS."""

    async def redirect(request: Request) -> Response:
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        if not host:
            return Response(400, [(b"content-type", b"text/plain")], b"missing Host\n")
        if https_port not in (None, 443):
            host = f"{host}:{https_port}"
        location = b"https://" + host.encode("ascii") + request.target
        return Response(
            308,
            [(b"location", location), (b"content-type", b"text/plain")],
            b"redirecting to HTTPS\n",
        )

    return redirect


MODERN_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites a server offers: forward secrecy (ECDHE) with an AEAD cipher only; TLS 1.3
suites are all AEAD and stay OpenSSL's defaults."""


def server_tls_context(
    certfile: str,
    keyfile: str | None = None,
    *,
    client_ca_file: str | None = None,
    require_client_cert: bool = False,
    http2: bool = False,
) -> ssl.SSLContext:
    """The one server TLS context: TLS 1.2+ (1.3 preferred by OpenSSL), ECDHE with AES-GCM or
    ChaCha20 only, server cipher order, no compression, no renegotiation, ALPN ``http/1.1``
    (``h2`` first with ``http2``: serve the listener with ``serve(..., http2=...)`` then).
    With ``client_ca_file`` client certificates are verified (required when
    ``require_client_cert``) and reach handlers as ``Request.tls_peer_cert``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(MODERN_TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
    )
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    if client_ca_file:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def reload_server_certificate(
    context: ssl.SSLContext, certfile: str, keyfile: str | None = None
) -> None:
    """Load a new certificate chain into a live server context: handshakes that start afterwards
    present it, established connections keep theirs. The pair is checked in a scratch context
    first, so a half-written or mismatched file raises ``ssl.SSLError``/``OSError`` and leaves
    ``context`` serving the old certificate."""
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
    context.load_cert_chain(certfile, keyfile)


def client_tls_context(*, verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    """A client context for upstream HTTPS: verification and host names checked unless
    ``verify`` is explicitly false."""
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def pump(a: Stream, b: Stream) -> None:
    """Copy bytes both ways between two upgraded streams until both directions ended."""

    async def one_way(src: Stream, dst: Stream) -> None:
        try:
            while data := await src.read():
                await dst.write(data)
            dst.write_eof()
        except Exception:
            src.close()
            dst.close()

    await asyncio.gather(one_way(a, b), one_way(b, a))
    a.close()
    b.close()

"""Header rules between client and backend: hop-by-hop removal, X-Forwarded-*, Via and the
correlation id."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from portway.http import Headers, Request
from portway.policies.ip_filter import client_address

# hop-by-hop (RFC 9110 7.6.1) plus the framing and routing fields the proxy writes itself
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
_REQUEST_DROP = HOP_BY_HOP | {b"content-length", b"host", b"expect"}
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length"}
_FORWARDED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"forwarded",
    }
)
CORRELATION = b"x-correlation-id"
_CORRELATION_RE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class TrustedProxies:
    """Which peers may tell us who the client is (their X-Forwarded-* are kept and extended)."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self._cache: dict[str, bool] = {}

    def __contains__(self, ip: object) -> bool:
        if not self._networks or not isinstance(ip, str):
            return False
        known = self._cache.get(ip)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            trusted = False
        else:
            trusted = any(address in net for net in self._networks)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[ip] = trusted
        return trusted

    def client_ip(self, request: Request) -> str:
        """Who the client is: the peer, or, when the peer is a trusted proxy, the nearest
        ``X-Forwarded-For`` hop that is not itself trusted (the peer if an entry is malformed).
        IP filters, per-IP limits, ``ip_hash`` balancing and the traffic log use this."""
        peer = request.client[0]
        if peer not in self:
            return peer
        forwarded = [v.decode("latin-1") for n, v in request.headers if n == b"x-forwarded-for"]
        address = client_address(peer, forwarded, self._networks)
        return peer if address is None else str(address)


_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade", b"Keep-Alive", b"Close"})


def _connection_tokens(headers: Headers) -> set[bytes]:
    names: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            if value in _PLAIN_CONNECTION:
                continue  # already hop-by-hop
            for token in value.split(b","):
                token = token.strip().lower()
                if token:
                    names.add(token)
    return names


def incoming_correlation_id(request: Request) -> str | None:
    value = request.header(CORRELATION)
    if value is not None and _CORRELATION_RE.fullmatch(value):
        return value.decode("ascii")
    return None


def request_headers(
    request: Request,
    *,
    trusted: bool,
    via: bytes,
    correlation_id: bytes,
    websocket: bool = False,
) -> Headers:
    """The headers to send to the backend (without Host, which depends on the address)."""
    drop = _REQUEST_DROP
    for name, value in request.headers:
        if name == b"connection":
            if value not in _PLAIN_CONNECTION:
                drop = drop | _connection_tokens(request.headers)
            break
    out: Headers = []
    xff: bytes | None = None
    proto: bytes | None = None
    fhost: bytes | None = None
    fport: bytes | None = None
    incoming_via: bytes | None = None
    for name, value in request.headers:
        if name in drop:
            if websocket and name == b"upgrade":
                continue
            continue
        if name in _FORWARDED:
            if not trusted:
                continue
            if name == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
            elif name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-host":
                fhost = value
            elif name == b"x-forwarded-port":
                fport = value
            else:
                out.append((name, value))
            continue
        if name == CORRELATION:
            continue
        if name == b"via":
            incoming_via = value if incoming_via is None else incoming_via + b", " + value
            continue
        out.append((name, value))
    client_ip = request.client[0].encode("ascii")
    out.append((b"x-forwarded-for", xff + b", " + client_ip if xff else client_ip))
    out.append((b"x-forwarded-proto", proto or request.scheme.encode("ascii")))
    host = request.host.encode("ascii")
    if fhost or host:
        out.append((b"x-forwarded-host", fhost or host))
    out.append((b"x-forwarded-port", fport or str(request.server[1]).encode("ascii")))
    version = request.http_version.encode("ascii")
    out.append((b"via", (incoming_via + b", " if incoming_via else b"") + version + b" " + via))
    out.append((CORRELATION, correlation_id))
    if websocket:
        out.append((b"connection", b"upgrade"))
        out.append((b"upgrade", b"websocket"))
    return out


def response_headers(
    headers: Headers, *, via: bytes, version: str, correlation_id: bytes, websocket: bool = False
) -> Headers:
    """The backend's headers as the client gets them (framing is the server's job)."""
    drop = _RESPONSE_DROP
    for name, value in headers:
        if name == b"connection":
            if value not in _PLAIN_CONNECTION:
                drop = drop | _connection_tokens(headers)
            break
    out: Headers = []
    incoming_via: bytes | None = None
    for name, value in headers:
        if name in drop or name == CORRELATION:
            continue
        if name == b"via":
            incoming_via = value if incoming_via is None else incoming_via + b", " + value
            continue
        out.append((name, value))
    version_b = version.encode("ascii")
    out.append((b"via", (incoming_via + b", " if incoming_via else b"") + version_b + b" " + via))
    out.append((CORRELATION, correlation_id))
    if websocket:
        out.append((b"connection", b"upgrade"))
        out.append((b"upgrade", b"websocket"))
    return out

"""How cluster calls travel: TLS verified against a pinned CA bundle, and plain HTTP only to a
loopback peer unless the operator says otherwise."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from urllib.parse import urlsplit


def tls_verification(ca_file: Path | None) -> ssl.SSLContext:
    """The TLS context of a cluster client: only ``ca_file``'s CAs when given (pinned), the
    system's otherwise."""
    if ca_file is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(ca_file))


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_refusal(url: str, *, insecure: bool) -> str | None:
    """Why ``url`` may not be used for cluster calls, or None when it may."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"cluster URL {url!r} must be http(s)://HOST[:PORT]"
    if parts.scheme == "https" or insecure or is_loopback_host(parts.hostname):
        return None
    return (
        f"refusing plain http:// to the non-loopback manager {parts.hostname}: cluster calls "
        "would cross the network unencrypted; use https:// (with --cluster-ca) or pass "
        "--insecure-cluster"
    )

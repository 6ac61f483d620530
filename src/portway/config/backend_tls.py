"""The TLS client context of an API's backend connections, built the same way by the worker (to
serve) and by the manager (to refuse a revision a worker could not compile).

A CA bundle that cannot be loaded is a ``ConfigError`` naming ``connection.ca_bundle`` and the path
the user gave; the operating system's reason (errno text, other paths) is left out: it describes
the file system of the machine that tried, which callers of the management API need not see.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

from portway.config.models import ApiProxy
from portway.errors import ConfigError


def backend_tls_context(verify: bool, ca_file: str | None, http2: bool = False) -> ssl.SSLContext:
    """A client context for backend HTTPS: certificates and host names checked unless ``verify``
    is false; ``ca_file`` (PEM) replaces the system's trusted CAs. ALPN offers ``http/1.1``, or
    ``h2`` alone for an HTTP/2 backend."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError, ValueError):
        raise ConfigError(
            f"{ca_file!r} cannot be loaded as a PEM file of CA certificates",
            "connection.ca_bundle",
        ) from None
    context.set_alpn_protocols(["h2"] if http2 else ["http/1.1"])
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_settings(api: ApiProxy) -> Iterator[tuple[bool, str | None]]:
    """The distinct (verify, ca_file) pairs the API's HTTPS backends (of every group, and its
    mirror) need a context for."""
    traffic = api.traffic
    urls = [b.url for b in api.backends]
    urls += [b.url for group in traffic.groups for b in group.backends]
    if traffic.mirror is not None:
        urls.append(traffic.mirror.url)
    if any(urlsplit(url).scheme == "https" for url in urls):
        yield api.connection.tls_verify, api.connection.ca_bundle

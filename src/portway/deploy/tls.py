"""The TLS policy every rendered load balancer uses: the same one the worker applies
(``portway.http.server_tls_context``): TLS 1.2+ with ECDHE and AES-GCM or ChaCha20, TLS 1.3
preferred, no session tickets, HSTS on every HTTPS answer."""

from __future__ import annotations

TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
CONTROL_PATH_REGEX = r"^/+_portway(/|$)"
"""Paths of the workers' control endpoints (after percent-decoding and lower-casing, any number
of leading slashes): never reachable from outside."""


def hsts_value(max_age: int) -> str:
    return f"max-age={max_age}"

"""Request signatures with the cluster secret: HMAC-SHA256, timestamped, bound to method, target and
body, so the secret never travels and a captured call cannot be replayed to another path or later.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from pathlib import Path

TIMESTAMP_HEADER = "X-Portway-Timestamp"
SIGNATURE_HEADER = "X-Portway-Signature"
MAX_SKEW_SECONDS = 300


def _message(timestamp: str, method: str, target: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{timestamp}\n{method.upper()}\n{target}\n{digest}".encode()


def sign(secret: bytes, method: str, target: str, body: bytes = b"") -> dict[str, str]:
    """Headers that authenticate one call; ``target`` is the path with its query string."""
    timestamp = str(int(time.time()))
    mac = hmac.new(secret, _message(timestamp, method, target, body), hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: mac}


def verify(
    secret: bytes,
    method: str,
    target: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
) -> bool:
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    expected = hmac.new(
        secret, _message(timestamp, method, target, body), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, signature)


def load_or_create_secret(path: Path) -> bytes:
    """Read the cluster secret, creating it (0600, 256 random bits) on first use."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PermissionError(
                f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            )
        return read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return read_secret(path)


def read_secret(path: Path) -> bytes:
    value = path.read_text().strip()
    if len(value) < 32:
        raise ValueError(f"{path}: the cluster secret must have at least 32 characters")
    return value.encode()

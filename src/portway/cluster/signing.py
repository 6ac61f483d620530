"""Signatures with the cluster secret, on calls and on their answers.

A call is signed with HMAC-SHA256 over its timestamp, request id (a fresh random nonce), method,
target and body digest, so the secret never travels and a captured call cannot be sent to another
path, later, or (``ReplayGuard``) a second time. The answer is signed over its timestamp, status,
the request id it answers, the revision number it carries (if any) and its body digest, so a
changed body, a stripped signature, another revision or an old answer replayed to a new call is
refused before anything in it is used.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from portway.errors import ClusterError

TIMESTAMP_HEADER = "X-Portway-Timestamp"
SIGNATURE_HEADER = "X-Portway-Signature"
REQUEST_ID_HEADER = "X-Portway-Request-Id"
REVISION_HEADER = "X-Portway-Revision"
MAX_SKEW_SECONDS = 300
_REQUEST_ID_CHARS = frozenset("0123456789abcdef")


class AnswerRefused(ClusterError):
    """An answer whose signature, request id, revision or timestamp does not check out."""


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def _request_message(timestamp: str, request_id: str, method: str, target: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    return f"call\n{timestamp}\n{request_id}\n{method.upper()}\n{target}\n{digest}"


def _answer_message(
    timestamp: str, status: int, request_id: str, revision: str, body: bytes
) -> str:
    digest = hashlib.sha256(body).hexdigest()
    return f"answer\n{timestamp}\n{status}\n{request_id}\n{revision}\n{digest}"


def _fresh(timestamp: str | None, now: float | None) -> bool:
    if not timestamp or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    return abs(current - int(timestamp)) <= MAX_SKEW_SECONDS


def valid_request_id(request_id: str | None) -> bool:
    return (
        request_id is not None
        and 16 <= len(request_id) <= 64
        and set(request_id) <= _REQUEST_ID_CHARS
    )


def sign(secret: bytes, method: str, target: str, body: bytes = b"") -> dict[str, str]:
    """Headers that authenticate one call; ``target`` is the path with its query string.
    ``REQUEST_ID_HEADER`` is the nonce the answer must echo (see ``verify_answer``)."""
    timestamp = str(int(time.time()))
    request_id = secrets.token_hex(16)
    mac = _mac(secret, _request_message(timestamp, request_id, method, target, body))
    return {TIMESTAMP_HEADER: timestamp, REQUEST_ID_HEADER: request_id, SIGNATURE_HEADER: mac}


def verify(
    secret: bytes,
    method: str,
    target: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    request_id: str | None,
    *,
    now: float | None = None,
) -> bool:
    """Whether a call's signature is good; replays are the ``ReplayGuard``'s business."""
    if not signature or timestamp is None or request_id is None:
        return False
    if not _fresh(timestamp, now) or not valid_request_id(request_id):
        return False
    expected = _mac(secret, _request_message(timestamp, request_id, method, target, body))
    return hmac.compare_digest(expected, signature)


def sign_answer(
    secret: bytes, status: int, request_id: str, body: bytes, revision: int | None = None
) -> dict[str, str]:
    """Headers that authenticate the answer to the call ``request_id``."""
    timestamp = str(int(time.time()))
    number = "" if revision is None else str(revision)
    mac = _mac(secret, _answer_message(timestamp, status, request_id, number, body))
    headers = {TIMESTAMP_HEADER: timestamp, REQUEST_ID_HEADER: request_id, SIGNATURE_HEADER: mac}
    if revision is not None:
        headers[REVISION_HEADER] = number
    return headers


def verify_answer(
    secret: bytes,
    request_id: str,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    revision: int | None = None,
    now: float | None = None,
) -> None:
    """Raise ``AnswerRefused`` unless the answer is signed, fresh, answers ``request_id`` and,
    when ``revision`` is given, carries exactly that revision number."""
    signature = headers.get(SIGNATURE_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    if not signature:
        raise AnswerRefused("the answer carries no cluster signature")
    if timestamp is None or not _fresh(timestamp, now):
        raise AnswerRefused(f"the answer's timestamp {timestamp!r} is outside the skew window")
    if headers.get(REQUEST_ID_HEADER) != request_id:
        raise AnswerRefused("the answer does not answer this call (request id differs)")
    number = headers.get(REVISION_HEADER, "")
    expected = _mac(secret, _answer_message(timestamp, status, request_id, number, body))
    if not hmac.compare_digest(expected, signature):
        raise AnswerRefused("the answer's signature does not match its content")
    if revision is not None and number != str(revision):
        raise AnswerRefused(f"asked for revision {revision}, the answer carries {number or 'none'}")


class ReplayGuard:
    """The request ids seen within the skew window; a second call with one of them is a replay.

    Memory is bounded: ids older than the window are forgotten (their timestamp no longer
    verifies), and while ``capacity`` ids are remembered new calls are refused rather than an id
    still inside the window forgotten.
    """

    def __init__(self, capacity: int = 100_000, window: float = 2 * MAX_SKEW_SECONDS) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._capacity = capacity
        self._window = window

    def first_use(self, request_id: str, *, now: float | None = None) -> bool:
        """Record ``request_id``; False if it was seen already (or memory is full)."""
        current = time.monotonic() if now is None else now
        while self._seen:
            oldest, seen_at = next(iter(self._seen.items()))
            if current - seen_at <= self._window:
                break
            del self._seen[oldest]
        if request_id in self._seen or len(self._seen) >= self._capacity:
            return False
        self._seen[request_id] = current
        return True

    def __len__(self) -> int:
        return len(self._seen)


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

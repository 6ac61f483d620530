from __future__ import annotations

import stat
from pathlib import Path

import pytest

from portway.cluster.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_or_create_secret,
    sign,
    verify,
)

SECRET = b"s" * 64


def check(method: str, target: str, body: bytes, headers: dict[str, str], **kw: float) -> bool:
    return verify(
        SECRET, method, target, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], **kw
    )


def test_a_signed_call_verifies() -> None:
    headers = sign(SECRET, "POST", "/_portway/deploy", b'{"revision": 3}')
    assert check("POST", "/_portway/deploy", b'{"revision": 3}', headers)


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/_portway/deploy", b'{"revision": 3}'),
        ("POST", "/_portway/other", b'{"revision": 3}'),
        ("POST", "/_portway/deploy", b'{"revision": 4}'),
    ],
)
def test_tampering_fails(method: str, target: str, body: bytes) -> None:
    headers = sign(SECRET, "POST", "/_portway/deploy", b'{"revision": 3}')
    assert not check(method, target, body, headers)


def test_other_secret_and_old_timestamp_fail() -> None:
    headers = sign(SECRET, "GET", "/x")
    assert not verify(
        b"t" * 64, "GET", "/x", b"", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    )
    assert not check("GET", "/x", b"", headers, now=int(headers[TIMESTAMP_HEADER]) + 3600)
    assert not verify(SECRET, "GET", "/x", b"", None, None)
    assert not verify(SECRET, "GET", "/x", b"", "abc", headers[SIGNATURE_HEADER])


def test_secret_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "cluster.secret"
    first = load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert load_or_create_secret(path) == first


def test_a_world_readable_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cluster.secret"
    load_or_create_secret(path)
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_secret(path)

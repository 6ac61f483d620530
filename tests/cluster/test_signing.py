from __future__ import annotations

import stat
from pathlib import Path

import pytest

from portway.cluster.signing import (
    REQUEST_ID_HEADER,
    REVISION_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AnswerRefused,
    ReplayGuard,
    load_or_create_secret,
    sign,
    sign_answer,
    verify,
    verify_answer,
)

SECRET = b"s" * 64


def check(method: str, target: str, body: bytes, headers: dict[str, str], **kw: float) -> bool:
    return verify(
        SECRET,
        method,
        target,
        body,
        headers[TIMESTAMP_HEADER],
        headers[SIGNATURE_HEADER],
        headers[REQUEST_ID_HEADER],
        **kw,
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
    stamp, mac, rid = (
        headers[TIMESTAMP_HEADER],
        headers[SIGNATURE_HEADER],
        headers[REQUEST_ID_HEADER],
    )
    assert not verify(b"t" * 64, "GET", "/x", b"", stamp, mac, rid)
    assert not check("GET", "/x", b"", headers, now=int(stamp) + 3600)
    assert not verify(SECRET, "GET", "/x", b"", None, None, None)
    assert not verify(SECRET, "GET", "/x", b"", "abc", mac, rid)
    assert not verify(SECRET, "GET", "/x", b"", stamp, mac, None)
    assert not verify(SECRET, "GET", "/x", b"", stamp, mac, "0" * 32)  # another request id


def test_each_call_carries_a_fresh_request_id() -> None:
    assert (
        sign(SECRET, "GET", "/x")[REQUEST_ID_HEADER] != sign(SECRET, "GET", "/x")[REQUEST_ID_HEADER]
    )


RID = "ab" * 16


def test_a_signed_answer_verifies_and_binds_request_revision_status_and_body() -> None:
    headers = sign_answer(SECRET, 200, RID, b'{"revision": 3}', revision=3)
    verify_answer(SECRET, RID, 200, b'{"revision": 3}', headers, revision=3)
    with pytest.raises(AnswerRefused, match="request id"):
        verify_answer(SECRET, "cd" * 16, 200, b'{"revision": 3}', headers, revision=3)
    with pytest.raises(AnswerRefused, match="signature"):
        verify_answer(SECRET, RID, 200, b'{"revision": 4}', headers, revision=3)
    with pytest.raises(AnswerRefused, match="signature"):
        verify_answer(SECRET, RID, 404, b'{"revision": 3}', headers, revision=3)
    with pytest.raises(AnswerRefused, match="signature"):
        verify_answer(SECRET, RID, 200, b'{"revision": 3}', headers | {REVISION_HEADER: "4"})
    with pytest.raises(AnswerRefused, match="asked for revision 4"):
        verify_answer(SECRET, RID, 200, b'{"revision": 3}', headers, revision=4)
    with pytest.raises(AnswerRefused, match="signature"):
        verify_answer(b"t" * 64, RID, 200, b'{"revision": 3}', headers, revision=3)
    stale = int(headers[TIMESTAMP_HEADER]) + 3600
    with pytest.raises(AnswerRefused, match="skew"):
        verify_answer(SECRET, RID, 200, b'{"revision": 3}', headers, revision=3, now=stale)
    unsigned = {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
    with pytest.raises(AnswerRefused, match="no cluster signature"):
        verify_answer(SECRET, RID, 200, b'{"revision": 3}', unsigned, revision=3)


def test_a_call_signature_is_no_answer_signature() -> None:
    call = sign(SECRET, "GET", "/x")
    with pytest.raises(AnswerRefused):
        verify_answer(SECRET, call[REQUEST_ID_HEADER], 200, b"", call)


def test_the_replay_guard_refuses_a_second_use_and_forgets_after_the_window() -> None:
    guard = ReplayGuard(capacity=2, window=10)
    assert guard.first_use("a", now=0)
    assert not guard.first_use("a", now=5)
    assert guard.first_use("b", now=6)
    assert not guard.first_use("c", now=7)  # full: refuse rather than forget a live id
    assert guard.first_use("c", now=11)  # "a" expired
    assert not guard.first_use("b", now=12)
    assert len(guard) == 2


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

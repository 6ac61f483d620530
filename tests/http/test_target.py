"""The canonical request path: exact outputs and refusals."""

from __future__ import annotations

import pytest

from portway.http.target import BadTarget, canonical_path, check_forward_path

CANONICAL = [
    ("/", "/"),
    ("/trav/admin", "/trav/admin"),
    ("/trav/admin/", "/trav/admin/"),
    ("/trav//admin", "/trav/admin"),
    ("//trav///admin//", "/trav/admin/"),
    ("/trav/./admin", "/trav/admin"),
    ("/trav/x/../admin", "/trav/admin"),
    ("/trav/x/%2e%2e/admin", "/trav/admin"),
    ("/trav/x/%2E%2E/admin", "/trav/admin"),
    ("/trav/x/.%2e/admin", "/trav/admin"),
    ("/trav/%2e/admin", "/trav/admin"),
    ("/tr%61v/adm%69n", "/trav/admin"),
    ("/trav/%7euser", "/trav/~user"),
    ("/trav/%c3%a9t%c3%a9", "/trav/%C3%A9t%C3%A9"),
    ("/trav/a%20b", "/trav/a%20b"),
    ("/trav/a%3fb", "/trav/a%3Fb"),
    ("/trav/a%25b", "/trav/a%25b"),
    ("/trav/admin/.", "/trav/admin/"),
    ("/trav/admin/..", "/trav/"),
    ("/trav/..", "/"),
    ("/a/b/c/./../../g", "/a/g"),
    ("/trav/file.json", "/trav/file.json"),
    ("/trav/.well-known/x", "/trav/.well-known/x"),
    ("/trav/...", "/trav/..."),
    ("/trav/..a", "/trav/..a"),
]


@pytest.mark.parametrize(("raw", "expected"), CANONICAL)
def test_canonical_spelling(raw: str, expected: str) -> None:
    assert canonical_path(raw) == expected
    assert canonical_path(expected) == expected


REFUSED = [
    ("/trav/../..", "climbs above /"),
    ("/..", "climbs above /"),
    ("/%2e%2e/etc", "climbs above /"),
    ("/trav/%2E%2E/%2e%2e/x", "climbs above /"),
    ("/trav/admin#x", "fragment"),
    ("/trav/admin;x=1", "';' path parameter"),
    ("/trav/admin%3b", None),
    ("/trav%2fadmin", "encoded slash or backslash"),
    ("/trav%2Fadmin", "encoded slash or backslash"),
    ("/trav%5cadmin", "encoded slash or backslash"),
    ("/trav\\admin", "backslash"),
    ("/trav/admin%00", "encoded control character"),
    ("/trav/admin%0d%0aX:1", "encoded control character"),
    ("/trav/admin%7f", "encoded control character"),
    ("/trav/admin%", "invalid percent-encoding"),
    ("/trav/admin%4", "invalid percent-encoding"),
    ("/trav/admin%g1", "invalid percent-encoding"),
    ("/trav/admin%%32%65", "invalid percent-encoding"),
    ("/trav/%252e%252e/admin", "double-encoded"),
    ("/trav/%252F", "double-encoded"),
    ("/trav/%c0%ae%c0%ae/admin", "not UTF-8"),
    ("/trav/%e0%80%ae/admin", "not UTF-8"),
    ("/trav/%ff", "not UTF-8"),
    ("*", "not an absolute path"),
    ("trav/admin", "not an absolute path"),
    ("", "not an absolute path"),
    ("/trav/\u00e9", "outside printable ASCII"),
]


@pytest.mark.parametrize(("raw", "reason"), REFUSED)
def test_refused_spellings(raw: str, reason: str | None) -> None:
    if reason is None:  # kept, escaped: a literal character, never a separator or a dot
        out = canonical_path(raw)
        assert "/.." not in out
        assert ";" not in out
        return
    with pytest.raises(BadTarget, match=reason):
        canonical_path(raw)


def test_a_fragment_in_the_query_is_refused_and_the_query_is_not_touched() -> None:
    with pytest.raises(BadTarget, match="fragment"):
        canonical_path("/trav/admin", "a=1#x")
    assert canonical_path("/trav/admin", "a=%2e%2e/../x") == "/trav/admin"


def test_the_fast_path_returns_the_same_object() -> None:
    path = "/trav/orders/42"
    assert canonical_path(path) is path


def test_forward_check_refuses_what_could_climb() -> None:
    for ok in (b"", b"/", b"/admin", b"/admin/?q=../..", b"?q=1", b"/a%C3%A9"):
        check_forward_path(ok)
    for bad in (b"/../x", b"/a/%2e%2e", b"admin", b"/a//b", b"/a%2fb", b"/a;b"):
        with pytest.raises(BadTarget):
            check_forward_path(bad)

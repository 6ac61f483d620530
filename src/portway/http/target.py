"""The canonical spelling of a request path, or a refusal (pure functions, no I/O).

One resource has one spelling, so that routing, endpoint policies, conditions, traffic logs and
the path forwarded to a backend all see the same thing (docs/dataplane.md, "Request paths"):

* percent-decoding of unreserved characters only (``%61`` -> ``a``, ``%2E`` -> ``.``); every
  other escape is kept, with upper-case hex (``%c3%a9`` -> ``%C3%A9``);
* dot segments removed as in RFC 3986 §5.2.4 (``/a/./b/../c`` -> ``/a/c``), after that decoding,
  so ``%2e%2e`` is a dot segment too; a ``..`` that would climb above ``/`` is refused;
* empty segments collapse (``//a///b`` -> ``/a/b``); one trailing ``/`` is kept as sent (the
  router matches ``/admin/`` like ``/admin``);
* refused (:class:`BadTarget`): a target that is not an absolute path (``*``, ``a/b``), a
  fragment (``#``), a ``;`` path parameter, a backslash, an encoded ``/`` or ``\\``
  (``%2F``, ``%5C``), an encoded control character (``%00``, ``%0D``, ``%0A``...), a
  double-encoded dot, slash or backslash (``%252E``...), an invalid escape (``%G1``, ``%4``),
  percent-encoded bytes that are not UTF-8 (overlong ``%C0%AE``...), a raw character outside
  printable ASCII.

A path that needs none of this (no ``%``, ``/.``, ``//``, ``;``, ``\\``, ``#``) is returned as is.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

__all__ = ["BadTarget", "canonical_path", "check_forward_path"]

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_DOUBLE_ENCODED = ("%252E", "%252F", "%255C")


class BadTarget(ValueError):
    """A request target that cannot be normalised safely (answered 400)."""


def _decode_segment(seg: str) -> str:
    if "%" not in seg:
        return seg
    out: list[str] = []
    high = False
    i = 0
    n = len(seg)
    while i < n:
        ch = seg[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        pair = seg[i + 1 : i + 3]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            raise BadTarget("invalid percent-encoding in the path")
        byte = int(pair, 16)
        char = chr(byte)
        if char in _UNRESERVED:
            out.append(char)
        elif char in "/\\":
            raise BadTarget("an encoded slash or backslash in the path")
        elif byte < 0x20 or byte == 0x7F:
            raise BadTarget("an encoded control character in the path")
        else:
            high = high or byte > 0x7F
            out.append("%" + pair.upper())
        i += 3
    decoded = "".join(out)
    if high:
        try:
            unquote_to_bytes(decoded).decode("utf-8")
        except UnicodeDecodeError:
            raise BadTarget("percent-encoded bytes that are not UTF-8 in the path") from None
    if "%25" in decoded:
        upper = decoded.upper()
        if any(bad in upper for bad in _DOUBLE_ENCODED):
            raise BadTarget("a double-encoded dot, slash or backslash in the path")
    return decoded


def _needs_work(path: str) -> bool:
    return (
        "%" in path
        or "/." in path
        or "//" in path
        or ";" in path
        or "\\" in path
        or "#" in path
        or not path.isascii()
    )


def canonical_path(path: str, query: str = "") -> str:
    """The canonical form of ``path`` (the target before ``?``); raises :class:`BadTarget`.
    ``query`` is only checked for a fragment; it is forwarded as sent."""
    if "#" in query:
        raise BadTarget("a fragment (#) in the request target")
    if path[:1] != "/":
        raise BadTarget("the request target is not an absolute path")
    if not _needs_work(path):
        return path
    if "#" in path:
        raise BadTarget("a fragment (#) in the request target")
    if ";" in path:
        raise BadTarget("a ';' path parameter in the request target")
    if "\\" in path:
        raise BadTarget("a backslash in the request target")
    for ch in path:
        if not "!" <= ch <= "~":
            raise BadTarget("a character outside printable ASCII in the request target")
    parts = path.split("/")
    last = len(parts) - 1
    out: list[str] = []
    trailing = False
    for i in range(1, len(parts)):
        seg = _decode_segment(parts[i])
        if seg in ("", "."):
            trailing = i == last
            continue
        if seg == "..":
            if not out:
                raise BadTarget("the path climbs above /")
            out.pop()
            trailing = i == last
            continue
        out.append(seg)
        trailing = False
    if not out:
        return "/"
    return "/" + "/".join(out) + ("/" if trailing else "")


def check_forward_path(target: bytes) -> None:
    """Refuse (:class:`BadTarget`) a path (with its query) that could climb above the base path
    it is appended to: one that is not canonical or does not start with ``/`` (empty is the base
    path itself). Called where the backend's base path is joined."""
    path = target.split(b"?", 1)[0]
    if not path:
        return
    text = path.decode("ascii", "replace")
    if text[:1] != "/" or canonical_path(text) != text:
        raise BadTarget("the forwarded path is not canonical")

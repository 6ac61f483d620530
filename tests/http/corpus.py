"""Hand-written malformed and smuggling requests; each must be refused (status) and the
connection closed, with no request handed to the application."""

from __future__ import annotations

H = b"Host: a\r\n"

SMUGGLING: dict[str, tuple[bytes, int]] = {
    "cl-and-te": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n",
        400,
    ),
    "te-and-cl": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    "duplicate-cl-different": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
        400,
    ),
    "duplicate-cl-same": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    "cl-list": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    "cl-plus-sign": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
    "cl-negative": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    "cl-hex": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc", 400),
    "cl-overflow": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n",
        400,
    ),
    "te-duplicate": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-gzip-chunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-identity": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-xchunked": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    "te-in-http10": (
        b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-space-before-colon": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-vertical-tab": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-obs-fold": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n  b\r\n\r\n", 400),
    "whitespace-before-colon": (b"GET / HTTP/1.1\r\n" + H + b"X-A : a\r\n\r\n", 400),
    "tab-before-colon": (b"GET / HTTP/1.1\r\n" + H + b"X-A\t: a\r\n\r\n", 400),
    "leading-space-header": (b"GET / HTTP/1.1\r\n X-A: a\r\n" + H + b"\r\n", 400),
    "invalid-header-name": (b"GET / HTTP/1.1\r\n" + H + b"X(A): a\r\n\r\n", 400),
    "empty-header-name": (b"GET / HTTP/1.1\r\n" + H + b": a\r\n\r\n", 400),
    "header-without-colon": (b"GET / HTTP/1.1\r\n" + H + b"X-A\r\n\r\n", 400),
    "nul-in-header-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    "bare-cr-in-header-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    "bare-lf-line-ends": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "bare-cr-line-ends": (b"GET / HTTP/1.1\rHost: a\r\r", 400),
    "bare-lf-after-header": (b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400),
    "invalid-method-char": (b"G@T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "unknown-method": (b"FOO / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "lower-case-method": (b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "http-0.9": (b"GET /\r\n\r\n", 400),
    "http-1.2": (b"GET / HTTP/1.2\r\n" + H + b"\r\n", 400),
    "http-2.0": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    "h2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "space-in-target": (b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "control-in-target": (b"GET /a\x01 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "8bit-in-target": (b"GET /a\xff HTTP/1.1\r\n" + H + b"\r\n", 400),
    "relative-target": (b"GET a/b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "missing-host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "host-with-path": (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    "host-with-userinfo": (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    "chunk-size-invalid": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk-size-negative": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk-size-space": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk-size-overflow": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"FFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk-extension-invalid": (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n3;\x01\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "chunk-data-too-long": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        400,
    ),
    "chunk-bare-lf": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
        400,
    ),
    "connect": (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    "upgrade-with-body": (
        b"POST / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 27\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        400,
    ),
}
"""name -> (raw request, expected status)"""

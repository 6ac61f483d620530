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


# -- HTTP/2 ---------------------------------------------------------------------------------------
# Each entry: the frames a client sends after the preface and its SETTINGS, and what the server
# must answer: ("GOAWAY" | "RST", error code). Codes per RFC 9113 section 7.

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = range(9)
CONTINUATION = 0x9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One raw frame (lengths and fields exactly as given, valid or not)."""
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


def block(*fields: tuple[bytes, bytes]) -> bytes:
    """An HPACK header block of literal fields without indexing (no dynamic table state)."""
    out = b""
    for name, value in fields:
        assert max(len(name), len(value)) < 127
        out += b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    return out


GET = (
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/"),
    (b":authority", b"a"),
)
POST = ((b":method", b"POST"), *GET[1:])


def request(
    stream: int,
    *extra: tuple[bytes, bytes],
    end: bool = True,
    fields: tuple[tuple[bytes, bytes], ...] = GET,
) -> bytes:
    return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), stream, block(*fields, *extra))


H2_MALFORMED: dict[str, tuple[bytes, str, int]] = {
    "data-on-stream-0": (frame(DATA, 0, 0, b"x"), "GOAWAY", PROTOCOL_ERROR),
    "headers-on-even-stream": (request(2), "GOAWAY", PROTOCOL_ERROR),
    "stream-id-goes-back": (request(5) + request(3), "GOAWAY", PROTOCOL_ERROR),
    "frame-larger-than-max-frame-size": (
        request(1, end=False, fields=POST) + frame(DATA, 0, 1, b"x" * 16385),
        "GOAWAY",
        FRAME_SIZE_ERROR,
    ),
    "settings-length-not-multiple-of-6": (
        frame(SETTINGS, 0, 0, b"\x00" * 5),
        "GOAWAY",
        FRAME_SIZE_ERROR,
    ),
    "settings-on-a-stream": (frame(SETTINGS, 0, 1, b""), "GOAWAY", PROTOCOL_ERROR),
    # RFC 9113 6.5 asks FRAME_SIZE_ERROR here; h2 reports it as PROTOCOL_ERROR (the connection
    # ends either way)
    "settings-ack-with-payload": (frame(SETTINGS, ACK, 0, b"\x00" * 6), "GOAWAY", PROTOCOL_ERROR),
    "settings-enable-push-2": (
        frame(SETTINGS, 0, 0, b"\x00\x02\x00\x00\x00\x02"),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "settings-initial-window-too-large": (
        frame(SETTINGS, 0, 0, b"\x00\x04\x80\x00\x00\x00"),
        "GOAWAY",
        FLOW_CONTROL_ERROR,
    ),
    "ping-wrong-length": (frame(PING, 0, 0, b"\x00" * 7), "GOAWAY", FRAME_SIZE_ERROR),
    "ping-on-a-stream": (frame(PING, 0, 1, b"\x00" * 8), "GOAWAY", PROTOCOL_ERROR),
    "window-update-zero-on-connection": (
        frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "window-update-overflows-connection": (
        frame(WINDOW_UPDATE, 0, 0, b"\x7f\xff\xff\xff"),
        "GOAWAY",
        FLOW_CONTROL_ERROR,
    ),
    "window-update-wrong-length": (
        frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"),
        "GOAWAY",
        FRAME_SIZE_ERROR,
    ),
    "rst-stream-on-idle-stream": (
        frame(RST_STREAM, 0, 7, b"\x00\x00\x00\x08"),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "rst-stream-on-stream-0": (
        frame(RST_STREAM, 0, 0, b"\x00\x00\x00\x08"),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "push-promise-from-a-client": (
        frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02" + block(*GET)),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "continuation-without-headers": (
        frame(CONTINUATION, END_HEADERS, 1, block(*GET)),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "continuation-on-another-stream": (
        frame(HEADERS, END_STREAM, 1, block(*GET[:2]))
        + frame(CONTINUATION, END_HEADERS, 3, block(*GET[2:])),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "invalid-hpack-index": (
        frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\x0f"),
        "GOAWAY",
        COMPRESSION_ERROR,
    ),
    "uppercase-header-name": (request(1, (b"X-Upper", b"1")), "GOAWAY", PROTOCOL_ERROR),
    "connection-specific-header": (
        request(1, (b"connection", b"keep-alive")),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "te-other-than-trailers": (request(1, (b"te", b"gzip")), "GOAWAY", PROTOCOL_ERROR),
    "missing-path": (
        frame(HEADERS, END_HEADERS | END_STREAM, 1, block(*GET[:2], GET[3])),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "pseudo-header-after-regular": (
        frame(HEADERS, END_HEADERS | END_STREAM, 1, block(GET[0], (b"x-a", b"1"), *GET[1:])),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    "unknown-pseudo-header": (request(1, (b":foo", b"1")), "GOAWAY", PROTOCOL_ERROR),
    "duplicate-pseudo-header": (request(1, (b":path", b"/again")), "GOAWAY", PROTOCOL_ERROR),
    "content-length-mismatch": (
        request(1, (b"content-length", b"5"), end=False, fields=POST)
        + frame(DATA, END_STREAM, 1, b"abc"),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
    # half-closed (remote) streams: a stream error (RFC 9113 5.1)
    "headers-after-end-stream": (request(1) + request(1), "RST", STREAM_CLOSED),
    "data-after-end-stream": (request(1) + frame(DATA, 0, 1, b"x"), "RST", STREAM_CLOSED),
    # RFC 9113 5.3.1 asks for a stream error; h2 ends the connection (the stronger answer)
    "priority-depends-on-itself": (
        frame(PRIORITY, 0, 1, b"\x00\x00\x00\x01\x10"),
        "GOAWAY",
        PROTOCOL_ERROR,
    ),
}
"""Malformed HTTP/2 framing, header blocks and stream states."""

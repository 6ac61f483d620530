"""gRPC through the worker: deadlines and gRPC-shaped errors around the gateway handler.

A gRPC call is an HTTP/2 request with ``content-type: application/grpc[+proto|+json...]``. It is
routed, run through the policy pipeline and proxied like any request (the backend address must
have ``http2: true``); ``GrpcAware`` adds what gRPC clients expect on top:

- an answer the gateway gives by itself (no route, a policy denial, a backend that cannot be
  reached, a rate limit...) becomes a *trailers-only* response: HTTP 200 with ``grpc-status`` and
  ``grpc-message`` in the only header block, never a JSON body;
- ``grpc-timeout`` is honoured: past the deadline the call ends with ``DEADLINE_EXCEEDED``, before
  the backend answered (trailers-only) or while its messages stream (in the trailers). The header
  is also forwarded, so the backend sees the same deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from urllib.parse import quote

from portway.http import Handler, Headers, Outcome, Request, Response

CONTENT_TYPE = b"application/grpc"

# gRPC status codes (grpc/doc/statuscodes.md)
OK = 0
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

_STATUS_FOR_HTTP = {
    400: INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: UNIMPLEMENTED,
    405: UNIMPLEMENTED,
    408: DEADLINE_EXCEEDED,
    413: RESOURCE_EXHAUSTED,
    429: RESOURCE_EXHAUSTED,
    431: RESOURCE_EXHAUSTED,
    500: INTERNAL,
    501: UNIMPLEMENTED,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_TIMEOUT_RE = re.compile(rb"([0-9]{1,8})([HMSmun])")
# what a trailers-only answer keeps of the gateway's error response
_KEEP = frozenset({b"x-correlation-id", b"www-authenticate", b"retry-after", b"allow"})
_RATE_LIMIT_PREFIX = b"x-ratelimit-"


def is_grpc(request: Request) -> bool:
    """An HTTP/2 request carrying a gRPC content type."""
    if request.http_version != "2":
        return False
    content_type = request.header(b"content-type")
    return content_type is not None and content_type.startswith(CONTENT_TYPE)


def grpc_status_for(status: int) -> int:
    """The gRPC status an HTTP error status stands for."""
    return _STATUS_FOR_HTTP.get(status, UNKNOWN)


def parse_timeout(value: bytes) -> float:
    """Seconds of a ``grpc-timeout`` value (``ValueError`` when malformed)."""
    match = _TIMEOUT_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"malformed grpc-timeout {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def status_fields(code: int, message: str) -> Headers:
    fields: Headers = [(b"grpc-status", b"%d" % code)]
    if message:
        # percent-encoded UTF-8 (the gRPC HTTP/2 protocol's grpc-message rule)
        fields.append((b"grpc-message", quote(message, safe=" !#$&'()*+,/:;=?@[]~").encode()))
    return fields


def trailers_only(code: int, message: str, headers: Headers | None = None) -> Response:
    """A gRPC answer without messages: status in the one and only header block."""
    out: Headers = [(b"content-type", CONTENT_TYPE), *status_fields(code, message)]
    if headers:
        out.extend(headers)
    return Response(200, out, b"")


def _message_of(response: Response) -> str:
    body = response.body
    if isinstance(body, bytes) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return body[:200].decode("utf-8", "replace").strip()
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            return str(parsed["message"])
    return f"HTTP status {response.status}"


def _is_grpc_response(response: Response) -> bool:
    for name, value in response.headers:
        if name.lower() == b"content-type":
            return value.startswith(CONTENT_TYPE)
    return False


async def as_grpc(response: Response) -> Response:
    """``response`` when it is a gRPC answer already; otherwise a trailers-only answer with the
    gRPC status of its HTTP status (the body is closed, its message becomes grpc-message)."""
    if response.status == 200 and _is_grpc_response(response):
        return response
    message = _message_of(response)
    if not isinstance(response.body, bytes):
        aclose = getattr(response.body, "aclose", None)
        if aclose is not None:
            await aclose()
    kept = [
        (name, value)
        for name, value in response.headers
        if name.lower() in _KEEP or name.lower().startswith(_RATE_LIMIT_PREFIX)
    ]
    out = trailers_only(grpc_status_for(response.status), message, kept)
    if response.on_finish is not None:
        out.on_finish = _AsStatus(response.on_finish, response.status)
    return out


class _AsStatus:
    """Reports a trailers-only answer to the finish hooks (logs, traffic records, metrics) with
    the HTTP status it stands for, so a denied gRPC call counts as denied, not as a 200."""

    __slots__ = ("_after", "_status")

    def __init__(self, after: Callable[[Outcome], None], status: int) -> None:
        self._after = after
        self._status = status

    def __call__(self, outcome: Outcome) -> None:
        self._after(Outcome(self._status, outcome.bytes_sent, outcome.completed))


class _Deadline:
    """A streamed gRPC response body that ends with DEADLINE_EXCEEDED at the call's deadline."""

    __slots__ = ("_body", "_deadline", "_source_trailers", "trailers")

    def __init__(self, body: AsyncIterable[bytes], deadline: float, trailers: Headers) -> None:
        self._body = body
        self._deadline = deadline
        self._source_trailers = trailers
        self.trailers: Headers = []

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        iterator = self._body.__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(self._deadline):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    self.trailers[:] = self._source_trailers
                    return
                except TimeoutError:
                    self.trailers[:] = status_fields(DEADLINE_EXCEEDED, "deadline exceeded")
                    return
                yield chunk
                if loop.time() >= self._deadline:
                    self.trailers[:] = status_fields(DEADLINE_EXCEEDED, "deadline exceeded")
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            aclose = getattr(self._body, "aclose", None)
            if aclose is not None:
                await aclose()


class GrpcAware:
    """Wraps the gateway handler: gRPC calls get deadlines and gRPC-shaped errors; every other
    request passes through untouched."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Handler) -> None:
        self._inner = inner

    async def __call__(self, request: Request) -> Response:
        if not is_grpc(request):
            return await self._inner(request)
        raw = request.header(b"grpc-timeout")
        if raw is None:
            return await as_grpc(await self._inner(request))
        try:
            timeout = parse_timeout(raw)
        except ValueError as exc:
            return trailers_only(INVALID_ARGUMENT, str(exc))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._inner(request)
        except TimeoutError:
            return trailers_only(DEADLINE_EXCEEDED, "deadline exceeded")
        response = await as_grpc(response)
        if not isinstance(response.body, bytes):
            source = response.trailers if response.trailers is not None else []
            body = _Deadline(response.body, deadline, source)
            response.body = body
            response.trailers = body.trailers
            response.content_length = None
        return response

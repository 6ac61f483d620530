"""Errors the worker answers by itself: a small JSON body with the correlation id, never a trace;
a SOAP fault of the right version instead when the API is a SOAP API or the client spoke SOAP."""

from __future__ import annotations

import json
import random
import time

from portway.http import Headers, Request, Response
from portway.policies.soap import SoapVersion, fault, request_version

JSON = b"application/json"

REASONS: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
    505: "http_version_not_supported",
}


_bits = random.SystemRandom(None).getrandbits(64)
_random = random.Random(_bits)


def new_correlation_id() -> str:
    """32 hex digits: the time in milliseconds (48 bits, UUIDv7's order) then 80 random bits.
    Unique, not secret (no system call per request), and in time order, so the traffic sinks'
    indexes on record ids grow at one end instead of at random places."""
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{_random.getrandbits(80):020x}"


def error_body(
    code: str, message: str, correlation_id: str, details: list[dict[str, str]] | None = None
) -> bytes:
    body: dict[str, object] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    body["correlation_id"] = correlation_id
    return json.dumps(body, separators=(",", ":")).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    correlation_id: str,
    headers: Headers | None = None,
    details: list[dict[str, str]] | None = None,
    soap: SoapVersion | None = None,
) -> Response:
    if soap is not None:
        content_type, body = fault(soap, status, code, message, correlation_id)
        kind = content_type.encode("ascii")
    else:
        kind, body = JSON, error_body(code, message, correlation_id, details)
    out: Headers = [
        (b"content-type", kind),
        (b"x-correlation-id", correlation_id.encode("ascii")),
        (b"cache-control", b"no-store"),
    ]
    if headers:
        out.extend(headers)
    return Response(status, out, body)


def client_soap_version(request: Request) -> SoapVersion | None:
    """The SOAP version the client's request announces (``portway.policies.soap``)."""
    content_type = request.header(b"content-type")
    if content_type is None or b"xml" not in content_type.lower():
        return None  # the common case, on every request through a pipeline: one header scan
    action = request.header(b"soapaction")
    return request_version(
        content_type.decode("latin-1"), None if action is None else action.decode("latin-1")
    )


def render_protocol_error(status: int, reason: str) -> tuple[Headers, bytes]:
    """For ``portway.http.serve``: the answer to a request the server refused by itself."""
    correlation_id = new_correlation_id()
    code = REASONS.get(status, "error")
    return (
        [(b"content-type", JSON), (b"x-correlation-id", correlation_id.encode("ascii"))],
        error_body(code, reason, correlation_id),
    )

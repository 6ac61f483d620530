"""The worker's control endpoints under ``/_portway/`` on its client port (8080).

- ``GET /_portway/health``  plain probe for load balancers: ``OK`` while a revision is served
- ``GET /_portway/ready``   plain readiness probe: ``OK`` while the served revision is the one the
  manager last asked for (or the manager has not been heard from), 503 while converging
- ``GET /_portway/status``  signed: the worker's status as the manager sees it in reports
- ``POST /_portway/deploy`` signed: the manager's push; answers once the revision is served

Signed calls are verified before the body is interpreted; an unsigned, forged or replayed call
(a request id this process has seen within the skew window) gets 401 and changes nothing. Every
answer to a call that carries a request id is signed (``sign_answer``), errors included, and a
deploy answer names the revision it acknowledges.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from portway.cluster.messages import DeployNotice
from portway.cluster.signing import (
    REQUEST_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    sign_answer,
    valid_request_id,
    verify,
)
from portway.http import BodyTooLarge, Request, Response
from portway.worker.sync import ConfigSync

MAX_CONTROL_BODY = 64 * 1024
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


def _plain(status: int, body: bytes) -> Response:
    return Response(status, [(b"content-type", b"text/plain")], body)


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(status, list(_JSON), json.dumps(payload).encode())


def _error(status: int, code: str, message: str, correlation_id: str) -> Response:
    return _json(status, {"error": code, "message": message, "correlation_id": correlation_id})


class ControlHandler:
    def __init__(
        self,
        secret: bytes,
        sync: ConfigSync,
        status: Callable[[], dict[str, Any]],
        correlation_id: Callable[[Request], str],
    ) -> None:
        self._secret = secret
        self._sync = sync
        self._status = status
        self._correlation_id = correlation_id
        self._replays = ReplayGuard()

    @staticmethod
    def _header(request: Request, name: str) -> str | None:
        value = request.header(name.lower().encode())
        return value.decode("latin-1") if value else None

    def _signed(self, request: Request, body: bytes) -> bool:
        return verify(
            self._secret,
            request.method,
            request.target.decode("latin-1"),
            body,
            self._header(request, TIMESTAMP_HEADER),
            self._header(request, SIGNATURE_HEADER),
            self._header(request, REQUEST_ID_HEADER),
        )

    def _sealed(self, request: Request, response: Response, revision: int | None) -> Response:
        """``response`` signed as the answer to ``request``'s request id."""
        request_id = self._header(request, REQUEST_ID_HEADER)
        if request_id is None or not valid_request_id(request_id):
            return response
        body = response.body if isinstance(response.body, bytes) else b""
        signature = sign_answer(self._secret, response.status, request_id, body, revision)
        response.headers.extend((k.lower().encode(), v.encode()) for k, v in signature.items())
        return response

    async def __call__(self, request: Request) -> Response:
        response, revision = await self._answer(request)
        if request.path in ("/_portway/health", "/_portway/ready"):
            return response
        return self._sealed(request, response, revision)

    async def _answer(self, request: Request) -> tuple[Response, int | None]:
        cid = self._correlation_id(request)
        route = (request.method, request.path)
        if route in (("GET", "/_portway/health"), ("HEAD", "/_portway/health")):
            if self._sync.state.served_revision is None:
                return Response(
                    503, [(b"content-type", b"text/plain")], b"NO CONFIGURATION\n"
                ), None
            return Response(200, [(b"content-type", b"text/plain")], b"OK\n"), None
        if route in (("GET", "/_portway/ready"), ("HEAD", "/_portway/ready")):
            state = self._sync.state
            if state.served_revision is None:
                return _plain(503, b"NO CONFIGURATION\n"), None
            if state.desired_revision not in (None, state.served_revision):
                return _plain(503, b"CONVERGING\n"), None
            return _plain(200, b"OK\n"), None
        if route not in (("GET", "/_portway/status"), ("POST", "/_portway/deploy")):
            return _error(404, "not_found", f"no control endpoint {request.path}", cid), None
        try:
            body = await request.body.read_all(MAX_CONTROL_BODY)
        except BodyTooLarge:
            return _error(413, "body_too_large", "control calls carry at most 64 KiB", cid), None
        if not self._signed(request, body):
            return _error(401, "unauthenticated", "missing or invalid cluster signature", cid), None
        if not self._replays.first_use(self._header(request, REQUEST_ID_HEADER) or ""):
            return _error(401, "replayed", "this signed call was already received once", cid), None
        if route[0] == "GET":
            return _json(200, self._status()), None
        try:
            notice = DeployNotice.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(422, "validation_error", f"{field}: {first['msg']}", cid), None
        ack = await self._sync.on_push(notice)
        return _json(200, ack.model_dump()), notice.revision

"""Request body size caps of the manager, enforced before a route (or its authentication) reads
anything: a declared Content-Length over the cap is answered 413 at once, unread; a body without
one (chunked) is counted while it arrives and answered 413 as soon as it passes the cap.

A pure ASGI middleware: the body of a request under its cap reaches the app untouched (a
Content-Length body is streamed through as is; a chunked one is handed over once it ended, which
costs nothing here because every manager route reads its body whole)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from portway.manager.problems import problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

_IMPORT_ROUTES = re.compile(
    r"/api/v1/(?:projects/[^/]+/apis/import(?:/wsdl)?|declarative/apply|consumers/import)"
)
_CLUSTER_PREFIX = "/_portway/cluster/"


@dataclass(frozen=True, slots=True)
class BodyCaps:
    """Largest request body, in bytes, per route class."""

    api: int
    """JSON API routes (everything not named below)."""
    imports: int
    """OpenAPI and WSDL import, declarative apply and consumer import, which carry whole
    documents."""
    cluster: int
    """The signed cluster API workers call."""

    def for_path(self, path: str) -> int:
        if _IMPORT_ROUTES.fullmatch(path):
            return self.imports
        if path.startswith(_CLUSTER_PREFIX):
            return self.cluster
        return self.api


class BodyLimit:
    """Answers 413 (the standard error JSON, with its correlation id) for a body over its cap."""

    def __init__(self, app: Asgi, caps: BodyCaps) -> None:
        self.app = app
        self.caps = caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.caps.for_path(scope["path"])
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
                break
        if declared is not None:
            if not declared.isdigit():  # the server refuses these; never trust that here
                await _refuse(scope, receive, send, 400, "bad_request", "invalid Content-Length")
                return
            if int(declared) > cap:
                await _too_large(scope, receive, send, cap)
                return
            await self.app(scope, receive, send)  # the server ends the body at that length
            return
        # no declared length: count what arrives, keep at most `cap` bytes
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                messages.append(message)  # a disconnect: the app sees it as it would have
                break
            size += len(message.get("body", b""))
            if size > cap:
                await _too_large(scope, receive, send, cap)
                return
            messages.append(message)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(messages, receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = iter(messages)

    async def replayed() -> Message:
        message = next(pending, None)
        return message if message is not None else await receive()

    return replayed


async def _too_large(scope: Scope, receive: Receive, send: Send, cap: int) -> None:
    message = f"the request body is larger than {cap} bytes"
    await _refuse(scope, receive, send, 413, "payload_too_large", message)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str
) -> None:
    # the rest of the body stays unread: the connection cannot be reused
    request = Request(scope)
    details = [{"field": "body", "message": message}]
    response = problem(request, status, code, message, details, {"Connection": "close"})
    await response(scope, receive, send)

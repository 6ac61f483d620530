"""An echo service: answers every request with a JSON description of what it received.

It is a plain ASGI application served by uvicorn — a stand-in for the operator's backend API in
the single-host demo, and the backend that end-to-end tests inspect to see what the worker
forwarded.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_ECHO_BODY = 1 << 20


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    size = 0
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if len(body) < MAX_ECHO_BODY:
            body += chunk[: MAX_ECHO_BODY - len(body)]
        more = message.get("more_body", False)
    payload = {
        "service": "portway-demo-echo",
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        "body": body.decode("utf-8", "replace"),
        "body_bytes": size,
    }
    data = json.dumps(payload, indent=2).encode() + b"\n"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def run(host: str, port: int) -> None:
    uvicorn.Server(
        uvicorn.Config(echo_app, host=host, port=port, log_level="warning", server_header=False)
    ).run()

"""Small listeners standing in for the components in audit tests.

Used in-process (``start_listeners``) and, inside network namespaces, as a script:
``python -m tests.matrix.lab_listeners SPEC.json`` prints ``ready`` once every socket listens
and serves until its standard input closes.

A spec is a list of ``{"address", "port", "kind"}`` with kind ``tcp`` (accept, then close),
``tls`` (handshake with ``cert``/``key``), ``redirect`` (HTTP 301 to https://) or ``http200``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
from typing import Any


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


def _http_handler(status: str, location: str | None) -> Any:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = await reader.readuntil(b"\r\n\r\n")
            host = "localhost"
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("host:"):
                    host = line.split(":", 1)[1].strip()
            extra = f"Location: https://{host}/\r\n" if location is not None else ""
            answer = f"HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n"
            answer += "\r\n"
            writer.write(answer.encode("latin-1"))
            await writer.drain()
        await _close(writer)

    return handle


async def _accept_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _close(writer)


async def start_listeners(specs: list[dict[str, Any]]) -> list[asyncio.Server]:
    servers = []
    for spec in specs:
        kind = spec["kind"]
        context = None
        handler: Any = _accept_and_close
        if kind == "tls":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(spec["cert"], spec["key"])
        elif kind == "redirect":
            handler = _http_handler("301 Moved Permanently", "https")
        elif kind == "http200":
            handler = _http_handler("200 OK", None)
        servers.append(
            await asyncio.start_server(handler, spec["address"], spec["port"], ssl=context)
        )
    return servers


async def _main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        specs = json.load(handle)
    servers = await start_listeners(specs)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))

"""A real manager on a loopback port (uvicorn in a thread), for tests that need raw sockets or an
HTTP client rather than Starlette's TestClient."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from portway.manager.app import create_app
from tests.manager.conftest import settings_in


@dataclass
class LiveManager:
    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def live_manager(tmp_path: Path, **settings: Any) -> Iterator[LiveManager]:
    """A manager on SQLite under ``tmp_path`` (no probes, no login delay) with ``settings``."""
    config = settings_in(tmp_path, **settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the manager did not start"
        assert thread.is_alive(), "the manager exited"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    token = json.loads((tmp_path / "bootstrap.json").read_text())["token"]
    try:
        yield LiveManager(port, token)
    finally:
        server.should_exit = True
        thread.join(30)

"""A stand-in worker on a real loopback socket: it checks the cluster signature on every call,
answers the manager's probe and acknowledges pushes, and can be switched off."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from portway.cluster.messages import StatusReport
from portway.cluster.signing import (
    REQUEST_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    sign_answer,
    verify,
)


class FakeWorker:
    def __init__(self, secret: bytes, worker_id: str = "w1") -> None:
        self.secret = secret
        self.worker_id = worker_id
        self.served: int | None = None
        self.started_at = datetime.now(UTC)
        self.pushes: list[int] = []
        self.unsigned_calls = 0
        self.forge: str | None = None
        """``unsigned``: answers carry no signature; ``other-revision``: a deploy answer names
        another revision than the one pushed; ``other-secret``: signed with another secret."""
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(
                self, status: int, payload: dict[str, Any], revision: int | None = None
            ) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                request_id = self.headers.get(REQUEST_ID_HEADER, "")
                secret = b"x" * 64 if fake.forge == "other-secret" else fake.secret
                if fake.forge == "other-revision" and revision is not None:
                    revision += 1
                if fake.forge != "unsigned":
                    for name, value in sign_answer(
                        secret, status, request_id, body, revision
                    ).items():
                        self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _signed(self, body: bytes) -> bool:
                ok = verify(
                    fake.secret,
                    self.command,
                    self.path,
                    body,
                    self.headers.get(TIMESTAMP_HEADER),
                    self.headers.get(SIGNATURE_HEADER),
                    self.headers.get(REQUEST_ID_HEADER),
                )
                if not ok:
                    fake.unsigned_calls += 1
                return ok

            def do_GET(self) -> None:
                if not self._signed(b""):
                    self._answer(401, {"error": "unauthenticated"})
                    return
                self._answer(200, {"worker_id": fake.worker_id, "served_revision": fake.served})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not self._signed(body):
                    self._answer(401, {"error": "unauthenticated"})
                    return
                revision = json.loads(body)["revision"]
                fake.pushes.append(revision)
                fake.served = revision
                self._answer(
                    200,
                    {"worker_id": fake.worker_id, "served_revision": revision, "success": True},
                    revision,
                )

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def report(
        self, manager: TestClient, environment: str = "dev", served: int | None = -1
    ) -> dict[str, Any]:
        """A signed status report, as the real worker sends it periodically (``served``
        overrides the revision reported, as a report composed before a push would)."""
        body = (
            StatusReport(
                environment=environment,
                address=self.address,
                served_revision=self.served if served == -1 else served,
                started_at=self.started_at,
            )
            .model_dump_json()
            .encode()
        )
        path = f"/_portway/cluster/workers/{self.worker_id}/status"
        response = manager.post(path, content=body, headers=sign(self.secret, "POST", path, body))
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

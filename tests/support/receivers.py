"""Real receivers for the manager's notifications: an SMTP relay (aiosmtpd, STARTTLS required,
AUTH required after TLS) and an HTTP receiver that records every request. Both listen on loopback
ports and run in their own threads; the relay can be stopped and started again on its port."""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from portway.deploy.lab_ca import LabCertificates, lab_certificates
from tests.support.servers import LOOPBACK, free_port

USER = "alerts"
PASSWORD = "relay password 7f3a"


@dataclass
class Received:
    message: EmailMessage
    recipients: list[str]
    tls: bool
    login: str | None


@dataclass
class MailRelay:
    """aiosmtpd with STARTTLS (required) and AUTH PLAIN/LOGIN (required, only over TLS)."""

    certs: LabCertificates
    port: int = field(default_factory=free_port)
    messages: list[Received] = field(default_factory=list)
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == USER
            and data.password.decode() == PASSWORD
        )
        return AuthResult(success=ok, handled=False, auth_data=data)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        with self._lock:
            self.messages.append(
                Received(parsed, list(envelope.rcpt_tos), session.ssl is not None, login)
            )
        return "250 OK"

    def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.certs.cert_file), str(self.certs.key_file))
        self._controller = Controller(
            self,
            hostname=LOOPBACK,
            port=self.port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
            server_hostname="localhost",
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)


def mail_relay(directory: Path) -> MailRelay:
    directory.mkdir(parents=True, exist_ok=True)
    return MailRelay(lab_certificates(directory, ["localhost", LOOPBACK]))


@dataclass(frozen=True)
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    """what the receiver answered"""


class HookReceiver:
    """An HTTP server that records every POST and answers ``status`` (settable)."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.status = 200
        self.delay = 0.0
        """seconds before answering a GET"""
        self.gets = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.status
                with receiver._lock:
                    receiver.hooks.append(Hook(self.path, dict(self.headers.items()), body, status))
                self._answer(status, b"{}")

            def do_GET(self) -> None:
                with receiver._lock:
                    receiver.gets += 1
                time.sleep(receiver.delay)
                self._answer(receiver.status, b'{"status": "ok", "checks": {"db": "up"}}')

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def received(self) -> list[Hook]:
        with self._lock:
            return list(self.hooks)

    def accepted(self) -> list[Hook]:
        return [h for h in self.received() if 200 <= h.status < 300]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

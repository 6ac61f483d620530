"""The lab's SMTP server (smtp-1): aiosmtpd, as the alert tests' relay (``tests/support/
receivers.py``), as a process of its own that keeps what it accepts in a Maildir.

STARTTLS is required before anything else and AUTH (PLAIN/LOGIN) only over TLS, on every port
(25 and 587); a message is acknowledged once it is written to ``MAILDIR/new``, so the manager's
outbox counts it delivered only then. Run by ``portway lab up`` as
``python -m portway.lab.mailserver --listen ADDRESS --port 587 --port 25 …``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import signal
import ssl
from pathlib import Path
from typing import Any


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m portway.lab.mailserver")
    parser.add_argument("--listen", required=True, help="the one address to bind")
    parser.add_argument("--port", type=int, action="append", required=True, help="repeatable")
    parser.add_argument("--hostname", required=True, help="the name the server greets with")
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True, help="certificate chain (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="its private key (PEM)")
    parser.add_argument("--user", required=True, help="the one SMTP AUTH login")
    parser.add_argument("--password-file", type=Path, required=True)
    return parser.parse_args(argv)


async def serve(options: argparse.Namespace) -> None:
    from aiosmtpd.handlers import Mailbox
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(options.cert), str(options.key))
    user = options.user.encode()
    password = options.password_file.read_text().strip().encode()

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and hmac.compare_digest(data.login, user)
            and hmac.compare_digest(data.password, password)
        )
        return AuthResult(success=ok, handled=False)

    handler = Mailbox(options.maildir)  # creates new/, cur/, tmp/ when the directory is new

    def protocol() -> SMTP:
        return SMTP(
            handler,
            hostname=options.hostname,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticate,
        )

    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(protocol, options.listen, port) for port in options.port]
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    ports = ", ".join(str(p) for p in options.port)
    print(f"smtp: listening on {options.listen} ports {ports}", flush=True)
    await stopping.wait()
    for server in servers:
        server.close()
        await server.wait_closed()
    print("smtp: stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(_options(argv)))


if __name__ == "__main__":
    main()

"""Certificate reload for the worker's TLS listener: on SIGHUP and when the certificate or key
file changes (polled mtime/size), the live server context loads the new pair. New handshakes
present the new certificate; established connections are never touched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl

from portway.http import reload_server_certificate
from portway.worker.settings import TlsSettings

log = logging.getLogger("portway.worker.certificates")


def _stamp(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CertificateReloader:
    """Keeps ``context`` serving what ``tls.cert_file``/``tls.key_file`` hold now."""

    def __init__(self, context: ssl.SSLContext, tls: TlsSettings) -> None:
        self.context = context
        self.tls = tls
        self.reloads = 0
        self._stamps = self._current()
        self._task: asyncio.Task[None] | None = None

    def _current(self) -> tuple[tuple[int, int, int] | None, ...]:
        return (_stamp(self.tls.cert_file), _stamp(self.tls.key_file))

    def reload(self) -> bool:
        """Load the files now; on a broken pair keep the old certificate and log why."""
        self._stamps = self._current()
        try:
            reload_server_certificate(self.context, self.tls.cert_file, self.tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS certificate reload failed, still serving the previous one: %s", exc)
            return False
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.tls.cert_file)
        return True

    def check(self) -> bool:
        """Reload when a file changed since the last load; True when a reload happened."""
        if self._current() == self._stamps:
            return False
        return self.reload()

    def start(self) -> None:
        """Poll the files every ``tls.reload_interval`` seconds (0 disables polling)."""
        if self.tls.reload_interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.tls.reload_interval)
            self.check()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

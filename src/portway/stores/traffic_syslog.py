"""The syslog traffic sink: each record is one RFC 5424 message, sent over TCP with octet-counting
framing (RFC 6587) or over TLS (RFC 5425).

URLs: ``syslog+tcp://HOST:PORT`` or ``syslog+tls://HOST:PORT`` (default ports 514 and 6514) with
options ``app_name`` (default ``portway``), ``facility`` (``local0`` … ``local7``, default
``local0``), ``ca_file`` (PEM bundle the receiver's certificate must chain to; default: the
system's), ``server_name`` (the name to verify; default: HOST) and ``timeout`` (seconds to connect
or send, default 10).

Message: ``<PRI>1 TIMESTAMP HOSTNAME portway PROCID traffic - JSON`` — the record's timestamp and
worker, severity ``warning`` for 5xx answers and ``info`` otherwise, and the record itself as the
JSON message.

Delivery: a batch that cannot be written (receiver down, refused, TLS failure) raises
``StoreUnavailable``, so the shipper spools it and retries; a connection the receiver closed is
noticed before the next batch and reopened. Syslog over TCP has no acknowledgement: records a
receiver accepted into its socket and then lost in a crash are not known to be lost (RELP or the
HTTP sink acknowledge; this sink cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from portway.errors import StoreUnavailable
from portway.stores._forwarding import ForwardingSink, forward
from portway.stores._traffic_common import record_json
from portway.stores.traffic import TrafficRecord

FACILITIES = {f"local{n}": 16 + n for n in range(8)}
INFO, WARNING = 6, 4
_NILVALUE = "-"


def _header_field(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, at most ``limit`` long."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or _NILVALUE


@dataclass(frozen=True, slots=True)
class SyslogTarget:
    host: str
    port: int
    tls: bool
    app_name: str = "portway"
    facility: int = FACILITIES["local0"]
    ca_file: str | None = None
    server_name: str | None = None
    timeout: float = 10.0


def message(record: TrafficRecord, target: SyslogTarget, hostname: str, pid: int) -> bytes:
    """One RFC 5424 message, framed by its octet count (RFC 6587 section 3.4.1)."""
    severity = WARNING if int(record.get("status", 0)) >= 500 else INFO
    header = " ".join(
        (
            f"<{target.facility * 8 + severity}>1",
            _header_field(str(record.get("timestamp", "")), 64),
            _header_field(str(record.get("worker") or hostname), 255),
            _header_field(target.app_name, 48),
            str(pid),
            "traffic",
            _NILVALUE,
        )
    )
    body = f"{header} ".encode() + record_json(record)
    return f"{len(body)} ".encode() + body


class SyslogTrafficSink(ForwardingSink):
    kind = "syslog"

    def __init__(self, target: SyslogTarget) -> None:
        self.target = target
        self._hostname = socket.gethostname()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> SyslogTrafficSink:
        parts = urlsplit(url)
        tls = parts.scheme == "syslog+tls"
        options = dict(parse_qsl(parts.query))
        unknown = set(options) - {"app_name", "facility", "ca_file", "server_name", "timeout"}
        if unknown:
            raise ValueError(f"{url}: unknown syslog option(s) {sorted(unknown)}")
        facility = options.get("facility", "local0")
        if facility not in FACILITIES:
            raise ValueError(f"{url}: facility must be one of local0 … local7, not {facility!r}")
        if not parts.hostname:
            raise ValueError(f"{url}: a host is required")
        return cls(
            SyslogTarget(
                host=parts.hostname,
                port=parts.port or (6514 if tls else 514),
                tls=tls,
                app_name=options.get("app_name", "portway"),
                facility=FACILITIES[facility],
                ca_file=options.get("ca_file"),
                server_name=options.get("server_name"),
                timeout=float(options.get("timeout", "10")),
            )
        )

    async def open(self) -> None:
        """Nothing to install; the connection opens with the first batch."""

    async def close(self) -> None:
        await self._disconnect()

    async def write(self, records: Sequence[TrafficRecord]) -> None:
        await forward(records, self._send)

    async def _send(self, records: list[TrafficRecord]) -> None:
        pid = os.getpid()
        data = b"".join(message(r, self.target, self._hostname, pid) for r in records)
        async with self._lock:
            try:
                writer = await self._connection()
                writer.write(data)
                await asyncio.wait_for(writer.drain(), self.target.timeout)
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                await self._disconnect()
                where = f"{self.target.host}:{self.target.port}"
                raise StoreUnavailable(f"syslog {where}: {type(exc).__name__}: {exc}") from exc

    def _stale(self, writer: asyncio.StreamWriter) -> bool:
        """The receiver closed the connection (or said anything: a syslog receiver never does,
        except TLS close_notify). Asked of the socket itself, since the event loop may not have
        run the EOF callback yet when a batch follows the close at once."""
        if writer.is_closing() or (self._reader is not None and self._reader.at_eof()):
            return True
        sock = writer.get_extra_info("socket")
        if sock is None:
            return False
        try:  # on a duplicate descriptor: asyncio's transport socket refuses recv()
            with socket.fromfd(sock.fileno(), sock.family, sock.type) as peek:
                peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False  # nothing to read: alive
        except OSError:
            return True
        return True

    async def _connection(self) -> asyncio.StreamWriter:
        if self._writer is not None and self._stale(self._writer):
            await self._disconnect()  # the receiver closed it (a restart): open a new one
        if self._writer is not None:
            return self._writer
        context = None
        if self.target.tls:
            context = ssl.create_default_context(cafile=self.target.ca_file)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.target.host,
                self.target.port,
                ssl=context,
                server_hostname=(self.target.server_name or self.target.host) if context else None,
            ),
            self.target.timeout,
        )
        self._reader, self._writer = reader, writer
        return writer

    async def _disconnect(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

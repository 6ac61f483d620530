"""Checks of the Internet-facing listeners: TLS on HTTPS ports, and HTTP redirecting to HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509


@dataclass(frozen=True, slots=True)
class TlsResult:
    host: str
    address: str
    port: int
    ok: bool
    detail: str
    version: str | None = None
    days_left: int | None = None


@dataclass(frozen=True, slots=True)
class RedirectResult:
    host: str
    address: str
    port: int
    ok: bool
    detail: str
    status: int | None = None
    location: str | None = None


async def _handshake(
    address: str, port: int, context: ssl.SSLContext, server_name: str | None, wait: float
) -> tuple[str | None, bytes | None]:
    async with asyncio.timeout(wait):
        _, writer = await asyncio.open_connection(
            address, port, ssl=context, server_hostname=server_name
        )
    ssl_object = writer.get_extra_info("ssl_object")
    version = ssl_object.version() if ssl_object else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):  # a reset after the handshake is fine
        await writer.wait_closed()
    return version, der


def _days_left(der: bytes | None, now: dt.datetime) -> int | None:
    if der is None:
        return None
    certificate = x509.load_der_x509_certificate(der)
    return (certificate.not_valid_after_utc - now).days


async def check_tls(
    host: str,
    address: str,
    port: int,
    server_name: str | None,
    ca_file: Path | None,
    min_days: int,
    wait: float = 5.0,
    now: dt.datetime | None = None,
) -> TlsResult:
    """A verified handshake, and a certificate valid for at least ``min_days`` more days."""
    now = now or dt.datetime.now(dt.UTC)
    name = server_name or address
    verified = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    try:
        version, der = await _handshake(address, port, verified, name, wait)
    except ssl.SSLCertVerificationError as exc:
        lenient = ssl.create_default_context()
        lenient.check_hostname = False
        lenient.verify_mode = ssl.CERT_NONE
        try:
            version, der = await _handshake(address, port, lenient, name, wait)
        except (OSError, ssl.SSLError, TimeoutError):
            version, der = None, None
        return TlsResult(
            host, address, port, False, f"certificate not trusted for {name}: "
            f"{exc.verify_message}", version, _days_left(der, now)
        )  # fmt: skip
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        return TlsResult(host, address, port, False, f"no TLS handshake: {exc or 'timed out'}")
    days = _days_left(der, now)
    if days is None or days < min_days:
        return TlsResult(
            host, address, port, False, f"certificate expires in {days} days (< {min_days})",
            version, days,
        )  # fmt: skip
    return TlsResult(host, address, port, True, f"{version}, certificate valid", version, days)


async def check_redirect(
    host: str, address: str, port: int, server_name: str | None, wait: float = 5.0
) -> RedirectResult:
    """``GET /`` over plain HTTP must answer a redirect to an ``https://`` URL."""
    name = server_name or address
    try:
        async with asyncio.timeout(wait):
            reader, writer = await asyncio.open_connection(address, port)
            request = f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode("ascii"))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return RedirectResult(host, address, port, False, f"no HTTP answer: {exc or 'timed out'}")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    location = None
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "location":
            location = value.strip()
    if status in (301, 302, 307, 308) and location and location.startswith("https://"):
        return RedirectResult(host, address, port, True, f"{status} → {location}", status, location)
    return RedirectResult(
        host, address, port, False,
        f"answered {status} {location or '(no Location)'} instead of a redirect to https://",
        status, location,
    )  # fmt: skip

"""Production TLS on the worker: the offered protocol versions and suites (checked with the real
``openssl s_client``), certificate reload on SIGHUP and on a file change without dropping an
established keep-alive connection, and mTLS through the ``mtls`` policy on a real listener."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509

from portway.cli import main
from portway.http import Handler, Request, Response
from portway.worker.process_stores import open_worker_stores
from portway.worker.proxy import GatewayHandler
from portway.worker.runtime import compile_runtime
from portway.worker.server import Listeners, WorkerProcess, serve_worker, start_listeners
from portway.worker.settings import TlsSettings, WorkerSettings
from tests.support.servers import missing_capability
from tests.worker.support import api, backends, revision


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def write_server_cert(ca: trustme.CA, path: Path) -> int:
    """Issue a fresh localhost certificate into ``path``; returns its serial number."""
    cert = ca.issue_cert("localhost", "127.0.0.1")
    tmp = path.with_suffix(".tmp")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp))
    os.replace(tmp, path)  # atomic, as an operator's deploy tool does
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number


@asynccontextmanager
async def tls_listener(tls: TlsSettings, handler: Handler) -> AsyncIterator[Listeners]:
    settings = WorkerSettings(host="127.0.0.1", port=None, https_port=0, processes=1, tls=tls)
    listeners = await start_listeners(handler, settings)
    try:
        yield listeners
    finally:
        await listeners.close(1)


async def hello(request: Request) -> Response:
    return Response(200, [(b"content-type", b"text/plain")], b"hello")


async def s_client(port: int, *args: str) -> tuple[int, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        missing_capability("the openssl binary is not installed")
    assert openssl is not None
    proc = await asyncio.create_subprocess_exec(
        openssl,
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-servername",
        "localhost",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def negotiated(output: str) -> tuple[str, str] | None:
    """(protocol, cipher) of a completed handshake, None when it failed."""
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("New, ") and "Cipher is" in line:
            proto = line.split(",")[1].strip()
            cipher = line.rsplit("Cipher is", 1)[1].strip()
            return (proto, cipher) if cipher != "(NONE)" else None
    return None


async def test_only_modern_tls_is_offered(ca: trustme.CA, tmp_path: Path) -> None:
    cert = tmp_path / "server.pem"
    write_server_cert(ca, cert)
    async with tls_listener(TlsSettings(cert_file=str(cert)), hello) as listeners:
        port = listeners.port("https")
        refused = {
            "TLS 1.1": ("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"),
            "TLS 1.0": ("-tls1", "-cipher", "DEFAULT@SECLEVEL=0"),
            "TLS 1.2 ECDHE CBC-SHA256": ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"),
            "TLS 1.2 ECDHE CBC-SHA": ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA"),
            "TLS 1.2 static RSA GCM": ("-tls1_2", "-cipher", "AES128-GCM-SHA256"),
        }
        for name, args in refused.items():
            code, out = await s_client(port, *args)
            assert negotiated(out) is None, f"{name} was accepted: {out}"
            assert code != 0, name
        accepted = {
            "-tls1_2 ECDHE-ECDSA-AES128-GCM-SHA256": ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"),
            "-tls1_2 ECDHE-ECDSA-CHACHA20-POLY1305": ("TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"),
            "-tls1_3": ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
        }
        for flags, expected in accepted.items():
            flag, *cipher = flags.split()
            code, out = await s_client(port, flag, *(["-cipher", *cipher] if cipher else []))
            assert negotiated(out) == expected, out
        # a client offering everything gets TLS 1.3
        code, out = await s_client(port)
        assert negotiated(out) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384"), out
        assert "Compression: NONE" in out


async def peer_serial(port: int, context: ssl.SSLContext) -> int:
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der).serial_number


class KeepAlive:
    """One HTTP/1.1 keep-alive connection kept open across requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> KeepAlive:
        r, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        return cls(r, w)

    def serial(self) -> int:
        der = self.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number

    async def get(self) -> bytes:
        self.writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = await self.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()


async def test_sighup_reloads_the_certificate_without_dropping_connections(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert = tmp_path / "server.pem"
    first = write_server_cert(ca, cert)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    stop = asyncio.Event()
    started: asyncio.Future[Listeners] = asyncio.get_running_loop().create_future()

    async def setup(process: WorkerProcess) -> Handler:
        process.on_started.append(started.set_result)
        return hello

    settings = WorkerSettings(
        host="127.0.0.1",
        port=None,
        https_port=0,
        processes=1,
        drain_timeout=1,
        tls=TlsSettings(cert_file=str(cert), reload_interval=0),
    )
    worker = asyncio.create_task(serve_worker(setup, settings, stop=stop))
    try:
        listeners = await started
        port = listeners.port("https")
        old = await KeepAlive.open(port, client)
        assert await old.get() == b"hello"
        assert old.serial() == first
        second = write_server_cert(ca, cert)
        assert await peer_serial(port, client) == first  # polling is off: nothing yet
        os.kill(os.getpid(), signal.SIGHUP)  # the worker's own signal handler reloads
        assert listeners.certificates is not None
        for _ in range(200):
            if listeners.certificates.reloads:
                break
            await asyncio.sleep(0.01)
        assert await peer_serial(port, client) == second
        assert await old.get() == b"hello"  # the established connection still serves
        assert old.serial() == first
        await old.close()
        # a broken file keeps the last good certificate
        cert.write_text("not a certificate")
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.05)
        assert await peer_serial(port, client) == second
    finally:
        stop.set()
        await worker


async def test_a_changed_certificate_file_is_picked_up(ca: trustme.CA, tmp_path: Path) -> None:
    cert = tmp_path / "server.pem"
    first = write_server_cert(ca, cert)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    tls = TlsSettings(cert_file=str(cert), reload_interval=0.05)
    async with tls_listener(tls, hello) as listeners:
        port = listeners.port("https")
        old = await KeepAlive.open(port, client)
        assert await old.get() == b"hello"
        second = write_server_cert(ca, cert)
        assert second != first
        for _ in range(400):
            if await peer_serial(port, client) == second:
                break
            await asyncio.sleep(0.025)
        assert await peer_serial(port, client) == second
        assert await old.get() == b"hello"
        assert old.serial() == first
        await old.close()


async def test_mtls_policy_on_a_real_tls_listener(ca: trustme.CA, tmp_path: Path) -> None:
    cert = tmp_path / "server.pem"
    write_server_cert(ca, cert)
    client_ca = trustme.CA(organization_name="Client CA")
    client_ca_file = tmp_path / "client-ca.pem"
    client_ca.cert_pem.write_to_path(str(client_ca_file))
    good = tmp_path / "good.pem"
    client_ca.issue_cert(
        "partner-a.example", common_name="partner-a"
    ).private_key_and_cert_chain_pem.write_to_path(str(good))
    stranger = tmp_path / "stranger.pem"
    trustme.CA().issue_cert(
        "partner-a.example", common_name="partner-a"
    ).private_key_and_cert_chain_pem.write_to_path(str(stranger))
    settings = WorkerSettings(
        host="127.0.0.1",
        port=0,
        https_port=0,
        processes=1,
        tls=TlsSettings(cert_file=str(cert), client_ca_file=str(client_ca_file)),
    )
    policy = {"request": [{"name": "cert", "type": "mtls", "config": {}}]}
    stores = await open_worker_stores("test", "local://", None, tmp_path / "spool")
    handler = GatewayHandler()
    try:
        async with backends("b") as (b,):
            runtime = compile_runtime(
                revision(api("svc", "/", [b.url], policies=policy)), settings, stores.pipelines
            )
            await runtime.start()
            handler.swap(runtime)
            listeners = await start_listeners(handler, settings)
            try:
                https = f"https://localhost:{listeners.port('https')}/orders"

                def context(client_cert: Path | None) -> ssl.SSLContext:
                    ctx = ssl.create_default_context()
                    ca.configure_trust(ctx)
                    if client_cert is not None:
                        ctx.load_cert_chain(str(client_cert))
                    return ctx

                async with httpx.AsyncClient(verify=context(good)) as c:
                    r = await c.get(https, headers={"X-Consumer": "admin"})
                assert r.status_code == 200, r.text
                assert dict(r.json()["headers"])["x-consumer"] == "partner-a"
                async with httpx.AsyncClient(verify=context(None)) as c:
                    r = await c.get(https)
                assert r.status_code == 401
                assert r.json()["error"] == "missing_credentials"
                async with httpx.AsyncClient() as c:  # plain HTTP never carries a cert
                    r = await c.get(f"http://127.0.0.1:{listeners.port('http')}/orders")
                assert r.status_code == 401
                # a certificate from another CA fails the handshake itself
                async with httpx.AsyncClient(verify=context(stranger)) as c:
                    with pytest.raises(httpx.HTTPError):
                        await c.get(https)
                assert b.hits() == 1
            finally:
                await listeners.close(1)
    finally:
        await handler.close(1)
        await stores.close()


def test_worker_refuses_inconsistent_listener_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["worker", "--environment", "dev", "--manager", "http://127.0.0.1:9"]
    base += ["--secret-file", str(tmp_path / "absent.secret"), "--state-dir", str(tmp_path)]
    cases = [
        (["--https-port", "8443"], "https_port and redirect_port need tls"),
        (["--redirect-port", "8081"], "https_port and redirect_port need tls"),
        (["--client-ca", "/x.pem"], "need --tls-cert"),
        (["--tls-cert", "/c.pem", "--require-client-cert"], "require_client_cert needs"),
        (["--trusted-proxy", "10.0.0.0/33"], "trusted_proxies"),
        (["--trusted-proxy", "lb.example"], "trusted_proxies"),
        (["--no-http"], "at least one of port and https_port"),
        (["--https-port", "0", "--tls-cert", str(tmp_path / "absent.pem")], "absent.pem"),
        (["--https-port", "99999", "--tls-cert", "/c.pem"], "https_port"),
    ]
    for flags, message in cases:
        assert main([*base, *flags]) == 2, flags
        assert message in capsys.readouterr().err, flags

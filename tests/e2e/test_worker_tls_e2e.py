"""``portway worker`` with its production listener flags, as a real process with two processes:
HTTPS with the operator's certificate, the redirect listener, and a certificate reload on SIGHUP
(forwarded to every process) while an established keep-alive connection keeps working."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from pathlib import Path

import httpx
import trustme
from cryptography import x509

from tests.e2e.conftest import REPORT_INTERVAL, Platform
from tests.support.processes import Process, free_port, portway, wait_until


def issue(ca: trustme.CA, path: Path) -> int:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    tmp = path.with_suffix(".new")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp))
    os.replace(tmp, path)
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number


def serial_of(sock: ssl.SSLSocket) -> int:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def new_serial(port: int, context: ssl.SSLContext) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return serial_of(tls)


def keepalive_get(sock: ssl.SSLSocket) -> bytes:
    sock.sendall(b"GET /_portway/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += sock.recv(4096)
    return head.split(b"\r\n", 1)[0]


def test_worker_tls_flags_and_sighup_reload(platform: Platform, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = tmp_path / "worker.pem"
    first = issue(ca, cert)
    https_port, redirect_port = free_port(), free_port()
    proc = Process(
        "tls-worker",
        portway(
            "worker",
            "--environment",
            "dev",
            "--manager",
            platform.manager_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--https-port",
            str(https_port),
            "--redirect-port",
            str(redirect_port),
            "--tls-cert",
            str(cert),
            "--tls-reload-interval",
            "0",
            "--processes",
            "2",
            "--worker-id",
            "tls",
            "--state-dir",
            str(tmp_path / "tls"),
            "--secret-file",
            str(platform.secret_file),
            "--poll-interval",
            str(REPORT_INTERVAL),
        ),
        tmp_path,
    )
    platform.processes.append(proc)
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def serving() -> bool:
        with httpx.Client(verify=context, trust_env=False, timeout=2) as c:
            return c.get(f"https://localhost:{https_port}/_portway/health").status_code in (
                200,
                503,
            )

    wait_until(serving, "the worker's HTTPS listener", proc=proc)
    r = httpx.get(f"http://localhost:{redirect_port}/a/b?c=1", trust_env=False, timeout=5)
    assert r.status_code == 308
    assert r.headers["location"] == f"https://localhost:{https_port}/a/b?c=1"

    raw = socket.create_connection(("127.0.0.1", https_port), timeout=5)
    old = context.wrap_socket(raw, server_hostname="localhost")
    try:
        assert keepalive_get(old).startswith(b"HTTP/1.1 ")
        assert serial_of(old) == first
        second = issue(ca, cert)
        proc.proc.send_signal(signal.SIGHUP)  # the supervisor forwards it to both processes
        # SO_REUSEPORT spreads new connections over the processes: all must present the new one
        wait_until(
            lambda: all(new_serial(https_port, context) == second for _ in range(20)),
            "every process presents the new certificate",
            proc=proc,
        )
        assert keepalive_get(old).startswith(b"HTTP/1.1 ")
        assert serial_of(old) == first
    finally:
        old.close()
    assert proc.alive()

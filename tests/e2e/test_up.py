"""`portway up` as a user runs it: start, curl the printed URL, Ctrl-C, and again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, port_is_free, wait_until


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job


def run_up_once(
    data_dir: Path, ports: tuple[int, int, int], *, sigint_ignored: bool = False
) -> str:
    """``portway up`` until it serves the demo API, then Ctrl-C (SIGINT); its output."""
    worker, manager, backend = ports
    log = data_dir.parent / f"up-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portway",
                "up",
                "--worker-port",
                str(worker),
                "--manager-port",
                str(manager),
                "--backend-port",
                str(backend),
                "--data-dir",
                str(data_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
        try:
            wait_until(lambda: "Press Ctrl-C" in log.read_text(), "portway up ready", timeout=90)
            text = log.read_text()
            assert f"curl http://127.0.0.1:{worker}/demo/echo?x=1" in text
            echoed = httpx.get(f"http://127.0.0.1:{worker}/demo/echo?x=1", trust_env=False)
            assert echoed.status_code == 200
            assert echoed.json()["query"] == "x=1"
            assert echoed.json()["service"] == "portway-demo-echo"
            # the single-host profile turns HTTP/2 on: h2c with prior knowledge, same route
            with httpx.Client(http1=False, http2=True, trust_env=False) as h2c:
                over_h2 = h2c.get(f"http://127.0.0.1:{worker}/demo/echo?x=1")
            assert over_h2.http_version == "HTTP/2"
            assert over_h2.json()["query"] == "x=1"
        finally:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does to the supervisor
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()  # no supervisor left running into the next test
                proc.wait()
                pytest.fail(f"portway up did not stop on SIGINT within 60 s:\n{log.read_text()}")
    assert code == 0, log.read_text()
    return log.read_text()


def test_up_twice_with_clean_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = (free_port(), free_port(), free_port())
    first = run_up_once(data_dir, ports)
    assert "First admin (shown once): user admin, password" in first
    for port in ports:
        assert port_is_free(port), f"port {port} still in use after Ctrl-C"
    assert processes_mentioning(str(data_dir)) == []

    # started with SIGINT ignored, Ctrl-C still stops everything
    second = run_up_once(data_dir, ports, sigint_ignored=True)
    assert "First admin (shown once)" not in second
    assert "Deployed demo API revision 1" in second  # unchanged working copy, same API revision
    for port in ports:
        assert port_is_free(port)
    assert processes_mentioning(str(data_dir)) == []
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "portway",
            "matrix",
            "check",
            "--config",
            str(data_dir / "portway.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 violation(s)" in checked.stdout
    secret = data_dir / "cluster.secret"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"


def test_up_refuses_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "portway",
                "up",
                "--worker-port",
                str(port),
                "--manager-port",
                str(free_port()),
                "--backend-port",
                str(free_port()),
                "--data-dir",
                str(tmp_path / "d"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} (worker) is already in use" in result.stderr

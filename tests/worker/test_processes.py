"""The worker as real processes: N processes on one port (SO_REUSEPORT), graceful drain on
SIGTERM, and bounded memory while 64 MB stream through it in each direction."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from portway.http import Request, Response, serve
from tests.worker.support import api, revision

MB = 1024 * 1024


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@contextlib.contextmanager
def worker_process(
    tmp_path: Path,
    rev_json: str,
    processes: int = 1,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], list[dict[str, object]]]]:
    rev_file = tmp_path / "revision.json"
    rev_file.write_text(rev_json)
    ready = tmp_path / "ready"
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portway.worker.static",
            str(rev_file),
            "--port",
            "0",
            "--processes",
            str(processes),
            "--ready-file",
            str(ready),
            *extra,
        ],
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        files = [Path(f"{ready}.{i}") for i in range(processes)]
        while not all(f.exists() for f in files):
            if proc.poll() is not None or time.monotonic() > deadline:
                out = (tmp_path / "worker.log").read_text()
                raise AssertionError(f"worker did not start: {out}")
            time.sleep(0.05)
        yield proc, [json.loads(f.read_text()) for f in files]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


async def test_processes_share_one_port_and_drain_on_sigterm(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def backend(request: Request) -> Response:
        if request.path == "/slow":
            started.set()
            await asyncio.sleep(0.5)
        return Response(200, [], str(os.getpid()).encode())

    upstream = await serve(backend, "127.0.0.1", 0)
    try:
        rev = revision(api("svc", "/", [f"http://127.0.0.1:{upstream.port}"]))
        with worker_process(tmp_path, rev.model_dump_json(), processes=2) as (proc, ready):
            ports = {r["ports"]["http"] for r in ready}  # type: ignore[index]
            pids = {r["pid"] for r in ready}
            assert len(ports) == 1
            assert len(pids) == 2
            port = ports.pop()
            async with httpx.AsyncClient() as client:
                for _ in range(10):
                    assert (await client.get(f"http://127.0.0.1:{port}/x")).status_code == 200
                slow = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/slow"))
                await started.wait()
                proc.send_signal(signal.SIGTERM)
                r = await slow
                assert r.status_code == 200
            code = await asyncio.to_thread(proc.wait, 30)
            assert code == 0
    finally:
        await upstream.close(1)


@contextlib.asynccontextmanager
async def streaming_backend() -> AsyncIterator[int]:
    async def backend(request: Request) -> Response:
        if request.path.startswith("/download/"):
            size = int(request.path.rsplit("/", 1)[1])

            async def chunks() -> AsyncIterator[bytes]:
                block = b"d" * (256 * 1024)
                for _ in range(size // len(block)):
                    yield block

            return Response(200, [], chunks(), content_length=size)
        total = 0
        while chunk := await request.body.read():
            total += len(chunk)
            await asyncio.sleep(0.0005)  # a slow consumer: the gateway must hold the client back
        return Response(200, [], str(total).encode())

    server = await serve(backend, "127.0.0.1", 0)
    try:
        yield server.port
    finally:
        await server.close(1)


@pytest.mark.slow
async def test_streaming_64_mb_each_way_keeps_worker_memory_bounded(tmp_path: Path) -> None:
    size = 64 * MB
    async with streaming_backend() as backend_port:
        rev = revision(api("svc", "/", [f"http://127.0.0.1:{backend_port}"]))
        with worker_process(tmp_path, rev.model_dump_json()) as (proc, ready):
            port = ready[0]["ports"]["http"]  # type: ignore[index]
            async with httpx.AsyncClient(timeout=60) as client:
                assert (
                    await client.get(f"http://127.0.0.1:{port}/download/{MB}")
                ).status_code == 200
                baseline = peak_rss(proc.pid)
                # a slow downloader
                received = 0
                async with client.stream("GET", f"http://127.0.0.1:{port}/download/{size}") as r:
                    async for chunk in r.aiter_raw(65536):
                        received += len(chunk)
                        await asyncio.sleep(0.0002)
                assert received == size

                # a fast uploader to a slow backend
                async def body() -> AsyncIterator[bytes]:
                    block = b"u" * (256 * 1024)
                    for _ in range(size // len(block)):
                        yield block

                r = await client.post(
                    f"http://127.0.0.1:{port}/upload",
                    content=body(),
                    headers={"content-length": str(size)},
                )
                assert r.text == str(size)
            growth = peak_rss(proc.pid) - baseline
    print(f"worker peak RSS growth: {growth / MB:.1f} MB")
    assert growth < 24 * MB, f"worker peak RSS grew by {growth / MB:.1f} MB"

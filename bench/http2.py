"""HTTP/2 and gRPC rows of ``make bench``, beside nginx in the same run, and the HTTP/1.1 path
before and after HTTP/2 support.

- HTTP/1.1 small GET (wrk, as in ``bench/dataplane.py``): the nginx proxy; the worker with HTTP/2
  off and on (the listener then looks at each connection's first bytes); the worker of the tree
  before HTTP/2 was added (``BENCH_BASELINE``: a git revision; default the parent of the commit
  that added ``portway/http/_h2server.py``), run from a ``git archive`` of it.
- HTTP/2 small GET (h2load, h2c with prior knowledge, 4 connections x 8 streams): nginx
  (``listen ... http2``, HTTP/1.1 keep-alive to the backend) and the worker.
- gRPC unary (h2load POSTing one 100-byte gRPC message): the grpcio backend directly, nginx
  (``grpc_pass``) and the worker (an ``http2: true`` backend). Every target first answers one real
  grpcio call, checked, before it is measured.

The static backend is the same nginx as in the dataplane bench; the gRPC backend is a grpcio
server (``bench/grpc_backend.py``, 4 threads), which bounds every gRPC row alike.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.dataplane import (
    DURATION,
    REPEATS,
    Lab,
    Row,
    Sample,
    Scenario,
    free_port,
    revision_json,
    rss_mb,
    table,
    wait_port,
    worker_args,
    wrk,
)

ROOT = Path(__file__).resolve().parent.parent
GRPC_PATH = "/bench.Echo/Unary"
_H2LOAD_RPS = re.compile(r"^finished in [\d.]+m?s, ([\d.]+) req/s", re.MULTILINE)
GRPC_MESSAGE = b"\x00" + (100).to_bytes(4, "big") + b"m" * 100

NGINX_FRONT = """
worker_processes 1;
error_log {root}/front-error.log warn;
pid {root}/front.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    http2_max_requests 100000000;
    client_body_temp_path {root}/fbody;
    proxy_temp_path {root}/fproxy;
    fastcgi_temp_path {root}/ffastcgi;
    uwsgi_temp_path {root}/fuwsgi;
    scgi_temp_path {root}/fscgi;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
    upstream grpc_backend {{ server 127.0.0.1:{grpc}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{h1} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{h2} http2 backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{grpc_front} http2 backlog=4096;
        location / {{ grpc_pass grpc://grpc_backend; }}
    }}
}}
"""


@dataclass(frozen=True)
class Cell:
    scenario: str
    label: str
    """The row's target name (``nginx`` is the anchor of the ratios)."""
    port: str
    """The lab's port name."""
    tool: str
    """``wrk``, ``h2`` or ``grpc``."""


H1 = Scenario("HTTP/1.1 small GET (c32), before/after HTTP/2", "/small.txt")
H2 = "HTTP/2 small GET (4 conns x 8 streams)"
GRPC = "gRPC unary, 100-byte message (4 conns x 8 streams)"


def cells(baseline: bool) -> list[Cell]:
    out = [
        Cell(H1.name, "nginx", "nginx-h1", "wrk"),
        Cell(H1.name, "worker, http2 off", "worker", "wrk"),
        Cell(H1.name, "worker, http2 on", "worker-h2", "wrk"),
    ]
    if baseline:
        out.append(Cell(H1.name, "worker before HTTP/2", "worker-before", "wrk"))
    out += [
        Cell(H2, "nginx", "nginx-h2", "h2"),
        Cell(H2, "worker", "worker-h2", "h2"),
        Cell(GRPC, "direct (grpcio)", "grpc", "grpc"),
        Cell(GRPC, "nginx", "nginx-grpc", "grpc"),
        Cell(GRPC, "worker", "worker-h2", "grpc"),
    ]
    return out


def baseline_revision() -> str | None:
    """The git revision the 'before' worker comes from, or None outside a git checkout."""
    wanted = os.environ.get("BENCH_BASELINE")
    if wanted:
        return wanted
    try:
        added = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "log",
                "--diff-filter=A",
                "--format=%H",
                "--",
                "src/portway/http/_h2server.py",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{added[-1]}^" if added else None


def export_tree(revision: str, into: Path) -> Path:
    """``src`` of ``revision`` under ``into`` (``git archive``); returns the ``src`` path."""
    archive = into / "before.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def grpc_call(port: int) -> None:
    """One real grpcio call; raises unless the echo comes back."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = channel.unary_unary(GRPC_PATH)(b"check", timeout=10)
    if answer != b"check":
        raise RuntimeError(f"gRPC target on {port} answered {answer!r}")


def grpc_revision(backend: int, grpc_port: int) -> str:
    """The dataplane bench's root API plus ``/bench.Echo`` to the grpcio backend over HTTP/2."""
    import json

    data = json.loads(revision_json(backend, 1, False))
    data["apis"].append(
        {
            "api": {
                "name": "grpc",
                "base_path": "/bench.Echo",
                "strip_base_path": False,
                "backends": [{"url": f"http://127.0.0.1:{grpc_port}", "http2": True}],
            },
            "api_revision": 1,
        }
    )
    return json.dumps(data)


@contextlib.contextmanager
def lab(baseline: str | None) -> Iterator[Lab]:
    for tool in ("wrk", "nginx", "h2load"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench needs {tool} (scripts/provision installs it)")
    with tempfile.TemporaryDirectory(prefix="portway-bench-h2-") as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        (root / "www" / "small.txt").write_bytes(b"hello, world\n")
        (root / "grpc.msg").write_bytes(GRPC_MESSAGE)
        the_lab = Lab(root)
        try:
            backend = the_lab.start_backend()
            grpc_port = free_port()
            the_lab.start(
                "grpc", [sys.executable, "-m", "bench.grpc_backend", str(grpc_port)], grpc_port
            )
            front = {name: free_port() for name in ("h1", "h2", "grpc_front")}
            conf = root / "front.conf"
            conf.write_text(NGINX_FRONT.format(root=root, backend=backend, grpc=grpc_port, **front))
            nginx = ["nginx", "-p", str(root), "-g", "daemon off; user root;", "-c", str(conf)]
            the_lab.start("nginx-h1", nginx, front["h1"])
            the_lab.ports["nginx-h2"] = front["h2"]
            the_lab.ports["nginx-grpc"] = front["grpc_front"]
            plain = root / "worker.json"
            plain.write_text(revision_json(backend, 1, False))
            both = root / "worker-h2.json"
            both.write_text(grpc_revision(backend, grpc_port))
            port = free_port()
            the_lab.start("worker", worker_args(plain, port), port)
            port = free_port()
            the_lab.start("worker-h2", worker_args(both, port, "--http2"), port)
            if baseline is not None:
                src = export_tree(baseline, root)
                port = free_port()
                env = {**os.environ, "PYTHONPATH": str(src)}
                log = (root / "worker-before.log").open("wb")
                proc = subprocess.Popen(
                    worker_args(plain, port), stdout=log, stderr=subprocess.STDOUT, env=env
                )
                the_lab.procs.append(proc)
                wait_port(port)
                the_lab.ports["worker-before"] = port
                the_lab.pids["worker-before"] = proc.pid
            yield the_lab
        finally:
            the_lab.stop()


def h2load(the_lab: Lab, cell: Cell, duration: int) -> Sample:
    log = the_lab.root / "h2load.log"
    args = ["h2load", "-c4", "-m8", f"-D{duration}", f"--log-file={log}"]
    if cell.tool == "grpc":
        args += [
            "-d",
            str(the_lab.root / "grpc.msg"),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ]
        path = GRPC_PATH
    else:
        path = "/small.txt"
    args.append(f"http://127.0.0.1:{the_lab.ports[cell.port]}{path}")
    log.unlink(missing_ok=True)  # h2load appends
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rate = _H2LOAD_RPS.search(out)
    if rate is None:
        raise RuntimeError(f"cannot read h2load output:\n{out}")
    times: list[float] = []
    failed = 0
    for line in log.read_text().splitlines():
        _, status, micros = line.split("\t")[:3]
        if status != "200":
            failed += 1
        else:
            times.append(int(micros) / 1000)
    if not times:
        raise RuntimeError(f"h2load got no answer from {cell.port}:\n{out}")
    if failed:
        print(f"  warning ({cell.scenario}, {cell.label}): {failed} failed requests")
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return Sample(float(rate.group(1)), statistics.median(times), p99)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(results_dir: Path) -> list[dict[str, object]]:
    started = datetime.now(UTC)
    baseline = baseline_revision()
    plan = cells(baseline is not None)
    rows: dict[tuple[str, str], Row] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    with lab(baseline) as the_lab:
        for port in ("grpc", "nginx-grpc", "worker-h2"):
            grpc_call(the_lab.ports[port])
        for cell in plan:  # warm up
            if cell.tool == "wrk":
                wrk(the_lab, Scenario(H1.name, H1.path, connections=8), cell.port)
            else:
                h2load(the_lab, cell, 1)
        for repeat in range(REPEATS):
            for cell in plan:
                pid = the_lab.pids.get(cell.port) if cell.port.startswith("worker") else None
                before = cpu_seconds(pid) if pid else 0.0
                if cell.tool == "wrk":
                    sample = wrk(the_lab, H1, cell.port)
                else:
                    sample = h2load(the_lab, cell, DURATION)
                if pid:
                    used = cpu_seconds(pid) - before
                    per_request = used / max(1.0, sample.rps * DURATION) * 1e6
                    cpu.setdefault((cell.scenario, cell.label), []).append(per_request)
                row = rows.setdefault((cell.scenario, cell.label), Row(cell.scenario, cell.label))
                row.samples.append(sample)
                if cell.port.startswith("worker"):
                    row.rss_mb = rss_mb(the_lab.pids[cell.port])
                print(
                    f"[{repeat + 1}/{REPEATS}] {cell.scenario[:40]:40} {cell.label:22} "
                    f"{sample.rps:10,.0f} req/s  p50 {sample.p50_ms:6.2f} ms  "
                    f"p99 {sample.p99_ms:6.2f} ms",
                    flush=True,
                )
    report = "\n".join(
        [
            f"# HTTP/2 and gRPC benchmark - {started:%Y-%m-%d %H:%M} UTC",
            "",
            f"{REPEATS}x{DURATION}s per cell, interleaved; medians (min-max). HTTP/1.1: wrk -t1 "
            "-c32; HTTP/2 and gRPC: h2load -c4 -m8 (h2c prior knowledge), latency percentiles "
            "from its per-request log. Each proxy: one process. Ratios are against nginx. "
            f"'before HTTP/2': the worker of {baseline or '(no git checkout: not run)'}.",
            "",
            table(list(rows.values())),
            "",
            "CPU time of the worker process per request (user + system, over the measured "
            "seconds; steadier than req/s on a shared machine):",
            "",
            "| scenario | worker | CPU us/request, median (min-max) |",
            "|---|---|---|",
            *(
                f"| {scenario} | {label} | {statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f}) |"
                for (scenario, label), v in cpu.items()
            ),
            "",
        ]
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "http2.md").write_text(report)
    print()
    print(report)
    return [row.result() for row in rows.values()]


if __name__ == "__main__":
    run(Path(__file__).parent / "results")

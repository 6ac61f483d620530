"""Data-plane benchmark: wrk against one static nginx backend directly, through nginx, through
HAProxy and through the Portway worker, in one run, each proxy with one process or thread.

Every (scenario, target) pair runs ``REPEATS`` times for ``DURATION`` seconds, interleaved so that
drift of the machine hits every target alike; the table shows medians with min-max. Then a 1 GB
download and a 1 GB upload go through the worker while its peak RSS is watched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import cpu_ticks, machine, noise

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
DURATION = int(os.environ.get("BENCH_DURATION", "5"))
ROUTES = 10_000
MB = 1024 * 1024
STREAM_BYTES = 1_000_000_000


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    connections: int = 32
    script: str | None = None
    targets: tuple[str, ...] = ("direct", "nginx", "haproxy", "worker")
    headers: tuple[str, ...] = ()
    """``Name: value`` request headers, one ``wrk -H`` each."""


SCENARIOS = [
    Scenario("small GET, keep-alive (c32)", "/small.txt"),
    Scenario("64 KB responses (c32)", "/64k.bin"),
    Scenario("1 MB uploads (c32)", "/upload", script="upload.lua"),
    Scenario("small GET, 100 connections", "/small.txt", connections=100),
    Scenario(
        "10,000 routes vs 1 route (c32)",
        "/svc5000/small.txt",
        targets=("worker-1-route", "worker-10k-routes"),
    ),
]


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int = 0
    """Requests wrk completed in the sample."""


@dataclass
class Row:
    scenario: str
    target: str
    samples: list[Sample] = field(default_factory=list)
    rss_mb: float | None = None

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in self.samples))

    def span(self, attr: str) -> tuple[float, float]:
        values = [getattr(s, attr) for s in self.samples]
        return min(values), max(values)

    def spread(self) -> float:
        """Fastest ÷ slowest sample, in req/s."""
        low, high = self.span("rps")
        return high / low if low else float("inf")

    def result(self) -> dict[str, object]:
        """The row as ``run()`` returns it."""
        return {
            "scenario": self.scenario,
            "target": self.target,
            "rps_median": self.median("rps"),
            "p50_ms_median": self.median("p50_ms"),
            "p99_ms_median": self.median("p99_ms"),
            "rss_mb": self.rss_mb,
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


NGINX_BACKEND = """
worker_processes 1;
error_log {root}/backend-error.log warn;
pid {root}/backend.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root}/www;
        client_max_body_size 2g;
        # read the whole upload, then answer (an internal hop, the same for every target)
        location = /upload {{
            proxy_pass http://127.0.0.1:{port}/small.txt;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location / {{ }}
    }}
}}
"""

NGINX_PROXY = """
worker_processes 1;
error_log {root}/{name}-error.log warn;
pid {root}/{name}.pid;
events {{ worker_connections 4096; }}
http {{
    keepalive_requests 100000000;
    client_body_temp_path {root}/{name}-body;
    proxy_temp_path {root}/{name}-proxy;
    fastcgi_temp_path {root}/{name}-fastcgi;
    uwsgi_temp_path {root}/{name}-uwsgi;
    scgi_temp_path {root}/{name}-scgi;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
{http}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 2g;
        location / {{
{location}
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
"""The nginx proxy; ``http`` and ``location`` take extra directives (the API gateway's)."""


def nginx_proxy(root: Path, port: int, backend: int, name: str = "proxy", **extra: str) -> str:
    return NGINX_PROXY.format(
        root=root,
        port=port,
        backend=backend,
        name=name,
        http=extra.get("http", "    access_log off;"),
        location=extra.get("location", ""),
    )


HAPROXY_GLOBAL = """
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
"""

HAPROXY = (
    HAPROXY_GLOBAL
    + """frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server s1 127.0.0.1:{backend}
"""
)

UPLOAD_LUA = """
wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
"""


def revision_json(backend: int, routes: int, strip: bool) -> str:
    apis = []
    for i in range(routes):
        apis.append(
            {
                "api": {
                    "name": f"svc{i}" if routes > 1 or strip else "root",
                    "base_path": f"/svc{i}" if strip else "/",
                    "strip_base_path": strip,
                    "backends": [{"url": f"http://127.0.0.1:{backend}"}],
                    "connection": {"pool_size": 256},
                },
                "api_revision": 1,
            }
        )
    return json.dumps(
        {
            "environment": "bench",
            "revision": 1,
            "created_at": datetime.now(UTC).isoformat(),
            "apis": apis,
        }
    )


def worker_args(revision: Path, port: int, *extra: str, processes: int = 1) -> list[str]:
    """The command of a ``portway.worker.static`` worker serving ``revision`` on ``port``."""
    args = [sys.executable, "-m", "portway.worker.static", str(revision), "--port", str(port)]
    return [*args, "--processes", str(processes), *extra]


class Lab:
    """The processes of one bench run; everything is stopped on exit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}

    def start(
        self, name: str, args: list[str], port: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log".replace(":", "-")).open("wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        wait_port(port)
        self.ports[name] = port
        self.pids[name] = proc.pid
        return proc

    def start_backend(self) -> int:
        """The nginx backend every bench proxies to (``NGINX_BACKEND``, files under
        ``root/www``), as ``direct``; returns its port."""
        port = free_port()
        conf = self.root / "backend.conf"
        conf.write_text(NGINX_BACKEND.format(root=self.root, port=port))
        nginx = ["nginx", "-p", str(self.root), "-c", str(conf), "-g", "daemon off; user root;"]
        self.start("direct", nginx, port)
        return port

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    for tool in ("wrk", "nginx", "haproxy"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench needs {tool} (scripts/provision installs it)")
    with tempfile.TemporaryDirectory(prefix="portway-bench-") as tmp:
        root = Path(tmp)
        www = root / "www"
        www.mkdir()
        (www / "small.txt").write_bytes(b"hello, world\n")
        (www / "64k.bin").write_bytes(os.urandom(64 * 1024))
        with (www / "1g.bin").open("wb") as f:
            f.truncate(STREAM_BYTES)
        (www / "svc5000").mkdir()
        (root / "upload.lua").write_text(UPLOAD_LUA)
        the_lab = Lab(root)
        try:
            backend = the_lab.start_backend()
            port = free_port()
            conf = root / "proxy.conf"
            conf.write_text(nginx_proxy(root, port, backend))
            the_lab.start(
                "nginx",
                ["nginx", "-p", str(root), "-c", str(conf), "-g", "daemon off; user root;"],
                port,
            )
            port = free_port()
            conf = root / "haproxy.cfg"
            conf.write_text(HAPROXY.format(port=port, backend=backend))
            the_lab.start("haproxy", ["haproxy", "-db", "-f", str(conf)], port)
            for name, routes, strip in (
                ("worker", 1, False),
                ("worker-1-route", 1, True),
                ("worker-10k-routes", ROUTES, True),
            ):
                rev = root / f"{name}.json"
                if name == "worker-1-route":
                    rev.write_text(revision_json(backend, 1, True).replace("/svc0", "/svc5000"))
                else:
                    rev.write_text(revision_json(backend, routes, strip))
                port = free_port()
                the_lab.start(
                    name, worker_args(rev, port, "--max-body-bytes", str(2 * STREAM_BYTES)), port
                )
            yield the_lab
        finally:
            the_lab.stop()


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(the_lab: Lab, scenario: Scenario, target: str) -> Sample:
    args = [
        "wrk",
        "-t1",
        f"-c{scenario.connections}",
        f"-d{DURATION}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if scenario.script:
        args += ["-s", str(the_lab.root / scenario.script)]
    for header in scenario.headers:
        args += ["-H", header]
    args.append(f"http://127.0.0.1:{the_lab.ports[target]}{scenario.path}")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = _RPS.search(out)
    latencies = {p: float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(out)}
    if rps is None or "50" not in latencies or "99" not in latencies:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    if "Non-2xx" in out or "Socket errors" in out:
        print(f"  warning ({scenario.name}, {target}): {out.strip().splitlines()[-3:]}")
    done = _REQUESTS.search(out)
    return Sample(
        float(rps.group(1)),
        latencies["50"],
        latencies["99"],
        int(done.group(1)) if done else 0,
    )


def stream_gigabyte(the_lab: Lab) -> dict[str, float]:
    """Peak RSS growth of a fresh worker while 1 GB goes down and 1 GB goes up through it."""
    port = free_port()
    revision = the_lab.root / "worker.json"
    args = worker_args(revision, port, "--max-body-bytes", str(2 * STREAM_BYTES))
    the_lab.start("worker-stream", args, port)
    pid = the_lab.pids["worker-stream"]
    for _ in range(20):  # warm up: imports, pools, first buffers
        subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{port}/64k.bin"], check=True
        )
    before = rss_mb(pid, "VmHWM")
    subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{port}/1g.bin"], check=True
    )
    after_download = rss_mb(pid, "VmHWM")
    upload = subprocess.run(
        f"head -c {STREAM_BYTES} /dev/zero | curl -sS -o /dev/null -w '%{{http_code}}' "
        f"-H 'Content-Type: application/octet-stream' -T - http://127.0.0.1:{port}/upload",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    after_upload = rss_mb(pid, "VmHWM")
    return {
        "peak_before_mb": before,
        "download_growth_mb": after_download - before,
        "upload_growth_mb": after_upload - after_download,
        "upload_status": float(upload.stdout.strip() or 0),
    }


def fmt(row: Row, attr: str, digits: int = 0) -> str:
    lo, hi = row.span(attr)
    return f"{row.median(attr):,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | target | req/s median (min-max) | x nginx | p50 ms | p99 ms | x nginx p99 "
        "| worker RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_scenario: dict[str, dict[str, Row]] = {}
    for row in rows:
        by_scenario.setdefault(row.scenario, {})[row.target] = row
    for scenario, targets in by_scenario.items():
        anchor = targets.get("nginx") or targets.get("worker-1-route")
        for target, row in targets.items():
            ratio = row.median("rps") / anchor.median("rps") if anchor else float("nan")
            p99 = row.median("p99_ms") / anchor.median("p99_ms") if anchor else float("nan")
            rss = f"{row.rss_mb:.0f}" if row.rss_mb is not None else ""
            lines.append(
                f"| {scenario} | {target} | {fmt(row, 'rps')} | {ratio:.2f} | "
                f"{fmt(row, 'p50_ms', 2)} | {fmt(row, 'p99_ms', 2)} | {p99:.2f} | {rss} |"
            )
    return "\n".join(lines)


def run(results_dir: Path) -> list[dict[str, object]]:
    started = datetime.now(UTC)
    rows: dict[tuple[str, str], Row] = {}
    with lab() as the_lab:
        # warm up every target (imports, pools, JIT-less caches)
        for scenario in SCENARIOS:
            for target in scenario.targets:
                subprocess.run(
                    [
                        "wrk",
                        "-t1",
                        "-c8",
                        "-d1s",
                        f"http://127.0.0.1:{the_lab.ports[target]}"
                        f"{scenario.path if not scenario.script else '/small.txt'}",
                    ],
                    capture_output=True,
                    check=True,
                )
        before = cpu_ticks()
        for repeat in range(REPEATS):
            for scenario in SCENARIOS:
                for target in scenario.targets:
                    sample = wrk(the_lab, scenario, target)
                    row = rows.setdefault((scenario.name, target), Row(scenario.name, target))
                    row.samples.append(sample)
                    if target.startswith("worker"):
                        row.rss_mb = rss_mb(the_lab.pids[target])
                    print(
                        f"[{repeat + 1}/{REPEATS}] {scenario.name:32} {target:18} "
                        f"{sample.rps:10,.0f} req/s  p50 {sample.p50_ms:6.2f} ms  "
                        f"p99 {sample.p99_ms:6.2f} ms",
                        flush=True,
                    )
        after = cpu_ticks()
        streaming = stream_gigabyte(the_lab)
    markdown = table(list(rows.values()))
    get = rows[(SCENARIOS[0].name, "worker")]
    nginx = rows[(SCENARIOS[0].name, "nginx")]
    one = rows[(SCENARIOS[-1].name, "worker-1-route")]
    many = rows[(SCENARIOS[-1].name, "worker-10k-routes")]
    targets = [
        (
            "plain GET throughput >= 0.8x nginx",
            get.median("rps") / nginx.median("rps"),
            get.median("rps") >= 0.8 * nginx.median("rps"),
        ),
        (
            "plain GET p99 <= 1.5x nginx",
            get.median("p99_ms") / nginx.median("p99_ms"),
            get.median("p99_ms") <= 1.5 * nginx.median("p99_ms"),
        ),
        (
            "10,000 routes within 10% of one route",
            many.median("rps") / one.median("rps"),
            many.median("rps") >= 0.9 * one.median("rps"),
        ),
        ("worker RSS < 150 MB with 10,000 routes", many.rss_mb or 0, (many.rss_mb or 0) < 150),
        (
            "streaming 1 GB adds < 20 MB RSS (download / upload)",
            max(streaming["download_growth_mb"], streaming["upload_growth_mb"]),
            max(streaming["download_growth_mb"], streaming["upload_growth_mb"]) < 20,
        ),
    ]
    summary = ["| target | measured | met |", "|---|---|---|"]
    for name, value, met in targets:
        summary.append(f"| {name} | {value:.2f} | {'yes' if met else 'no'} |")
    report = "\n".join(
        [
            f"# Data-plane benchmark - {started:%Y-%m-%d %H:%M} UTC",
            "",
            f"wrk -t1, {REPEATS}x{DURATION}s per cell, interleaved; medians (min-max). "
            f"{machine()}. Each proxy: one process/thread; backend: one "
            "nginx worker serving static files. Ratios are against the nginx proxy (for the "
            "routes scenario: against the worker with one route).",
            "",
            markdown,
            "",
            noise({f"{r.scenario} / {r.target}": r.spread() for r in rows.values()}, before, after),
            "",
            f"1 GB through the worker: peak RSS {streaming['peak_before_mb']:.0f} MB before, "
            f"+{streaming['download_growth_mb']:.1f} MB after a 1 GB download, "
            f"+{streaming['upload_growth_mb']:.1f} MB after a 1 GB chunked upload "
            f"(HTTP {streaming['upload_status']:.0f}).",
            "",
            "\n".join(summary),
            "",
        ]
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "latest.md").write_text(report)
    print()
    print(report)
    return [row.result() for row in rows.values()]

"""Policy-chain benchmark: the cost of a standard chain against the plain worker and nginx.

In one run, with the data-plane benchmark's small-GET keep-alive c32 scenario (``wrk -t1 -c32``,
``BENCH_REPEATS`` x ``BENCH_DURATION`` s, interleaved; medians with min-max):

- ``nginx``: the nginx proxy (one worker process), the anchor;
- ``worker``: the Portway worker (one process) without policies;
- ``worker-chain``: the same worker with ``api_key`` (the key in a header of every request, one
  consumer granted the API), ``throttling`` per consumer on Redis (``window: fixed``, a limit far
  above the request count, ``on_store_unavailable: fail`` so a broken cache would show as errors
  instead of a free pass) and traffic records shipped to a SQLite sink.

Every target receives the same requests (the key header too). Target: the chain >= 0.5x nginx.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.servers import redis_server

from bench.dataplane import (
    DURATION,
    NGINX_BACKEND,
    NGINX_PROXY,
    REPEATS,
    SCENARIOS,
    Lab,
    Row,
    Scenario,
    fmt,
    free_port,
    revision_json,
    rss_mb,
    wrk,
)

API_KEY = "bench-key-0123456789abcdef"
KEY_HEADER = "X-Api-Key"
TARGETS = ("nginx", "worker", "worker-chain")
# Far above what any run sends (a few thousand req/s for minutes at most): nothing is refused.
THROTTLE_LIMIT = 1_000_000_000
SCENARIO = Scenario(
    SCENARIOS[0].name,  # small GET, keep-alive (c32): the same settings as the data plane's
    SCENARIOS[0].path,
    connections=SCENARIOS[0].connections,
    targets=TARGETS,
    headers=(f"{KEY_HEADER}: {API_KEY}",),
)
TARGET_RATIO = 0.5


def chain_revision(backend: int) -> str:
    """The data plane's one-route revision with the chain and one consumer holding the key."""
    revision: dict[str, Any] = json.loads(revision_json(backend, 1, False))
    api = revision["apis"][0]["api"]
    api["policies"] = {
        "request": [
            {
                "name": "key",
                "type": "api_key",
                "config": {"location": "header", "key_name": KEY_HEADER},
            },
            {
                "name": "per-consumer",
                "type": "throttling",
                "config": {
                    "limit": THROTTLE_LIMIT,
                    "interval_seconds": 3600,
                    "window": "fixed",
                    "identity": "consumer",
                    "on_store_unavailable": "fail",
                },
            },
        ]
    }
    revision["consumers"] = [
        {
            "id": "c-bench",
            "name": "bench",
            "credentials": [
                {
                    "id": "k-bench",
                    "kind": "api_key",
                    "lookup": hashlib.sha256(API_KEY.encode()).hexdigest(),
                }
            ],
            "grants": [
                {
                    "api": api["name"],
                    "project": api.get("project", "default"),
                    "environments": ["bench"],
                }
            ],
        }
    ]
    return json.dumps(revision)


@dataclass
class PolicyLab:
    lab: Lab
    traffic_db: Path


def _worker(lab: Lab, name: str, revision: Path, *extra: str) -> None:
    port = free_port()
    lab.start(
        name,
        [
            sys.executable,
            "-m",
            "portway.worker.static",
            str(revision),
            "--port",
            str(port),
            "--processes",
            "1",
            *extra,
        ],
        port,
    )


@contextlib.contextmanager
def policy_lab() -> Iterator[PolicyLab]:
    with tempfile.TemporaryDirectory(prefix="portway-bench-policies-") as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        (root / "www" / "small.txt").write_bytes(b"hello, world\n")
        with redis_server(root) as redis:
            the_lab = Lab(root)
            try:
                backend = free_port()
                conf = root / "backend.conf"
                conf.write_text(NGINX_BACKEND.format(root=root, port=backend))
                nginx = ["nginx", "-p", str(root), "-c", str(conf), "-g", "daemon off; user root;"]
                the_lab.start("direct", nginx, backend)
                port = free_port()
                conf = root / "proxy.conf"
                conf.write_text(NGINX_PROXY.format(root=root, port=port, backend=backend))
                nginx = ["nginx", "-p", str(root), "-c", str(conf), "-g", "daemon off; user root;"]
                the_lab.start("nginx", nginx, port)
                plain = root / "worker.json"
                plain.write_text(revision_json(backend, 1, False))
                _worker(the_lab, "worker", plain)
                chain = root / "worker-chain.json"
                chain.write_text(chain_revision(backend))
                traffic_db = root / "traffic.db"
                _worker(
                    the_lab,
                    "worker-chain",
                    chain,
                    "--cache",
                    f"redis://127.0.0.1:{redis.port}/0",
                    "--logs",
                    f"sqlite://{traffic_db}",
                    "--spool-dir",
                    str(root),
                )
                yield PolicyLab(the_lab, traffic_db)
            finally:
                the_lab.stop()


def _status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def check_chain(the_lab: Lab) -> None:
    """The chain really runs: no key is 401, the key is 200 with the throttling headers."""
    url = f"http://127.0.0.1:{the_lab.ports['worker-chain']}{SCENARIO.path}"
    if (status := _status(url, {})) != 401:
        raise RuntimeError(f"worker-chain without a key answered {status}, not 401")
    request = urllib.request.Request(url, headers={KEY_HEADER: API_KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200 or response.headers.get("X-RateLimit-Limit") is None:
            raise RuntimeError(f"worker-chain with the key: {response.status} {response.headers}")


def traffic_records(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM traffic").fetchone()[0])


def table(rows: dict[str, Row]) -> str:
    nginx, plain = rows["nginx"], rows["worker"]
    lines = [
        "| target | req/s median (min-max) | x nginx | x plain worker | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for target, row in rows.items():
        lines.append(
            f"| {target} | {fmt(row, 'rps')} | "
            f"{row.median('rps') / nginx.median('rps'):.2f} | "
            f"{row.median('rps') / plain.median('rps'):.2f} | "
            f"{fmt(row, 'p50_ms', 2)} | {fmt(row, 'p99_ms', 2)} |"
        )
    return "\n".join(lines)


def run(results_dir: Path) -> list[dict[str, object]]:
    started = datetime.now(UTC)
    rows = {target: Row(SCENARIO.name, target) for target in TARGETS}
    with policy_lab() as plab:
        the_lab = plab.lab
        check_chain(the_lab)
        for target in TARGETS:  # warm up: imports, pools, the Redis connection
            url = f"http://127.0.0.1:{the_lab.ports[target]}{SCENARIO.path}"
            subprocess.run(
                ["wrk", "-t1", "-c8", "-d1s", "-H", SCENARIO.headers[0], url],
                capture_output=True,
                check=True,
            )
        for repeat in range(REPEATS):
            for target in TARGETS:
                sample = wrk(the_lab, SCENARIO, target)
                rows[target].samples.append(sample)
                if target.startswith("worker"):
                    rows[target].rss_mb = rss_mb(the_lab.pids[target])
                print(
                    f"[{repeat + 1}/{REPEATS}] {target:14} {sample.rps:10,.0f} req/s  "
                    f"p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms",
                    flush=True,
                )
        the_lab.stop()  # the chain worker's shipper flushes on SIGTERM
        logged = traffic_records(plab.traffic_db)
    sent = sum(s.rps * DURATION for s in rows["worker-chain"].samples)
    chain, nginx, plain = rows["worker-chain"], rows["nginx"], rows["worker"]
    ratio = chain.median("rps") / nginx.median("rps")
    met = ratio >= TARGET_RATIO
    report = "\n".join(
        [
            f"# Policy-chain benchmark - {started:%Y-%m-%d %H:%M} UTC",
            "",
            f"{SCENARIO.name}: wrk -t1 -c{SCENARIO.connections}, {REPEATS}x{DURATION}s per "
            f"target, interleaved; medians (min-max). Machine: {os.cpu_count()} cores, shared by "
            "wrk, the nginx backend, the proxy under test and Redis. Each proxy: one process. "
            f"Every request carries `{KEY_HEADER}`. worker-chain: api_key + throttling (per "
            "consumer, fixed window, on Redis) + traffic records to SQLite.",
            "",
            table(rows),
            "",
            f"Chain vs plain worker: {chain.median('rps') / plain.median('rps'):.2f}x throughput, "
            f"+{chain.median('p50_ms') - plain.median('p50_ms'):.2f} ms p50. Traffic records in "
            f"SQLite after the run: {logged:,} (about {sent:,.0f} requests were measured, plus "
            "warm-up). Worker RSS: plain "
            f"{plain.rss_mb or 0:.0f} MB, chain {chain.rss_mb or 0:.0f} MB.",
            "",
            "| target | measured | met |",
            "|---|---|---|",
            f"| chain throughput >= {TARGET_RATIO}x nginx | {ratio:.2f} | "
            f"{'yes' if met else 'no'} |",
            "",
        ]
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "policies.md").write_text(report)
    print()
    print(report)
    return [
        row.result() | {"traffic_records": logged if row.target == "worker-chain" else None}
        for row in rows.values()
    ]


if __name__ == "__main__":
    run(Path(__file__).parent / "results")

"""Policy-chain benchmark: the cost of a standard chain against the plain worker, nginx and
HAProxy configured as API gateways (issue 15).

In one run, with the data-plane benchmark's small-GET keep-alive c32 scenario (``wrk -t1 -c32``,
``BENCH_REPEATS`` x ``BENCH_DURATION`` s, interleaved; medians with min-max), every target
receiving the same requests (the ``X-Api-Key`` header too), one process or thread each:

- ``nginx``: the plain nginx proxy (the data plane's anchor);
- ``nginx-gateway``: nginx as its users build an API gateway: ``map $http_x_api_key`` to a
  consumer (401 for an unknown key), ``limit_req_zone`` keyed on the consumer (429), the key
  header removed, a buffered ``access_log`` naming the consumer;
- ``haproxy-gateway``: HAProxy as an API gateway: an ACL on the key header against a key file
  (401), a ``stick-table`` tracking ``http_req_rate`` per key (429), ``del-header`` of the key;
- ``worker``: the Portway worker without policies; ``worker-2-processes`` the same with
  ``--processes 2`` (the scaling curve);
- ``chain-local`` / ``chain-redis``: the worker with ``api_key`` (one consumer granted the API)
  and ``throttling`` per consumer (fixed window, a limit far above the request count,
  ``on_store_unavailable: fail``) on the in-process cache / on Redis, traffic records shipped to
  SQLite; ``chain-local-nolog`` / ``chain-redis-nolog``: the same chains without traffic records
  (the cost of logging is the difference); ``chain-redis-batched``: ``chain-redis`` with the
  throttling's ``sync: batched`` (counted locally, synced to Redis every 100 ms).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.servers import redis_server

from bench import cpu_ticks, machine, noise
from bench.dataplane import (
    DURATION,
    HAPROXY_GLOBAL,
    REPEATS,
    SCENARIOS,
    Lab,
    Row,
    Scenario,
    fmt,
    free_port,
    nginx_proxy,
    revision_json,
    rss_mb,
    worker_args,
    wrk,
)

API_KEY = "bench-key-0123456789abcdef"
KEY_HEADER = "X-Api-Key"
WORKERS = ("worker", "worker-2-processes")
CHAINS = (
    "chain-local",
    "chain-local-nolog",
    "chain-redis",
    "chain-redis-nolog",
    "chain-redis-batched",
)
TARGETS = ("nginx", "nginx-gateway", "haproxy-gateway", *WORKERS, *CHAINS)
# Far above what any run sends (a few thousand req/s for minutes at most): nothing is refused.
THROTTLE_LIMIT = 1_000_000_000
SCENARIO = Scenario(
    SCENARIOS[0].name,  # small GET, keep-alive (c32): the same settings as the data plane's
    SCENARIOS[0].path,
    connections=SCENARIOS[0].connections,
    targets=TARGETS,
    headers=(f"{KEY_HEADER}: {API_KEY}",),
)

# nginx as an API gateway: what goes into the nginx proxy's http and location blocks
NGINX_GATEWAY_HTTP = """
    map $http_x_api_key $consumer {{
        default "";
        "{key}" "bench";
    }}
    limit_req_zone $consumer zone=per_consumer:10m rate=100000000r/s;
    limit_req_status 429;
    log_format gateway '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                       'consumer=$consumer rt=$request_time';
    access_log {root}/gateway-access.log gateway buffer=64k flush=1s;
"""
NGINX_GATEWAY_LOCATION = """
            if ($consumer = "") {{ return 401; }}
            limit_req zone=per_consumer burst=1000000 nodelay;
            proxy_set_header X-Api-Key "";
"""

HAPROXY_GATEWAY = (
    HAPROXY_GLOBAL
    + """frontend gateway
    bind 127.0.0.1:{port}
    acl known_key req.hdr(x-api-key) -m str -f {root}/api-keys.lst
    http-request deny deny_status 401 if !known_key
    http-request track-sc0 req.hdr(x-api-key) table per_key
    http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {limit} }}
    http-request del-header x-api-key
    default_backend be
backend per_key
    stick-table type string len 64 size 100k expire 1h store http_req_rate(1h)
backend be
    server s1 127.0.0.1:{backend}
"""
)


def chain_revision(backend: int, sync: str = "exact") -> str:
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
                    "sync": sync,
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
    traffic_dbs: dict[str, Path]


def _worker(lab: Lab, name: str, revision: Path, *extra: str, processes: int = 1) -> None:
    port = free_port()
    lab.start(name, worker_args(revision, port, *extra, processes=processes), port)


def _nginx(lab: Lab, name: str, backend: int, **extra: str) -> None:
    port = free_port()
    conf = lab.root / f"{name}.conf"
    conf.write_text(nginx_proxy(lab.root, port, backend, name, **extra))
    nginx = ["nginx", "-p", str(lab.root), "-c", str(conf), "-g", "daemon off; user root;"]
    lab.start(name, nginx, port)


def _gateways(lab: Lab, backend: int) -> None:
    """nginx and HAProxy configured as API gateways in front of the same backend."""
    _nginx(
        lab,
        "nginx-gateway",
        backend,
        http=NGINX_GATEWAY_HTTP.format(root=lab.root, key=API_KEY),
        location=NGINX_GATEWAY_LOCATION.format(),
    )
    (lab.root / "api-keys.lst").write_text(API_KEY + "\n")
    port = free_port()
    conf = lab.root / "haproxy-gateway.cfg"
    conf.write_text(
        HAPROXY_GATEWAY.format(root=lab.root, port=port, backend=backend, limit=THROTTLE_LIMIT)
    )
    lab.start("haproxy-gateway", ["haproxy", "-db", "-f", str(conf)], port)


@contextlib.contextmanager
def policy_lab() -> Iterator[PolicyLab]:
    with tempfile.TemporaryDirectory(prefix="portway-bench-policies-") as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        (root / "www" / "small.txt").write_bytes(b"hello, world\n")
        with redis_server(root) as redis:
            the_lab = Lab(root)
            try:
                backend = the_lab.start_backend()
                _nginx(the_lab, "nginx", backend)
                _gateways(the_lab, backend)
                plain = root / "worker.json"
                plain.write_text(revision_json(backend, 1, False))
                _worker(the_lab, "worker", plain)
                _worker(the_lab, "worker-2-processes", plain, processes=2)
                chain = root / "chain.json"
                chain.write_text(chain_revision(backend))
                batched = root / "chain-batched.json"
                batched.write_text(chain_revision(backend, "batched"))
                dbs: dict[str, Path] = {}
                for name in CHAINS:
                    cache = f"redis://127.0.0.1:{redis.port}/0" if "redis" in name else "local://"
                    extra = ["--cache", cache]
                    if not name.endswith("-nolog"):
                        dbs[name] = root / f"{name}.db"
                        spool = root / f"{name}-spool"
                        extra += ["--logs", f"sqlite://{dbs[name]}", "--spool-dir", str(spool)]
                    _worker(the_lab, name, batched if "batched" in name else chain, *extra)
                yield PolicyLab(the_lab, dbs)
            finally:
                the_lab.stop()


def _status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def check_gateways(the_lab: Lab) -> None:
    """Every gateway and chain really checks: no key or a wrong key is 401, the key is 200 (and
    the worker's chains send the throttling headers)."""
    for target in ("nginx-gateway", "haproxy-gateway", *CHAINS):
        url = f"http://127.0.0.1:{the_lab.ports[target]}{SCENARIO.path}"
        for headers in ({}, {KEY_HEADER: "not-a-key"}):
            if (status := _status(url, headers)) != 401:
                raise RuntimeError(f"{target} with {headers} answered {status}, not 401")
        request = urllib.request.Request(url, headers={KEY_HEADER: API_KEY})
        with urllib.request.urlopen(request, timeout=10) as response:
            throttled = response.headers.get("X-RateLimit-Limit") is not None
            if response.status != 200 or (target.startswith("chain") and not throttled):
                raise RuntimeError(f"{target} with the key: {response.status} {response.headers}")


def traffic_records(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM traffic").fetchone()[0])


def table(rows: dict[str, Row]) -> str:
    nginx, gateway, plain = rows["nginx"], rows["nginx-gateway"], rows["worker"]
    lines = [
        "| target | req/s median (min-max) | x nginx proxy | x nginx gateway | x plain worker "
        "| p50 ms | p99 ms | RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for target, row in rows.items():
        rps = row.median("rps")
        rss = f"{row.rss_mb:.0f}" if row.rss_mb is not None else ""
        lines.append(
            f"| {target} | {fmt(row, 'rps')} | {rps / nginx.median('rps'):.2f} | "
            f"{rps / gateway.median('rps'):.2f} | {rps / plain.median('rps'):.2f} | "
            f"{fmt(row, 'p50_ms', 2)} | {fmt(row, 'p99_ms', 2)} | {rss} |"
        )
    return "\n".join(lines)


def goals(rows: dict[str, Row], logged: dict[str, tuple[int, int]]) -> list[tuple[str, str, bool]]:
    """The targets of issue 15: (target, measured, met)."""

    def rps(name: str) -> float:
        return rows[name].median("rps")

    gateway, plain = rps("nginx-gateway"), rps("worker")
    worst_chain = min(rps(name) for name in CHAINS)
    local_cost = 1 - rps("chain-local") / rps("chain-local-nolog")
    redis_cost = 1 - rps("chain-redis") / rps("chain-redis-nolog")
    p99 = rows["worker"].median("p99_ms") / rows["nginx"].median("p99_ms")
    lost = {name: max(0, sent - stored) for name, (sent, stored) in logged.items()}
    per_process = rps("worker-2-processes") / 2
    return [
        (
            "chain, Redis throttling + traffic log >= 0.5x nginx gateway",
            f"{rps('chain-redis') / gateway:.2f}",
            rps("chain-redis") >= 0.5 * gateway,
        ),
        (
            "chain, in-process cache + traffic log >= 0.6x nginx gateway",
            f"{rps('chain-local') / gateway:.2f}",
            rps("chain-local") >= 0.6 * gateway,
        ),
        (
            "any chain >= 0.7x plain worker",
            f"{worst_chain / plain:.2f}",
            worst_chain >= 0.7 * plain,
        ),
        (
            "traffic logging costs <= 15% of the chain (local / Redis)",
            f"{local_cost:.0%} / {redis_cost:.0%}",
            max(local_cost, redis_cost) <= 0.15,
        ),
        (
            "plain worker >= 0.8x nginx proxy",
            f"{plain / rps('nginx'):.2f}",
            plain >= 0.8 * rps("nginx"),
        ),
        ("plain worker p99 <= 1.5x nginx proxy", f"{p99:.2f}", p99 <= 1.5),
        (
            "scaling: req/s per process, --processes 1 / 2",
            f"{plain:,.0f} / {per_process:,.0f}",
            True,
        ),
        (
            "no traffic record lost (records stored >= requests wrk completed)",
            ", ".join(f"{name}: {n} missing" for name, n in lost.items()),
            not any(lost.values()),
        ),
    ]


def run(results_dir: Path) -> list[dict[str, object]]:
    started = datetime.now(UTC)
    rows = {target: Row(SCENARIO.name, target) for target in TARGETS}
    with policy_lab() as plab:
        the_lab = plab.lab
        check_gateways(the_lab)
        for target in TARGETS:  # warm up: imports, pools, the Redis connection
            url = f"http://127.0.0.1:{the_lab.ports[target]}{SCENARIO.path}"
            subprocess.run(
                ["wrk", "-t1", "-c8", "-d1s", "-H", SCENARIO.headers[0], url],
                capture_output=True,
                check=True,
            )
        before = cpu_ticks()
        for repeat in range(REPEATS):
            for target in TARGETS:
                sample = wrk(the_lab, SCENARIO, target)
                rows[target].samples.append(sample)
                if target.startswith(("worker", "chain")):
                    rows[target].rss_mb = rss_mb(the_lab.pids[target])
                print(
                    f"[{repeat + 1}/{REPEATS}] {target:18} {sample.rps:10,.0f} req/s  "
                    f"p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms",
                    flush=True,
                )
        after = cpu_ticks()
        the_lab.stop()  # the chain workers' shippers flush on SIGTERM
        logged = {
            name: (sum(s.requests for s in rows[name].samples), traffic_records(db))
            for name, db in plab.traffic_dbs.items()
        }
    summary = ["| target (issue 15) | measured | met |", "|---|---|---|"]
    for name, value, met in goals(rows, logged):
        summary.append(f"| {name} | {value} | {'yes' if met else '**no**'} |")
    records = ", ".join(
        f"{name} {stored:,} stored for {sent:,} measured requests (plus warm-up and checks)"
        for name, (sent, stored) in logged.items()
    )
    report = "\n".join(
        [
            f"# Policy-chain benchmark - {started:%Y-%m-%d %H:%M} UTC",
            "",
            f"{SCENARIO.name}: wrk -t1 -c{SCENARIO.connections}, {REPEATS}x{DURATION}s per "
            f"target, interleaved; medians (min-max). {machine()}, shared by "
            "wrk, the nginx backend, the proxy under test and Redis. Each proxy: one process or "
            f"thread (but worker-2-processes). Every request carries `{KEY_HEADER}`.",
            "",
            table(rows),
            "",
            noise({name: row.spread() for name, row in rows.items()}, before, after),
            "",
            f"Traffic records in SQLite after the run: {records}.",
            "",
            "\n".join(summary),
            "",
        ]
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "policies.md").write_text(report)
    print()
    print(report)
    return [
        row.result() | {"traffic_records": logged.get(row.target, (0, None))[1]}
        for row in rows.values()
    ]


if __name__ == "__main__":
    run(Path(__file__).parent / "results")

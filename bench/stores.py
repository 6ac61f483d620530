"""Stores benchmark: atomic increments per cache backend, records per second per traffic sink.

Real servers on loopback (the ones ``scripts/provision`` caches), one client process:

- cache ``increment`` — sequentially (one call in flight: latency p50/p99) and with 32 calls in
  flight (throughput), on 1,000 keys (a key per consumer, the usual case) and on one hot key (all
  workers throttling the same API: the worst case for Hazelcast's compare-and-set loop);
- traffic sink ``write`` of 500-record batches (records/s), and the shipper's ``submit`` (the cost
  the worker's log hook pays per request).

``run(results_dir)`` returns the rows and writes ``stores.md`` and ``stores.json`` there.
Numbers are for this machine (2 cores shared by client and server); compare them side by side.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.servers import (
    HAZELCAST_CLUSTER,
    Server,
    elasticsearch_server,
    hazelcast_server,
    redis_server,
)

from portway.stores.cache import Cache, open_cache
from portway.stores.shipper import Shipper
from portway.stores.traffic import TrafficRecord, TrafficSink, open_traffic_sink

SEQUENTIAL = int(os.environ.get("BENCH_STORES_SEQUENTIAL", "3000"))
CONCURRENT = int(os.environ.get("BENCH_STORES_CONCURRENT", "20000"))
IN_FLIGHT = 32
RECORDS = int(os.environ.get("BENCH_STORES_RECORDS", "50000"))
BATCH = 500


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@contextmanager
def started(make: Callable[[], Server]) -> Iterator[Server]:
    server = make()
    with server:
        yield server


async def bench_cache(name: str, url: str) -> list[dict[str, Any]]:
    cache: Cache = open_cache(url)
    await cache.open()
    rows: list[dict[str, Any]] = []
    try:
        for i in range(2000):  # warm up connections, scripts and the JIT
            await cache.increment(f"warm{i % 10}", window=60)
        latencies = []
        for i in range(SEQUENTIAL):
            t = time.perf_counter()
            await cache.increment(f"seq{i % 1000}", window=60)
            latencies.append((time.perf_counter() - t) * 1000)
        rows.append(
            {
                "backend": name,
                "case": "increment, 1 in flight, 1000 keys",
                "ops_per_s": round(SEQUENTIAL / (sum(latencies) / 1000)),
                "p50_ms": round(statistics.median(latencies), 3),
                "p99_ms": round(percentile(latencies, 99), 3),
            }
        )
        for case, keys in (("1000 keys", 1000), ("1 hot key", 1)):
            latencies = []
            counter = iter(range(CONCURRENT))

            async def client(
                keys: int = keys,
                latencies: list[float] = latencies,
                counter: Iterator[int] = counter,
            ) -> None:
                for i in counter:
                    t = time.perf_counter()
                    await cache.increment(f"con{keys}-{i % keys}", window=60)
                    latencies.append((time.perf_counter() - t) * 1000)

            t0 = time.perf_counter()
            await asyncio.gather(*[client() for _ in range(IN_FLIGHT)])
            elapsed = time.perf_counter() - t0
            rows.append(
                {
                    "backend": name,
                    "case": f"increment, {IN_FLIGHT} in flight, {case}",
                    "ops_per_s": round(CONCURRENT / elapsed),
                    "p50_ms": round(statistics.median(latencies), 3),
                    "p99_ms": round(percentile(latencies, 99), 3),
                }
            )
    finally:
        await cache.close()
    return rows


def records(count: int, offset: int = 0) -> list[TrafficRecord]:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(offset, offset + count):
        r: dict[str, Any] = {
            "id": f"bench-{i}",
            "timestamp": (t0 + timedelta(milliseconds=i)).isoformat(),
            "environment": "bench",
            "project": "default",
            "api": f"api-{i % 20}",
            "method": "GET",
            "path": f"/v1/orders/{i}",
            "consumer": f"app-{i % 50}",
            "status": 200 if i % 50 else 503,
            "total_ms": 1.0 + (i % 100) / 10,
            "backend_ms": 0.8,
            "request_bytes": 120,
            "response_bytes": 1500,
            "worker": "w1",
        }
        out.append(r)
    return out  # type: ignore[return-value]


async def bench_sink(name: str, url: str) -> list[dict[str, Any]]:
    sink: TrafficSink = open_traffic_sink(url)
    await sink.open()
    try:
        await sink.write(records(BATCH, offset=10_000_000))  # creates the table / data stream
        batches = [records(BATCH, offset=i) for i in range(0, RECORDS, BATCH)]
        t0 = time.perf_counter()
        for batch in batches:
            await sink.write(batch)
        elapsed = time.perf_counter() - t0
    finally:
        await sink.close()
    return [
        {
            "backend": name,
            "case": f"write, batches of {BATCH}",
            "records_per_s": round(RECORDS / elapsed),
        }
    ]


async def bench_submit(spool: Path) -> list[dict[str, Any]]:
    class Null:
        async def open(self) -> None: ...
        async def close(self) -> None: ...
        async def write(self, batch: Any) -> None: ...
        async def query(self, query: Any) -> Any: ...
        async def search(self, query: Any) -> Any: ...

    shipper = Shipper(Null(), spool, max_queue=RECORDS + 1, batch_size=BATCH)
    await shipper.start()
    batch = records(RECORDS)
    t0 = time.perf_counter()
    for r in batch:
        shipper.submit(r)
    elapsed = time.perf_counter() - t0
    await shipper.close()
    return [
        {
            "backend": "shipper",
            "case": "submit (the log hook's cost)",
            "records_per_s": round(RECORDS / elapsed),
            "us_per_record": round(elapsed / RECORDS * 1e6, 2),
        }
    ]


def run_async(coro: Awaitable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    async def wrapper() -> list[dict[str, Any]]:
        return await coro

    return asyncio.run(wrapper())


def run(results_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="portway-bench-stores-"))
    try:
        rows += run_async(bench_cache("local", "local://"))
        with started(lambda: redis_server(work)) as redis:
            rows += run_async(bench_cache("redis", f"redis://127.0.0.1:{redis.port}/0"))
        with started(lambda: hazelcast_server(work)) as hz:
            url = f"hazelcast://127.0.0.1:{hz.port}/{HAZELCAST_CLUSTER}"
            rows += run_async(bench_cache("hazelcast", url))
        rows += run_async(bench_sink("sqlite", f"sqlite://{work / 'traffic.db'}"))
        with started(elasticsearch_server) as es:
            url = f"elasticsearch://127.0.0.1:{es.port}?replicas=0&stream=portway-bench"
            rows += run_async(bench_sink("elasticsearch", url))
        rows += run_async(bench_submit(work / "spool"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        row["bench"] = "stores"
    write_report(results_dir, rows)
    return rows


def write_report(results_dir: Path, rows: list[dict[str, Any]]) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "stores.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"# Stores benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)",
        "",
        "| backend | case | ops/s | p50 ms | p99 ms | records/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['case']} | {r.get('ops_per_s', '')} | {r.get('p50_ms', '')} "
            f"| {r.get('p99_ms', '')} | {r.get('records_per_s', '')} |"
        )
    (results_dir / "stores.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    out = run(Path(__file__).parent / "results")
    for row in out:
        print(row)

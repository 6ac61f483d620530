"""The log shipper: batching, spooling, retries, bounded memory, counters — and a real outage."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from portway.errors import RejectedRecords, StoreUnavailable
from portway.stores.shipper import Shipper, ShipperStats
from portway.stores.traffic import (
    AnalyticsQuery,
    AnalyticsResult,
    SearchPage,
    SearchQuery,
    TrafficRecord,
    TrafficWriter,
    open_traffic_sink,
)
from portway.stores.traffic_process import ProcessTrafficSink
from tests.stores.conftest import elasticsearch_url, servers, unique
from tests.support.servers import Server

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(i: int, environment: str = "prod", **extra: Any) -> TrafficRecord:
    r: dict[str, Any] = {
        "id": f"req-{i}",
        "timestamp": (T0 + timedelta(milliseconds=i)).isoformat(),
        "environment": environment,
        "api": "orders",
        "status": 200,
        "total_ms": 1.5,
        "path": f"/orders/{i}",
        **extra,
    }
    return r  # type: ignore[return-value]


class FakeSink:
    """A sink double for the shipper's unit tests: idempotent by id, switchable up/down."""

    def __init__(self) -> None:
        self.up = True
        self.hang = False
        self.stored: dict[str, TrafficRecord] = {}
        self.batches: list[int] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def write(self, records: Sequence[TrafficRecord]) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if not self.up:
            raise StoreUnavailable("sink is down")
        self.batches.append(len(records))
        bad = [(r["id"], "marked bad") for r in records if r.get("error") == "bad"]
        for r in records:
            if r.get("error") != "bad":
                self.stored.setdefault(r["id"], r)
        if bad:
            raise RejectedRecords(bad)

    async def query(self, query: AnalyticsQuery) -> AnalyticsResult:
        raise NotImplementedError

    async def search(self, query: SearchQuery) -> SearchPage:
        raise NotImplementedError


def balanced(s: ShipperStats) -> bool:
    held = s.queued + s.in_flight + s.spooled
    return s.submitted + s.recovered == held + s.delivered + s.rejected + s.dropped


async def until(check: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def shipper(sink: Any, spool: Path, **options: Any) -> Shipper:
    defaults: dict[str, Any] = {
        "batch_size": 50,
        "flush_interval": 0.02,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
    }
    return Shipper(sink, spool, **{**defaults, **options})


async def test_batches_by_size(tmp_path: Path) -> None:
    sink = FakeSink()
    s = shipper(sink, tmp_path, batch_size=10, flush_interval=3600)
    await s.start()
    for i in range(35):
        s.submit(record(i))
    await until(lambda: len(sink.stored) == 30)
    assert sink.batches == [10, 10, 10]  # the last 5 wait for a full batch or the interval
    assert await s.flush(timeout=10)
    assert sink.batches == [10, 10, 10, 5]
    stats = await s.close()
    assert (stats.submitted, stats.delivered, stats.spooled_total) == (35, 35, 0)


async def test_batches_by_time(tmp_path: Path) -> None:
    sink = FakeSink()
    s = shipper(sink, tmp_path, batch_size=1000, flush_interval=0.05)
    await s.start()
    for i in range(3):
        s.submit(record(i))
    await until(lambda: len(sink.stored) == 3)
    assert sink.batches == [3]
    await s.close()


async def test_an_outage_spools_then_delivers_everything_once(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.up = False
    s = shipper(sink, tmp_path)
    await s.start()
    for i in range(250):
        s.submit(record(i))
    await until(lambda: s.stats().spooled == 250)
    assert sink.stored == {}
    assert list(tmp_path.glob("*.jsonl"))
    assert balanced(s.stats())
    sink.up = True
    for i in range(250, 300):
        s.submit(record(i))
    assert await s.flush(timeout=30)
    stats = await s.close()
    assert sorted(sink.stored) == sorted(f"req-{i}" for i in range(300))
    assert (stats.delivered, stats.dropped, stats.spooled) == (300, 0, 0)
    assert stats.spooled_total >= 250
    assert balanced(stats)
    assert not list(tmp_path.iterdir())


async def test_memory_stays_bounded_and_nothing_is_lost(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.hang = True  # a sink that never answers: the worst case for memory
    s = shipper(sink, tmp_path, max_queue=100, batch_size=50)
    await s.start()
    await asyncio.sleep(0)
    tracemalloc.start()
    try:
        most = 0
        for i in range(20_000):
            s.submit(record(i))
            most = max(most, s.stats().queued)
            if i % 1000 == 0:
                await asyncio.sleep(0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert most <= 100
    # 20 000 records held in memory would take well over 10 MB
    assert peak < 4 * 1024 * 1024, peak
    stats = await s.close(timeout=0.2)
    assert (stats.queued, stats.in_flight, stats.dropped) == (0, 0, 0)
    assert stats.spooled == 20_000
    assert balanced(stats)

    # the next start of the worker delivers the backlog
    sink = FakeSink()
    again = shipper(sink, tmp_path)
    await again.start()
    assert again.stats().recovered == 20_000
    assert await again.flush(timeout=60)
    stats = await again.close()
    assert len(sink.stored) == 20_000
    assert (stats.delivered, stats.spooled) == (20_000, 0)
    assert balanced(stats)


async def test_records_are_dropped_only_beyond_the_disk_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FakeSink()
    sink.up = False
    s = shipper(sink, tmp_path, max_spool_bytes=4000, batch_size=10)
    await s.start()
    with caplog.at_level(logging.ERROR, logger="portway.stores.shipper"):
        for i in range(200):
            s.submit(record(i))
        await until(lambda: s.stats().queued == 0 and s.stats().in_flight == 0)
    stats = s.stats()
    assert stats.dropped > 0
    assert 0 < stats.spool_bytes <= 4000
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 4000
    assert balanced(stats)
    assert any("SPOOL FULL" in r.getMessage() for r in caplog.records)
    sink.up = True
    assert await s.flush(timeout=30)
    stats = await s.close()
    assert len(sink.stored) == stats.delivered == 200 - stats.dropped


async def test_rejected_records_are_counted_not_retried(tmp_path: Path) -> None:
    sink = FakeSink()
    s = shipper(sink, tmp_path)
    await s.start()
    for i in range(10):
        s.submit(record(i, error="bad" if i % 5 == 0 else "none"))
    assert await s.flush(timeout=10)
    stats = await s.close()
    assert (stats.delivered, stats.rejected) == (8, 2)
    assert sink.batches == [10]
    assert balanced(stats)


async def test_ships_into_the_sqlite_sink(tmp_path: Path) -> None:
    sink = open_traffic_sink(f"sqlite://{tmp_path / 'traffic.db'}")
    await sink.open()
    s = shipper(sink, tmp_path / "spool", batch_size=200)
    await s.start()
    for i in range(1000):
        s.submit(record(i))
    stats = await s.close(timeout=30)
    result = await sink.query(AnalyticsQuery(start=T0, end=T0 + timedelta(minutes=1)))
    await sink.close()
    assert stats.delivered == result.total == 1000


# --- a real outage -------------------------------------------------------------------------------


def es_post(server: Server, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@servers
@pytest.mark.slow
@pytest.mark.timeout(300)  # stops and starts Elasticsearch: about 2 minutes on a loaded machine
@pytest.mark.parametrize("through", ["in-process sink", "child-process sink"])
async def test_elasticsearch_stopped_mid_run_loses_nothing_and_duplicates_nothing(
    elasticsearch: Server, tmp_path: Path, through: str
) -> None:
    environment = unique("outage-")
    url = elasticsearch_url(elasticsearch, refresh="false", timeout="2")
    sink: TrafficWriter = (
        open_traffic_sink(url) if through == "in-process sink" else ProcessTrafficSink(url)
    )
    await sink.open()
    s = Shipper(
        sink,
        tmp_path / "spool",
        batch_size=100,
        flush_interval=0.05,
        backoff_initial=0.1,
        backoff_max=1.0,
    )
    await s.start()
    total = 3000

    async def produce(first: int, last: int) -> None:
        for i in range(first, last):
            s.submit(record(i, environment))
            if i % 20 == 0:
                await asyncio.sleep(0.01)

    try:
        producer = asyncio.create_task(produce(0, 1000))
        await until(lambda: s.stats().delivered >= 300)
        await asyncio.to_thread(elasticsearch.stop)  # while records keep coming
        await producer
        await produce(1000, 2000)
        await until(lambda: s.stats().spooled > 0)
        producer = asyncio.create_task(produce(2000, total))
        elasticsearch.launch()  # from this thread: the server must outlive the worker threads
        await asyncio.to_thread(elasticsearch.wait_ready)
        await producer
        assert await s.flush(timeout=90)
        stats = await s.close()
    finally:
        if elasticsearch.proc is None or elasticsearch.proc.poll() is not None:
            elasticsearch.start()  # leave the session's server running for the next tests
        await sink.close()

    assert (stats.delivered, stats.dropped, stats.rejected) == (total, 0, 0)
    assert stats.spooled_total > 0
    stream = url.split("stream=")[1].split("&")[0]
    es_post(elasticsearch, f"/{stream}/_refresh")
    found = es_post(
        elasticsearch,
        f"/{stream}/_search",
        {
            "size": 0,
            "track_total_hits": True,
            "query": {"term": {"environment": environment}},
            "aggs": {
                "ids": {"cardinality": {"field": "id", "precision_threshold": 40000}},
                "twice": {"terms": {"field": "id", "min_doc_count": 2, "size": 10}},
            },
        },
    )
    assert found["hits"]["total"]["value"] == total  # nothing lost, nothing twice
    assert found["aggregations"]["twice"]["buckets"] == []
    assert found["aggregations"]["ids"]["value"] == total

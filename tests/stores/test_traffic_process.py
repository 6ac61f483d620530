"""The traffic sink in a child process: records reach the real sink, failures come back as the
shipper expects them, a killed child loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from portway.errors import RejectedRecords, StoreUnavailable
from portway.stores.traffic import AnalyticsQuery, TrafficRecord, open_traffic_sink
from portway.stores.traffic_process import ProcessTrafficSink
from tests.stores.test_shipper import T0, record, shipper


def stored_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM traffic")}


def child_pid(sink: ProcessTrafficSink) -> int:
    process = sink._process
    assert process is not None
    return process.pid


async def test_records_reach_the_sqlite_sink_through_the_child(tmp_path: Path) -> None:
    db = tmp_path / "traffic.db"
    sink = ProcessTrafficSink(f"sqlite://{db}")
    await sink.open()
    assert child_pid(sink) != os.getpid()
    nested = record(1, detail={"headers": {"x-a": "1"}, "sizes": [1, 2]})
    odd: TrafficRecord = record(2)
    odd["detail"] = {"when": T0}  # not JSON: stored as its str, as the sinks do
    # what orjson refuses to encode: the batch goes as the standard encoder writes it
    odder: TrafficRecord = record(3, detail={"big": 2**70, "text": "\ud800"})
    await sink.write([nested, odd, odder, *[record(i) for i in range(4, 100)]])
    await sink.write([record(5), record(6)])  # idempotent by id, as the real sink
    await sink.close()
    assert stored_ids(db) == {f"req-{i}" for i in range(1, 100)}
    reader = open_traffic_sink(f"sqlite://{db}")
    await reader.open()
    result = await reader.query(AnalyticsQuery(start=T0, end=T0 + timedelta(minutes=1)))
    await reader.close()
    assert result.total == 99
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT id, record FROM traffic WHERE id IN ('req-1', 'req-2')"))
    assert json.loads(stored["req-1"])["detail"] == {"headers": {"x-a": "1"}, "sizes": [1, 2]}
    assert json.loads(stored["req-2"])["detail"] == {"when": str(T0)}


async def test_malformed_records_come_back_rejected_and_the_rest_is_stored(
    tmp_path: Path,
) -> None:
    db = tmp_path / "traffic.db"
    sink = ProcessTrafficSink(f"sqlite://{db}")
    bad: TrafficRecord = record(2)
    bad["timestamp"] = "not a time"
    with pytest.raises(RejectedRecords) as caught:
        await sink.write([record(1), bad, record(3)])
    assert [rid for rid, _ in caught.value.rejected] == ["req-2"]
    await sink.close()
    assert stored_ids(db) == {"req-1", "req-3"}


async def test_a_sink_that_cannot_open_is_unavailable_until_it_can(tmp_path: Path) -> None:
    blocker = tmp_path / "dir"
    blocker.write_text("a file where the directory should be")
    sink = ProcessTrafficSink(f"sqlite://{blocker}/traffic.db")
    with pytest.raises(StoreUnavailable, match="traffic"):
        await sink.open()
    with pytest.raises(StoreUnavailable):
        await sink.write([record(1)])
    blocker.unlink()
    blocker.mkdir()
    await sink.write([record(2)])  # the same child opens the sink now
    await sink.close()
    assert stored_ids(blocker / "traffic.db") == {"req-2"}


async def test_a_killed_child_is_unavailable_then_started_again(tmp_path: Path) -> None:
    db = tmp_path / "traffic.db"
    sink = ProcessTrafficSink(f"sqlite://{db}", timeout=10)
    await sink.write([record(1)])
    first = child_pid(sink)
    os.kill(first, signal.SIGKILL)
    with pytest.raises(StoreUnavailable, match="traffic sink process"):
        await sink.write([record(2)])
    await sink.write([record(3)])  # a new child
    assert child_pid(sink) != first
    await sink.close()
    assert stored_ids(db) == {"req-1", "req-3"}


async def test_the_shipper_loses_nothing_when_the_child_is_killed_mid_run(tmp_path: Path) -> None:
    db = tmp_path / "traffic.db"
    sink = ProcessTrafficSink(f"sqlite://{db}", timeout=10)
    s = shipper(sink, tmp_path / "spool", open_sink=True)
    await s.start()
    for i in range(500):
        s.submit(record(i))
        if i % 50 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    os.kill(child_pid(sink), signal.SIGKILL)
    for i in range(500, 1000):
        s.submit(record(i))
        if i % 50 == 0:
            await asyncio.sleep(0.01)
    assert await s.flush(timeout=60)
    stats = await s.close(timeout=30)
    await sink.close()
    assert stats.dropped == stats.rejected == 0
    assert stats.delivered == 1000
    assert stored_ids(db) == {f"req-{i}" for i in range(1000)}

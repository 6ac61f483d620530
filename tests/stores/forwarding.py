"""Shared by the forwarding sinks' tests (syslog, HTTP): a shipper that retries quickly, and a
poll for a condition without blocking the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from portway.stores.shipper import Shipper
from portway.stores.traffic import TrafficRecord, TrafficSink


async def started_shipper(sink: TrafficSink, spool: Path, batch_size: int) -> Shipper:
    shipper = Shipper(
        sink,
        spool,
        batch_size=batch_size,
        flush_interval=0.05,
        backoff_initial=0.1,
        backoff_max=0.3,
    )
    await shipper.start()
    return shipper


def record(i: int, status: int = 200) -> TrafficRecord:
    return TrafficRecord(
        id=f"req-{i:05d}",
        timestamp=f"2026-12-02T01:00:{i % 60:02d}.000000+00:00",
        environment="prod",
        api="orders",
        status=status,
        total_ms=2.5,
        worker="worker-1",
    )


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")

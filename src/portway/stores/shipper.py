"""The worker-side log shipper: the log hook enqueues, batches go to the traffic sink.

    submit() ──► memory queue (≤ max_queue) ──► batch (≤ batch_size, ≤ flush_interval) ──► sink
                    │ full                                       │ sink down / spool not empty
                    ▼                                            ▼
                 spool dir (≤ max_spool_bytes, one JSON-lines file per batch) ──► drainer ──► sink
                                                                   (retries with backoff)

- ``submit`` never blocks on the network and never raises: the hot path only appends to a deque.
  When the deque is full it appends the record to the open overflow file instead, so memory stays
  bounded whatever the sink does.
- A batch that the sink refuses with ``StoreUnavailable`` (or any failure) is written to the spool
  directory (fsynced, renamed into place), and so is every later batch until the spool is empty
  again: the drainer delivers segments oldest first, backing off exponentially (with jitter)
  while the sink stays down. Segments survive a restart of the worker and are delivered then.
- Sinks are idempotent by record id, so a batch whose answer was lost is simply sent again.
- Records are *dropped* only when writing them would take the spool beyond ``max_spool_bytes``;
  each drop is counted and logged at ERROR level. Records a sink refuses for good
  (``RejectedRecords``: malformed) are counted as *rejected*.

Counters (``stats()``): ``submitted`` and ``recovered`` (found on disk at start) come in;
``queued`` (memory), ``in_flight``, ``spooled`` (on disk now) are held; ``delivered``,
``rejected``, ``dropped`` went out. At any time: submitted + recovered = queued + in_flight +
spooled + delivered + rejected + dropped. ``spooled_total`` counts every record that ever went
through the disk.

Call ``submit`` from the event loop's thread (the worker's log hook runs there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from portway.errors import RejectedRecords
from portway.stores._traffic_common import record_json
from portway.stores.traffic import TrafficRecord, TrafficWriter

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
PARTIAL_SUFFIX = ".part"


@dataclass(frozen=True, slots=True)
class ShipperStats:
    submitted: int
    recovered: int
    queued: int
    in_flight: int
    spooled: int
    delivered: int
    rejected: int
    dropped: int
    spooled_total: int
    spool_bytes: int


def _encode(records: Sequence[TrafficRecord]) -> bytes:
    return b"".join(record_json(r) + b"\n" for r in records)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event`` at most ``seconds``. (Not ``wait_for``: on Python 3.11 it can turn a
    cancellation that races its timeout into a TimeoutError, and the task would never stop.)"""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


def _read_segment(path: Path) -> tuple[list[TrafficRecord], int, int]:
    """The records of a segment, its number of lines and its size in bytes."""
    data = path.read_bytes()
    records: list[TrafficRecord] = []
    lines = 0
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        lines += 1
        try:
            records.append(json.loads(line))
        except ValueError:
            # A torn last line of an overflow file cut short by a crash: nothing to deliver.
            log.error("shipper: skipping unreadable line %d of %s", number, path)
    return records, lines, len(data)


class Shipper:
    def __init__(
        self,
        sink: TrafficWriter,
        spool_dir: str | Path,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_spool_bytes: int = 256 * 1024 * 1024,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        open_sink: bool = False,
    ) -> None:
        """``open_sink``: the shipper opens the sink itself on its first write (and retries that
        like any write), so a worker starts while the sink is unreachable."""
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be at least 1")
        self._sink = sink
        self._dir = Path(spool_dir)
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_spool_bytes = max_spool_bytes
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max

        self._queue: deque[TrafficRecord] = deque()
        self._nonempty = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._spool_changed = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._closing = False
        self._sink_down = False
        self._sink_open = not open_sink
        self._seq = 0
        self._overflow: IO[bytes] | None = None
        self._overflow_path: Path | None = None
        self._overflow_count = 0
        self._last_drop_log = 0.0

        self._submitted = 0
        self._recovered = 0
        self._in_flight = 0
        self._spooled = 0
        self._spool_bytes = 0
        self._delivered = 0
        self._rejected = 0
        self._dropped = 0
        self._spooled_total = 0

    # -- public ------------------------------------------------------------------------------------

    def stats(self) -> ShipperStats:
        return ShipperStats(
            submitted=self._submitted,
            recovered=self._recovered,
            queued=len(self._queue),
            in_flight=self._in_flight,
            spooled=self._spooled,
            delivered=self._delivered,
            rejected=self._rejected,
            dropped=self._dropped,
            spooled_total=self._spooled_total,
            spool_bytes=self._spool_bytes,
        )

    async def start(self) -> None:
        """Recover the spool left by an earlier run, then start shipping."""
        self._dir.mkdir(parents=True, exist_ok=True)
        found = await asyncio.to_thread(self._recover)
        if found:
            self._sink_down = True  # deliver the backlog before new records
            log.info("shipper: %d record(s) waiting in %s from an earlier run", found, self._dir)
        self._sender = asyncio.create_task(self._send_forever(), name="shipper-sender")
        self._drainer = asyncio.create_task(self._drain_forever(), name="shipper-drainer")

    def submit(self, record: TrafficRecord) -> None:
        """Queue one record; never blocks on I/O to the sink, never raises."""
        self._submitted += 1
        if self._closing:
            self._spool_now([record])
            return
        if len(self._queue) >= self._max_queue:
            self._spool_now([record])
            return
        self._queue.append(record)
        self._nonempty.set()
        if len(self._queue) >= self._batch_size:
            self._batch_ready.set()

    async def flush(self, timeout: float = 30.0) -> bool:  # noqa: ASYNC109 - a budget, not a cancel
        """Wait until nothing is queued, in flight or spooled; False if the timeout came first."""
        deadline = time.monotonic() + timeout
        self._batch_ready.set()
        self._seal_overflow()
        while self._queue or self._in_flight or self._spooled:
            if time.monotonic() > deadline:
                return False
            self._batch_ready.set()
            await asyncio.sleep(0.02)
        return True

    async def close(self, timeout: float = 10.0) -> ShipperStats:  # noqa: ASYNC109 - a budget
        """Deliver what can be delivered within ``timeout``; what cannot stays in the spool."""
        self._closing = True
        self._nonempty.set()
        self._batch_ready.set()
        deadline = time.monotonic() + timeout
        if self._sender is not None:
            await asyncio.wait({self._sender}, timeout=max(0.0, timeout))
        self._seal_overflow()
        self._spool_changed.set()
        while self._spooled and not self._sink_down and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in (self._sender, self._drainer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sender = self._drainer = None
        if self._queue:  # the sender was cut short: keep the rest on disk
            self._spool_now(list(self._queue))
            self._queue.clear()
        self._seal_overflow()
        return self.stats()

    # -- sending -----------------------------------------------------------------------------------

    async def _next_batch(self) -> list[TrafficRecord]:
        await self._nonempty.wait()
        if len(self._queue) < self._batch_size and not self._closing:
            await _wait(self._batch_ready, self._flush_interval)
        self._batch_ready.clear()
        batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
        if not self._queue:
            self._nonempty.clear()
        return batch

    async def _send_forever(self) -> None:
        while True:
            if self._closing and not self._queue:
                return
            batch = await self._next_batch()
            if not batch:
                continue
            self._in_flight = len(batch)
            try:
                if self._sink_down or self._spooled:
                    await self._spool(batch)
                else:
                    await self._write(batch)
            finally:
                self._in_flight = 0

    async def _write(self, batch: list[TrafficRecord]) -> None:
        try:
            if not self._sink_open:
                await self._sink.open()
                self._sink_open = True
            await self._sink.write(batch)
        except asyncio.CancelledError:
            self._spool_now(batch)  # closing mid-write: nothing in flight is ever lost
            raise
        except RejectedRecords as exc:
            self._count_rejected(len(batch), exc)
        except Exception as exc:
            log.warning("shipper: sink unavailable (%s); spooling to %s", exc, self._dir)
            self._sink_down = True
            await self._spool(batch)
        else:
            self._delivered += len(batch)

    def _count_rejected(self, size: int, exc: RejectedRecords) -> None:
        self._rejected += len(exc.rejected)
        self._delivered += size - len(exc.rejected)
        log.error("shipper: sink refused records for good: %s", exc)

    # -- spooling ----------------------------------------------------------------------------------

    def _next_name(self) -> Path:
        self._seq += 1
        return self._dir / f"{time.time_ns():020d}-{os.getpid()}-{self._seq:08d}"

    def _over_bound(self, size: int, count: int) -> bool:
        if self._spool_bytes + size <= self._max_spool_bytes:
            return False
        self._dropped += count
        now = time.monotonic()
        if now - self._last_drop_log > 5.0:
            self._last_drop_log = now
            log.error(
                "shipper: SPOOL FULL (%d of %d bytes in %s): dropped %d record(s) so far",
                self._spool_bytes,
                self._max_spool_bytes,
                self._dir,
                self._dropped,
            )
        return True

    async def _spool(self, batch: list[TrafficRecord]) -> None:
        data = _encode(batch)
        if self._over_bound(len(data), len(batch)):
            return
        path = self._next_name()

        def write() -> None:
            part = path.with_suffix(PARTIAL_SUFFIX)
            with open(part, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            part.rename(path.with_suffix(SEGMENT_SUFFIX))

        self._spool_bytes += len(data)
        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            self._spool_bytes -= len(data)
            self._dropped += len(batch)
            log.error("shipper: cannot spool to %s (%s): dropped %d", self._dir, exc, len(batch))
            return
        self._spooled += len(batch)
        self._spooled_total += len(batch)
        self._spool_changed.set()

    def _spool_now(self, records: list[TrafficRecord]) -> None:
        """Synchronous append to the overflow file: for the hot path when memory is full."""
        data = _encode(records)
        if self._over_bound(len(data), len(records)):
            return
        try:
            if self._overflow is None:
                self._overflow_path = self._next_name()
                self._overflow = open(self._overflow_path.with_suffix(PARTIAL_SUFFIX), "ab")  # noqa: SIM115
                self._overflow_count = 0
            self._overflow.write(data)
        except OSError as exc:
            self._dropped += len(records)
            log.error("shipper: cannot spool to %s (%s): dropped %d", self._dir, exc, len(records))
            return
        self._spool_bytes += len(data)
        self._spooled += len(records)
        self._spooled_total += len(records)
        self._overflow_count += len(records)
        if self._overflow_count >= self._batch_size:
            self._seal_overflow()

    def _seal_overflow(self) -> None:
        """Make the overflow file a segment the drainer can deliver."""
        f, path = self._overflow, self._overflow_path
        self._overflow = self._overflow_path = None
        if f is None or path is None:
            return
        f.close()
        path.with_suffix(PARTIAL_SUFFIX).rename(path.with_suffix(SEGMENT_SUFFIX))
        self._spool_changed.set()

    def _recover(self) -> int:
        for part in self._dir.glob("*" + PARTIAL_SUFFIX):
            part.rename(part.with_suffix(SEGMENT_SUFFIX))
        count = 0
        for segment in self._dir.glob("*" + SEGMENT_SUFFIX):
            _, lines, size = _read_segment(segment)
            count += lines
            self._spool_bytes += size
        self._recovered = self._spooled = count
        return count

    # -- draining ----------------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        return sorted(self._dir.glob("*" + SEGMENT_SUFFIX))

    async def _drain_forever(self) -> None:
        backoff = self._backoff_initial
        while True:
            segments = await asyncio.to_thread(self._segments)
            if not segments:
                if self._overflow is not None and self._in_flight == 0 and not self._queue:
                    self._seal_overflow()  # a quiet moment: ship what overflowed
                    continue
                if self._overflow is None:
                    self._sink_down = False
                self._spool_changed.clear()
                await _wait(self._spool_changed, self._flush_interval)
                continue
            segment = segments[0]
            records, lines, size = await asyncio.to_thread(_read_segment, segment)
            try:
                if records:
                    await self._sink.write(records)
            except RejectedRecords as exc:
                self._count_rejected(len(records), exc)
            except Exception as exc:
                self._sink_down = True
                delay = backoff * random.uniform(0.5, 1.0)
                log.info("shipper: sink still unavailable (%s); retry in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self._backoff_max)
                continue
            else:
                self._delivered += len(records)
            backoff = self._backoff_initial
            segment.unlink()
            self._spooled -= lines
            self._spool_bytes -= size
            self._dropped += lines - len(records)  # torn lines that could not be read


__all__ = ["Shipper", "ShipperStats"]

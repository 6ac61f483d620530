"""``sync: batched`` counters: local pre-aggregation in front of the shared cache.

The first increment of a counter in a window goes to the shared cache (it learns the shared count
and when the window resets), and so does the first one after the local view has gone one
``interval`` without a sync (it carries the local increments along). Other increments are counted
locally and answered at once with ``shared count as last seen + local increments since``; every
``interval`` seconds the local increments are added to the shared counter in one call per
counter, which also brings back what the other processes counted meanwhile.

Maximum overshoot: a process learns the other processes' increments only when it syncs, and no
local view is older than one interval, so the requests admitted beyond the limit are at most what
the *other* processes admitted during one interval (plus one round trip to the cache). One process
alone is exact. If a flush fails (cache unreachable) the local increments are kept and sent with
the next flush; increments still pending when their window ends are dropped with it (they
belonged to that window), and so are those of a process that stops in between (at most one
interval's worth).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from portway.errors import StoreUnavailable
from portway.stores.cache import Cache, WindowCount

log = logging.getLogger(__name__)


class _Entry:
    __slots__ = ("pending", "reset_at", "shared", "synced_at")

    def __init__(self, shared: int, reset_at: float, synced_at: float) -> None:
        self.shared = shared  # the shared count as last seen (our flushed increments included)
        self.pending = 0  # local increments not flushed yet
        self.reset_at = reset_at  # clock time when the window ends
        self.synced_at = synced_at  # clock time of the last answer from the cache

    def sync(self, counted: WindowCount, now: float) -> None:
        self.shared = counted.count
        self.reset_at = now + counted.reset_after
        self.synced_at = now


class BatchedCounter:
    """``increment`` like ``Cache.increment``, synchronised with ``cache`` every ``interval`` s."""

    def __init__(self, cache: Cache, interval: float, clock: Callable[[], float]) -> None:
        self._cache = cache
        self._interval = interval
        self._clock = clock
        self._entries: dict[tuple[str, float], _Entry] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def increment(self, key: str, *, window: float, amount: int = 1) -> WindowCount:
        now = self._clock()
        entry = self._entries.get((key, window))
        if entry is None or now >= entry.reset_at:
            counted = await self._cache.increment(key, window=window, amount=amount)
            self._entries[(key, window)] = _Entry(counted.count, now + counted.reset_after, now)
            return counted
        if now - entry.synced_at >= self._interval:  # too stale to answer from: sync first
            carried, entry.pending = entry.pending, 0
            try:
                counted = await self._cache.increment(key, window=window, amount=amount + carried)
            except BaseException:
                entry.pending += carried
                raise
            entry.sync(counted, self._clock())
            return counted
        entry.pending += amount
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())
        return WindowCount(entry.shared + entry.pending, entry.reset_at - now)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._interval)
        self._flusher = None  # increments from now on schedule the next flush
        await self.flush()

    async def flush(self) -> None:
        """Add the local increments to the shared counters now."""
        for (key, window), entry in list(self._entries.items()):
            now = self._clock()
            if now >= entry.reset_at:
                del self._entries[(key, window)]  # the window ended, its pending increments too
                continue
            amount = entry.pending
            if not amount:
                continue
            try:
                counted = await self._cache.increment(key, window=window, amount=amount)
            except StoreUnavailable as exc:
                log.warning("batched counters: cannot sync with the cache (%s); retrying", exc)
                break
            entry.pending -= amount
            entry.sync(counted, self._clock())
        if self._flusher is None and any(e.pending for e in self._entries.values()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

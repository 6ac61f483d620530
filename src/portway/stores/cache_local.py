"""The embedded cache: a dictionary in this process.

Per process: two worker processes each count alone, so a limit of L per window admits up to L per
process. Use Redis or Hazelcast when several workers must share counters. Every operation runs
under one lock with no ``await`` inside it, so increments and compare-and-set are atomic even when
several event loops (threads) share the cache. Memory is bounded by ``max_entries`` values and as
many counters: expired entries go first, then the least recently used.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from portway.stores.cache import WindowCount, check_ttl

log = logging.getLogger(__name__)


class LocalCache:
    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._values: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._counters: OrderedDict[str, tuple[int, float]] = OrderedDict()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        with self._lock:
            self._values.clear()
            self._counters.clear()

    def _evict(self, now: float) -> None:
        if len(self._values) > self._max:
            for key in [
                k for k, (_, exp) in self._values.items() if exp is not None and exp <= now
            ]:
                del self._values[key]
            while len(self._values) > self._max:
                self._values.popitem(last=False)
        if len(self._counters) > self._max:
            for key in [k for k, (_, end) in self._counters.items() if end <= now]:
                del self._counters[key]
            if len(self._counters) > self._max:
                log.warning(
                    "local cache: more than %d live counters, evicting the oldest", self._max
                )
            while len(self._counters) > self._max:
                self._counters.popitem(last=False)

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= now:
            del self._values[key]
            return None
        self._values.move_to_end(key)
        return value

    async def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live(key, self._clock())

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_ttl(ttl)
        with self._lock:
            now = self._clock()
            self._values[key] = (bytes(value), None if ttl is None else now + ttl)
            self._values.move_to_end(key)
            self._evict(now)

    async def delete(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)
            self._counters.pop(key, None)

    async def increment(self, key: str, *, window: float, amount: int = 1) -> WindowCount:
        check_ttl(window, "window")
        with self._lock:
            now = self._clock()
            count, end = self._counters.get(key, (0, 0.0))
            if end <= now:
                count, end = 0, now + window
            count += amount
            self._counters[key] = (count, end)
            self._counters.move_to_end(key)
            self._evict(now)
            # (now + window) - now can exceed window by one ulp: clamp it
            return WindowCount(count, min(end - now, window))

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, *, ttl: float | None = None
    ) -> bool:
        check_ttl(ttl)
        with self._lock:
            now = self._clock()
            if self._live(key, now) != expected:
                return False
            self._values[key] = (bytes(value), None if ttl is None else now + ttl)
            self._values.move_to_end(key)
            self._evict(now)
            return True

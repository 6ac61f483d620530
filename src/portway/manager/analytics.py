"""Traffic analytics: the manager's read side of the traffic log (SQLite or Elasticsearch).

The sink is opened on the first query, not at start-up, so the manager starts and serves the rest
of its API while the log store is unreachable; a query then answers 503 ``store_unavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from portway.errors import LogStoreUnavailable, StoreUnavailable
from portway.stores.traffic import (
    AnalyticsQuery,
    AnalyticsResult,
    SearchQuery,
    TrafficSink,
    open_traffic_sink,
)

T = TypeVar("T")


class Analytics:
    def __init__(self, url: str) -> None:
        self._sink: TrafficSink = open_traffic_sink(url)
        self._opened = False
        self._lock = asyncio.Lock()

    async def _read(self, read: Callable[[TrafficSink], Awaitable[T]]) -> T:
        """``read`` on the opened sink; an unreachable log store is ``LogStoreUnavailable``."""
        try:
            async with self._lock:
                if not self._opened:
                    await self._sink.open()
                    self._opened = True
            return await read(self._sink)
        except StoreUnavailable as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def result(self, query: AnalyticsQuery) -> AnalyticsResult:
        return await self._read(lambda sink: sink.query(query))

    async def query(self, query: AnalyticsQuery) -> dict[str, Any]:
        result = await self.result(query)
        out = asdict(result)
        out["by_status"] = {str(k): v for k, v in result.by_status.items()}
        out["top_consumers"] = [{"consumer": c, "count": n} for c, n in result.top_consumers]
        out["buckets"] = [
            {
                "start": b.start.isoformat(),
                "count": b.count,
                "errors": b.errors,
                "latency_ms": b.latency_ms or None,
            }
            for b in result.buckets
        ]
        return out

    async def search(self, query: SearchQuery) -> dict[str, Any]:
        page = await self._read(lambda sink: sink.search(query))
        return {"items": page.records, "next_cursor": page.next_cursor}

    async def close(self) -> None:
        if self._opened:
            await self._sink.close()

"""A worker whose traffic records are shipped to SQLite and read back, for record tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from portway.config.revision import EnvironmentRevision
from portway.stores.traffic import SearchQuery, TrafficRecord, TrafficSink, open_traffic_sink
from portway.worker.process_stores import WorkerStores, open_worker_stores
from tests.worker.support import Backend, Gateway, gateway


@dataclass
class Setup:
    gw: Gateway
    stores: WorkerStores
    sink: TrafficSink
    backend: Backend

    async def record(self, cid: str) -> TrafficRecord:
        """The record of one request, as stored (after the shipper flushed)."""
        assert self.stores.shipper is not None
        assert await self.stores.shipper.flush(10.0)
        now = datetime.now(UTC)
        page = await self.sink.search(
            SearchQuery(
                start=now - timedelta(minutes=5), end=now + timedelta(minutes=1), correlation_id=cid
            )
        )
        assert len(page.records) == 1, page
        return page.records[0]


@contextlib.asynccontextmanager
async def logged_gateway(
    tmp_path: Path, rev: EnvironmentRevision, backend: Backend
) -> AsyncIterator[Setup]:
    logs = f"sqlite://{tmp_path / 'traffic.db'}"
    stores = await open_worker_stores(rev.environment, "local://", logs, tmp_path / "spool")
    assert stores.shipper is not None
    sink = open_traffic_sink(logs)
    await sink.open()
    try:
        async with gateway(rev, pipelines=stores.pipelines) as gw:
            gw.handler.traffic = stores.shipper.submit
            gw.handler.worker_id = "w-1"
            yield Setup(gw, stores, sink, backend)
    finally:
        await stores.close()
        await sink.close()


async def send(
    setup: Setup, method: str, path: str, cid: str | None, **kwargs: Any
) -> httpx.Response:
    """One request with X-Correlation-ID ``cid`` (none: the gateway makes one)."""
    async with httpx.AsyncClient() as client:
        extra = kwargs.pop("headers", {})
        pairs = list(extra.items()) if isinstance(extra, dict) else list(extra)
        headers = ([] if cid is None else [("X-Correlation-ID", cid)]) + pairs
        return await client.request(method, setup.gw.url + path, headers=headers, **kwargs)

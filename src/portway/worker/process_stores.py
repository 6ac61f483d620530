"""The stores behind a worker process's policies and traffic log, opened and closed together.

``portway worker`` (``app.py``) and ``python -m portway.worker.static`` build them the same way:
the shared cache from its URL plus a per-process ``LocalCache``, the ``PolicyServices`` and the
route pipelines on them, and — when traffic is logged — a ``Shipper`` with its spool writing to the
sink through a child process (``ProcessTrafficSink``: storing records stays off the worker's GIL).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from portway.policies.factory import RoutePipelines, route_pipelines
from portway.policies.resources import PolicyServices
from portway.stores.cache import Cache, open_cache
from portway.stores.cache_local import LocalCache
from portway.stores.shipper import Shipper
from portway.stores.traffic import TrafficWriter
from portway.stores.traffic_process import ProcessTrafficSink


@dataclass(frozen=True, slots=True)
class WorkerStores:
    cache: Cache
    local_cache: LocalCache
    services: PolicyServices
    pipelines: RoutePipelines
    sink: TrafficWriter | None = None
    shipper: Shipper | None = None

    async def close(self) -> None:
        if self.shipper is not None:
            await self.shipper.close()
        if self.sink is not None:
            await self.sink.close()
        await self.services.aclose()
        await self.local_cache.close()
        await self.cache.close()


async def open_worker_stores(
    environment: str, cache_url: str, logs_url: str | None, spool_dir: Path
) -> WorkerStores:
    """Open the caches and build the pipelines; with ``logs_url``, also start a shipper (its
    ``submit`` is what ``GatewayHandler.traffic`` takes) spooling to ``spool_dir``."""
    cache = open_cache(cache_url)
    await cache.open()
    local_cache = LocalCache()
    await local_cache.open()
    services = PolicyServices(environment=environment, cache=cache, local_cache=local_cache)
    pipelines = route_pipelines(services)
    if logs_url is None:
        return WorkerStores(cache, local_cache, services, pipelines)
    sink = ProcessTrafficSink(logs_url)
    shipper = Shipper(sink, spool_dir, open_sink=True)
    await shipper.start()
    return WorkerStores(cache, local_cache, services, pipelines, sink, shipper)

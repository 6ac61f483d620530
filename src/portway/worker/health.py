"""Active health checks: each checked address is probed every ``interval`` seconds; it turns
unhealthy after ``unhealthy_threshold`` failed probes in a row and healthy again after
``healthy_threshold`` good ones. (Passive health — ejection after consecutive failures of real
traffic — lives in ``Upstream.record``.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from portway.config.models import HealthCheck
from portway.http import HTTPError
from portway.worker.upstream import Address, Upstream

log = logging.getLogger("portway.worker.health")


class HealthChecker:
    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._config: HealthCheck = upstream.api.health_check
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._config.enabled:
            return
        for address in self._upstream.addresses:
            if address.backend.health_check:
                self._tasks.append(asyncio.create_task(self._loop(address)))

    async def probe(self, address: Address) -> bool:
        config = self._config
        path = (address.base_path + config.path.encode("ascii")) or b"/"
        try:
            async with asyncio.timeout(config.timeout):
                response = await address.pool.request(
                    "GET",
                    path,
                    [(b"host", address.host_header), (b"user-agent", b"portway-health")],
                    read_timeout=config.timeout,
                    total_timeout=config.timeout,
                )
                await response.read_all(1 << 20)
        except (HTTPError, TimeoutError, OSError):
            return False
        return response.status in config.expected_statuses

    async def _loop(self, address: Address) -> None:
        config = self._config
        good = bad = 0
        while True:
            ok = await self.probe(address)
            if ok:
                good, bad = good + 1, 0
                if not address.healthy and good >= config.healthy_threshold:
                    address.healthy = True
                    log.info("%s is healthy again", address.url)
            else:
                good, bad = 0, bad + 1
                if address.healthy and bad >= config.unhealthy_threshold:
                    address.healthy = False
                    log.warning("%s is unhealthy", address.url)
            await asyncio.sleep(config.interval)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

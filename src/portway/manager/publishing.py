"""Publishing an environment revision: compile it as a worker will, then push it to the workers.

The compile check is ``portway.compile.check.RevisionCheck`` (the deployer runs it before a
revision is stored); ``Publisher.push`` tells every worker of the environment concurrently and
returns one answer per worker (a worker that misses the push pulls the desired revision later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from portway.cluster.messages import DeployAck, DeployNotice
from portway.manager.registry import WorkerRegistry
from portway.manager.worker_client import WorkerClient

log = logging.getLogger("portway.manager.deployments")


class Publisher:
    def __init__(self, registry: WorkerRegistry, client: WorkerClient, push_timeout: float) -> None:
        self.registry = registry
        self.client = client
        self.push_timeout = push_timeout

    async def push(self, environment: str, number: int) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        workers = await self.registry.workers(environment)
        notice = DeployNotice(environment=environment, revision=number)

        async def one(doc_id: str, address: str, state: str) -> dict[str, Any]:
            await self.registry.mark_desired(doc_id, number, now)
            result: dict[str, Any] = {"worker": doc_id, "address": address}
            if state == "down":
                return result | {
                    "success": False,
                    "error": "worker is down; it will pull on return",
                    "at": datetime.now(UTC).isoformat(),
                    "seconds": 0.0,
                }
            started = time.monotonic()
            try:
                ack: DeployAck = await asyncio.wait_for(
                    self.client.push(address, notice), self.push_timeout
                )
            except Exception as exc:
                log.warning("push of %s@%d to %s failed: %s", environment, number, doc_id, exc)
                return result | {
                    "success": False,
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                    "at": datetime.now(UTC).isoformat(),
                    "seconds": round(time.monotonic() - started, 3),
                }
            if ack.served_revision is not None:
                await self.registry.mark_served(doc_id, ack.served_revision, datetime.now(UTC))
            return result | {
                "success": ack.success and ack.served_revision == number,
                "served_revision": ack.served_revision,
                "error": ack.error,
                "at": datetime.now(UTC).isoformat(),
                "seconds": round(time.monotonic() - started, 3),
            }

        jobs = []
        for doc in workers:
            view = self.registry.view(doc, number, now)
            jobs.append(one(doc.id, str(doc.data.get("address")), view["state"]))
        return list(await asyncio.gather(*jobs))

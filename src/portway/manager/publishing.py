"""Publishing an environment revision: compile it as a worker will, then push it to the workers.

``RevisionCompiler.check`` refuses a revision that would not compile on a worker (before it is
stored); ``Publisher.push`` tells every worker of the environment concurrently and returns one
answer per worker (a worker that misses the push pulls the desired revision later).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from portway.cluster.messages import DeployAck, DeployNotice
from portway.config.backend_tls import backend_tls_context, tls_settings
from portway.config.revision import EnvironmentRevision
from portway.errors import ConfigError, DeploymentError
from portway.manager.catalog import api_key
from portway.manager.registry import WorkerRegistry
from portway.manager.validation import global_refs
from portway.manager.worker_client import WorkerClient
from portway.policies.factory import route_pipelines
from portway.policies.services import PolicyServices
from portway.stores.cache_local import LocalCache
from portway.worker.runtime import compile_router

log = logging.getLogger("portway.manager.deployments")

_COMPILED_KEYS = 100_000


class RevisionCompiler:
    def __init__(self) -> None:
        self._compiled: set[str] = set()

    def check(self, snapshot: EnvironmentRevision) -> None:
        """Compile the revision exactly as a worker will (routing table, the TLS context of every
        HTTPS backend, every route's policy pipeline), so a revision that would not compile never
        reaches a worker.

        An API revision is immutable, so one that compiled with the same global policies is not
        compiled again (consumer republications and one-API redeploys stay cheap)."""
        services = PolicyServices(
            environment=snapshot.environment, cache=LocalCache(), local_cache=LocalCache()
        )
        pipelines = route_pipelines(services)
        contexts: dict[tuple[bool, str | None], str] = {}
        try:
            compile_router(snapshot)
            for deployed in snapshot.apis:
                api = deployed.api
                # the worker builds each HTTPS backend's TLS context when it compiles; the CA
                # bundle is a file, so this is checked on every compile, never remembered
                for settings in tls_settings(api):
                    if settings not in contexts:
                        try:
                            backend_tls_context(*settings)
                        except ConfigError as exc:
                            raise ConfigError(
                                exc.message, f"{api_key(api.project, api.name)}: {exc.field}"
                            ) from None
                        contexts[settings] = api_key(api.project, api.name)
                refs = {
                    name: snapshot.global_policies[name].model_dump(mode="json")
                    for name in sorted(global_refs(api))
                    if name in snapshot.global_policies
                }
                key = hashlib.sha256(
                    json.dumps(
                        [api.project, api.name, deployed.api_revision, refs], sort_keys=True
                    ).encode()
                ).hexdigest()
                if key in self._compiled:
                    continue
                pipelines(api, None, snapshot)
                for endpoint in api.endpoints:
                    pipelines(api, endpoint, snapshot)
                if len(self._compiled) >= _COMPILED_KEYS:
                    self._compiled.clear()
                self._compiled.add(key)
        except (ValueError, ConfigError, DeploymentError) as exc:
            raise DeploymentError(f"revision {snapshot.revision} does not compile: {exc}") from exc


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

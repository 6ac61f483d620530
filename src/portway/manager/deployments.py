"""Deployments: build an environment revision, validate it whole, push it, record each worker's answer.

Every deploy, undeploy or rollback produces a new immutable ``EnvironmentRevision`` (numbered per
environment). The environment's ``desired_revision`` moves to it with a compare-and-set, then every
worker of the environment is told concurrently (push); a worker that misses the push learns the
desired revision from the answer to its next status report (pull), so the environment converges.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from portway.cluster.messages import DeployAck, DeployNotice
from portway.config.models import ApiProxy
from portway.config.revision import DeployedApi, EnvironmentRevision
from portway.errors import DeploymentError, NotFound
from portway.manager import audit
from portway.manager.catalog import Catalog, api_key
from portway.manager.registry import WorkerRegistry
from portway.manager.validation import validate_environment_apis
from portway.manager.worker_client import WorkerClient
from portway.stores.config_store import ConfigStore

log = logging.getLogger("portway.manager.deployments")


class Deployer:
    def __init__(
        self,
        store: ConfigStore,
        catalog: Catalog,
        registry: WorkerRegistry,
        client: WorkerClient,
        push_timeout: float,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.registry = registry
        self.client = client
        self.push_timeout = push_timeout
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # revisions ----------------------------------------------------------------------------
    async def revision(self, environment: str, number: int) -> EnvironmentRevision:
        doc = await self.store.get("env_revisions", f"{environment}@{number}")
        if doc is None:
            raise NotFound("env_revisions", f"{environment}@{number}")
        return EnvironmentRevision.model_validate(doc.data["snapshot"])

    async def current(self, environment: str) -> EnvironmentRevision | None:
        env = await self.catalog.environment(environment)
        desired = env.data.get("desired_revision")
        return None if desired is None else await self.revision(environment, desired)

    async def _snapshot_api(self, project: str, name: str, actor: str) -> DeployedApi:
        """The API's working copy as a numbered API revision (reused when unchanged)."""
        doc = await self.catalog.api(project, name)
        key = api_key(project, name)
        existing = await self.store.find("api_revisions", {"api_id": key})
        if existing:
            latest = max(existing, key=lambda d: d.data["revision"])
            if latest.data["api"] == doc.data:
                return DeployedApi(
                    api=ApiProxy.model_validate(doc.data), api_revision=latest.data["revision"]
                )
        number = await self.store.next_sequence(f"api_revision:{key}")
        await self.store.insert(
            "api_revisions",
            f"{key}@{number}",
            {
                "api_id": key,
                "revision": number,
                "api": doc.data,
                "created_at": datetime.now(UTC).isoformat(),
                "actor": actor,
            },
        )
        return DeployedApi(api=ApiProxy.model_validate(doc.data), api_revision=number)

    async def _api_revision(self, project: str, name: str, number: int) -> DeployedApi:
        doc = await self.store.get("api_revisions", f"{api_key(project, name)}@{number}")
        if doc is None:
            raise NotFound("api_revisions", f"{api_key(project, name)}@{number}")
        return DeployedApi(api=ApiProxy.model_validate(doc.data["api"]), api_revision=number)

    async def api_revisions(self, project: str, name: str) -> list[dict[str, Any]]:
        docs = await self.store.find("api_revisions", {"api_id": api_key(project, name)})
        return sorted(
            (
                {"revision": d.data["revision"], "created_at": d.data["created_at"], "actor": d.data["actor"]}
                for d in docs
            ),
            key=lambda r: r["revision"],
        )

    # actions ------------------------------------------------------------------------------
    async def deploy(
        self,
        environment: str,
        project: str,
        name: str,
        *,
        actor: str,
        note: str = "",
        api_revision: int | None = None,
    ) -> dict[str, Any]:
        action = "deploy" if api_revision is None else "rollback"
        async with self._locks[environment]:
            deployed = (
                await self._snapshot_api(project, name, actor)
                if api_revision is None
                else await self._api_revision(project, name, api_revision)
            )
            return await self._publish(
                environment, actor, note, action, project, name, replace=deployed
            )

    async def undeploy(
        self, environment: str, project: str, name: str, *, actor: str, note: str = ""
    ) -> dict[str, Any]:
        async with self._locks[environment]:
            current = await self.current(environment)
            if current is None or not any(
                d.api.project == project and d.api.name == name for d in current.apis
            ):
                raise NotFound("deployments", f"{environment}/{api_key(project, name)}")
            return await self._publish(environment, actor, note, "undeploy", project, name, None)

    async def _publish(
        self,
        environment: str,
        actor: str,
        note: str,
        action: str,
        project: str,
        name: str,
        replace: DeployedApi | None,
    ) -> dict[str, Any]:
        env = await self.catalog.environment(environment)
        current = await self.current(environment)
        apis = [
            d for d in (current.apis if current else [])
            if not (d.api.project == project and d.api.name == name)
        ]
        if replace is not None:
            apis.append(replace)
        apis.sort(key=lambda d: (d.api.project, d.api.name))
        validate_environment_apis([d.api for d in apis])

        number = await self.store.next_sequence(f"env_revision:{environment}")
        snapshot = EnvironmentRevision(
            environment=environment,
            revision=number,
            created_at=datetime.now(UTC),
            apis=apis,
            global_policies=current.global_policies if current else {},
            consumers=current.consumers if current else [],
        )
        self._compile_check(snapshot)
        await self.store.insert(
            "env_revisions",
            f"{environment}@{number}",
            {"environment": environment, "revision": number, "snapshot": snapshot.model_dump(mode="json")},
        )
        await self.store.replace(
            "environments",
            environment,
            {**env.data, "desired_revision": number},
            expected_version=env.version,
        )
        results = await self.push(environment, number)
        deployment = {
            "environment": environment,
            "action": action,
            "project": project,
            "api": name,
            "api_id": api_key(project, name),
            "api_revision": replace.api_revision if replace else None,
            "env_revision": number,
            "note": note,
            "actor": actor,
            "at": datetime.now(UTC).isoformat(),
            "results": results,
        }
        deployment_id = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:6]}"
        await self.store.insert("deployments", deployment_id, deployment)
        await audit.record(
            self.store, actor, f"deployment.{action}", f"environments/{environment}",
            {"desired_revision": env.data.get("desired_revision")}, {"desired_revision": number},
        )
        return {"id": deployment_id, **deployment}

    @staticmethod
    def _compile_check(snapshot: EnvironmentRevision) -> None:
        """Compile the revision exactly as a worker will, so a bad one never reaches a worker."""
        try:
            from portway.worker.routing import compile_router
        except ImportError:  # pragma: no cover - routing ships with the worker package
            return
        try:
            compile_router(snapshot)
        except (ValueError, DeploymentError) as exc:
            raise DeploymentError(f"revision {snapshot.revision} does not compile: {exc}") from exc

    async def push(self, environment: str, number: int) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        workers = await self.registry.workers(environment)
        notice = DeployNotice(environment=environment, revision=number)

        async def one(doc_id: str, address: str, state: str) -> dict[str, Any]:
            await self.registry.mark_desired(doc_id, number, now)
            result: dict[str, Any] = {"worker": doc_id, "address": address}
            if state == "down":
                return result | {"success": False, "error": "worker is down; it will pull on return"}
            try:
                ack: DeployAck = await asyncio.wait_for(
                    self.client.push(address, notice), self.push_timeout
                )
            except Exception as exc:  # noqa: BLE001 - any failure is recorded per worker
                log.warning("push of %s@%d to %s failed: %s", environment, number, doc_id, exc)
                return result | {
                    "success": False,
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                    "at": datetime.now(UTC).isoformat(),
                }
            return result | {
                "success": ack.success and ack.served_revision == number,
                "served_revision": ack.served_revision,
                "error": ack.error,
                "at": datetime.now(UTC).isoformat(),
            }

        jobs = []
        for doc in workers:
            view = self.registry.view(doc, number, now)
            jobs.append(one(doc.id, str(doc.data.get("address")), view["state"]))
        return list(await asyncio.gather(*jobs))

    async def history(self, environment: str) -> list[dict[str, Any]]:
        docs = await self.store.find("deployments", {"environment": environment})
        return [{"id": d.id, **d.data} for d in sorted(docs, key=lambda d: d.id, reverse=True)]

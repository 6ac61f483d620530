"""Deployment history: one record per deployment, written before the revision goes live.

A record is inserted ``pending`` (with its audit entry) before the environment's desired revision
moves, and then settled: ``published`` with the workers' answers, or ``failed``. A manager stopped
between the steps leaves a pending record that ``reconcile`` settles on start, so no revision is
ever live without a record.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from portway.manager import audit
from portway.manager.catalog import Catalog
from portway.manager.paging import read_page
from portway.stores.config_store import ConfigStore, Document, Order

log = logging.getLogger("portway.manager.deployments")

COLLECTION = "deployments"

# a deployment record's status
PENDING = "pending"  # recorded; the environment's desired revision not moved yet
PUBLISHED = "published"  # desired revision moved and workers pushed
FAILED = "failed"  # never became the desired revision
INTERRUPTED = "interrupted"  # became desired, but the manager stopped before recording the push
RECOVERED = "recovered"  # desired revision found without any record (settled on start)


def deployment_id() -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:6]}"


def _names_api(record: Mapping[str, Any], project: str | None, api: str | None) -> bool:
    items = record.get("items") or [{"project": record.get("project"), "api": record.get("api")}]
    return any(
        i.get("api") == api and (project is None or i.get("project") == project) for i in items
    )


class DeploymentHistory:
    def __init__(self, store: ConfigStore, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog

    async def record(self, record_id: str, data: Mapping[str, Any]) -> Document:
        return await self.store.insert(COLLECTION, record_id, data)

    async def settle(self, record: Document, data: Mapping[str, Any]) -> None:
        await self.store.replace(COLLECTION, record.id, data, expected_version=record.version)

    async def history(
        self,
        environment: str,
        *,
        project: str | None = None,
        api: str | None = None,
        limit: int,
        cursor: str | None = None,
        order: Order = "desc",
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the environment's deployment records and the cursor of the next. The
        environment filter is indexed; the API filter looks into each record's items (a batch
        names several APIs)."""

        async def naming_the_api(docs: Sequence[Document]) -> list[Document]:
            return [d for d in docs if _names_api(d.data, project, api)]

        docs, after = await read_page(
            self.store,
            COLLECTION,
            {"environment": environment},
            order=order,
            limit=limit,
            cursor=cursor,
            select=None if api is None else naming_the_api,
        )
        return [{"id": d.id, **d.data} for d in docs], after

    async def reconcile(self, actor: str = "system") -> list[dict[str, Any]]:
        """Settle what a manager stopped mid-deploy left behind (run at start, before serving):

        - a pending record whose revision the environment points to went live: ``interrupted``
          (its push may not have happened; workers pull the desired revision);
        - a pending record whose revision the environment does not point to never went live:
          ``failed``;
        - a desired revision without any record (written before records came first):
          a record ``recovered`` is added.
        Each settlement is audited as ``deployment.reconcile``."""
        settled: list[dict[str, Any]] = []
        for env in await self.catalog.environments():
            desired = env.data.get("desired_revision")
            records = await self.store.find(COLLECTION, {"environment": env.id})
            for doc in records:
                if doc.data.get("status") != PENDING:
                    continue
                went_live = doc.data.get("env_revision") == desired
                status = INTERRUPTED if went_live else FAILED
                note = (
                    "the manager stopped after the revision became desired; workers pull it"
                    if went_live
                    else "the manager stopped before the revision became desired"
                )
                await self.settle(doc, {**doc.data, "status": status, "error": note})
                settled.append({"id": doc.id, "environment": env.id, "status": status})
                await audit.record(
                    self.store,
                    actor,
                    "deployment.reconcile",
                    f"environments/{env.id}",
                    {"deployment": doc.id, "status": PENDING},
                    {
                        "deployment": doc.id,
                        "status": status,
                        "env_revision": doc.data.get("env_revision"),
                    },
                )
            if desired is None or any(d.data.get("env_revision") == desired for d in records):
                continue
            record_id = deployment_id()
            await self.record(
                record_id,
                {
                    "environment": env.id,
                    "action": "recovered",
                    "project": None,
                    "api": None,
                    "api_id": None,
                    "api_revision": None,
                    "items": [],
                    "env_revision": desired,
                    "previous_revision": None,
                    "note": "desired revision found without a deployment record",
                    "actor": actor,
                    "at": datetime.now(UTC).isoformat(),
                    "status": RECOVERED,
                    "results": [],
                },
            )
            settled.append({"id": record_id, "environment": env.id, "status": RECOVERED})
            await audit.record(
                self.store,
                actor,
                "deployment.reconcile",
                f"environments/{env.id}",
                None,
                {"deployment": record_id, "status": RECOVERED, "env_revision": desired},
            )
        for item in settled:
            log.warning(
                "deployment %s of %s settled as %s", item["id"], item["environment"], item["status"]
            )
        return settled

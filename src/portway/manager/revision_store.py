"""Revision storage: immutable environment revisions (in parts) and numbered API revisions.

An environment revision is what a worker pulls; it is written once (``put``) and read back
through a small cache (``get``). An API revision is a numbered copy of an API's working copy,
taken when the API is deployed (reused while the working copy is unchanged) and used by rollback.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from portway.config.models import ApiProxy
from portway.config.revision import DeployedApi, EnvironmentRevision, expanded_revision
from portway.errors import NotFound
from portway.manager.catalog import Catalog, api_key
from portway.manager.sealing import SealedStore
from portway.stores import revision_parts
from portway.stores.config_store import ConfigStore, Document

_CACHE_SIZE = 16


class EnvironmentRevisions:
    """Environment revisions in the store, policy secrets sealed when the store seals them."""

    def __init__(self, store: ConfigStore) -> None:
        self.store = store
        self._cache: OrderedDict[tuple[str, int], EnvironmentRevision] = OrderedDict()
        self._runnable: OrderedDict[tuple[str, int], EnvironmentRevision] = OrderedDict()

    async def runnable(self, environment: str, number: int) -> EnvironmentRevision:
        """The revision with its variables expanded, as workers get it (kept in a small cache:
        every worker of the environment asks for the same one)."""
        key = (environment, number)
        found = self._runnable.get(key)
        if found is None:
            found = self._runnable[key] = expanded_revision(await self.get(environment, number))
            while len(self._runnable) > _CACHE_SIZE:
                self._runnable.popitem(last=False)
        return found

    async def get(self, environment: str, number: int) -> EnvironmentRevision:
        """One environment revision; immutable, so parsed ones are kept in a small cache."""
        cached = self._cache.get((environment, number))
        if cached is not None:
            self._cache.move_to_end((environment, number))
            return cached
        key = revision_parts.revision_key(environment, number)
        doc = await self.store.get(revision_parts.HEADERS, key)
        if doc is None:
            raise NotFound(revision_parts.HEADERS, key)
        raw = await revision_parts.read_parts(self.store, key, doc.data)
        if isinstance(self.store, SealedStore):
            opened = self.store.opened("revision", json.loads(raw))
            revision = EnvironmentRevision.model_validate(opened)
        else:
            revision = EnvironmentRevision.model_validate_json(raw)
        self.remember(revision)
        return revision

    async def put(self, snapshot: EnvironmentRevision) -> None:
        """Store a new revision: its parts first, then its header (complete or invisible)."""
        key = revision_parts.revision_key(snapshot.environment, snapshot.revision)
        raw = snapshot.model_dump_json().encode()
        if isinstance(self.store, SealedStore):
            sealed = self.store.sealed("revision", snapshot.model_dump(mode="json"))
            raw = json.dumps(sealed).encode()
        parts = await revision_parts.write_parts(self.store, snapshot.environment, key, raw)
        await self.store.insert(
            revision_parts.HEADERS,
            key,
            revision_parts.header(
                snapshot.environment,
                snapshot.revision,
                snapshot.created_at.isoformat(),
                raw,
                parts,
                apis=len(snapshot.apis),
                consumers=len(snapshot.consumers),
            ),
        )
        self.remember(snapshot)

    def remember(self, revision: EnvironmentRevision) -> None:
        self._cache[(revision.environment, revision.revision)] = revision
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def forget(self) -> None:
        """Drop the cache (the next reads come from the store)."""
        self._cache.clear()
        self._runnable.clear()


class ApiRevisions:
    """Numbered, immutable copies of APIs' working copies."""

    def __init__(self, store: ConfigStore, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog

    async def snapshot(self, project: str, name: str, actor: str) -> DeployedApi:
        """The API's working copy as a numbered API revision (reused when unchanged)."""
        doc = await self.catalog.api(project, name)
        key = api_key(project, name)
        latest = await self._latest(key)
        if latest is not None and latest.data["api"] == doc.data:
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
        pointer = await self.store.get("meta", f"latest_api_revision:{key}")
        if pointer is None:
            await self.store.insert("meta", f"latest_api_revision:{key}", {"revision": number})
        else:
            await self.store.replace(
                "meta",
                pointer.id,
                {"revision": max(number, pointer.data["revision"])},
                expected_version=pointer.version,
            )
        return DeployedApi(api=ApiProxy.model_validate(doc.data), api_revision=number)

    async def _latest(self, key: str) -> Document | None:
        """The newest API revision, through a pointer document (no scan of all revisions)."""
        pointer = await self.store.get("meta", f"latest_api_revision:{key}")
        if pointer is None:
            return None
        return await self.store.get("api_revisions", f"{key}@{pointer.data['revision']}")

    async def get(self, project: str, name: str, number: int) -> DeployedApi:
        doc = await self.store.get("api_revisions", f"{api_key(project, name)}@{number}")
        if doc is None:
            raise NotFound("api_revisions", f"{api_key(project, name)}@{number}")
        return DeployedApi(api=ApiProxy.model_validate(doc.data["api"]), api_revision=number)

    async def listing(self, project: str, name: str) -> list[dict[str, Any]]:
        docs = await self.store.find("api_revisions", {"api_id": api_key(project, name)})
        return sorted(
            (
                {
                    "revision": d.data["revision"],
                    "created_at": d.data["created_at"],
                    "actor": d.data["actor"],
                }
                for d in docs
            ),
            key=lambda r: r["revision"],
        )

"""A config store that remembers every write made through it, so a half-done batch can be undone.

The config store offers no multi-document transaction (MongoDB/FerretDB may not have one), so a
batch of writes (``declarative/apply``) is made all-or-nothing by compensation: every write goes
through an ``UndoJournal``; when a later write fails, ``undo`` reverses the earlier ones newest
first. Each reversal names the version the batch wrote, so a concurrent change made in between is
never overwritten (that reversal fails and is reported instead). Audit entries are not reversed:
they record what happened, and the undo adds its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from portway.errors import StoreError
from portway.stores.config_store import ConfigStore, Document, Order, Page

_KEPT = frozenset({"audit"})  # collections whose writes are history, never undone


@dataclass(frozen=True, slots=True)
class Written:
    collection: str
    key: str
    before: dict[str, Any] | None  # None: the batch created it
    version: int | None  # the version the batch left; None: the batch deleted it


class UndoJournal:
    """Delegates to ``store``; remembers what each insert, replace and delete changed."""

    def __init__(self, store: ConfigStore) -> None:
        self.store = store
        self.written: list[Written] = []

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def get(self, collection: str, key: str) -> Document | None:
        return await self.store.get(collection, key)

    async def find(
        self, collection: str, where: Mapping[str, Any] | None = None, *, limit: int | None = None
    ) -> list[Document]:
        return await self.store.find(collection, where, limit=limit)

    async def page(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        order: Order = "asc",
        limit: int,
        cursor: str | None = None,
    ) -> Page:
        return await self.store.page(collection, where, order=order, limit=limit, cursor=cursor)

    async def insert(self, collection: str, key: str, data: Mapping[str, Any]) -> Document:
        doc = await self.store.insert(collection, key, data)
        if collection not in _KEPT:
            self.written.append(Written(collection, key, None, doc.version))
        return doc

    async def replace(
        self, collection: str, key: str, data: Mapping[str, Any], *, expected_version: int
    ) -> Document:
        old = await self.store.get(collection, key)
        doc = await self.store.replace(collection, key, data, expected_version=expected_version)
        if old is not None and collection not in _KEPT:
            self.written.append(Written(collection, key, old.data, doc.version))
        return doc

    async def delete(
        self, collection: str, key: str, *, expected_version: int | None = None
    ) -> None:
        old = await self.store.get(collection, key)
        await self.store.delete(collection, key, expected_version=expected_version)
        if old is not None and collection not in _KEPT:
            self.written.append(Written(collection, key, old.data, None))

    async def next_sequence(self, name: str) -> int:
        return await self.store.next_sequence(name)  # a gap in a counter is harmless

    async def undo(self) -> tuple[list[str], list[str]]:
        """Reverse every remembered write, newest first; (undone, failed) as ``collection/key``."""
        undone: list[str] = []
        failed: list[str] = []
        for write in reversed(self.written):
            where = f"{write.collection}/{write.key}"
            try:
                if write.before is None:
                    await self.store.delete(
                        write.collection, write.key, expected_version=write.version
                    )
                elif write.version is None:
                    await self.store.insert(write.collection, write.key, write.before)
                else:
                    await self.store.replace(
                        write.collection, write.key, write.before, expected_version=write.version
                    )
            except StoreError:
                failed.append(where)
                continue
            undone.append(where)
        self.written.clear()
        return undone, failed

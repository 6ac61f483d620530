"""A real config store with injected faults: writes fail from a chosen point on, like a crash.

``FaultyStore`` delegates everything to a real store (SQLite or FerretDB). ``fail_after(n, ...)``
lets ``n`` more writes (of the given collections, or any) through and then refuses the next one
(``once=True``) or every later write (``once=False``: the process is as good as dead for the store).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portway.errors import StoreUnavailable
from portway.stores.config_store import ConfigStore, Document, Order, Page


class FaultyStore:
    def __init__(self, store: ConfigStore) -> None:
        self.store = store
        self._left: int | None = None
        self._collections: set[str] | None = None
        self._once = True
        self.failed = 0

    def fail_after(self, writes: int, *collections: str, once: bool = True) -> None:
        self._left = writes
        self._collections = set(collections) or None
        self._once = once

    def _write(self, collection: str) -> None:
        if self.failed and not self._once:
            raise StoreUnavailable(f"injected fault writing {collection} (after the crash)")
        if self._left is None:
            return
        if self._collections is not None and collection not in self._collections:
            return
        if self._left > 0:
            self._left -= 1
            return
        self.failed += 1
        if self._once:
            self._left = None
        raise StoreUnavailable(f"injected fault writing {collection}")

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
        self._write(collection)
        return await self.store.insert(collection, key, data)

    async def replace(
        self, collection: str, key: str, data: Mapping[str, Any], *, expected_version: int
    ) -> Document:
        self._write(collection)
        return await self.store.replace(collection, key, data, expected_version=expected_version)

    async def delete(
        self, collection: str, key: str, *, expected_version: int | None = None
    ) -> None:
        self._write(collection)
        await self.store.delete(collection, key, expected_version=expected_version)

    async def next_sequence(self, name: str) -> int:
        self._write("sequences")
        return await self.store.next_sequence(name)

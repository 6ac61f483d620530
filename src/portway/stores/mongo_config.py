"""The production config store: MongoDB through PyMongo's async API (``pymongo.AsyncMongoClient``).

One MongoDB collection per Portway collection. A stored document looks like::

    {"_id": key, "v": version, "json": "<canonical JSON of data>",
     "q": {<top-level scalar fields of data, for find()>},
     "u:project+base_path": "[\\"p1\\",\\"/v1\\"]"}

- ``data`` is kept as canonical JSON text, not as a BSON sub-document: JSON allows keys that MongoDB
  (or FerretDB) refuses (``a.b``, ``$x``) and integers beyond 64 bits, and every backend must accept
  and return exactly the same documents.
- ``q`` mirrors the top-level scalar fields so ``find()`` and ``page()`` can filter, and each
  declared ``indexed`` field gets an index on ``(q.<field>, _id)`` (the filter, then the keyset
  order). A non-scalar value is mirrored as ``{"j": 1}`` so that
  ``None`` (which matches a missing field or null) never matches it.
- every unique tuple of the collection has a field ``u:<fields>`` with a unique index. It holds the
  JSON of the claimed values, or ``~<id>`` (unique by construction) when the document claims
  nothing, so the index needs no ``partialFilterExpression`` (which FerretDB does not implement).

Every write is one single-document operation (insert; replace or delete filtered on ``_id`` and
``v``), so a duplicate or a stale version leaves the stored document untouched. Version checks do
not rely on the filter alone, though: FerretDB 1.x evaluates an update's filter and applies the
write in separate steps, so two concurrent replaces of version 1 can both "match" (measured: 3 of 8
won). A writer therefore first inserts a *guard* ``_guards/<collection>/<id>/<version>``: ``_id``
is unique on every engine, so exactly one writer per version gets it; the others get
``StaleVersion`` before they write anything. The guard is removed once the write is done; one left
behind by a crashed writer is taken over after a lease (30 s, or 4 call timeouts if longer).
``next_sequence`` uses the same guard instead of ``$inc`` (not atomic on FerretDB either). On
MongoDB this costs two extra round trips per control-plane write — those are rare — and keeps one
code path for both engines.

Write concern, read preference, replica sets and retryable writes
come from the URL (``mongodb://a,b,c/portway?replicaSet=rs0&w=majority&retryWrites=true``).
Every call is bounded by ``timeoutMS`` (default 5000) and mapped to ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from portway.errors import (
    Conflict,
    DuplicateKey,
    NotFound,
    StaleVersion,
    StoreError,
    StoreUnavailable,
)
from portway.stores._validate import canonical_json, check_key, check_where
from portway.stores.config_store import (
    COLLECTIONS,
    Collection,
    Document,
    Order,
    Page,
    Prefix,
    check_limit,
    collection,
    decode_cursor,
    page_of,
    unique_values,
)
from portway.stores.migrations import MIGRATIONS, Migration, run_migrations

T = TypeVar("T")

DEFAULT_DATABASE = "portway"
DEFAULT_TIMEOUT = 5.0
SEQUENCES = "_sequences"
GUARDS = "_guards"
_INT64 = (-(2**63), 2**63 - 1)


def claim_field(fields: Sequence[str]) -> str:
    return "u:" + "+".join(fields)


def _claims(coll: Collection, key: str, data: Mapping[str, Any]) -> dict[str, str]:
    claimed = {
        claim_field(fields): json.dumps(list(values), sort_keys=True, separators=(",", ":"))
        for fields, values in unique_values(coll, data)
    }
    return {claim_field(f): claimed.get(claim_field(f), "~" + key) for f in coll.unique}


def _mirror(data: Mapping[str, Any]) -> dict[str, Any]:
    q: dict[str, Any] = {}
    for k, v in data.items():
        if not k.isidentifier() or not k.isascii():
            continue
        if v is None or isinstance(v, str | bool | float):
            q[k] = v
        elif isinstance(v, int):
            q[k] = v if _INT64[0] <= v <= _INT64[1] else {"j": 1}
        else:
            q[k] = {"j": 1}
    return q


def _query(where: Mapping[str, Any] | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for field, value in check_where(where).items():
        if isinstance(value, Prefix):
            upper = value.upper_bound()
            query[f"q.{field}"] = {"$gte": value.text} | ({"$lt": upper} if upper else {})
        else:
            query[f"q.{field}"] = value
    return query


def _is_duplicate(exc: PyMongoError) -> bool:
    if isinstance(exc, DuplicateKeyError):
        return True
    # FerretDB (SQLite backend) reports a unique violation on update as an internal error.
    return isinstance(exc, OperationFailure) and (
        exc.code in (11000, 11001) or "UNIQUE constraint failed" in str(exc)
    )


def _option(query: str, name: str) -> str | None:
    for k, v in parse_qsl(query):
        if k.lower() == name.lower():
            return v
    return None


class MongoConfigStore:
    def __init__(
        self,
        url: str,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        timeout: float | None = None,
    ) -> None:
        parts = urlsplit(url)
        self._database_name = parts.path.lstrip("/") or DEFAULT_DATABASE
        given = _option(parts.query, "timeoutMS")
        self._timeout = timeout or (int(given) / 1000 if given else DEFAULT_TIMEOUT)
        ms = int(self._timeout * 1000)
        options: dict[str, Any] = {}
        for name in ("timeoutMS", "serverSelectionTimeoutMS", "connectTimeoutMS"):
            if _option(parts.query, name) is None:
                options[name] = ms
        self._url = url
        self._options = options
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._migrations = tuple(migrations)
        self._background: set[asyncio.Task[None]] = set()

    # -- plumbing -------------------------------------------------------------------------------

    def _coll(self, name: str) -> AsyncCollection[dict[str, Any]]:
        if self._client is None:
            raise StoreUnavailable("config store is not open")
        return self._client[self._database_name][name]

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await op
        except TimeoutError as exc:
            raise StoreUnavailable(f"mongodb: no answer within {self._timeout}s") from exc
        except (ConnectionFailure, ExecutionTimeout, WTimeoutError) as exc:
            raise StoreUnavailable(f"mongodb: {exc}") from exc
        except PyMongoError as exc:
            raise StoreError(f"mongodb: {exc}") from exc

    async def open(self) -> None:
        if self._client is not None:
            return
        self._client = AsyncMongoClient(self._url, tz_aware=True, **self._options)
        try:
            await self._call(self._client.admin.command("ping"))
            for coll in COLLECTIONS.values():
                await self._call(self._prepare(coll))
            await run_migrations(self, self._migrations)
        except BaseException:
            await self.close()
            raise

    async def _prepare(self, coll: Collection) -> None:
        target = self._coll(coll.name)
        for fields in coll.unique:
            name = claim_field(fields)
            # Documents written before this tuple was declared lack the claim: backfill it first,
            # or the unique index would see them all as the same null.
            async for raw in target.find({name: {"$exists": False}}, {"json": 1}):
                data = json.loads(raw["json"])
                claim = _claims(coll, raw["_id"], data)[name]
                await target.update_one({"_id": raw["_id"]}, {"$set": {name: claim}})
            await target.create_index([(name, ASCENDING)], name=name, unique=True)
        for field in coll.indexed:
            # the filter's field, then the keyset order (``page``) — an equality or prefix match
            # is read in id order straight from the index
            await target.create_index(
                [(f"q.{field}", ASCENDING), ("_id", ASCENDING)], name=f"q.{field}+_id"
            )

    async def close(self) -> None:
        if self._background:  # guard releases still in flight
            await asyncio.wait(self._background, timeout=self._timeout)
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _duplicate(self, coll: Collection, key: str, data: Mapping[str, Any]) -> Conflict:
        """Tell which constraint a refused write hit (MongoDB and FerretDB name it differently)."""
        target = self._coll(coll.name)
        for fields, values in unique_values(coll, data):
            name = claim_field(fields)
            claim = _claims(coll, key, data)[name]
            if await target.find_one({name: claim, "_id": {"$ne": key}}, {"_id": 1}):
                return DuplicateKey(coll.name, fields, values)
        return Conflict(f"{coll.name}/{key}: a unique constraint is taken; retry")

    def _guard_lease(self) -> timedelta:
        return timedelta(seconds=max(30.0, 4 * self._timeout))

    async def _take_guard(self, guard: str) -> bool:
        """Insert the guard document; True if this writer holds it now."""
        guards = self._coll(GUARDS)
        for _ in range(2):
            now = datetime.now(UTC)
            try:
                await guards.insert_one({"_id": guard, "at": now})
                return True
            except PyMongoError as exc:
                if not _is_duplicate(exc):
                    raise
            held = await guards.find_one({"_id": guard})
            if held is not None and now - held["at"] < self._guard_lease():
                return False
            if held is not None:  # abandoned by a writer that died mid-write: take it over
                await guards.delete_one({"_id": guard, "at": held["at"]})
        return False

    async def _release_guard(self, guard: str) -> None:
        await self._coll(GUARDS).delete_one({"_id": guard})

    def _release_later(self, guard: str) -> None:
        """Release from a failed or cancelled write without delaying the caller's error."""

        async def release() -> None:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._release_guard(guard)
            except (TimeoutError, PyMongoError, StoreUnavailable):
                pass  # the lease frees it

        task = asyncio.get_running_loop().create_task(release())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _guarded(self, guard: str, write: Awaitable[T]) -> T:
        try:
            result = await write
        except BaseException:
            self._release_later(guard)
            raise
        await self._release_guard(guard)
        return result

    async def _stale(self, name: str, key: str, expected: int) -> StoreError:
        current = await self._coll(name).find_one({"_id": key}, {"v": 1})
        if current is None:
            return NotFound(name, key)
        # Still at the expected version: another writer holds the guard and is writing the next.
        return StaleVersion(name, key, expected, max(int(current["v"]), expected + 1))

    # -- the interface ----------------------------------------------------------------------------

    async def get(self, collection_name: str, key: str) -> Document | None:
        collection(collection_name)
        raw = await self._call(self._coll(collection_name).find_one({"_id": key}))
        return None if raw is None else Document(key, int(raw["v"]), json.loads(raw["json"]))

    async def find(
        self,
        collection_name: str,
        where: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
    ) -> list[Document]:
        collection(collection_name)
        return await self._call(self._documents(collection_name, _query(where), ASCENDING, limit))

    async def page(
        self,
        collection_name: str,
        where: Mapping[str, Any] | None = None,
        *,
        order: Order = "asc",
        limit: int,
        cursor: str | None = None,
    ) -> Page:
        collection(collection_name)
        check_limit(limit)
        query = _query(where)
        if cursor is not None:
            after = decode_cursor(cursor, collection_name, where, order)
            query["_id"] = {"$gt" if order == "asc" else "$lt": after}
        direction = ASCENDING if order == "asc" else DESCENDING
        docs = await self._call(self._documents(collection_name, query, direction, limit + 1))
        return page_of(collection_name, where, order, docs, limit)

    async def _documents(
        self, collection_name: str, query: dict[str, Any], direction: int, limit: int | None
    ) -> list[Document]:
        found = self._coll(collection_name).find(
            query, {"v": 1, "json": 1}, sort=[("_id", direction)]
        )
        if limit is not None:
            found = found.limit(limit)
        return [Document(r["_id"], int(r["v"]), json.loads(r["json"])) async for r in found]

    async def insert(self, collection_name: str, key: str, data: Mapping[str, Any]) -> Document:
        coll = collection(collection_name)
        check_key(key)
        body = canonical_json(data)
        stored = {"_id": key, "v": 1, "json": body, "q": _mirror(data), **_claims(coll, key, data)}
        target = self._coll(collection_name)

        async def run() -> Document:
            try:
                await target.insert_one(stored)
            except PyMongoError as exc:
                if not _is_duplicate(exc):
                    raise
                if await target.find_one({"_id": key}, {"_id": 1}):
                    raise DuplicateKey(collection_name, ("id",), (key,)) from exc
                raise await self._duplicate(coll, key, data) from exc
            return Document(key, 1, json.loads(body))

        return await self._call(run())

    async def replace(
        self, collection_name: str, key: str, data: Mapping[str, Any], *, expected_version: int
    ) -> Document:
        coll = collection(collection_name)
        check_key(key)
        body = canonical_json(data)
        version = expected_version + 1
        stored = {"v": version, "json": body, "q": _mirror(data), **_claims(coll, key, data)}
        target = self._coll(collection_name)

        async def write() -> Document:
            try:
                result = await target.replace_one({"_id": key, "v": expected_version}, stored)
            except PyMongoError as exc:
                if not _is_duplicate(exc):
                    raise
                raise await self._duplicate(coll, key, data) from exc
            if result.matched_count == 0:
                raise await self._stale(collection_name, key, expected_version)
            return Document(key, version, json.loads(body))

        async def run() -> Document:
            guard = f"{collection_name}/{key}/{expected_version}"
            if not await self._take_guard(guard):
                raise await self._stale(collection_name, key, expected_version)
            return await self._guarded(guard, write())

        return await self._call(run())

    async def delete(
        self, collection_name: str, key: str, *, expected_version: int | None = None
    ) -> None:
        collection(collection_name)
        target = self._coll(collection_name)
        query: dict[str, Any] = {"_id": key}
        if expected_version is not None:
            query["v"] = expected_version

        async def write() -> None:
            result = await target.delete_one(query)
            if result.deleted_count == 1:
                return
            if expected_version is None:
                raise NotFound(collection_name, key)
            raise await self._stale(collection_name, key, expected_version)

        async def run() -> None:
            if expected_version is None:
                return await write()
            guard = f"{collection_name}/{key}/{expected_version}"
            if not await self._take_guard(guard):
                raise await self._stale(collection_name, key, expected_version)
            return await self._guarded(guard, write())

        await self._call(run())

    async def next_sequence(self, name: str) -> int:
        target = self._coll(SEQUENCES)

        async def bump(current: int) -> bool:
            result = await target.update_one(
                {"_id": name, "value": current}, {"$set": {"value": current + 1}}
            )
            return result.matched_count == 1

        async def run() -> int:
            tries = 0
            while True:
                raw = await target.find_one({"_id": name})
                if raw is None:
                    try:
                        await target.insert_one({"_id": name, "value": 0})
                    except PyMongoError as exc:
                        if not _is_duplicate(exc):
                            raise
                    continue
                current = int(raw["value"])
                guard = f"{SEQUENCES}/{name}/{current}"
                if await self._take_guard(guard) and await self._guarded(guard, bump(current)):
                    return current + 1
                tries += 1
                await asyncio.sleep(random.uniform(0, 0.002 * min(tries, 10)))

        return await self._call(run())

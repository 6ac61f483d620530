"""The embedded config store: one SQLite file in WAL mode.

Documents live as JSON in ``documents``; unique claims live in ``uniques`` (one row per claimed
tuple) so a duplicate is refused by the primary key inside the same transaction as the write.
Calls run in one worker thread, serialised, so the event loop never blocks on disk. Every write runs
in ``BEGIN IMMEDIATE``: the version check and the write happen under SQLite's write lock, so two
processes sharing the file cannot both pass the same ``expected_version``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from portway.errors import DuplicateKey, NotFound, StaleVersion, StoreUnavailable
from portway.stores._sqlite import close_when_idle, connect_wal, mapped_errors
from portway.stores._validate import canonical_json, check_key, check_where, json_type
from portway.stores.config_store import (
    COLLECTIONS,
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

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE TABLE IF NOT EXISTS uniques (
    collection TEXT NOT NULL,
    fields TEXT NOT NULL,
    value TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (collection, fields, value)
);
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
"""
# One expression index per field a collection declares ``indexed``: (collection, field, id), so an
# equality or prefix filter and the keyset order by id are both served by the index.
_INDEXES = "".join(
    f"CREATE INDEX IF NOT EXISTS documents_by_{field} "
    f"ON documents (collection, json_extract(data, '$.{field}'), id);\n"
    for field in sorted({f for c in COLLECTIONS.values() for f in c.indexed})
)


def _select(collection_name: str, where: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    """The SELECT of a ``find``/``page`` and its arguments, without ORDER BY.

    Fields are checked identifiers; the JSON type is compared too, so True never equals 1 and None
    matches a missing field or null, exactly as on MongoDB. Comparisons use the very expression
    the indexes are built on (``json_extract(data, '$.field')``)."""
    sql = "SELECT id, version, data FROM documents WHERE collection=?"
    args: list[Any] = [collection_name]
    for field, value in check_where(where).items():
        path = f"'$.{field}'"
        if isinstance(value, Prefix):
            sql += f" AND json_type(data, {path}) = 'text' AND json_extract(data, {path}) >= ?"
            args.append(value.text)
            upper = value.upper_bound()
            if upper is not None:
                sql += f" AND json_extract(data, {path}) < ?"
                args.append(upper)
        elif value is None:
            sql += f" AND coalesce(json_type(data, {path}), 'null') = 'null'"
        elif isinstance(value, bool):
            sql += f" AND json_type(data, {path}) = ?"
            args.append(json_type(value))
        else:
            kinds = "('integer','real')" if isinstance(value, int | float) else "('text')"
            sql += f" AND json_type(data, {path}) IN {kinds} AND json_extract(data, {path}) = ?"
            args.append(value)
    return sql, args


def _documents(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[Document]:
    return [Document(r[0], r[1], json.loads(r[2])) for r in conn.execute(sql, args).fetchall()]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class SqliteConfigStore:
    def __init__(self, path: str, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._migrations = tuple(migrations)

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("config store is not open")

        def call() -> T:
            with self._lock, mapped_errors():
                if self._conn is not conn:
                    raise StoreUnavailable("config store was closed")
                if not write:
                    return fn(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result

        return await asyncio.to_thread(call)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            conn = connect_wal(self._path, _SCHEMA + _INDEXES)
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT version FROM schema_version").fetchone()
                if row is None:
                    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                conn.execute("COMMIT")
                if row is not None and row[0] > SCHEMA_VERSION:
                    raise StoreUnavailable(
                        f"database schema {row[0]} is newer than this Portway ({SCHEMA_VERSION})"
                    )
            except BaseException:
                conn.close()
                raise
            # Autocommit mode: writes open their own BEGIN IMMEDIATE transaction (see _run).
            return conn

        try:
            self._conn = await asyncio.to_thread(connect)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self._path}: {exc}") from exc
        try:
            await run_migrations(self, self._migrations)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_when_idle(conn, self._lock)

    async def get(self, collection_name: str, key: str) -> Document | None:
        collection(collection_name)

        def fn(conn: sqlite3.Connection) -> Document | None:
            row = conn.execute(
                "SELECT version, data FROM documents WHERE collection=? AND id=?",
                (collection_name, key),
            ).fetchone()
            return None if row is None else Document(key, row[0], json.loads(row[1]))

        return await self._run(fn)

    async def find(
        self,
        collection_name: str,
        where: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
    ) -> list[Document]:
        collection(collection_name)
        sql, args = _select(collection_name, where)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return await self._run(lambda conn: _documents(conn, sql, args))

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
        sql, args = _select(collection_name, where)
        if cursor is not None:
            sql += " AND id > ?" if order == "asc" else " AND id < ?"
            args.append(decode_cursor(cursor, collection_name, where, order))
        sql += " ORDER BY id " + ("ASC" if order == "asc" else "DESC") + " LIMIT ?"
        args.append(limit + 1)
        docs = await self._run(lambda conn: _documents(conn, sql, args))
        return page_of(collection_name, where, order, docs, limit)

    @staticmethod
    def _claim(conn: sqlite3.Connection, name: str, key: str, data: Mapping[str, Any]) -> None:
        for fields, values in unique_values(collection(name), data):
            try:
                conn.execute(
                    "INSERT INTO uniques VALUES (?, ?, ?, ?)",
                    (name, ",".join(fields), _dumps(list(values)), key),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateKey(name, fields, values) from exc

    async def insert(self, collection_name: str, key: str, data: Mapping[str, Any]) -> Document:
        collection(collection_name)
        check_key(key)
        body = canonical_json(data)

        def fn(conn: sqlite3.Connection) -> Document:
            try:
                conn.execute(
                    "INSERT INTO documents VALUES (?, ?, 1, ?)", (collection_name, key, body)
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateKey(collection_name, ("id",), (key,)) from exc
            self._claim(conn, collection_name, key, data)
            return Document(key, 1, json.loads(body))

        return await self._run(fn, write=True)

    async def replace(
        self, collection_name: str, key: str, data: Mapping[str, Any], *, expected_version: int
    ) -> Document:
        collection(collection_name)
        check_key(key)
        body = canonical_json(data)

        def fn(conn: sqlite3.Connection) -> Document:
            row = conn.execute(
                "SELECT version FROM documents WHERE collection=? AND id=?",
                (collection_name, key),
            ).fetchone()
            if row is None:
                raise NotFound(collection_name, key)
            if row[0] != expected_version:
                raise StaleVersion(collection_name, key, expected_version, row[0])
            conn.execute("DELETE FROM uniques WHERE collection=? AND id=?", (collection_name, key))
            self._claim(conn, collection_name, key, data)
            conn.execute(
                "UPDATE documents SET version=?, data=? WHERE collection=? AND id=?",
                (expected_version + 1, body, collection_name, key),
            )
            return Document(key, expected_version + 1, json.loads(body))

        return await self._run(fn, write=True)

    async def delete(
        self, collection_name: str, key: str, *, expected_version: int | None = None
    ) -> None:
        collection(collection_name)

        def fn(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT version FROM documents WHERE collection=? AND id=?",
                (collection_name, key),
            ).fetchone()
            if row is None:
                raise NotFound(collection_name, key)
            if expected_version is not None and row[0] != expected_version:
                raise StaleVersion(collection_name, key, expected_version, row[0])
            conn.execute(
                "DELETE FROM documents WHERE collection=? AND id=?", (collection_name, key)
            )
            conn.execute("DELETE FROM uniques WHERE collection=? AND id=?", (collection_name, key))

        await self._run(fn, write=True)

    async def next_sequence(self, name: str) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT INTO sequences VALUES (?, 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1",
                (name,),
            )
            row = conn.execute("SELECT value FROM sequences WHERE name=?", (name,)).fetchone()
            return int(row[0])

        return await self._run(fn, write=True)

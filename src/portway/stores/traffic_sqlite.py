"""The embedded traffic sink: one SQLite file (WAL), one row per request.

``write`` is ``INSERT OR IGNORE`` by record id in one transaction, so a retried batch stores each
record once. The filterable fields are columns (indexed by time); the whole record is kept as JSON.
Rows are appended in arrival order (a rowid table; the random record ids live in their own small
unique index): storing a record costs about a third of keeping the rows ordered by id, as files
created before did (``WITHOUT ROWID``; such files keep their layout and work the same).
With ``retention_days`` set, records older than that are deleted at most once an hour.
Calls run in one worker thread, serialised, so the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from portway.errors import RejectedRecords, StoreUnavailable
from portway.stores._sqlite import close_when_idle, connect_wal, mapped_errors
from portway.stores._traffic_common import (
    BUCKET_PERCENTILES,
    PERCENTILES,
    check_query,
    check_search,
    fill_buckets,
    page_of,
    percentiles,
    record_json,
    search_terms,
    split_records,
    top,
)
from portway.stores.traffic import (
    AnalyticsQuery,
    AnalyticsResult,
    SearchPage,
    SearchQuery,
    TrafficRecord,
)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traffic (
    id TEXT NOT NULL UNIQUE,
    ts INTEGER NOT NULL,
    environment TEXT,
    api TEXT,
    consumer TEXT,
    status INTEGER,
    total_ms REAL,
    record TEXT NOT NULL,
    correlation_id TEXT
);
CREATE INDEX IF NOT EXISTS traffic_ts_id ON traffic (ts DESC, id DESC);
DROP INDEX IF EXISTS traffic_ts;
"""
# ``traffic_ts_id`` serves every time range; the index on ``ts`` alone that files made before
# 2026-12-03 also have only slowed each insert down, so it is dropped when such a file is opened.
# Files made before 2026-12-03 also lack ``correlation_id`` (their ids were the correlation ids):
# ``_add_correlation_column`` adds it. Searches by correlation id scan the time range, as the
# other equality filters do: one more index on a value that clients choose would cost each insert.
_INSERT = (
    "INSERT OR IGNORE INTO traffic "
    "(id, ts, environment, api, consumer, status, total_ms, record, correlation_id) "
    "VALUES (?,?,?,?,?,?,?,?,?)"
)
_PURGE_EVERY = 3600.0


def _connect(path: str) -> sqlite3.Connection:
    conn = connect_wal(path, _SCHEMA)
    try:
        _add_correlation_column(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _add_correlation_column(conn: sqlite3.Connection) -> None:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(traffic)")}
    if "correlation_id" not in columns:
        conn.execute("ALTER TABLE traffic ADD COLUMN correlation_id TEXT")


class SqliteTrafficSink:
    def __init__(self, path: str, *, retention_days: float | None = None) -> None:
        self._path = path
        self._retention_ms = None if retention_days is None else int(retention_days * 86_400_000)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_purge = 0.0

    @classmethod
    def from_url(cls, url: str) -> SqliteTrafficSink:
        # Same spelling as the config store: sqlite:///abs/path.db or sqlite://relative.db
        path, _, query = url.removeprefix("sqlite://").partition("?")
        days = dict(parse_qsl(query)).get("retention_days")
        return cls(path, retention_days=float(days) if days else None)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("traffic sink is not open")

        def call() -> T:
            with self._lock, mapped_errors():
                if self._conn is not conn:
                    raise StoreUnavailable("traffic sink was closed")
                return fn(conn)

        return await asyncio.to_thread(call)

    async def open(self) -> None:
        try:
            self._conn = await asyncio.to_thread(_connect, self._path)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self._path}: {exc}") from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_when_idle(conn, self._lock)

    async def write(self, records: Sequence[TrafficRecord]) -> None:
        valid, rejected = split_records(records)
        rows = [
            (
                rid,
                ms,
                record.get("environment"),
                record.get("api"),
                record.get("consumer"),
                record.get("status"),
                record.get("total_ms"),
                record_json(record).decode(),
                record.get("correlation_id"),
            )
            for rid, ms, record in valid
        ]
        purge_before = None
        if self._retention_ms is not None and time.monotonic() - self._last_purge > _PURGE_EVERY:
            self._last_purge = time.monotonic()
            purge_before = int(time.time() * 1000) - self._retention_ms

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
                if purge_before is not None:
                    conn.execute("DELETE FROM traffic WHERE ts < ?", (purge_before,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        if rows or purge_before is not None:
            await self._run(fn)
        if rejected:
            raise RejectedRecords(rejected)

    async def query(self, query: AnalyticsQuery) -> AnalyticsResult:
        start, end, width = check_query(query)
        where = "ts >= ? AND ts < ?"
        args: list[Any] = [start, end]
        for column in ("environment", "api", "consumer"):
            value = getattr(query, column)
            if value is not None:
                where += f" AND {column} = ?"
                args.append(value)

        def fn(conn: sqlite3.Connection) -> AnalyticsResult:
            def rows(sql: str, extra: Sequence[Any] = ()) -> list[Any]:
                # Only our own clauses and an integer are formatted in; values are bound.
                text = sql.format(where=where, width=width)
                return conn.execute(text, [*args, *extra]).fetchall()

            (total,) = rows("SELECT COUNT(*) FROM traffic WHERE {where}")[0]
            by_status = rows(
                "SELECT status, COUNT(*) FROM traffic WHERE {where} AND status IS NOT NULL "
                "GROUP BY status"
            )
            by_api = rows(
                "SELECT api, COUNT(*) FROM traffic WHERE {where} AND api IS NOT NULL GROUP BY api"
            )
            consumers = rows(
                "SELECT consumer, COUNT(*) AS n FROM traffic "
                "WHERE {where} AND consumer IS NOT NULL "
                "GROUP BY consumer ORDER BY n DESC, consumer ASC LIMIT ?",
                [query.top_n],
            )
            timed = rows(
                "SELECT (ts / {width}) * {width}, total_ms FROM traffic "
                "WHERE {where} AND total_ms IS NOT NULL ORDER BY total_ms"
            )
            latencies = [ms for _, ms in timed]
            per_bucket: dict[int, list[float]] = {}
            for b, ms in timed:  # sorted by total_ms, so each bucket's list is sorted too
                per_bucket.setdefault(int(b), []).append(ms)
            buckets = rows(
                "SELECT (ts / {width}) * {width} AS b, COUNT(*), SUM(COALESCE(status, 0) >= 400) "
                "FROM traffic WHERE {where} GROUP BY b"
            )
            return AnalyticsResult(
                total=int(total),
                by_status={int(s): int(n) for s, n in by_status},
                by_api={str(a): int(n) for a, n in by_api},
                top_consumers=top({str(c): int(n) for c, n in consumers}, query.top_n),
                latency_ms=percentiles(latencies, PERCENTILES),
                buckets=fill_buckets(
                    start,
                    end,
                    width,
                    {int(b): (n, e) for b, n, e in buckets},
                    {b: percentiles(v, BUCKET_PERCENTILES) for b, v in per_bucket.items()},
                ),
            )

        return await self._run(fn)

    async def search(self, query: SearchQuery) -> SearchPage:
        start, end, after = check_search(query)
        where = "ts >= ? AND ts < ?"
        args: list[Any] = [start, end]
        clauses: list[tuple[str, object]] = [(f"{name} = ?", v) for name, v in search_terms(query)]
        if query.correlation_id is not None:
            where += " AND (correlation_id = ? OR id = ?)"
            args += [query.correlation_id, query.correlation_id]
        clauses += [
            ("status >= ?", query.status_min),
            ("status <= ?", query.status_max),
            ("total_ms > ?", query.min_total_ms),
        ]
        for clause, value in clauses:
            if value is not None:
                where += f" AND {clause}"
                args.append(value)
        if after is not None:
            where += " AND (ts < ? OR (ts = ? AND id < ?))"
            args.extend((after[0], after[0], after[1]))
        # Only our own clauses are formatted in; values are bound.
        sql = "SELECT ts, id, record FROM traffic WHERE {where} ORDER BY ts DESC, id DESC LIMIT ?"
        sql = sql.format(where=where)
        args.append(query.limit + 1)

        def fn(conn: sqlite3.Connection) -> list[tuple[int, str, TrafficRecord]]:
            return [(ts, rid, json.loads(text)) for ts, rid, text in conn.execute(sql, args)]

        records, cursor = page_of(await self._run(fn), query.limit)
        return SearchPage(records, cursor)

"""What the embedded SQLite backends share: how a file is opened and how driver errors map."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from portway.errors import StoreError, StoreUnavailable


def connect_wal(path: str, schema: str) -> sqlite3.Connection:
    """Open ``path`` (creating its folder) in WAL mode and autocommit, with ``schema`` applied.

    The file is private: a folder this creates is 0700, the file is 0600 (SQLite gives its
    ``-wal`` and ``-shm`` files the database file's mode).

    Autocommit (``isolation_level=None``) leaves transactions to the caller, who opens them with
    ``BEGIN IMMEDIATE`` when several processes may write the same file.
    """
    if path not in ("", ":memory:"):
        _private_file(Path(path))
    conn = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn


def _private_file(path: Path) -> None:
    """Create ``path``'s missing folders as 0700 and the file as 0600 (an existing file is made
    0600: it holds configuration or traffic records, nobody else's to read)."""
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.chmod(side, 0o600)


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Driver errors as Portway's: a locked or unreadable database is ``StoreUnavailable``."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"sqlite: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {exc}") from exc


async def close_when_idle(conn: sqlite3.Connection, lock: threading.Lock) -> None:
    """Close ``conn`` once no call holds ``lock``: closing a connection under a running query
    frees what the query still reads and crashes the process (a background task's query racing
    a shutdown)."""

    def close() -> None:
        with lock:
            conn.close()

    await asyncio.to_thread(close)

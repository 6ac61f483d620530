"""What the embedded SQLite backends share: how a file is opened and how driver errors map."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from portway.errors import StoreError, StoreUnavailable


def connect_wal(path: str, schema: str) -> sqlite3.Connection:
    """Open ``path`` (creating its folder) in WAL mode and autocommit, with ``schema`` applied.

    Autocommit (``isolation_level=None``) leaves transactions to the caller, who opens them with
    ``BEGIN IMMEDIATE`` when several processes may write the same file.
    """
    if path not in ("", ":memory:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
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


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Driver errors as Portway's: a locked or unreadable database is ``StoreUnavailable``."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"sqlite: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {exc}") from exc

"""Schema versioning of the control plane's documents, the same on every config store backend.

The schema version lives in the document ``meta/schema`` (``{"version": N, "history": [...]}``).
``open()`` of every backend runs the migrations newer than that version, oldest first, each
through the ``ConfigStore`` interface itself, so one migration serves SQLite and MongoDB alike.
After each one the version document is replaced with optimistic concurrency; a database newer than
this Portway refuses to open.

Rules for writing a migration: it must be idempotent (two managers that start at once may both
run it before one of them records it) and it must tolerate documents already in the new shape.
A migration that raises stops the upgrade: the recorded version stays at the last one that succeeded
and ``open()`` fails, so the next start retries from there.

Engine-level changes (tables, indexes) are not migrations: each backend creates them idempotently in
``open()`` before the migrations run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from portway.errors import DuplicateKey, StaleVersion, StoreError

if TYPE_CHECKING:
    from portway.stores.config_store import ConfigStore, Document

SCHEMA_COLLECTION = "meta"
SCHEMA_KEY = "schema"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[ConfigStore], Awaitable[None]]


async def _revisions_in_parts(store: ConfigStore) -> None:
    """Environment revisions written whole (``snapshot`` in the header, before revisions were
    stored in parts) are rewritten as parts with a header like the ones written today."""
    from portway.stores import revision_parts

    for doc in await store.find(revision_parts.HEADERS):
        snapshot = doc.data.get("snapshot")
        if not isinstance(snapshot, dict):
            continue  # already in parts
        raw = json.dumps(snapshot, separators=(",", ":")).encode()
        environment = str(doc.data["environment"])
        parts = await revision_parts.write_parts(store, environment, doc.id, raw)
        head = revision_parts.header(
            environment,
            int(doc.data["revision"]),
            str(snapshot.get("created_at", "")),
            raw,
            parts,
            apis=len(snapshot.get("apis") or []),
            consumers=len(snapshot.get("consumers") or []),
        )
        try:
            await store.replace(revision_parts.HEADERS, doc.id, head, expected_version=doc.version)
        except StaleVersion:
            continue  # another manager converted it meanwhile


# The control plane's migrations, oldest first; versions are 1, 2, 3 ... without gaps.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "environment revisions stored whole are stored in parts", _revisions_in_parts),
)


class SchemaTooNew(StoreError):
    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the database schema is at version {found}, newer than this Portway knows ({known}); "
            "upgrade Portway before opening this database"
        )
        self.found = found
        self.known = known


def check_sequence(migrations: Sequence[Migration]) -> None:
    for expected, m in enumerate(migrations, start=1):
        if m.version != expected:
            raise ValueError(
                f"migration versions must be 1, 2, 3 ...; got {m.version} at {expected}"
            )


async def _load(store: ConfigStore) -> Document:
    doc = await store.get(SCHEMA_COLLECTION, SCHEMA_KEY)
    if doc is not None:
        return doc
    try:
        return await store.insert(SCHEMA_COLLECTION, SCHEMA_KEY, {"version": 0, "history": []})
    except DuplicateKey:
        again = await store.get(SCHEMA_COLLECTION, SCHEMA_KEY)
        if again is None:  # created and deleted meanwhile: nobody does that
            raise StoreError("meta/schema vanished while migrating") from None
        return again


async def run_migrations(store: ConfigStore, migrations: Sequence[Migration]) -> int:
    """Bring the store to the newest version of ``migrations``; return the version reached."""
    check_sequence(migrations)
    known = len(migrations)
    doc = await _load(store)
    while True:
        current = int(doc.data.get("version", 0))
        if current > known:
            raise SchemaTooNew(current, known)
        if current == known:
            return current
        migration = migrations[current]
        try:
            await migration.apply(store)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"migration {migration.version} ({migration.description}) failed: {exc}"
            ) from exc
        history: list[Any] = list(doc.data.get("history", []))
        history.append(
            {
                "version": migration.version,
                "description": migration.description,
                "applied_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        try:
            doc = await store.replace(
                SCHEMA_COLLECTION,
                SCHEMA_KEY,
                {"version": migration.version, "history": history},
                expected_version=doc.version,
            )
        except StaleVersion:
            # Another process recorded a migration meanwhile; ours was idempotent, so re-read.
            doc = await _load(store)

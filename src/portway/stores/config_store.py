"""The config store interface: versioned JSON documents in named collections.

Every document has an ``id`` (unique in its collection), a ``version`` that starts at 1 and grows by
one on every write, and ``data`` (a JSON object). Writes are optimistic: ``replace`` and ``delete``
name the version they expect and are refused with ``StaleVersion`` when it moved on. Collections
declare unique field tuples (e.g. an API's ``(project, base_path)``); a write that would
duplicate one is refused with ``DuplicateKey`` and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    version: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    unique: tuple[tuple[str, ...], ...] = ()
    indexed: tuple[str, ...] = ()


# The collections of the control plane. Field names refer to top-level keys of ``data``.
COLLECTIONS: Mapping[str, Collection] = {
    c.name: c
    for c in (
        Collection("projects"),
        Collection("environments"),
        Collection("apis", unique=(("project", "base_path"),), indexed=("project",)),
        Collection("api_revisions", indexed=("api_id",)),
        Collection("global_policies"),
        Collection("consumers", unique=(("name",),)),
        Collection("credentials", unique=(("lookup",),), indexed=("consumer_id",)),
        Collection("env_revisions", indexed=("environment",)),
        Collection("env_revision_parts", indexed=("environment",)),
        Collection("deployments", indexed=("environment", "api_id")),
        Collection("workers", indexed=("environment",)),
        Collection("users", unique=(("username",),)),
        Collection("tokens", unique=(("lookup",),), indexed=("user_id",)),
        Collection("sessions", unique=(("lookup",),), indexed=("user_id",)),
        Collection("audit", indexed=("target",)),
        Collection("meta"),
        Collection("alert_rules"),
        Collection("alert_channels"),
        Collection("alert_silences"),
        Collection("alert_states", indexed=("rule",)),
        Collection("alert_events", indexed=("rule",)),
        Collection("alert_deliveries", indexed=("state",)),
    )
}


class ConfigStore(Protocol):
    """Versioned documents with optimistic concurrency and unique constraints."""

    async def open(self) -> None:
        """Connect, create tables/indexes and run pending schema migrations."""

    async def close(self) -> None: ...

    async def get(self, collection: str, key: str) -> Document | None: ...

    async def find(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
    ) -> list[Document]:
        """Documents whose top-level fields equal ``where``'s values, ordered by id."""

    async def insert(self, collection: str, key: str, data: Mapping[str, Any]) -> Document:
        """Create a document at version 1; ``DuplicateKey`` if the id or a unique tuple is taken."""

    async def replace(
        self, collection: str, key: str, data: Mapping[str, Any], *, expected_version: int
    ) -> Document:
        """Overwrite at ``expected_version``; ``StaleVersion`` / ``NotFound`` / ``DuplicateKey``."""

    async def delete(
        self, collection: str, key: str, *, expected_version: int | None = None
    ) -> None:
        """Remove; ``NotFound`` if absent, ``StaleVersion`` if the version moved on."""

    async def next_sequence(self, name: str) -> int:
        """Atomically increment and return a named counter (first call returns 1)."""


def collection(name: str) -> Collection:
    try:
        return COLLECTIONS[name]
    except KeyError:
        raise ValueError(f"unknown collection {name!r}") from None


def unique_values(
    coll: Collection, data: Mapping[str, Any]
) -> list[tuple[tuple[str, ...], tuple[Any, ...]]]:
    """The unique tuples a document claims (tuples with a missing field claim nothing)."""
    claims = []
    for fields in coll.unique:
        if all(f in data and data[f] is not None for f in fields):
            claims.append((fields, tuple(data[f] for f in fields)))
    return claims


def open_config_store(url: str) -> ConfigStore:
    """Build a store from a URL: ``sqlite:///path/to/file.db`` or ``mongodb://host:port/db``."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from portway.stores.sqlite_config import SqliteConfigStore

        return SqliteConfigStore(url.removeprefix("sqlite://"))
    if scheme in ("mongodb", "mongodb+srv"):
        from portway.stores.mongo_config import MongoConfigStore

        return MongoConfigStore(url)
    raise ValueError(f"config store URL scheme {scheme!r} is not one of sqlite, mongodb")


__all__: Sequence[str] = (
    "COLLECTIONS",
    "Collection",
    "ConfigStore",
    "Document",
    "collection",
    "open_config_store",
    "unique_values",
)

"""The config store interface: versioned JSON documents in named collections.

Every document has an ``id`` (unique in its collection), a ``version`` that starts at 1 and grows by
one on every write, and ``data`` (a JSON object). Writes are optimistic: ``replace`` and ``delete``
name the version they expect and are refused with ``StaleVersion`` when it moved on. Collections
declare unique field tuples (e.g. an API's ``(project, base_path)``); a write that would
duplicate one is refused with ``DuplicateKey`` and nothing is written.

Lists are read a page at a time (``page``): ordered by id, ascending or descending, at most
``limit`` documents, and an opaque ``next`` cursor that continues after the last one (keyset
pagination: the cursor carries the last id, never an offset, so a page costs the same at the start
and at the end of 100,000 documents, and a write between two pages neither repeats nor skips one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from portway.errors import ConfigError

Order = Literal["asc", "desc"]
MAX_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    version: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Prefix:
    """A ``where`` value matching strings that start with ``text`` (served by the field's index)."""

    text: str

    def upper_bound(self) -> str | None:
        """The smallest string above every string starting with ``text`` (None: no bound).

        Both engines compare strings by their UTF-8 bytes, which keeps code point order."""
        text = self.text.rstrip(chr(0x10FFFF))
        if not text:
            return None
        last = ord(text[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:  # no surrogates in valid text: skip to the next one
            last = 0xE000
        return text[:-1] + chr(last)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: its documents and the cursor of the next page (None: the last one)."""

    documents: list[Document]
    next: str | None


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
        Collection("environment_variables", indexed=("environment",)),
        Collection("apis", unique=(("project", "base_path"),), indexed=("project", "base_path")),
        Collection("api_revisions", indexed=("api_id",)),
        Collection("global_policies"),
        Collection("consumers", unique=(("name",),)),
        Collection("credentials", unique=(("lookup",),), indexed=("consumer_id",)),
        Collection("signing_keys", indexed=("environment",)),
        Collection("env_revisions", indexed=("environment",)),
        Collection("env_revision_parts", indexed=("environment",)),
        Collection("deployments", indexed=("environment", "api_id")),
        Collection("workers", indexed=("environment",)),
        Collection("users", unique=(("username",),)),
        Collection("tokens", unique=(("lookup",),), indexed=("user_id",)),
        Collection("sessions", unique=(("lookup",),), indexed=("user_id",)),
        Collection("audit", indexed=("target", "actor", "action")),
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

    async def page(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        order: Order = "asc",
        limit: int,
        cursor: str | None = None,
    ) -> Page:
        """At most ``limit`` documents matching ``where`` (a value may be a ``Prefix``), ordered
        by id; ``cursor`` (a ``Page.next``) continues after the previous page. A cursor that was
        not handed out for this collection, filter and order raises ``InvalidCursor``."""

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


class InvalidCursor(ConfigError):
    def __init__(self, message: str) -> None:
        super().__init__(message, field="cursor")


# Cursors are tamper-evident, not secret: the tag catches an edited or foreign cursor, and one
# forged with a valid tag still only says where to resume a list the caller may read anyway (the
# filter is never taken from the cursor).
_CURSOR_KEY = b"portway-page-cursor-v1"
_TAG_BYTES = 12


def _query_digest(collection: str, where: Mapping[str, Any] | None, order: Order) -> str:
    parts = sorted(
        (k, ["prefix", v.text] if isinstance(v, Prefix) else ["eq", v])
        for k, v in (where or {}).items()
    )
    text = json.dumps([collection, order, parts], separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _tag(payload: bytes) -> bytes:
    return hmac.new(_CURSOR_KEY, payload, "sha256").digest()[:_TAG_BYTES]


def encode_cursor(
    collection: str, where: Mapping[str, Any] | None, order: Order, last_id: str
) -> str:
    """The cursor that resumes the list ``(collection, where, order)`` after ``last_id``."""
    payload = json.dumps(
        [_query_digest(collection, where, order), last_id], separators=(",", ":")
    ).encode()
    return base64.urlsafe_b64encode(_tag(payload) + payload).decode("ascii").rstrip("=")


def decode_cursor(
    cursor: str, collection: str, where: Mapping[str, Any] | None, order: Order
) -> str:
    """The last id a cursor resumes after; ``InvalidCursor`` if it was not handed out for this
    list (edited, truncated, or from another filter, order or collection)."""
    if len(cursor) > 2048:
        raise InvalidCursor("is longer than any cursor Portway hands out")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise InvalidCursor("is not a cursor Portway handed out (not base64url)") from None
    tag, payload = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(payload)):
        raise InvalidCursor("is not a cursor Portway handed out (altered or truncated)")
    digest, last_id = json.loads(payload)
    if digest != _query_digest(collection, where, order):
        raise InvalidCursor(
            "belongs to another list: repeat the filters and order of the request it came from"
        )
    return str(last_id)


def page_of(
    collection: str,
    where: Mapping[str, Any] | None,
    order: Order,
    fetched: list[Document],
    limit: int,
) -> Page:
    """The page of ``limit`` documents out of ``limit + 1`` fetched (the extra one says more
    follow)."""
    docs = fetched[:limit]
    more = len(fetched) > limit and docs
    return Page(docs, encode_cursor(collection, where, order, docs[-1].id) if more else None)


def check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise ConfigError(f"must be an integer from 1 to {MAX_PAGE}", field="limit")
    return limit


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
    "InvalidCursor",
    "Order",
    "Page",
    "Prefix",
    "check_limit",
    "collection",
    "decode_cursor",
    "encode_cursor",
    "open_config_store",
    "page_of",
    "unique_values",
)

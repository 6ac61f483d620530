"""The config store contract, run against SQLite and against FerretDB (MongoDB wire protocol)."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from contextlib import closing
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from portway.errors import (
    ConfigError,
    DuplicateKey,
    NotFound,
    StaleVersion,
    StoreError,
    StoreUnavailable,
)
from portway.stores.config_store import (
    COLLECTIONS,
    MAX_PAGE,
    ConfigStore,
    InvalidCursor,
    Order,
    Prefix,
    open_config_store,
)
from portway.stores.migrations import Migration, SchemaTooNew, check_sequence
from portway.stores.mongo_config import MongoConfigStore
from portway.stores.sqlite_config import SqliteConfigStore, _select
from tests.stores.conftest import mongo_url, servers, unique
from tests.support.servers import Server, closed_port, silent_listener

API = {"project": "p1", "base_path": "/v1", "name": "orders"}


def build(url: str, migrations: list[Migration]) -> ConfigStore:
    if url.startswith("sqlite://"):
        return SqliteConfigStore(url.removeprefix("sqlite://"), migrations=migrations)
    return MongoConfigStore(url, migrations=migrations)


async def test_insert_then_get_returns_version_1(config_store: ConfigStore) -> None:
    doc = await config_store.insert("apis", "a1", API)
    assert (doc.id, doc.version, doc.data) == ("a1", 1, API)
    got = await config_store.get("apis", "a1")
    assert got == doc
    assert await config_store.get("apis", "nope") is None


async def test_documents_round_trip_exactly(config_store: ConfigStore) -> None:
    data: dict[str, Any] = {
        "dots.in.keys": {"$dollar": 1, "a.b": [1, 2.5, None, True, False]},
        "unicode": "zürich — 東京 🚀",
        "big": 2**70,
        "negative": -(2**63),
        "float": 0.1,
        "empty": {},
        "list": [[], [{}], "x"],
    }
    await config_store.insert("global_policies", "g1", data)
    got = await config_store.get("global_policies", "g1")
    assert got is not None
    assert got.data == data


async def test_unknown_collection_is_refused(config_store: ConfigStore) -> None:
    with pytest.raises(ValueError, match="unknown collection"):
        await config_store.insert("nope", "x", {})


async def test_duplicate_id_is_refused(config_store: ConfigStore) -> None:
    await config_store.insert("projects", "p1", {"name": "one"})
    with pytest.raises(DuplicateKey) as caught:
        await config_store.insert("projects", "p1", {"name": "two"})
    assert caught.value.fields == ("id",)
    got = await config_store.get("projects", "p1")
    assert got is not None
    assert got.data == {"name": "one"}


async def test_replace_bumps_the_version(config_store: ConfigStore) -> None:
    await config_store.insert("apis", "a1", API)
    doc = await config_store.replace("apis", "a1", {**API, "name": "v2"}, expected_version=1)
    assert doc.version == 2
    doc = await config_store.replace("apis", "a1", {**API, "name": "v3"}, expected_version=2)
    got = await config_store.get("apis", "a1")
    assert got == doc
    assert got is not None
    assert (got.version, got.data["name"]) == (3, "v3")


async def test_stale_replace_is_refused_and_changes_nothing(config_store: ConfigStore) -> None:
    await config_store.insert("apis", "a1", API)
    await config_store.replace("apis", "a1", {**API, "name": "new"}, expected_version=1)
    with pytest.raises(StaleVersion) as caught:
        await config_store.replace("apis", "a1", {**API, "name": "lost"}, expected_version=1)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    got = await config_store.get("apis", "a1")
    assert got is not None
    assert (got.version, got.data["name"]) == (2, "new")


async def test_replace_or_delete_of_missing_document(config_store: ConfigStore) -> None:
    with pytest.raises(NotFound):
        await config_store.replace("apis", "ghost", API, expected_version=1)
    with pytest.raises(NotFound):
        await config_store.delete("apis", "ghost")


async def test_delete_checks_the_version(config_store: ConfigStore) -> None:
    await config_store.insert("apis", "a1", API)
    await config_store.replace("apis", "a1", API, expected_version=1)
    with pytest.raises(StaleVersion):
        await config_store.delete("apis", "a1", expected_version=1)
    assert await config_store.get("apis", "a1") is not None
    await config_store.delete("apis", "a1", expected_version=2)
    assert await config_store.get("apis", "a1") is None
    await config_store.insert("apis", "a2", API)
    await config_store.delete("apis", "a2")
    assert await config_store.get("apis", "a2") is None


async def _one_winner(attempts: Sequence[Awaitable[Any]], loser: type[Exception]) -> list[Any]:
    results = await asyncio.gather(*attempts, return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, loser) for r in losers), losers
    return winners


async def test_concurrent_writers_of_one_version_one_wins(config_store: ConfigStore) -> None:
    await config_store.insert("apis", "a1", API)
    writes = [
        config_store.replace("apis", "a1", {**API, "name": f"w{i}"}, expected_version=1)
        for i in range(8)
    ]
    [winner] = await _one_winner(writes, StaleVersion)
    assert await config_store.get("apis", "a1") == winner


async def test_two_store_instances_one_wins(config_url: str) -> None:
    """Two independent connections (two managers) racing on the same version."""
    first, second = open_config_store(config_url), open_config_store(config_url)
    await first.open()
    await second.open()
    try:
        await first.insert("apis", "a1", API)
        writes = [
            store.replace("apis", "a1", {**API, "name": f"w{i}"}, expected_version=1)
            for i in range(6)
            for store in (first, second)
        ]
        [winner] = await _one_winner(writes, StaleVersion)
        assert await second.get("apis", "a1") == winner
        assert await first.get("apis", "a1") == winner
    finally:
        await first.close()
        await second.close()


async def test_unique_tuple_is_enforced(config_store: ConfigStore) -> None:
    await config_store.insert("apis", "a1", API)
    with pytest.raises(DuplicateKey) as caught:
        await config_store.insert("apis", "a2", {**API, "name": "other"})
    assert caught.value.fields == ("project", "base_path")
    assert "base_path='/v1'" in str(caught.value)
    assert await config_store.get("apis", "a2") is None
    # the same path in another project, or another path, is fine
    await config_store.insert("apis", "a3", {**API, "project": "p2"})
    await config_store.insert("apis", "a4", {**API, "base_path": "/v2"})


async def test_incomplete_tuples_claim_nothing(config_store: ConfigStore) -> None:
    await config_store.insert("apis", "a1", {"project": "p1"})
    await config_store.insert("apis", "a2", {"project": "p1"})
    await config_store.insert("apis", "a3", {"project": "p1", "base_path": None})
    await config_store.insert("apis", "a4", {"project": "p1", "base_path": None})
    assert len(await config_store.find("apis", {"project": "p1"})) == 4


async def test_replace_into_a_taken_tuple_writes_nothing(config_store: ConfigStore) -> None:
    await config_store.insert("apis", "a1", API)
    await config_store.insert("apis", "a2", {**API, "base_path": "/v2"})
    with pytest.raises(DuplicateKey):
        await config_store.replace("apis", "a2", {**API, "name": "moved"}, expected_version=1)
    got = await config_store.get("apis", "a2")
    assert got is not None
    assert (got.version, got.data["base_path"], got.data["name"]) == (1, "/v2", "orders")
    # a2 still holds /v2: nobody else can take it
    with pytest.raises(DuplicateKey):
        await config_store.insert("apis", "a3", {**API, "base_path": "/v2"})


async def test_claims_move_with_replace_and_go_with_delete(config_store: ConfigStore) -> None:
    await config_store.insert("apis", "a1", API)
    await config_store.replace("apis", "a1", {**API, "base_path": "/v9"}, expected_version=1)
    await config_store.insert("apis", "a2", API)  # /v1 was released
    with pytest.raises(DuplicateKey):
        await config_store.insert("apis", "a3", {**API, "base_path": "/v9"})
    await config_store.delete("apis", "a1")
    await config_store.insert("apis", "a3", {**API, "base_path": "/v9"})


async def test_concurrent_inserts_of_one_tuple_one_wins(config_store: ConfigStore) -> None:
    inserts = [config_store.insert("consumers", f"c{i}", {"name": "acme"}) for i in range(8)]
    [winner] = await _one_winner(inserts, DuplicateKey)
    assert [d.id for d in await config_store.find("consumers")] == [winner.id]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"rate": math.nan}, "data.rate"),
        ({"policies": [{"config": {"tags": {1, 2}}}]}, "data.policies[0].config.tags"),
        ({"limits": {"burst": math.inf}}, "data.limits.burst"),
        ({"headers": {1: "x"}}, "data.headers"),
        ({"text": "\ud800"}, "data.text"),
        ({"blob": "x" * (1 << 20)}, "data"),
    ],
)
async def test_bad_documents_are_refused_with_the_field(
    config_store: ConfigStore, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        await config_store.insert("apis", "a1", data)
    assert caught.value.field == field
    assert await config_store.get("apis", "a1") is None
    await config_store.insert("apis", "a1", API)
    with pytest.raises(ConfigError) as caught:
        await config_store.replace("apis", "a1", {**API, **data}, expected_version=1)
    assert caught.value.field == field
    got = await config_store.get("apis", "a1")
    assert got is not None
    assert (got.version, got.data) == (1, API)


@pytest.mark.parametrize("key", ["", "x" * 257, "tab\there"])
async def test_bad_ids_are_refused(config_store: ConfigStore, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        await config_store.insert("apis", key, API)
    assert caught.value.field == "id"


async def test_find_filters_by_typed_equality(config_store: ConfigStore) -> None:
    rows = {
        "w3": {"environment": "prod", "healthy": True, "weight": 1},
        "w1": {"environment": "prod", "healthy": False, "weight": 1.0},
        "w2": {"environment": "dev", "healthy": 1, "weight": 2, "zone": None},
        "w4": {"environment": "prod", "healthy": True, "zone": ["a"]},
    }
    for key, data in rows.items():
        await config_store.insert("workers", key, data)

    async def ids(where: dict[str, Any] | None = None, limit: int | None = None) -> list[str]:
        return [d.id for d in await config_store.find("workers", where, limit=limit)]

    assert await ids() == ["w1", "w2", "w3", "w4"]
    assert await ids({"environment": "prod"}) == ["w1", "w3", "w4"]
    assert await ids({"environment": "prod", "healthy": True}) == ["w3", "w4"]
    assert await ids({"healthy": 1}) == ["w2"]  # True is not 1
    assert await ids({"weight": 1}) == ["w1", "w3"]  # 1 == 1.0
    assert await ids({"zone": None}) == ["w1", "w2", "w3"]  # missing or null, not a list
    assert await ids({"environment": "prod"}, limit=2) == ["w1", "w3"]
    assert await ids({"environment": "nope"}) == []
    with pytest.raises(ValueError, match="invalid field name"):
        await ids({"a.b": 1})
    with pytest.raises(ValueError, match="scalars only"):
        await ids({"zone": ["a"]})


async def walk(
    store: ConfigStore,
    collection: str,
    where: dict[str, Any] | None = None,
    *,
    order: Order = "asc",
    limit: int = 7,
) -> list[list[str]]:
    """Every page of a list, following ``next`` until it is None."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.page(collection, where, order=order, limit=limit, cursor=cursor)
        pages.append([d.id for d in page.documents])
        if page.next is None:
            return pages
        cursor = page.next


def flat(pages: list[list[str]]) -> list[str]:
    return [key for page in pages for key in page]


async def test_pages_cover_the_list_once_in_either_order(config_store: ConfigStore) -> None:
    ids = [f"a{i:03d}" for i in range(23)]
    for i, key in enumerate(reversed(ids)):
        await config_store.insert("audit", key, {"actor": "ann" if i % 3 else "bob", "n": i})
    pages = await walk(config_store, "audit")
    assert [len(p) for p in pages] == [7, 7, 7, 2]
    assert flat(pages) == ids
    assert flat(await walk(config_store, "audit", order="desc")) == ids[::-1]
    bob = [d.id for d in await config_store.find("audit", {"actor": "bob"})]
    assert 0 < len(bob) < len(ids)
    assert flat(await walk(config_store, "audit", {"actor": "bob"}, limit=2)) == bob
    desc = await walk(config_store, "audit", {"actor": "bob"}, order="desc", limit=3)
    assert flat(desc) == bob[::-1]
    # a list that fits one page has no next page; an exact fit does not promise one either
    assert await walk(config_store, "audit", limit=23) == [ids]
    assert await walk(config_store, "audit", {"actor": "nobody"}) == [[]]


async def test_writes_between_pages_neither_repeat_nor_skip(config_store: ConfigStore) -> None:
    for key in ("b", "d", "f", "h"):
        await config_store.insert("audit", key, {"actor": "ann"})
    first = await config_store.page("audit", order="asc", limit=2)
    assert [d.id for d in first.documents] == ["b", "d"]
    assert first.next
    await config_store.insert("audit", "a", {"actor": "ann"})  # before the cursor: not seen
    await config_store.insert("audit", "e", {"actor": "ann"})  # after it: seen once
    await config_store.delete("audit", "f")
    rest = await config_store.page("audit", limit=10, cursor=first.next)
    assert [d.id for d in rest.documents] == ["e", "h"]
    assert rest.next is None


async def test_prefix_filters_match_exactly_the_prefix(config_store: ConfigStore) -> None:
    targets = {
        "t1": "apis/default/orders",
        "t2": "apis/shop/carts",
        "t3": "apis0",  # the character after "/"
        "t4": "apis",
        "t5": "consumers/shop",
        "t6": "apis/é/ünï",
        "t7": "apis/\U0010ffff",
        "t8": 7,  # not a string: never matched by a prefix
    }
    for key, target in targets.items():
        await config_store.insert("audit", key, {"target": target})

    async def matching(prefix: str) -> list[str]:
        found = await config_store.page("audit", {"target": Prefix(prefix)}, limit=100)
        assert [d.id for d in await config_store.find("audit", {"target": Prefix(prefix)})] == [
            d.id for d in found.documents
        ]
        return [d.id for d in found.documents]

    assert await matching("apis/") == ["t1", "t2", "t6", "t7"]
    assert await matching("apis") == ["t1", "t2", "t3", "t4", "t6", "t7"]
    assert await matching("apis/é") == ["t6"]
    assert await matching("apis/\U0010ffff") == ["t7"]
    assert await matching("consumers/shop") == ["t5"]
    assert await matching("") == ["t1", "t2", "t3", "t4", "t5", "t6", "t7"]
    assert await matching("zzz") == []


@pytest.mark.parametrize(
    "forge",
    [
        lambda c: c[:-3],  # truncated
        lambda c: c[:10] + ("A" if c[10] != "A" else "B") + c[11:],  # one character changed
        lambda c: "not a cursor!",
        lambda c: "",
        lambda c: "x" * 5000,
        lambda c: c + "==AA",
    ],
)
async def test_forged_cursors_are_refused_naming_the_cursor(
    config_store: ConfigStore, forge: Callable[[str], str]
) -> None:
    for key in ("a", "b", "c"):
        await config_store.insert("audit", key, {"actor": "ann"})
    cursor = (await config_store.page("audit", limit=1)).next
    assert cursor is not None
    with pytest.raises(InvalidCursor) as caught:
        await config_store.page("audit", limit=1, cursor=forge(cursor))
    assert caught.value.field == "cursor"
    assert isinstance(caught.value, ConfigError)


async def test_a_cursor_only_continues_its_own_list(config_store: ConfigStore) -> None:
    for key in ("a", "b", "c"):
        await config_store.insert("audit", key, {"actor": "ann", "target": "apis/x"})
        await config_store.insert("consumers", key, {"name": key})
    cursor = (await config_store.page("audit", {"actor": "ann"}, limit=1)).next
    assert cursor is not None
    others: list[tuple[str, dict[str, Any], Order]] = [
        ("audit", {"actor": "bob"}, "asc"),  # another filter value
        ("audit", {}, "asc"),  # the filter dropped
        ("audit", {"actor": Prefix("ann")}, "asc"),  # equality turned into a prefix
        ("audit", {"actor": "ann"}, "desc"),  # the order reversed
        ("consumers", {"actor": "ann"}, "asc"),  # another collection
    ]
    for coll, where, order in others:
        with pytest.raises(InvalidCursor, match="another list"):
            await config_store.page(coll, where, order=order, limit=1, cursor=cursor)
    follow = await config_store.page("audit", {"actor": "ann"}, limit=1, cursor=cursor)
    assert [d.id for d in follow.documents] == ["b"]


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1])
async def test_page_limits_are_bounded(config_store: ConfigStore, limit: int) -> None:
    with pytest.raises(ConfigError) as caught:
        await config_store.page("audit", limit=limit)
    assert caught.value.field == "limit"


async def test_every_indexed_field_has_an_index_created_idempotently(config_url: str) -> None:
    """Each declared filter field is indexed together with the keyset order (field, id), on
    either engine; opening the store again creates nothing twice and fails on nothing."""
    fields = {f for c in COLLECTIONS.values() for f in c.indexed}
    for _ in range(2):
        store = open_config_store(config_url)
        await store.open()
        await store.close()
    if config_url.startswith("sqlite://"):
        path = config_url.removeprefix("sqlite://")
        with closing(sqlite3.connect(path)) as conn:
            names = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
            }
            assert {f"documents_by_{f}" for f in fields} <= names
            sql, args = _select("audit", {"actor": "ann", "target": Prefix("apis/")})
            plan = " ".join(
                str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql + " ORDER BY id", args)
            )
            assert "USING INDEX documents_by_" in plan
        return
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(config_url)
    try:
        database = client.get_default_database()
        for coll in COLLECTIONS.values():
            keys = [
                list(index["key"].items())
                async for index in await database[coll.name].list_indexes()
            ]
            for field in coll.indexed:
                assert [(f"q.{field}", 1), ("_id", 1)] in keys, (coll.name, keys)
    finally:
        await client.close()


async def test_sequences_are_atomic(config_store: ConfigStore) -> None:
    values = await asyncio.gather(*[config_store.next_sequence("revision") for _ in range(20)])
    assert sorted(values) == list(range(1, 21))
    assert await config_store.next_sequence("other") == 1
    assert await config_store.next_sequence("revision") == 21


# --- migrations ---------------------------------------------------------------------------------


def recording(log: list[int], version: int) -> Callable[[ConfigStore], Awaitable[None]]:
    async def apply(store: ConfigStore) -> None:
        log.append(version)
        for doc in await store.find("apis"):
            if "owner" not in doc.data:
                await store.replace(
                    "apis",
                    doc.id,
                    {**doc.data, "owner": f"m{version}"},
                    expected_version=doc.version,
                )

    return apply


async def test_migrations_run_once_in_order(config_url: str) -> None:
    applied: list[int] = []
    m = [Migration(v, f"step {v}", recording(applied, v)) for v in (1, 2, 3)]
    store = build(config_url, m[:1])
    await store.open()
    await store.insert("apis", "a1", API)
    await store.close()
    assert applied == [1]

    store = build(config_url, m)
    await store.open()
    assert applied == [1, 2, 3]
    schema = await store.get("meta", "schema")
    assert schema is not None
    assert schema.data["version"] == 3
    assert [h["version"] for h in schema.data["history"]] == [1, 2, 3]
    doc = await store.get("apis", "a1")
    assert doc is not None
    assert doc.data["owner"] == "m2"
    await store.close()

    store = build(config_url, m)
    await store.open()  # nothing pending
    await store.close()
    assert applied == [1, 2, 3]


async def test_a_failing_migration_stops_the_upgrade(config_url: str) -> None:
    async def boom(store: ConfigStore) -> None:
        raise RuntimeError("disk on fire")

    ok = Migration(1, "ok", recording([], 1))
    store = build(config_url, [ok, Migration(2, "boom", boom)])
    with pytest.raises(StoreError, match=r"migration 2 \(boom\) failed: disk on fire"):
        await store.open()
    store = build(config_url, [ok])
    await store.open()
    schema = await store.get("meta", "schema")
    assert schema is not None
    assert schema.data["version"] == 1
    await store.close()
    fixed: list[int] = []
    store = build(config_url, [ok, Migration(2, "fixed", recording(fixed, 2))])
    await store.open()
    await store.close()
    assert fixed == [2]


async def test_a_newer_database_refuses_to_open(config_url: str) -> None:
    m = [Migration(v, f"step {v}", recording([], v)) for v in (1, 2)]
    store = build(config_url, m)
    await store.open()
    await store.close()
    with pytest.raises(SchemaTooNew, match="version 2, newer than this Portway knows \\(1\\)"):
        await build(config_url, m[:1]).open()


def test_migration_versions_must_be_consecutive() -> None:
    check_sequence([Migration(1, "x", recording([], 1)), Migration(2, "y", recording([], 2))])
    with pytest.raises(ValueError, match="1, 2, 3"):
        check_sequence([Migration(1, "x", recording([], 1)), Migration(3, "y", recording([], 3))])


# --- faults ---------------------------------------------------------------------------------------


@servers
@pytest.mark.parametrize("listener", [closed_port, silent_listener])
async def test_unreachable_mongodb_is_unavailable_within_the_timeout(listener: Any) -> None:
    with listener() as port:
        store = MongoConfigStore(f"mongodb://127.0.0.1:{port}/x?timeoutMS=300")
        async with asyncio.timeout(10):  # a hang fails here, not at the suite's timeout
            with pytest.raises(StoreUnavailable):
                await store.open()


@servers
async def test_a_frozen_mongodb_times_out_then_recovers(ferretdb: Server) -> None:
    store = MongoConfigStore(mongo_url(ferretdb, unique(), timeoutMS="500"))
    await store.open()
    await store.insert("projects", "p1", {"name": "one"})
    ferretdb.freeze()
    try:
        async with asyncio.timeout(10):
            with pytest.raises(StoreUnavailable):
                await store.get("projects", "p1")
    finally:
        ferretdb.thaw()
    got = await store.get("projects", "p1")
    assert got is not None
    await store.close()


def test_config_store_urls() -> None:
    assert isinstance(open_config_store("sqlite:///tmp/x.db"), SqliteConfigStore)
    assert isinstance(open_config_store("mongodb://a:1,b:2/db?replicaSet=rs"), MongoConfigStore)
    with pytest.raises(ValueError, match="not one of sqlite, mongodb"):
        open_config_store("redis://x")

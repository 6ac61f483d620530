"""Environment revisions in parts, and the migration of revisions stored whole (``snapshot``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from portway.config.models import ApiProxy
from portway.config.revision import DeployedApi, EnvironmentRevision
from portway.manager.revision_store import EnvironmentRevisions
from portway.stores import revision_parts
from portway.stores.config_store import ConfigStore
from portway.stores.migrations import MIGRATIONS
from tests.stores.test_config_store import build


def revision(number: int) -> EnvironmentRevision:
    api = ApiProxy.model_validate(
        {
            "project": "default",
            "name": f"orders{number}",
            "base_path": f"/orders{number}",
            "backends": [{"url": "http://127.0.0.1:9"}],
        }
    )
    return EnvironmentRevision(
        environment="dev",
        revision=number,
        created_at=datetime(2026, 11, 26, tzinfo=UTC),
        apis=[DeployedApi(api=api, api_revision=1)],
    )


async def write_whole(store: ConfigStore, snapshot: EnvironmentRevision) -> None:
    """What the first Portway wrote: the whole revision inside its header."""
    await store.insert(
        revision_parts.HEADERS,
        f"dev@{snapshot.revision}",
        {
            "environment": "dev",
            "revision": snapshot.revision,
            "snapshot": snapshot.model_dump(mode="json"),
        },
    )


async def test_revisions_stored_whole_are_migrated_to_parts(
    config_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(revision_parts, "PART_CHARS", 64)
    old = build(config_url, [])
    await old.open()
    await write_whole(old, revision(1))
    await write_whole(old, revision(2))
    await old.close()

    store = build(config_url, list(MIGRATIONS))
    await store.open()
    try:
        for number in (1, 2):
            head = await store.get(revision_parts.HEADERS, f"dev@{number}")
            assert head is not None
            assert "snapshot" not in head.data
            assert head.data["encoding"] == "zlib+base64"
            assert head.data["parts"] > 1
            assert head.data["apis"] == 1
            read = await EnvironmentRevisions(store).get("dev", number)
            assert read == revision(number)
        schema = await store.get("meta", "schema")
        assert schema is not None
        assert schema.data["version"] == len(MIGRATIONS)
    finally:
        await store.close()


async def test_a_stored_revision_reads_back_whole(config_store: ConfigStore) -> None:
    written = revision(3)
    await EnvironmentRevisions(config_store).put(written)
    assert await EnvironmentRevisions(config_store).get("dev", 3) == written

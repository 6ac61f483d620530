"""Session-wide fixtures: the real servers (Redis, FerretDB, Hazelcast, Elasticsearch), each
started once per session on a free loopback port by ``tests/support/servers.py`` and shared by the
store contract suites and the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.servers import (
    Server,
    ServerMissing,
    elasticsearch_server,
    ferretdb_server,
    hazelcast_server,
    redis_server,
    skip_or_fail,
)


def _serve(make: Callable[[], Server]) -> Iterator[Server]:
    try:
        server = make()
    except ServerMissing as exc:
        skip_or_fail(exc)
    with server:
        yield server


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(lambda: redis_server(tmp_path_factory.mktemp("redis")))


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(lambda: ferretdb_server(tmp_path_factory.mktemp("ferretdb")))


@pytest.fixture(scope="session")
def hazelcast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(lambda: hazelcast_server(tmp_path_factory.mktemp("hazelcast")))


@pytest.fixture(scope="session")
def elasticsearch() -> Iterator[Server]:
    yield from _serve(elasticsearch_server)

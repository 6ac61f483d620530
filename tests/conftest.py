"""Session-wide fixtures: the real servers (Redis, FerretDB, Hazelcast, Elasticsearch), each
started once per session on a free loopback port by ``tests/support/servers.py`` and shared by the
store contract suites and the end-to-end tests.

``make test`` runs the suite on pytest-xdist workers (``-n auto --dist loadfile``). Each worker is a
session of its own: it starts its own copy of a server (own port, own data directory) the first
time one of its tests needs it. The hooks at the end decide which tests go together and in which
order the workers take them.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from xdist.scheduler import LoadFileScheduling

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
    for server in _serve(elasticsearch_server):
        _warm_up(server)
        yield server


def _warm_up(server: Server) -> None:
    """Make and write one data stream (left in place; it dies with the server) before a test
    does: on a fresh node under load the first index template took more than the 2 s per-call
    bound a test gives its sink."""
    base = f"http://127.0.0.1:{server.port}"
    template = {"index_patterns": ["portway-warm-up"], "data_stream": {}, "priority": 500}
    for path, body in (
        ("/_index_template/portway-warm-up", template),
        ("/portway-warm-up/_create/1?refresh=true", {"@timestamp": "2026-01-01T00:00:00Z"}),
    ):
        request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="PUT")
        request.add_header("content-type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status in (200, 201), (path, response.status)


# --- units of work under xdist ------------------------------------------------------------------

SHARED_SERVER_FILES = frozenset(
    {
        "tests/manager/test_request_search.py",
        "tests/stores/test_shipper.py",
        "tests/stores/test_traffic.py",
        "tests/stores/test_traffic_search.py",
    }
)
"""The test files that use the Elasticsearch server: one unit of work, so one worker starts it (a
JVM of about 1 GiB that takes 30-60 s to start). Every other server starts in seconds; a file
missing here only makes a second worker start its own Elasticsearch."""


class _FileUnits(LoadFileScheduling):  # type: ignore[misc]  # xdist ships no type information
    """``--dist loadfile``: a test file is a unit (its module-scoped fixtures, a Kafka broker or a
    lab of network namespaces, start once), except ``SHARED_SERVER_FILES``, which are one unit.
    Units are handed out in the collection order, which ``pytest_collection_modifyitems`` sets."""

    def _split_scope(self, nodeid: str) -> str:
        path = str(super()._split_scope(nodeid))
        return "elasticsearch" if path in SHARED_SERVER_FILES else path


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getvalue("dist") != "loadfile":
        return None
    config.option.loadscopereorder = False  # the order below, not the largest file first
    return _FileUnits(config, log)


@pytest.hookimpl(trylast=True)  # after deselection: sort only what runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the files that hold a ``slow`` test go first, so that no long test
    starts last and leaves one worker running alone at the end. A serial run keeps pytest's
    order."""
    if not hasattr(config, "workerinput"):
        return
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)  # stable otherwise

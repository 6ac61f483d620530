"""Fixtures of the store contract suites: real servers (one per session) and one store per test.

Every backend that needs a server is a parameter marked ``servers``; each test gets its own
namespace on the shared server (database, key prefix, map, data stream), so tests never see each
other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from portway.stores.cache import Cache, open_cache
from portway.stores.config_store import ConfigStore, open_config_store
from portway.stores.traffic import TrafficSink, open_traffic_sink
from tests.support.servers import FERRETDB_REPLICA_SET, HAZELCAST_CLUSTER, Server

servers = pytest.mark.servers


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# --- URLs per backend ---------------------------------------------------------------------------


def mongo_url(server: Server, database: str, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"replicaSet": FERRETDB_REPLICA_SET, **options}.items())
    return f"mongodb://127.0.0.1:{server.port}/{database}?{query}"


CALL_TIMEOUT = "10"
"""The cache's per-call bound in these URLs: a cap, not the subject (the timeout tests pass their
own). The default second was too little for 100 concurrent increments on a loaded machine with two
xdist workers, and the test failed on a slow answer instead of a wrong count."""


def redis_url(server: Server, **options: str) -> str:
    base = {"prefix": unique() + ":", "timeout": CALL_TIMEOUT}
    query = "&".join(f"{k}={v}" for k, v in {**base, **options}.items())
    return f"redis://127.0.0.1:{server.port}/0?{query}"


def hazelcast_url(server: Server, **options: str) -> str:
    base = {"map": unique(), "timeout": CALL_TIMEOUT}
    query = "&".join(f"{k}={v}" for k, v in {**base, **options}.items())
    return f"hazelcast://127.0.0.1:{server.port}/{HAZELCAST_CLUSTER}?{query}"


def elasticsearch_url(server: Server, **options: str) -> str:
    base = {"stream": unique("portway-traffic-"), "refresh": "true", "replicas": "0"}
    query = "&".join(f"{k}={v}" for k, v in {**base, **options}.items())
    return f"elasticsearch://127.0.0.1:{server.port}?{query}"


# --- config store ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("mongodb", marks=servers)])
def config_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'config.db'}"
    return mongo_url(request.getfixturevalue("ferretdb"), unique())


@pytest.fixture
async def config_store(config_url: str) -> AsyncIterator[ConfigStore]:
    store = open_config_store(config_url)
    await store.open()
    yield store
    await store.close()


# --- cache ----------------------------------------------------------------------------------------


@pytest.fixture(
    params=["local", pytest.param("redis", marks=servers), pytest.param("hazelcast", marks=servers)]
)
def cache_url(request: pytest.FixtureRequest) -> str:
    if request.param == "local":
        return "local://"
    if request.param == "redis":
        return redis_url(request.getfixturevalue("redis"))
    return hazelcast_url(request.getfixturevalue("hazelcast"))


@pytest.fixture
async def cache(cache_url: str) -> AsyncIterator[Cache]:
    store = open_cache(cache_url)
    await store.open()
    yield store
    await store.close()


# --- traffic sink ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("elasticsearch", marks=servers)])
def traffic_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'traffic.db'}"
    return elasticsearch_url(request.getfixturevalue("elasticsearch"))


@pytest.fixture
async def traffic_sink(traffic_url: str) -> AsyncIterator[TrafficSink]:
    sink = open_traffic_sink(traffic_url)
    await sink.open()
    yield sink
    await sink.close()

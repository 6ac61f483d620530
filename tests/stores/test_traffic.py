"""The traffic sink contract, run on SQLite and on Elasticsearch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from portway.errors import RejectedRecords, StoreUnavailable
from portway.stores.traffic import (
    AnalyticsQuery,
    SearchQuery,
    TrafficRecord,
    TrafficSink,
    open_traffic_sink,
)
from portway.stores.traffic_elasticsearch import ElasticsearchTrafficSink, mappings, time_ms
from portway.stores.traffic_sqlite import SqliteTrafficSink
from tests.stores.conftest import elasticsearch_url, servers
from tests.support.servers import Server, closed_port, silent_listener

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def record(i: int, **fields: Any) -> TrafficRecord:
    base: dict[str, Any] = {
        "id": f"req-{i}",
        "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
        "environment": "prod",
        "api": f"api-{i % 3}",
        "status": 200,
        "total_ms": float(i + 1),
        "method": "GET",
        "path": f"/orders/{i}",
    }
    base.update(fields)
    return base  # type: ignore[return-value]


def query(**fields: Any) -> AnalyticsQuery:
    values: dict[str, Any] = {"start": T0, "end": T0 + timedelta(minutes=3), "bucket_seconds": 60}
    values.update(fields)
    return AnalyticsQuery(**values)


async def test_an_empty_sink_answers_zeros(traffic_sink: TrafficSink) -> None:
    result = await traffic_sink.query(query())
    assert result.total == 0
    assert (result.by_status, result.by_api, result.top_consumers) == ({}, {}, [])
    assert result.latency_ms == {}
    assert [(b.start, b.count, b.errors) for b in result.buckets] == [
        (T0 + timedelta(minutes=m), 0, 0) for m in range(3)
    ]


async def test_aggregates(traffic_sink: TrafficSink) -> None:
    records = [
        record(
            i,
            status=503 if i % 10 == 0 else 404 if i % 10 == 1 else 200,
            consumer=["acme", "globex", "initech"][i % 3] if i % 4 else None,
        )
        for i in range(100)
    ]
    for r in records:
        if r.get("consumer") is None:
            r.pop("consumer")
    await traffic_sink.write(records)
    result = await traffic_sink.query(query())
    assert result.total == 100
    assert result.by_status == {200: 80, 404: 10, 503: 10}
    assert result.by_api == {"api-0": 34, "api-1": 33, "api-2": 33}
    expected_consumers: dict[str, int] = {}
    for r in records:
        if "consumer" in r:
            expected_consumers[r["consumer"]] = expected_consumers.get(r["consumer"], 0) + 1
    ranked = sorted(expected_consumers.items(), key=lambda kv: (-kv[1], kv[0]))
    assert result.top_consumers == ranked
    # records 0..59 fall in the first minute, 60..99 in the second; errors are status >= 400
    assert [(b.count, b.errors) for b in result.buckets] == [(60, 12), (40, 8), (0, 0)]
    # 1..100 ms: p50 = 50.5, p90 = 90.1, p95 = 95.05, p99 = 99.01 exactly on SQLite; t-digest on
    # Elasticsearch
    assert result.latency_ms["p50"] == pytest.approx(50.5, abs=0.5)
    assert result.latency_ms["p90"] == pytest.approx(90.1, abs=0.5)
    assert result.latency_ms["p95"] == pytest.approx(95.05, abs=0.5)
    assert result.latency_ms["p99"] == pytest.approx(99.01, abs=0.5)


async def test_latency_percentiles_per_bucket(traffic_sink: TrafficSink) -> None:
    # minute 0: 1, 2, 3, 4 ms; minute 1: one request at 7 ms and one without a latency;
    # minute 2: none
    latencies = [1.0, 2.0, 3.0, 4.0]
    records = [record(i, total_ms=ms) for i, ms in enumerate(latencies)]
    records += [record(60, total_ms=7.0), record(61)]
    del records[-1]["total_ms"]
    await traffic_sink.write(records)
    result = await traffic_sink.query(query())
    assert [b.count for b in result.buckets] == [4, 2, 0]
    assert result.buckets[0].latency_ms == pytest.approx(
        {"p50": 2.5, "p95": 3.85, "p99": 3.97}, rel=1e-12
    )
    assert result.buckets[1].latency_ms == {"p50": 7.0, "p95": 7.0, "p99": 7.0}
    assert result.buckets[2].latency_ms == {}
    # the whole range: 1, 2, 3, 4, 7 ms
    expected = {"p50": 3.0, "p90": 5.8, "p95": 6.4, "p99": 6.88}
    assert result.latency_ms == pytest.approx(expected, rel=1e-12)


async def test_filters_and_time_range(traffic_sink: TrafficSink) -> None:
    await traffic_sink.write(
        [
            record(0, consumer="a"),
            record(1, consumer="b", environment="dev"),
            record(2, consumer="a", api="api-9"),
            record(3, timestamp=(T0 - timedelta(seconds=1)).isoformat()),  # before start
            record(4, timestamp=(T0 + timedelta(minutes=3)).isoformat()),  # at end: excluded
            record(5, timestamp="2026-03-01T13:00:30+01:00"),  # 12:00:30 UTC
        ]
    )
    assert (await traffic_sink.query(query())).total == 4
    assert (await traffic_sink.query(query(environment="prod"))).total == 3
    assert (await traffic_sink.query(query(environment="dev"))).total == 1
    assert (await traffic_sink.query(query(api="api-9"))).total == 1
    only_a = await traffic_sink.query(query(consumer="a"))
    assert (only_a.total, only_a.top_consumers) == (2, [("a", 2)])
    top1 = await traffic_sink.query(query(top_n=1))
    assert top1.top_consumers == [("a", 2)]


async def test_buckets_align_on_the_epoch(traffic_sink: TrafficSink) -> None:
    await traffic_sink.write([record(i) for i in range(0, 120, 10)])
    result = await traffic_sink.query(
        query(start=T0 + timedelta(seconds=25), end=T0 + timedelta(seconds=95), bucket_seconds=30)
    )
    # buckets 12:00:00, :30, 12:01:00, :30 overlap [12:00:25, 12:01:35)
    assert [b.start for b in result.buckets] == [T0 + timedelta(seconds=s) for s in (0, 30, 60, 90)]
    assert [b.count for b in result.buckets] == [0, 3, 3, 1]
    assert result.total == 7


async def test_writes_are_idempotent_by_id(traffic_sink: TrafficSink) -> None:
    batch = [record(i) for i in range(20)]
    await traffic_sink.write(batch)
    await traffic_sink.write(batch)  # a retried batch
    await traffic_sink.write(batch[10:] + [record(i) for i in range(20, 30)])  # overlapping
    await traffic_sink.write([record(30), record(30, status=500)])  # same id twice in a batch
    result = await traffic_sink.query(query())
    assert result.total == 31
    assert 500 not in result.by_status


OLD_SQLITE_LAYOUT = """
CREATE TABLE traffic (
    id TEXT PRIMARY KEY, ts INTEGER NOT NULL, environment TEXT, api TEXT, consumer TEXT,
    status INTEGER, total_ms REAL, record TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX traffic_ts ON traffic (ts);
CREATE INDEX traffic_ts_id ON traffic (ts DESC, id DESC);
"""


async def test_a_sqlite_file_of_the_earlier_layout_works_the_same(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(OLD_SQLITE_LAYOUT)
        old = record(99, id="cid-old")  # stored before records had a correlation_id
        db.execute(
            "INSERT INTO traffic VALUES (?,?,?,?,?,?,?,?)",
            ("cid-old", T0_MS + 99_000, "prod", "api-0", None, 200, 1.0, json.dumps(old)),
        )
        db.commit()
    sink = SqliteTrafficSink(str(path))
    await sink.open()
    try:
        batch = [record(i, correlation_id="cid-new") for i in range(20)]
        await sink.write(batch)
        await sink.write(batch[10:] + [record(i) for i in range(20, 25)])  # a retried overlap
        result = await sink.query(query())
        assert result.total == 26
        end = T0 + timedelta(minutes=3)
        found = await sink.search(SearchQuery(T0, end, correlation_id="cid-old", limit=50))
        assert [r["id"] for r in found.records] == ["cid-old"]
        found = await sink.search(SearchQuery(T0, end, correlation_id="cid-new", limit=50))
        assert len(found.records) == 20
    finally:
        await sink.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'traffic'").fetchone()
    assert "WITHOUT ROWID" in sql  # kept as it was


async def test_malformed_records_are_rejected_and_the_rest_stored(
    traffic_sink: TrafficSink,
) -> None:
    bad: list[Any] = [
        {"timestamp": T0.isoformat()},
        record(1, timestamp="yesterday"),
        record(2, status="200"),
        record(3, total_ms=float("nan")),
    ]
    with pytest.raises(RejectedRecords) as caught:
        await traffic_sink.write([record(0), *bad, record(4)])
    assert len(caught.value.rejected) == 4
    assert "timestamp 'yesterday' is not ISO 8601" in str(caught.value)
    assert (await traffic_sink.query(query())).total == 2


async def test_details_are_kept_but_not_analysed(traffic_sink: TrafficSink) -> None:
    await traffic_sink.write([record(0, detail={"headers": {"x.y": "1", "$z": [1, {"a": None}]}})])
    assert (await traffic_sink.query(query())).total == 1


async def test_bad_queries_are_refused(traffic_sink: TrafficSink) -> None:
    with pytest.raises(ValueError, match="end must be after"):
        await traffic_sink.query(query(end=T0))
    with pytest.raises(ValueError, match="more than 10000 buckets"):
        await traffic_sink.query(query(end=T0 + timedelta(days=1), bucket_seconds=1))


# --- Elasticsearch specifics ----------------------------------------------------------------------


def es_get(server: Server, path: str) -> Any:
    url = f"http://127.0.0.1:{server.port}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@servers
async def test_elasticsearch_installs_its_template_and_stream(elasticsearch: Server) -> None:
    sink = open_traffic_sink(elasticsearch_url(elasticsearch))
    assert isinstance(sink, ElasticsearchTrafficSink)
    await sink.open()
    try:
        template = es_get(elasticsearch, f"/_index_template/{sink.stream}")["index_templates"][0]
        body = template["index_template"]
        assert body["index_patterns"] == [sink.stream]
        assert "data_stream" in body
        assert body["_meta"]["managed_by"] == "portway"
        assert body["template"]["mappings"]["properties"]["status"]["type"] == "short"
        # the integ-test distribution has no ILM: Portway applies the lifecycle itself
        assert sink.lifecycle == "portway"
        # a second worker starting installs the same things again
        second = open_traffic_sink(elasticsearch_url(elasticsearch, stream=sink.stream))
        await second.open()
        await second.close()
        await sink.write([record(0)])
        resolved = es_get(elasticsearch, f"/_resolve/index/{sink.stream}")
        assert [d["name"] for d in resolved["data_streams"]] == [sink.stream]
    finally:
        await sink.close()


@servers
async def test_elasticsearch_indexes_logged_variables(elasticsearch: Server) -> None:
    # written by log policies: searchable by name and value (a flattened field)
    sink = open_traffic_sink(elasticsearch_url(elasticsearch))
    assert isinstance(sink, ElasticsearchTrafficSink)
    await sink.open()
    try:
        logged = {"tier": "gold", "order": "o-17"}
        await sink.write([record(0, variables=logged), record(1, variables={"tier": "silver"})])
        search = {"query": {"term": {"variables.tier": "gold"}}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{elasticsearch.port}/{sink.stream}/_search",
            data=json.dumps(search).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            hits = json.loads(response.read())["hits"]["hits"]
        assert [h["_source"]["variables"] for h in hits] == [logged]
        mapping = es_get(elasticsearch, f"/{sink.stream}/_mapping")
        (index,) = mapping.values()
        assert index["mappings"]["properties"]["variables"]["type"] == "flattened"
    finally:
        await sink.close()


def es_send(server: Server, method: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@servers
async def test_a_stream_made_before_correlation_ids_gets_the_field(elasticsearch: Server) -> None:
    """A data stream whose write index predates the ``correlation_id`` field: opening the sink
    adds the field to it, so records written from then on are found by correlation id."""
    url = elasticsearch_url(elasticsearch)
    sink = open_traffic_sink(url)
    assert isinstance(sink, ElasticsearchTrafficSink)
    old = mappings()
    del old["properties"]["correlation_id"]
    template = {"index_patterns": [sink.stream], "data_stream": {}, "priority": 200}
    template["template"] = {"settings": {"number_of_replicas": 0}, "mappings": old}
    es_send(elasticsearch, "PUT", f"/_index_template/{sink.stream}", template)
    earlier = {"@timestamp": T0.isoformat(), **record(0, id="cid-earlier")}
    es_send(elasticsearch, "POST", f"/{sink.stream}/_doc?refresh=true", earlier)
    await sink.open()
    try:
        await sink.write([record(1, correlation_id="cid-later"), record(2, correlation_id="x")])
        end = T0 + timedelta(minutes=3)
        found = await sink.search(SearchQuery(T0, end, correlation_id="cid-later"))
        assert [r["id"] for r in found.records] == ["req-1"]
        mapping = es_get(elasticsearch, f"/{sink.stream}/_mapping")
        (index,) = mapping.values()  # still the one backing index made before
        assert index["mappings"]["properties"]["correlation_id"]["type"] == "keyword"
    finally:
        await sink.close()


@servers
async def test_elasticsearch_lifecycle_rolls_over_and_deletes(elasticsearch: Server) -> None:
    url = elasticsearch_url(elasticsearch, rollover_age="1ms", retention="1d")
    sink = open_traffic_sink(url)
    assert isinstance(sink, ElasticsearchTrafficSink)
    await sink.open()
    try:
        assert (await sink.maintain())["rolled_over"] is False  # nothing written yet
        await sink.write([record(0)])
        await asyncio.sleep(0.05)
        assert (await sink.maintain()) == {"rolled_over": True, "deleted": []}
        await sink.write([record(1)])
        backing = es_get(elasticsearch, f"/_resolve/index/{sink.stream}")["data_streams"][0]
        assert len(backing["backing_indices"]) == 2
        assert (await sink.query(query())).total == 2
    finally:
        await sink.close()
    expiring = ElasticsearchTrafficSink.from_url(
        url.replace("retention=1d", "retention=1ms").replace("rollover_age=1ms", "rollover_age=1d")
    )
    await expiring.open()
    try:
        await asyncio.sleep(0.05)
        report = await expiring.maintain()
        assert report["rolled_over"] is False
        assert len(report["deleted"]) == 1  # the rolled-over index; the write index stays
        assert (await expiring.query(query())).total == 1
    finally:
        await expiring.close()


@pytest.mark.parametrize("listener", [closed_port, silent_listener])
async def test_an_unreachable_elasticsearch_is_unavailable(listener: Any) -> None:
    with listener() as port:
        sink = open_traffic_sink(f"elasticsearch://127.0.0.1:{port}?timeout=0.5")
        async with asyncio.timeout(15):
            with pytest.raises(StoreUnavailable):
                await sink.open()
        await sink.close()


def test_traffic_urls() -> None:
    assert isinstance(open_traffic_sink("sqlite:///tmp/t.db?retention_days=7"), SqliteTrafficSink)
    es = open_traffic_sink("elasticsearch://u:p@a:9200,b:9200?stream=s&lifecycle=ilm")
    assert isinstance(es, ElasticsearchTrafficSink)
    assert es.stream == "s"
    assert time_ms("30d") == 30 * 86_400_000
    with pytest.raises(ValueError, match="not a time value"):
        open_traffic_sink("elasticsearch://a:9200?retention=forever")
    with pytest.raises(ValueError, match="not a valid data stream name"):
        open_traffic_sink("elasticsearch://a:9200?stream=Bad")
    with pytest.raises(ValueError, match="not one of sqlite, elasticsearch"):
        open_traffic_sink("ftp://x")

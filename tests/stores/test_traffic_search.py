"""Request search, the same contract on SQLite and on Elasticsearch: filters, order, cursors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from portway.stores.traffic import SearchQuery, TrafficSink
from tests.stores.test_traffic import T0, record


def search(**fields: Any) -> SearchQuery:
    values: dict[str, Any] = {"start": T0, "end": T0 + timedelta(minutes=10)}
    values.update(fields)
    return SearchQuery(**values)


async def ids(sink: TrafficSink, **fields: Any) -> list[str]:
    return [str(r["id"]) for r in (await sink.search(search(**fields))).records]


async def test_filters_combine_and_results_are_newest_first(traffic_sink: TrafficSink) -> None:
    await traffic_sink.write(
        [
            record(
                i,
                status=[200, 404, 503][i % 3],
                consumer="acme" if i % 2 else "globex",
                total_ms=float(i * 10),
            )
            for i in range(12)
        ]
    )
    assert await ids(traffic_sink) == [f"req-{i}" for i in reversed(range(12))]
    assert await ids(traffic_sink, correlation_id="req-7") == ["req-7"]
    assert await ids(traffic_sink, api="api-1") == ["req-10", "req-7", "req-4", "req-1"]
    assert await ids(traffic_sink, consumer="acme", status_min=500, status_max=599) == [
        "req-11",
        "req-5",
    ]
    # latency strictly above the threshold
    assert await ids(traffic_sink, min_total_ms=90.0) == ["req-11", "req-10"]
    assert await ids(
        traffic_sink, start=T0 + timedelta(seconds=3), end=T0 + timedelta(seconds=5)
    ) == [
        "req-4",
        "req-3",
    ]
    assert await ids(traffic_sink, environment="staging") == []
    found = (await traffic_sink.search(search(correlation_id="req-7"))).records[0]
    assert found["status"] == 404
    assert found["consumer"] == "acme"
    assert found["timestamp"] == record(7)["timestamp"]


async def test_cursor_pages_cover_everything_once_even_with_equal_timestamps(
    traffic_sink: TrafficSink,
) -> None:
    same = (T0 + timedelta(seconds=1)).isoformat()
    await traffic_sink.write(
        [record(i, timestamp=same if i < 7 else record(i)["timestamp"]) for i in range(10)]
    )
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await traffic_sink.search(search(limit=3, cursor=cursor))
        seen.extend(str(r["id"]) for r in page.records)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 4
    assert sorted(seen) == sorted(f"req-{i}" for i in range(10))
    assert len(seen) == 10
    assert seen[:3] == ["req-9", "req-8", "req-7"]
    # a page that exactly fills the limit has no next cursor
    assert (await traffic_sink.search(search(limit=10))).next_cursor is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cursor": "not-a-cursor"}, "cursor is not one this API issued"),
        ({"cursor": "WzEsMl0"}, "cursor is not one this API issued"),  # [1,2]
        ({"limit": 0}, "limit must be between 1 and 500"),
        ({"limit": 501}, "limit must be between 1 and 500"),
        ({"end": T0}, "query end must be after its start"),
    ],
)
async def test_bad_searches_are_refused(
    traffic_sink: TrafficSink, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await traffic_sink.search(search(**fields))


async def test_a_correlation_id_finds_every_record_that_carries_it_or_is_named_by_it(
    traffic_sink: TrafficSink,
) -> None:
    """A client may send one correlation id on many requests: each has its own record id. Records
    written before 2026-12-03 have no ``correlation_id``: their id was it."""
    await traffic_sink.write(
        [
            record(1, correlation_id="cid-shared"),
            record(2, correlation_id="cid-shared"),
            record(3, correlation_id="req-3"),  # the gateway's own: the same as the id
            record(4),  # an earlier record: the id is the correlation id
            record(5, correlation_id="cid-other"),
        ]
    )
    assert await ids(traffic_sink, correlation_id="cid-shared") == ["req-2", "req-1"]
    assert await ids(traffic_sink, correlation_id="req-3") == ["req-3"]
    assert await ids(traffic_sink, correlation_id="req-4") == ["req-4"]
    assert await ids(traffic_sink, correlation_id="cid-shared", api="api-1") == ["req-1"]
    assert await ids(traffic_sink, correlation_id="cid-none") == []

"""``GET /api/v1/requests``: request search through the management API, on SQLite and on
Elasticsearch, with the role check and clear errors for bad input; and ``GET /api/v1/analytics``
over the same records (its latency percentiles per time bucket)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from portway.manager.app import create_app
from portway.manager.settings import ManagerSettings
from portway.stores.traffic import TrafficRecord, open_traffic_sink
from tests.stores.conftest import traffic_url
from tests.support.servers import closed_port

__all__ = ["traffic_url"]  # the fixture: SQLite and Elasticsearch

NOW = datetime.now(UTC).replace(microsecond=0)


def records() -> list[TrafficRecord]:
    out: list[TrafficRecord] = []
    for i in range(9):
        out.append(
            {
                "id": f"cid-{i}",
                "timestamp": (NOW - timedelta(minutes=30) + timedelta(seconds=i)).isoformat(),
                "environment": "prod",
                "api": "orders" if i % 3 else "billing",
                "consumer": "acme" if i % 2 else "globex",
                "status": [200, 201, 503][i % 3],
                "total_ms": float(10 * i),
                "method": "GET",
                "path": f"/orders/{i}",
            }
        )
    return out


def seed(url: str, batch: list[TrafficRecord] | None = None) -> None:
    async def write() -> None:
        sink = open_traffic_sink(url)
        await sink.open()
        try:
            await sink.write(records() if batch is None else batch)
        finally:
            await sink.close()

    asyncio.run(write())


@pytest.fixture
def searcher(settings: ManagerSettings, traffic_url: str) -> Iterator[TestClient]:
    seed(traffic_url)
    settings = settings.model_copy(update={"logs": traffic_url})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert settings.bootstrap_file is not None
        token = json.loads(settings.bootstrap_file.read_text())["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def ids(answer: dict[str, Any]) -> list[str]:
    return [item["id"] for item in answer["items"]]


def test_search_filters_and_pages(searcher: TestClient) -> None:
    def get(**params: Any) -> dict[str, Any]:
        response = searcher.get("/api/v1/requests", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    assert ids(get()) == [f"cid-{i}" for i in reversed(range(9))]
    assert ids(get(correlation_id="cid-4")) == ["cid-4"]
    assert get(correlation_id="cid-4")["items"][0]["path"] == "/orders/4"
    assert ids(get(api="billing")) == ["cid-6", "cid-3", "cid-0"]
    assert ids(get(status="5xx", consumer="acme")) == ["cid-5"]
    assert ids(get(status="201")) == ["cid-7", "cid-4", "cid-1"]
    assert ids(get(min_latency_ms=60)) == ["cid-8", "cid-7"]
    # the default range is the last hour: records from 30 minutes ago are in it, not in the last 10
    start = (NOW - timedelta(minutes=10)).isoformat()
    assert ids(get(start=start)) == []
    first = get(limit=4)
    assert ids(first) == ["cid-8", "cid-7", "cid-6", "cid-5"]
    second = get(limit=4, cursor=first["next_cursor"])
    third = get(limit=4, cursor=second["next_cursor"])
    assert ids(second) + ids(third) == ["cid-4", "cid-3", "cid-2", "cid-1", "cid-0"]
    assert third["next_cursor"] is None


def test_analytics_answers_latency_percentiles_per_bucket(searcher: TestClient) -> None:
    # one-second buckets from two seconds before the first record: record i (total_ms 10 * i)
    # alone in bucket i + 2, the others empty
    first = NOW - timedelta(minutes=30)
    response = searcher.get(
        "/api/v1/analytics",
        params={
            "start": (first - timedelta(seconds=2)).isoformat(),
            "end": (first + timedelta(seconds=12)).isoformat(),
            "bucket_seconds": 1,
            "environment": "prod",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 9
    # 0, 10, ..., 80 ms: p90 = 72 stays for the clients that read it
    expected = {"p50": 40.0, "p90": 72.0, "p95": 76.0, "p99": 79.2}
    assert body["latency_ms"] == pytest.approx(expected, rel=1e-12)
    buckets = body["buckets"]
    assert [b["start"] for b in buckets] == [
        (first + timedelta(seconds=s)).isoformat() for s in range(-2, 12)
    ]
    assert [b["count"] for b in buckets] == [0, 0] + [1] * 9 + [0, 0, 0]
    assert [b["latency_ms"] for b in buckets] == [None, None] + [
        {"p50": 10.0 * i, "p95": 10.0 * i, "p99": 10.0 * i} for i in range(9)
    ] + [None, None, None]


def test_a_record_comes_back_as_stored(searcher: TestClient, traffic_url: str) -> None:
    """Fields the contract does not declare (a newer worker's) and integer latencies are shown as
    the log store kept them, not refused (a 500) nor turned into 7.0."""
    record: dict[str, Any] = {
        "id": "cid-newer",
        "timestamp": (NOW - timedelta(minutes=5)).isoformat(),
        "status": 200,
        "total_ms": 7,
        "h3_stream": {"id": 3},
    }

    async def write() -> None:
        sink = open_traffic_sink(traffic_url)
        await sink.open()
        try:
            await sink.write([record])  # type: ignore[list-item]  # a field TrafficRecord lacks
        finally:
            await sink.close()

    asyncio.run(write())
    response = searcher.get("/api/v1/requests", params={"correlation_id": "cid-newer"})
    assert response.status_code == 200, response.text
    shown = response.json()["items"][0]
    assert shown["h3_stream"] == {"id": 3}
    assert '"total_ms":7,' in response.text.replace(" ", "")


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"status": "5x"}, "query.status", "status must be a status code (503) or a class (5xx)"),
        ({"status": "600"}, "query.status", "status must be a status code"),
        ({"cursor": "bogus"}, "query.cursor", "cursor is not one this API issued"),
        ({"limit": 0}, "query.limit", ""),
        ({"limit": 501}, "query.limit", ""),
        ({"min_latency_ms": -1}, "query.min_latency_ms", ""),
        (
            {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
            "query.start",
            "start must be before end",
        ),
    ],
)
def test_bad_searches_name_the_field(
    admin: TestClient, params: dict[str, Any], field: str, message: str
) -> None:
    response = admin.get("/api/v1/requests", params=params)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["correlation_id"]
    assert field in response.text
    assert message in response.text


def test_search_needs_a_reader(
    manager: TestClient, admin: TestClient, as_role: Callable[[str], dict[str, str]]
) -> None:
    anonymous = TestClient(manager.app, raise_server_exceptions=False)
    assert anonymous.get("/api/v1/requests").status_code == 401
    for role in ("viewer", "deployer", "admin"):
        assert admin.get("/api/v1/requests", headers=as_role(role)).status_code == 200
    # other spellings of the path are not a way around the check
    for path in ("/api/v1/requests/", "/api/v1//requests", "/API/V1/requests"):
        assert anonymous.get(path).status_code in (401, 404, 307)
    assert anonymous.post("/api/v1/requests").status_code in (401, 405)


def test_a_reused_correlation_id_lists_every_record_that_carries_it(
    searcher: TestClient, traffic_url: str
) -> None:
    """A client sent one correlation id on two requests: each has its own record, both are found
    by the correlation id and each by its id, and the typed answer carries ``correlation_id``."""
    moment = NOW - timedelta(minutes=20)
    seed(
        traffic_url,
        [
            {
                "id": rid,
                "correlation_id": "client-cid",
                "timestamp": (moment + timedelta(seconds=n)).isoformat(),
                "environment": "staging",
                "status": 200,
                "method": "GET",
                "path": f"/again/{n}",
            }
            for n, rid in enumerate(("r-1", "r-2"))
        ],
    )
    response = searcher.get("/api/v1/requests", params={"correlation_id": "client-cid"})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(r["id"], r["correlation_id"], r["path"]) for r in items] == [
        ("r-2", "client-cid", "/again/1"),
        ("r-1", "client-cid", "/again/0"),
    ]
    response = searcher.get("/api/v1/requests", params={"correlation_id": "r-1"})
    assert [r["path"] for r in response.json()["items"]] == ["/again/0"]


def test_an_unreachable_log_store_is_named_and_the_rest_still_answers(
    settings: ManagerSettings,
) -> None:
    """Analytics and request search on an Elasticsearch nobody listens on: 503 naming the traffic
    log store (not the configuration store, which is fine), a correlation id, and the rest of the
    management API still answers."""
    with closed_port() as port:
        url = f"elasticsearch://127.0.0.1:{port}?timeout=2&maintenance_interval=0"
        settings = settings.model_copy(update={"logs": url})
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            assert settings.bootstrap_file is not None
            token = json.loads(settings.bootstrap_file.read_text())["token"]
            client.headers["Authorization"] = f"Bearer {token}"
            for path in ("/api/v1/analytics", "/api/v1/requests"):
                response = client.get(path)
                assert response.status_code == 503, response.text
                body = response.json()
                assert body["error"] == "store_unavailable"
                assert body["message"] == "the traffic log store is unavailable"
                assert body["correlation_id"]
            assert client.get("/api/v1/apis").status_code == 200

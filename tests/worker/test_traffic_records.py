"""Traffic records answer "what happened to this request": a real worker, real backends, records
shipped to the SQLite traffic log and read back from it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from portway.stores.traffic import SearchQuery
from portway.worker.traffic_record import iso_utc
from tests.policies.helpers import consumer
from tests.support.servers import free_port
from tests.worker.support import api, backends, revision
from tests.worker.traffic_support import Setup, logged_gateway, send

KEY = "k-" + "7" * 30

POLICIES = {
    "request": [
        {"name": "key", "type": "api_key"},
        # shadow: would deny every loopback client, is recorded and never enforced
        {
            "name": "ban-loopback",
            "type": "ip_filter",
            "shadow": True,
            "config": {"deny": ["127.0.0.0/8"]},
        },
    ]
}


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Setup]:
    dead = f"http://127.0.0.1:{free_port()}"
    async with backends("live") as (live,):
        guarded = api(
            "orders",
            "/orders",
            [dead, {"url": live.url, "kind": "failover"}],
            policies=POLICIES,
            circuit_breaker={"enabled": True},
            connection={"retries": 1, "retry_delay": {"initial": 0}},
        )
        plain = api("plain", "/plain", [live.url])
        rev = revision(guarded, plain, number=7).model_copy(
            update={"consumers": [consumer("shop", api_key=KEY)]}
        )
        async with logged_gateway(tmp_path, rev, live) as setup:
            yield setup


async def test_a_retried_failed_over_request_is_recorded_region_by_region(tmp_path: Path) -> None:
    async with running(tmp_path) as setup:
        body = b'{"item": 42}'
        answer = await send(
            setup,
            "PUT",
            "/orders/1?x=1",
            "cid-retried",
            content=body,
            headers={"X-Api-Key": KEY, "X-Forwarded-For": "198.51.100.7"},
        )
        assert answer.status_code == 200, answer.text
        record = await setup.record("cid-retried")
    # who and where
    assert record["environment"] == "test"
    assert record["revision"] == 7
    assert record["worker"] == "w-1"
    assert (record["project"], record["api"]) == ("default", "orders")
    assert record["consumer"] == "shop"
    assert record["credential"] == "shop-key"
    # request from the client
    assert (record["method"], record["path"]) == ("PUT", "/orders/1")
    assert record["client_ip"] == "127.0.0.1"  # the peer is not a trusted proxy
    assert record["forwarded_for"] == "198.51.100.7"
    assert record["request_bytes"] == len(body)
    # request to the backend: two tries on the dead primary, then the failover answered
    assert record["backend"] == setup.backend.url
    assert record["backend_path"] == "/1?x=1"  # the base path stripped
    assert record["backend_request_bytes"] == len(body)
    assert record["retries"] == 2
    assert record["failovers"] == 1
    assert record["circuit"] == "closed"
    # response from the backend
    assert record["backend_status"] == 200
    assert record["backend_response_bytes"] == len(answer.content)
    assert record["connect_ms"] >= 0
    assert record["first_byte_ms"] >= 0
    assert record["backend_ms"] >= record["first_byte_ms"]
    # response to the client
    assert record["status"] == 200
    assert record["response_bytes"] > len(answer.content)  # status line and headers too
    assert record["total_ms"] >= record["backend_ms"]
    # the pipeline
    assert record["pipeline_ms"] >= 0
    assert record["policies"] == ["key"]  # shadow verdicts are apart
    assert record["shadow"] == [
        {"policy": "ban-loopback", "would": "deny", "status": 403, "code": "ip_denied"}
    ]
    assert "denied_by" not in record
    assert "error" not in record


async def test_a_denied_request_names_the_policy_and_never_reaches_a_backend(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as setup:
        answer = await send(setup, "GET", "/orders/1", "cid-denied", headers={"X-Api-Key": "no"})
        assert answer.status_code == 401
        record = await setup.record("cid-denied")
    assert record["denied_by"] == "key"
    assert record["error"] == "invalid_credentials"
    assert record["status"] == 401
    assert "consumer" not in record
    assert "credential" not in record
    for field in ("backend", "backend_status", "retries", "backend_ms", "first_byte_ms"):
        assert field not in record
    assert setup.backend.hits() == 0


async def test_a_reused_correlation_id_still_gives_each_request_its_own_record(
    tmp_path: Path,
) -> None:
    """A client chooses its X-Correlation-ID, the same one on every request if it likes (or one
    an earlier request had, to hide a request from the log): each request keeps a record."""
    async with running(tmp_path) as setup:
        for number in (1, 2, 3):
            answer = await send(setup, "GET", f"/plain/again/{number}", "cid-again")
            assert answer.status_code == 200
            assert answer.headers["x-correlation-id"] == "cid-again"
        generated = (await send(setup, "GET", "/plain/mine", None)).headers["x-correlation-id"]
        hiding = await send(setup, "GET", "/plain/hidden", generated)
        assert hiding.status_code == 200
        assert setup.stores.shipper is not None
        assert await setup.stores.shipper.flush(10.0)
        start, end = datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + timedelta(1)
        again = (
            await setup.sink.search(SearchQuery(start, end, correlation_id="cid-again"))
        ).records
        mine = (await setup.sink.search(SearchQuery(start, end, correlation_id=generated))).records
    assert sorted(r["path"] for r in again) == [
        "/plain/again/1",
        "/plain/again/2",
        "/plain/again/3",
    ]
    assert {r["correlation_id"] for r in again} == {"cid-again"}
    assert len({r["id"] for r in again}) == 3
    assert "cid-again" not in {r["id"] for r in again}  # a client's id never names a record
    # the gateway's own correlation id is the record's id; a later request reusing it is apart
    assert sorted(r["path"] for r in mine) == ["/plain/hidden", "/plain/mine"]
    assert [r["id"] for r in mine if r["path"] == "/plain/mine"] == [generated]


async def test_a_route_without_policies_is_recorded_too(tmp_path: Path) -> None:
    async with running(tmp_path) as setup:
        answer = await send(setup, "GET", "/plain/stream/100000", "cid-plain")
        assert answer.status_code == 200
        assert len(answer.content) == 100000
        record = await setup.record("cid-plain")
    assert record["api"] == "plain"
    assert record["backend_status"] == 200
    assert record["backend_response_bytes"] == 100000  # streamed through, counted on the way
    assert record["retries"] == 0
    assert record["failovers"] == 0
    assert "circuit" not in record  # no breaker configured
    assert "pipeline_ms" not in record
    assert record["request_bytes"] == 0


async def test_gateway_errors_are_recorded_with_their_code(tmp_path: Path) -> None:
    async with running(tmp_path) as setup:
        assert (await send(setup, "GET", "/nowhere", "cid-404")).status_code == 404
        missing = await setup.record("cid-404")
    assert missing["error"] == "not_found"
    assert missing["status"] == 404
    assert "api" not in missing


@pytest.mark.parametrize(
    "seconds",
    [0.0, 1.0, 1_764_748_800.0, 1_764_748_800.000001, 1_764_748_800.5, 1_764_748_859.999999],
)
def test_record_timestamps_are_the_instant_in_iso_8601_utc(seconds: float) -> None:
    stamp = iso_utc(seconds)
    assert stamp.endswith("+00:00")
    assert len(stamp) == 32  # microseconds always written
    moment = datetime.fromisoformat(stamp)
    assert moment.utcoffset() == timedelta(0)
    assert abs(moment - datetime.fromtimestamp(seconds, UTC)) <= timedelta(microseconds=1)
    # the second it falls in is formatted afresh when the second changes, in either direction
    later = seconds + 61.25
    assert iso_utc(later)[:19] == datetime.fromtimestamp(later, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert iso_utc(seconds) == stamp

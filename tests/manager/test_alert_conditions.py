"""Each condition kind on its real source: the traffic log (SQLite), the worker registry in a
real config store, certificate files, the file system, an unreachable log store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from portway.deploy.lab_ca import lab_certificates
from portway.manager.alerts import specs
from portway.manager.alerts.conditions import Observation, Sources
from portway.manager.alerts.specs import Anomaly, CertificateExpiry, Condition, DiskUsage
from portway.manager.analytics import Analytics
from portway.manager.registry import Liveness, WorkerRegistry
from portway.manager.settings import ManagerSettings
from portway.stores.config_store import ConfigStore, open_config_store
from portway.stores.traffic import TrafficRecord, TrafficSink, open_traffic_sink
from tests.support.receivers import HookReceiver
from tests.support.servers import closed_port

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


@asynccontextmanager
async def sources_for(
    tmp_path: Path,
    *,
    logs: str | None = None,
    desired: dict[str, int | None] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Sources, ConfigStore]]:
    store = open_config_store(f"sqlite://{tmp_path / 'config.db'}")
    await store.open()

    async def wanted() -> dict[str, int | None]:
        return desired or {}

    logs_url = logs or f"sqlite://{tmp_path / 'traffic.db'}"
    async with httpx.AsyncClient() as http:
        sources = Sources(
            ManagerSettings(data_dir=tmp_path, **settings),
            WorkerRegistry(store, Liveness(1.0, 3)),
            Analytics(logs_url),
            wanted,
            http,
        )
        yield sources, store
        await sources.analytics.close()
    await store.close()


async def observe(sources: Sources, condition: Condition, now: datetime) -> list[Observation]:
    found = await sources.observe("rule", condition, now)
    assert found is not None
    return found


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[TrafficSink]:
    opened = open_traffic_sink(f"sqlite://{tmp_path / 'traffic.db'}")
    await opened.open()
    yield opened
    await opened.close()


def records(
    at: datetime, count: int, status: int = 200, api: str = "orders", total_ms: float = 5.0
) -> list[TrafficRecord]:
    return [
        TrafficRecord(
            id=f"{api}-{at.timestamp()}-{status}-{total_ms}-{i}",
            timestamp=at.isoformat(),
            environment="dev",
            api=api,
            status=status,
            total_ms=total_ms,
        )
        for i in range(count)
    ]


async def test_error_rate_latency_and_traffic_zero(tmp_path: Path, sink: TrafficSink) -> None:
    now = datetime.now(UTC)
    await sink.write(
        records(now - timedelta(seconds=30), 18)
        + records(now - timedelta(seconds=20), 2, 503, total_ms=900.0)
    )
    async with sources_for(tmp_path) as (sources, _):
        rate = specs.ErrorRate(kind="error_rate", api="orders", window_seconds=60, threshold=0.05)
        [obs] = await observe(sources, rate, now)
        assert obs.bad is True
        assert obs.value == pytest.approx(0.1)
        [obs] = await observe(sources, rate.model_copy(update={"threshold": 0.2}), now)
        assert obs.bad is False
        [obs] = await observe(sources, rate.model_copy(update={"min_requests": 50}), now)
        assert obs.bad is False  # no verdict on 20 requests
        slow = specs.LatencyP99(
            kind="latency_p99", api="orders", window_seconds=60, threshold_ms=500
        )
        [obs] = await observe(sources, slow, now)
        assert obs.bad is True
        assert obs.value is not None
        assert obs.value > 500
        [obs] = await observe(sources, slow.model_copy(update={"threshold_ms": 1000.0}), now)
        assert obs.bad is False
        [idle] = await observe(sources, specs.TrafficZero(kind="traffic_zero", api="billing"), now)
        [busy] = await observe(sources, specs.TrafficZero(kind="traffic_zero", api="orders"), now)
        assert (idle.subject, idle.bad, busy.bad) == ("*/billing", True, False)


async def test_anomaly_band_on_request_rate(tmp_path: Path, sink: TrafficSink) -> None:
    rule = Anomaly(
        kind="anomaly",
        metric="request_rate",
        api="orders",
        window_seconds=60,
        warmup=5,
        deviations=3.0,
        alpha=0.2,
    )
    verdicts = []
    async with sources_for(tmp_path) as (sources, _):
        for minute, count in enumerate([20, 24, 19, 22, 18, 23, 21, 80]):
            end = T0 + timedelta(minutes=minute + 1)
            await sink.write(records(end - timedelta(seconds=30), count))
            [obs] = await observe(sources, rule, end)
            verdicts.append(obs.bad)
    assert verdicts == [False] * 7 + [True]


async def worker(store: ConfigStore, wid: str, last_report: datetime, **data: Any) -> None:
    await store.insert(
        "workers",
        wid,
        {"environment": "dev", "address": "http://w", "last_report": last_report.isoformat()}
        | data,
    )


async def test_worker_conditions_on_the_registry(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    async with sources_for(tmp_path, desired={"dev": 7}) as (sources, store):
        await worker(store, "fresh", now, served_revision=7)
        await worker(store, "silent", now - timedelta(minutes=5), served_revision=7)
        await worker(
            store,
            "lagging",
            now,
            served_revision=6,
            desired_at=(now - timedelta(seconds=120)).isoformat(),
            counters={"traffic_log": {"spooled": 5000}},
        )
        down = {
            o.subject: o.bad
            for o in await observe(sources, specs.WorkerDown(kind="worker_down"), now)
        }
        assert down == {"fresh": False, "silent": True, "lagging": False}
        lag = specs.WorkerNotConverged(kind="worker_not_converged", seconds=60)
        lagging = {o.subject: o.bad for o in await observe(sources, lag, now)}
        assert lagging == {"fresh": False, "silent": False, "lagging": True}
        patient = lag.model_copy(update={"seconds": 300.0})
        assert not any(o.bad for o in await observe(sources, patient, now))
        spool = specs.SpoolBacklog(kind="spool_backlog", max_records=1000)
        assert {o.subject for o in await observe(sources, spool, now) if o.bad} == {"lagging"}
        other = specs.WorkerDown(kind="worker_down", environment="prod")
        assert await observe(sources, other, now) == []


async def test_certificates_and_disk(tmp_path: Path) -> None:
    certs = lab_certificates(tmp_path / "tls", ["localhost"])  # valid for 397 days
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    now = datetime.now(UTC)
    async with sources_for(tmp_path, tls_cert_file=certs.cert_file, cluster_ca_file=broken) as (
        sources,
        _,
    ):
        soon = await observe(sources, CertificateExpiry(kind="certificate_expiry", days=30), now)
        by_file: dict[str, list[bool]] = {}
        for obs in soon:
            by_file.setdefault(obs.subject.partition(":")[0], []).append(obs.bad)
        assert by_file == {str(certs.cert_file): [False, False], str(broken): [True]}
        late = await observe(sources, CertificateExpiry(kind="certificate_expiry", days=400), now)
        # the server certificate (397 days) fires; the lab CA after it in the chain lives longer
        assert [o.bad for o in late if o.subject.startswith(str(certs.cert_file))] == [True, False]
        [full] = await observe(sources, DiskUsage(kind="disk_usage", max_percent=0.001), now)
        [room] = await observe(sources, DiskUsage(kind="disk_usage", max_percent=100), now)
        assert (full.bad, room.bad) == (True, False)


async def test_unreachable_log_store(tmp_path: Path) -> None:
    condition = specs.LogStoreUnreachable(kind="log_store_unreachable")
    with closed_port() as port:
        url = f"elasticsearch://127.0.0.1:{port}?request_timeout=2"
        async with sources_for(tmp_path / "down", logs=url) as (sources, _):
            [obs] = await observe(sources, condition, datetime.now(UTC))
            assert obs.bad is True
            assert "fails" in obs.summary
    async with sources_for(tmp_path) as (sources, _):
        [obs] = await observe(sources, condition, datetime.now(UTC))
        assert obs.bad is False


async def test_uptime_assertions_and_retries(tmp_path: Path) -> None:
    target = HookReceiver()  # GET answers {"status": "ok", "checks": {"db": "up"}}
    try:
        async with sources_for(tmp_path) as (sources, _):
            now = datetime.now(UTC)

            async def check(**fields: Any) -> Observation:
                condition = specs.Uptime(kind="uptime", url=f"{target.url}/health", **fields)
                [obs] = await observe(sources, condition, now)
                return obs

            assert (await check(body_jsonpath="$.checks.db", body_equals="up")).bad is False
            wrong = await check(body_jsonpath="$.checks.db", body_equals="down")
            assert wrong.summary.endswith("$.checks.db is 'up', expected 'down'")
            missing = await check(body_jsonpath="$.checks.cache")
            assert missing.summary.endswith("$.checks.cache matches nothing")
            target.delay = 0.3
            slow = await check(max_latency_ms=100, retries=0)
            assert slow.bad is True
            assert "limit 100 ms" in slow.summary
            target.delay = 0.0
            target.status = 503
            before = target.gets
            failing = await check(retries=2, interval_seconds=1)
            assert target.gets - before == 3  # the first attempt and two retries
            assert failing.bad is True
            assert "answered 503" in failing.summary
            assert (
                await sources.observe(
                    "rule",
                    specs.Uptime(
                        kind="uptime", url=f"{target.url}/health", retries=2, interval_seconds=1
                    ),
                    now,
                )
                is None
            )  # not due again within its interval
    finally:
        target.close()

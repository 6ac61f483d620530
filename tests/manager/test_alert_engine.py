"""The alert state machine on a real config store (SQLite and MongoDB/FerretDB): hysteresis
(flap suppression), silences, replicas racing on one transition, and the traffic conditions on a
real SQLite traffic log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from portway.errors import Conflict
from portway.manager.alerts.conditions import Observation, Sources
from portway.manager.alerts.engine import Engine
from portway.manager.alerts.specs import Anomaly, Condition, ErrorRate, RuleSpec, TrafficZero
from portway.manager.analytics import Analytics
from portway.manager.registry import Liveness, WorkerRegistry
from portway.manager.settings import ManagerSettings
from portway.stores.config_store import ConfigStore
from portway.stores.traffic import TrafficRecord, open_traffic_sink
from tests.stores.conftest import config_store, config_url  # noqa: F401 - the fixtures

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


class Script:
    """Observations chosen by the test, one list per evaluation (the conditions are tested below
    on real sources)."""

    def __init__(self) -> None:
        self.now: list[Observation] = []

    def set(self, **bad: bool) -> None:
        self.now = [
            Observation(s, b, None, f"{s} {'bad' if b else 'good'}") for s, b in bad.items()
        ]

    async def observe(
        self, rule: str, condition: Condition, now: datetime
    ) -> list[Observation] | None:
        return list(self.now)


async def setup(store: ConfigStore, **rule: Any) -> RuleSpec:
    await store.insert(
        "alert_channels",
        "mail",
        {"name": "mail", "send_resolved": True, "target": {"kind": "email", "to": ["a@b.c"]}},
    )
    spec = RuleSpec.model_validate(
        {"name": "r", "condition": {"kind": "worker_down"}, "channels": ["mail"], **rule}
    )
    await store.insert("alert_rules", "r", spec.model_dump(mode="json"))
    return spec


async def events(store: ConfigStore) -> list[tuple[str, str]]:
    docs = sorted(await store.find("alert_events"), key=lambda d: d.data["at"])
    return [(d.data["subject"], d.data["status"]) for d in docs]


async def test_hysteresis_suppresses_flapping(config_store: ConfigStore) -> None:  # noqa: F811
    await setup(config_store, for_seconds=10, resolve_after_seconds=30)
    script = Script()
    engine = Engine(config_store, script)

    async def at(seconds: int, bad: bool) -> None:
        script.set(w1=bad)
        await engine.evaluate_all(T0 + timedelta(seconds=seconds))

    await at(0, True)  # pending
    await at(5, True)
    await at(6, False)  # cleared before for_seconds: never fires
    assert await events(config_store) == []
    await at(7, True)
    await at(17, True)  # bad for 10 s: fires
    assert await events(config_store) == [("w1", "firing")]
    for second, bad in ((18, False), (25, True), (26, False), (40, False), (55, False)):
        await at(second, bad)  # flapping: each clear spell is shorter than 30 s
    assert await events(config_store) == [("w1", "firing")]
    await at(56, False)  # clear for 30 s since 26
    assert await events(config_store) == [("w1", "firing"), ("w1", "resolved")]
    deliveries = await config_store.find("alert_deliveries")
    assert sorted(d.data["channel"] for d in deliveries) == ["mail", "mail"]


async def test_a_silence_records_the_event_without_notices(config_store: ConfigStore) -> None:  # noqa: F811
    await setup(config_store)
    await config_store.insert(
        "alert_silences",
        "s1",
        {
            "rule": "r",
            "subject_contains": "w2",
            "starts_at": T0.isoformat(),
            "ends_at": (T0 + timedelta(hours=1)).isoformat(),
        },
    )
    script = Script()
    engine = Engine(config_store, script)
    script.set(w1=True, w2=True)
    await engine.evaluate_all(T0)
    events_ = {d.data["subject"]: d.data for d in await config_store.find("alert_events")}
    assert events_["w2"]["silenced_by"] == ["s1"]
    assert events_["w2"]["channels"] == []
    assert events_["w1"]["silenced_by"] == []
    [delivery] = await config_store.find("alert_deliveries")
    assert delivery.data["event"].endswith("-1")
    assert delivery.id.endswith(".mail")
    # w2 resolves after the silence ended: its firing notice never went out, so neither does this
    script.set(w1=True, w2=False)
    await engine.evaluate_all(T0 + timedelta(hours=2))
    assert len(await config_store.find("alert_deliveries")) == 1


async def test_replicas_on_one_store_record_a_transition_once(config_store: ConfigStore) -> None:  # noqa: F811
    await setup(config_store, for_seconds=5)
    script = Script()
    one, two = Engine(config_store, script), Engine(config_store, script)
    script.set(w1=True)
    await one.evaluate_all(T0)
    await two.evaluate_all(T0 + timedelta(seconds=1))
    assert await events(config_store) == []
    # both see the same stored state and both decide to fire
    rule = RuleSpec.model_validate((await config_store.get("alert_rules", "r")).data)  # type: ignore[union-attr]
    [state] = await config_store.find("alert_states")
    later = T0 + timedelta(seconds=6)
    await one._step(rule, state, script.now[0], [], later)
    with pytest.raises(Conflict):
        await two._step(rule, state, script.now[0], [], later + timedelta(seconds=1))
    assert await events(config_store) == [("w1", "firing")]
    assert len(await config_store.find("alert_deliveries")) == 1


# --- conditions on a real traffic log ------------------------------------------------------------


@pytest.fixture
async def traffic(tmp_path: Path) -> AsyncIterator[tuple[Sources, Any]]:
    url = f"sqlite://{tmp_path / 'traffic.db'}"
    sink = open_traffic_sink(url)
    await sink.open()
    settings = ManagerSettings(data_dir=tmp_path)
    store: Any = None
    async with httpx.AsyncClient() as http:

        async def desired() -> dict[str, int | None]:
            return {}

        sources = Sources(
            settings,
            WorkerRegistry(store, Liveness(1.0, 3)),
            Analytics(url),
            desired,
            http,
        )
        yield sources, sink
        await sources.analytics.close()
    await sink.close()


def records(
    at: datetime, count: int, status: int = 200, api: str = "orders"
) -> list[TrafficRecord]:
    return [
        TrafficRecord(
            id=f"{api}-{at.timestamp()}-{status}-{i}",
            timestamp=at.isoformat(),
            environment="dev",
            api=api,
            status=status,
            total_ms=5.0,
        )
        for i in range(count)
    ]


async def test_error_rate_and_traffic_zero_on_real_records(traffic: tuple[Sources, Any]) -> None:
    sources, sink = traffic
    now = datetime.now(UTC)
    await sink.write(
        records(now - timedelta(seconds=30), 18) + records(now - timedelta(seconds=20), 2, 503)
    )
    rate = ErrorRate(kind="error_rate", api="orders", window_seconds=60, threshold=0.05)
    [obs] = await sources.observe("e", rate, now)  # type: ignore[misc]
    assert obs.bad is True
    assert obs.value == pytest.approx(0.1)
    higher = rate.model_copy(update={"threshold": 0.2})
    [obs] = await sources.observe("e", higher, now)  # type: ignore[misc]
    assert obs.bad is False
    too_few = rate.model_copy(update={"min_requests": 50})
    [obs] = await sources.observe("e", too_few, now)  # type: ignore[misc]
    assert obs.bad is False  # no verdict on 20 requests
    [idle] = await sources.observe("z", TrafficZero(kind="traffic_zero", api="billing"), now)  # type: ignore[misc]
    [busy] = await sources.observe("z", TrafficZero(kind="traffic_zero", api="orders"), now)  # type: ignore[misc]
    assert (idle.subject, idle.bad, busy.bad) == ("*/billing", True, False)


async def test_anomaly_band_on_request_rate(traffic: tuple[Sources, Any]) -> None:
    sources, sink = traffic
    rule = Anomaly(
        kind="anomaly",
        metric="request_rate",
        api="orders",
        window_seconds=60,
        warmup=5,
        deviations=3.0,
        alpha=0.3,
    )
    verdicts = []
    for minute, count in enumerate([20, 24, 19, 22, 18, 23, 21, 80]):
        end = T0 + timedelta(minutes=minute + 1)
        await sink.write(records(end - timedelta(seconds=30), count))
        [obs] = await sources.observe("a", rule, end)  # type: ignore[misc]
        verdicts.append(obs.bad)
    assert verdicts == [False] * 7 + [True]

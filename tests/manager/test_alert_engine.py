"""The alert state machine on a real config store (SQLite and MongoDB/FerretDB): hysteresis
(flap suppression), silences, replicas racing on one transition, and the traffic conditions on a
real SQLite traffic log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from portway.errors import Conflict
from portway.manager.alerts.conditions import Observation
from portway.manager.alerts.engine import Engine
from portway.manager.alerts.specs import Condition, RuleSpec
from portway.stores.config_store import ConfigStore
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

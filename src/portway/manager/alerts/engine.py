"""The alert state machine: per rule and subject, ``ok → pending → firing → ok``.

An observation that is bad starts ``pending`` (its ``bad_since`` stored); the alert fires once it
has been bad for the rule's ``for_seconds`` and resolves once it has been clear for
``resolve_after_seconds`` — that hysteresis is the flap suppression. Each transition records one
event and, unless a silence covers it, one delivery per channel (the outbox sends them).

Several manager replicas may evaluate at once; nothing is sent twice because every id derives from
stored state: the event id is built from the state's key, its transition number and the stored
moment the condition changed, and the delivery id from the event id and the channel. A replica that
computes the same transition finds the ids taken (``DuplicateKey``) and its state write refused
(``StaleVersion``). A manager that dies mid-transition repeats it identically after a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from portway.errors import Conflict, DuplicateKey, StoreError
from portway.manager.alerts.conditions import Observation
from portway.manager.alerts.specs import Condition, RuleSpec
from portway.stores.config_store import ConfigStore, Document

log = logging.getLogger("portway.manager.alerts")

OK, PENDING, FIRING = "ok", "pending", "firing"


def state_key(rule: str, subject: str) -> str:
    digest = hashlib.sha256(f"{rule}\0{subject}".encode()).hexdigest()[:24]
    return f"{rule}.{digest}"


def _stamp(moment: str) -> str:
    return datetime.fromisoformat(moment).strftime("%Y%m%dT%H%M%S%f")


def silenced_by(silences: Sequence[Document], rule: str, subject: str, now: datetime) -> list[str]:
    found = []
    for doc in silences:
        s = doc.data
        if s.get("rule") not in (None, rule):
            continue
        if s.get("subject_contains") and s["subject_contains"] not in subject:
            continue
        starts = datetime.fromisoformat(s["starts_at"])
        if starts <= now < datetime.fromisoformat(s["ends_at"]):
            found.append(doc.id)
    return found


class Observer(Protocol):
    async def observe(
        self, rule: str, condition: Condition, now: datetime
    ) -> list[Observation] | None: ...


class Engine:
    def __init__(self, store: ConfigStore, sources: Observer) -> None:
        self.store = store
        self.sources = sources

    async def evaluate_all(self, now: datetime | None = None) -> int:
        """Evaluate every enabled rule once; the number of events recorded."""
        moment = now or datetime.now(UTC)
        silences = await self.store.find("alert_silences")
        events = 0
        for doc in await self.store.find("alert_rules"):
            rule = RuleSpec.model_validate(doc.data, strict=False)
            if not rule.enabled:
                continue
            try:
                events += await self.evaluate(rule, silences, moment)
            except (StoreError, OSError) as exc:
                log.warning("alert rule %s not evaluated: %s", rule.name, exc)
            except Exception:  # one faulty rule must not stop the others
                log.exception("alert rule %s not evaluated", rule.name)
        return events

    async def evaluate(self, rule: RuleSpec, silences: Sequence[Document], now: datetime) -> int:
        observations = await self.sources.observe(rule.name, rule.condition, now)
        if observations is None:
            return 0
        states = {
            d.data["subject"]: d for d in await self.store.find("alert_states", {"rule": rule.name})
        }
        seen = {o.subject for o in observations}
        gone = [
            Observation(subject, False, None, f"{subject} is no longer observed")
            for subject, doc in states.items()
            if subject not in seen and doc.data["status"] != OK
        ]
        events = 0
        for obs in [*observations, *gone]:
            try:
                events += await self._step(rule, states.get(obs.subject), obs, silences, now)
            except Conflict:
                continue  # another replica moved this alert on; it recorded the transition
        return events

    async def _step(
        self,
        rule: RuleSpec,
        doc: Document | None,
        obs: Observation,
        silences: Sequence[Document],
        now: datetime,
    ) -> int:
        at = now.isoformat()
        if doc is None:
            if not obs.bad:
                return 0
            # persist the start first, so every id below derives from stored data
            first = {
                "rule": rule.name,
                "subject": obs.subject,
                "status": PENDING,
                "transitions": 0,
                "bad_since": at,
            }
            doc = await self.store.insert("alert_states", state_key(rule.name, obs.subject), first)
        old = doc.data
        new: dict[str, Any] = {**old, "value": obs.value, "summary": obs.summary}
        status = old["status"]
        transition: str | None = None
        if obs.bad:
            new.pop("good_since", None)
            new["bad_since"] = old.get("bad_since") or at
            held = (now - datetime.fromisoformat(new["bad_since"])).total_seconds()
            if status != FIRING and held >= rule.for_seconds:
                transition, new["status"], new["fired_at"] = FIRING, FIRING, at
            elif status == OK:
                new["status"] = PENDING
        else:
            new.pop("bad_since", None)
            new["good_since"] = old.get("good_since") or at
            clear = (now - datetime.fromisoformat(new["good_since"])).total_seconds()
            if status == FIRING and clear >= rule.resolve_after_seconds:
                transition, new["status"] = "resolved", OK
            elif status == PENDING:
                new["status"] = OK
        unchanged = all(new.get(k) == old.get(k) for k in ("status", "bad_since", "good_since"))
        if transition is None and unchanged:
            return 0
        if transition is not None:
            new["transitions"] = old["transitions"] + 1
            cause = new["bad_since"] if transition == FIRING else new["good_since"]
            event_id = f"{_stamp(cause)}-{doc.id}-{new['transitions']}"
            notified = old.get("notified", []) if transition == "resolved" else rule.channels
            sent = await self._record(rule, event_id, transition, obs, notified, silences, now)
            new["last_event"] = event_id
            new["notified"] = sent if transition == FIRING else []
        await self.store.replace("alert_states", doc.id, new, expected_version=doc.version)
        return 1 if transition else 0

    async def _record(
        self,
        rule: RuleSpec,
        event_id: str,
        status: str,
        obs: Observation,
        candidates: Sequence[str],
        silences: Sequence[Document],
        now: datetime,
    ) -> list[str]:
        """Record the event and its deliveries; the channels notified. A resolved notice goes
        only to the channels the firing notice reached (and that want resolved notices)."""
        muted = silenced_by(silences, rule.name, obs.subject, now)
        channels = {d.id: d.data for d in await self.store.find("alert_channels")}
        names = [
            name
            for name in candidates
            if name in channels and (status == FIRING or channels[name].get("send_resolved"))
        ]
        event = {
            "rule": rule.name,
            "subject": obs.subject,
            "status": status,
            "severity": rule.severity,
            "summary": obs.summary,
            "value": obs.value,
            "at": now.isoformat(),
            "silenced_by": muted,
            "channels": [] if muted else names,
        }
        # DuplicateKey: recorded by another replica, or by this manager before a restart
        with contextlib.suppress(DuplicateKey):
            await self.store.insert("alert_events", event_id, event)
        if muted:
            log.info("alert %s %s for %s silenced by %s", rule.name, status, obs.subject, muted)
            return []
        for name in names:
            try:
                await self.store.insert(
                    "alert_deliveries",
                    f"{event_id}.{name}",
                    {
                        "event": event_id,
                        "channel": name,
                        "state": "pending",
                        "attempts": 0,
                        "created_at": now.isoformat(),
                        "next_attempt_at": now.isoformat(),
                        "last_error": None,
                    },
                )
            except DuplicateKey:
                continue
        log.warning("alert %s %s: %s", rule.name, status, obs.summary)
        return names

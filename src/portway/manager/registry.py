"""The worker registry: what each worker reported, what it should serve, whether it is alive.

Two signals: the worker's own periodic status reports (stored, so every manager replica sees them)
and the manager's health probes of each worker (kept in this process). A worker whose reports stop
turns ``down`` after ``down_after`` intervals and is never shown with its last data as if alive; a
worker that reports but does not answer the manager's probes for ``down_after`` probes in a row is
``unreachable`` (pushes will fail; it still converges by pulling).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from portway.cluster.messages import StatusReport
from portway.config.management.deployments import WorkerPolicyCounters
from portway.errors import Conflict, NotFound
from portway.manager.worker_client import WorkerClient
from portway.stores.config_store import ConfigStore, Document


@dataclass(frozen=True, slots=True)
class Liveness:
    report_interval: float
    down_after: int

    def state(self, last_report: str | None, now: datetime) -> str:
        if last_report is None:
            return "unknown"
        age = now - datetime.fromisoformat(last_report)
        if age > timedelta(seconds=self.report_interval * self.down_after):
            return "down"
        return "up"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    at: datetime
    failures: int
    last_ok_at: datetime | None
    error: str | None

    def view(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "at": self.at.isoformat(),
            "consecutive_failures": self.failures,
            "last_ok_at": self.last_ok_at.isoformat() if self.last_ok_at else None,
            "error": self.error,
        }


class WorkerRegistry:
    def __init__(self, store: ConfigStore, liveness: Liveness) -> None:
        self.store = store
        self.liveness = liveness
        self.probes: dict[str, ProbeResult] = {}

    async def report(self, worker_id: str, report: StatusReport, desired: int | None) -> None:
        """Record a status report (registration on first contact); retried on a racing write."""
        now = datetime.now(UTC).isoformat()
        for _ in range(5):
            doc = await self.store.get("workers", worker_id)
            old = doc.data if doc else {}
            served = report.served_revision
            if _overtaken(old, report, desired):
                # sent before the push this worker already acknowledged: keep the newer revision
                served = old["served_revision"]
            data: dict[str, Any] = {
                **old,
                "environment": report.environment,
                "address": report.address,
                "served_revision": served,
                "healthy": report.healthy,
                "started_at": report.started_at.isoformat(),
                "counters": report.counters,
                "last_report": now,
            }
            data.setdefault("registered_at", now)
            converged = served is not None and served == desired
            if converged and (old.get("served_revision") != desired or "converged_at" not in old):
                data["converged_at"] = now
            try:
                if doc is None:
                    await self.store.insert("workers", worker_id, data)
                else:
                    await self.store.replace(
                        "workers", worker_id, data, expected_version=doc.version
                    )
                return
            except Conflict:
                continue

    async def mark_served(self, worker_id: str, revision: int, at: datetime) -> None:
        """Record what a worker acknowledged to a push, before its next status report arrives."""
        for _ in range(5):
            doc = await self.store.get("workers", worker_id)
            if doc is None:
                return
            data = {**doc.data, "served_revision": revision}
            if revision == doc.data.get("desired_revision") and (
                doc.data.get("served_revision") != revision or "converged_at" not in doc.data
            ):
                data["converged_at"] = at.isoformat()
            try:
                await self.store.replace("workers", worker_id, data, expected_version=doc.version)
                return
            except Conflict:
                continue

    async def mark_desired(self, worker_id: str, revision: int, at: datetime) -> None:
        for _ in range(5):
            doc = await self.store.get("workers", worker_id)
            if doc is None:
                return
            data = {**doc.data, "desired_revision": revision, "desired_at": at.isoformat()}
            try:
                await self.store.replace("workers", worker_id, data, expected_version=doc.version)
                return
            except Conflict:
                continue

    async def workers(self, environment: str | None = None) -> list[Document]:
        return await self.store.find(
            "workers", {"environment": environment} if environment else None
        )

    async def forget(self, worker_id: str) -> Document:
        """Remove a decommissioned worker (it registers again if it ever reports)."""
        doc = await self.store.get("workers", worker_id)
        if doc is None:
            raise NotFound("workers", worker_id)
        await self.store.delete("workers", worker_id)
        self.probes.pop(worker_id, None)
        return doc

    # probes -------------------------------------------------------------------------------
    def record_probe(self, worker_id: str, ok: bool, error: str | None, at: datetime) -> None:
        previous = self.probes.get(worker_id)
        failures = 0 if ok else (previous.failures if previous else 0) + 1
        last_ok = at if ok else (previous.last_ok_at if previous else None)
        self.probes[worker_id] = ProbeResult(ok, at, failures, last_ok, None if ok else error)

    async def probe_all(self, client: WorkerClient) -> None:
        """Probe every registered worker once, concurrently."""
        docs = await self.workers()

        async def one(doc: Document) -> None:
            address = doc.data.get("address")
            if not address:
                return
            answer = await client.probe_status(str(address))
            self.record_probe(doc.id, answer.ok, answer.error, datetime.now(UTC))

        await asyncio.gather(*(one(d) for d in docs))
        known = {d.id for d in docs}
        for gone in set(self.probes) - known:
            self.probes.pop(gone, None)

    def state(self, doc: Document, now: datetime) -> str:
        state = self.liveness.state(doc.data.get("last_report"), now)
        probe = self.probes.get(doc.id)
        if state == "up" and probe is not None and probe.failures >= self.liveness.down_after:
            return "unreachable"
        return state

    def view(
        self, doc: Document, desired: int | None, now: datetime | None = None
    ) -> dict[str, Any]:
        """A registry row; a worker that stopped reporting is shown ``down``, not as it last was."""
        data = doc.data
        moment = now or datetime.now(UTC)
        state = self.state(doc, moment)
        alive = state in ("up", "unreachable")
        probe = self.probes.get(doc.id)
        converge_seconds = None
        if data.get("converged_at") and data.get("desired_at"):
            delta = datetime.fromisoformat(data["converged_at"]) - datetime.fromisoformat(
                data["desired_at"]
            )
            converge_seconds = max(delta.total_seconds(), 0.0)
        return {
            "id": doc.id,
            "environment": data.get("environment"),
            "address": data.get("address"),
            "state": state,
            "served_revision": data.get("served_revision") if alive else None,
            "last_served_revision": data.get("served_revision"),
            "desired_revision": desired,
            "in_sync": alive and data.get("served_revision") == desired,
            "converge_seconds": converge_seconds,
            "last_report": data.get("last_report"),
            "healthy": bool(data.get("healthy")) and state == "up" and (probe is None or probe.ok),
            "probe": probe.view() if probe else None,
            "started_at": data.get("started_at"),
            "registered_at": data.get("registered_at"),
            "policy_counters": _policy_counters(data.get("counters")),
        }


def _policy_counters(counters: Any) -> list[dict[str, Any]]:
    """The per-policy rows of a status report's counters, with the fields this manager knows (a
    row that lacks one, or is not an object, is left out rather than failing the workers list)."""
    rows = counters.get("policies") if isinstance(counters, dict) else None
    if not isinstance(rows, list):
        return []
    valid: list[dict[str, Any]] = []
    for row in rows:
        try:
            known = {name: row.get(name) for name in WorkerPolicyCounters.model_fields}
            valid.append(WorkerPolicyCounters.model_validate(known).model_dump())
        except (AttributeError, ValidationError):
            continue
    return valid


def _overtaken(old: dict[str, Any], report: StatusReport, desired: int | None) -> bool:
    """A report from the same worker process naming an older revision (or none) than one it
    acknowledged.

    Revision numbers only grow within an environment, so within one process (same start time) a
    lower number is a report that was in flight while a push was installed.
    """
    recorded = old.get("served_revision")
    return (
        recorded is not None
        and old.get("started_at") == report.started_at.isoformat()
        and (report.served_revision or 0) < recorded <= (desired or 0)
    )

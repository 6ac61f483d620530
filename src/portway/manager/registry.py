"""The worker registry: what each worker reported, what it should serve, whether it is alive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from portway.cluster.messages import StatusReport
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


class WorkerRegistry:
    def __init__(self, store: ConfigStore, liveness: Liveness) -> None:
        self.store = store
        self.liveness = liveness

    async def report(self, worker_id: str, report: StatusReport, desired: int | None) -> None:
        """Record a status report (registration on first contact); retried on a racing write."""
        now = datetime.now(UTC).isoformat()
        for _ in range(5):
            doc = await self.store.get("workers", worker_id)
            old = doc.data if doc else {}
            data: dict[str, Any] = {
                **old,
                "environment": report.environment,
                "address": report.address,
                "served_revision": report.served_revision,
                "healthy": report.healthy,
                "started_at": report.started_at.isoformat(),
                "counters": report.counters,
                "last_report": now,
            }
            data.setdefault("registered_at", now)
            if report.served_revision is not None and report.served_revision == desired:
                if old.get("served_revision") != desired or "converged_at" not in old:
                    data["converged_at"] = now
            from portway.errors import Conflict

            try:
                if doc is None:
                    await self.store.insert("workers", worker_id, data)
                else:
                    await self.store.replace("workers", worker_id, data, expected_version=doc.version)
                return
            except Conflict:
                continue

    async def mark_desired(self, worker_id: str, revision: int, at: datetime) -> None:
        from portway.errors import Conflict

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
        return await self.store.find("workers", {"environment": environment} if environment else None)

    def view(self, doc: Document, desired: int | None, now: datetime | None = None) -> dict[str, Any]:
        """A registry row; a worker that stopped reporting is shown ``down``, not as it last was."""
        data = doc.data
        state = self.liveness.state(data.get("last_report"), now or datetime.now(UTC))
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
            "served_revision": data.get("served_revision") if state == "up" else None,
            "last_served_revision": data.get("served_revision"),
            "desired_revision": desired,
            "in_sync": state == "up" and data.get("served_revision") == desired,
            "converge_seconds": converge_seconds,
            "last_report": data.get("last_report"),
            "healthy": bool(data.get("healthy")) and state == "up",
            "started_at": data.get("started_at"),
        }

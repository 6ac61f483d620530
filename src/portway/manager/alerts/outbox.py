"""The notification outbox: deliveries live in the config store until a channel accepted them.

A due delivery is first *claimed* (its attempt counted and a lease written with the version the
sender read), so of several manager replicas only one sends it; then sent; then marked
``delivered`` — or given a next attempt after an exponential backoff, and ``failed`` after
``alert_max_attempts``. A manager that restarts picks up every pending delivery whose lease ran
out, so a notice queued while the relay was down goes out once it is back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from portway.errors import Conflict
from portway.manager.alerts.notify import DeliveryFailed, Notifier
from portway.manager.settings import ManagerSettings
from portway.stores.config_store import ConfigStore, Document

log = logging.getLogger("portway.manager.alerts")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
CONCURRENCY = 8


def backoff(settings: ManagerSettings, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: base, 2 base, 4 base… capped at the maximum."""
    delay = settings.alert_retry_base * 2.0 ** max(attempts - 1, 0)
    return float(min(delay, settings.alert_retry_max))


class Outbox:
    def __init__(self, store: ConfigStore, notifier: Notifier, settings: ManagerSettings) -> None:
        self.store = store
        self.notifier = notifier
        self.settings = settings
        self._lease = timedelta(seconds=(settings.smtp.timeout if settings.smtp else 30.0) + 30)

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Attempt every due delivery once; the number delivered."""
        moment = now or datetime.now(UTC)
        due = [
            d
            for d in await self.store.find("alert_deliveries", {"state": PENDING})
            if datetime.fromisoformat(d.data["next_attempt_at"]) <= moment
            and (
                d.data.get("claimed_until") is None
                or datetime.fromisoformat(d.data["claimed_until"]) <= moment
            )
        ]
        due.sort(key=lambda d: (d.data["created_at"], d.id))
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(doc: Document) -> bool:
            async with gate:
                return await self._attempt(doc, moment)

        return sum(await asyncio.gather(*(one(d) for d in due)))

    async def _attempt(self, doc: Document, now: datetime) -> bool:
        attempts = int(doc.data["attempts"]) + 1
        claim = {**doc.data, "attempts": attempts, "claimed_until": (now + self._lease).isoformat()}
        try:
            claimed = await self.store.replace(
                "alert_deliveries", doc.id, claim, expected_version=doc.version
            )
        except Conflict:
            return False  # another replica has it
        outcome: dict[str, Any] = {"claimed_until": None, "last_attempt_at": now.isoformat()}
        try:
            await self._send(doc)
        except DeliveryFailed as exc:
            give_up = attempts >= self.settings.alert_max_attempts
            retry_at = now + timedelta(seconds=backoff(self.settings, attempts))
            outcome |= {
                "state": FAILED if give_up else PENDING,
                "last_error": str(exc)[:500],
                "next_attempt_at": retry_at.isoformat(),
            }
            log.warning("alert delivery %s attempt %d failed: %s", doc.id, attempts, exc)
        else:
            outcome |= {"state": DELIVERED, "delivered_at": datetime.now(UTC).isoformat()}
        await self.store.replace(
            "alert_deliveries", doc.id, {**claim, **outcome}, expected_version=claimed.version
        )
        return bool(outcome["state"] == DELIVERED)

    async def _send(self, doc: Document) -> None:
        event = await self.store.get("alert_events", doc.data["event"])
        channel = await self.store.get("alert_channels", doc.data["channel"])
        if event is None:
            raise DeliveryFailed("the event is gone")
        if channel is None:
            raise DeliveryFailed(f"channel {doc.data['channel']!r} was deleted")
        await self.notifier.send(channel.data["target"], event.id, event.data, doc.id)

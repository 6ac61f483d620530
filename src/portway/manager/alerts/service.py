"""The manager's alerting: rules, channels and silences kept in the config store (audited), and
the two background loops — evaluation every ``alert_interval`` and the notification outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from portway.errors import ConfigError, Conflict, NotFound, StoreError
from portway.manager import audit
from portway.manager.alerts.conditions import Desired, Sources
from portway.manager.alerts.engine import Engine
from portway.manager.alerts.notify import Notifier
from portway.manager.alerts.outbox import Outbox
from portway.manager.alerts.specs import ChannelSpec, RuleSpec, SilenceSpec, Uptime
from portway.manager.analytics import Analytics
from portway.manager.registry import WorkerRegistry
from portway.manager.sealing import Keyring
from portway.manager.settings import ManagerSettings
from portway.stores.config_store import ConfigStore, Document

log = logging.getLogger("portway.manager.alerts")

RULES, CHANNELS, SILENCES = "alert_rules", "alert_channels", "alert_silences"


def channel_view(doc: Document) -> dict[str, Any]:
    """A channel as the API shows it: the webhook URL reduced to its origin, the secret hidden."""
    data = doc.data
    target = dict(data["target"])
    if target["kind"] == "webhook":
        target["url"] = target.get("origin", "")
        target["has_secret"] = bool(target.pop("secret", None))
        target.pop("origin", None)
    return {**data, "target": target, "version": doc.version}


class Alerts:
    def __init__(
        self,
        settings: ManagerSettings,
        store: ConfigStore,
        registry: WorkerRegistry,
        analytics: Analytics,
        desired: Desired,
        keyring: Callable[[], Keyring],
        refusal: Callable[[str], str | None],
    ) -> None:
        """``refusal``: why the manager may not call a URL (the backend address policy: cloud
        metadata and link-local networks, the manager's own listener), or None."""
        self.settings = settings
        self.refusal = refusal
        self.store = store
        self.keyring = keyring
        self.http = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        self.sources = Sources(settings, registry, analytics, desired, self.http)
        self.engine = Engine(store, self.sources)
        self.outbox = Outbox(store, Notifier(settings.smtp, self.http, keyring), settings)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # rules ----------------------------------------------------------------------------------
    async def _check_rule(self, rule: RuleSpec) -> None:
        for index, name in enumerate(rule.channels):
            if await self.store.get(CHANNELS, name) is None:
                raise ConfigError(f"no channel named {name!r}", f"body.channels[{index}]")
        if isinstance(rule.condition, Uptime):
            if not self.settings.webhooks:
                raise ConfigError(
                    "uptime checks call HTTP endpoints; set manager.webhooks: true "
                    "(flow out-manager-external-https) first",
                    "body.condition",
                )
            self._callable(rule.condition.url, "body.condition.url")

    async def save_rule(
        self, rule: RuleSpec, actor: str, name: str | None = None, expected: int | None = None
    ) -> Document:
        await self._check_rule(rule)
        return await self._save(
            RULES, "alert_rule", rule.name, rule.model_dump(mode="json"), actor, name, expected
        )

    async def delete_rule(self, name: str, expected: int | None, actor: str) -> None:
        await self._delete(RULES, "alert_rule", name, expected, actor)
        for state in await self.store.find("alert_states", {"rule": name}):
            with contextlib.suppress(NotFound):
                await self.store.delete("alert_states", state.id)

    # channels -------------------------------------------------------------------------------
    async def save_channel(
        self,
        channel: ChannelSpec,
        actor: str,
        name: str | None = None,
        expected: int | None = None,
    ) -> Document:
        target = channel.target
        data = channel.model_dump(mode="json")
        if target.kind == "email" and self.settings.smtp is None:
            raise ConfigError(
                "e-mail needs a mail relay; set manager.smtp (flow out-manager-smtp) first",
                "body.target",
            )
        if target.kind == "webhook":
            if not self.settings.webhooks:
                raise ConfigError(
                    "webhooks call external endpoints; set manager.webhooks: true "
                    "(flow out-manager-external-https) first",
                    "body.target",
                )
            self._callable(target.url, "body.target.url")
            parts = urlsplit(target.url)
            keyring = self.keyring()
            data["target"] |= {
                "url": keyring.seal(target.url),
                "origin": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}",
                "secret": keyring.seal(target.secret) if target.secret else None,
            }
        return await self._save(
            CHANNELS, "alert_channel", channel.name, data, actor, name, expected
        )

    async def delete_channel(self, name: str, expected: int | None, actor: str) -> None:
        users = [d.id for d in await self.store.find(RULES) if name in d.data.get("channels", [])]
        if users:
            raise Conflict(
                f"channel {name} is used by rule(s) {', '.join(users[:5])}; remove it there first"
            )
        await self._delete(CHANNELS, "alert_channel", name, expected, actor)

    def _callable(self, url: str, field: str) -> None:
        why = self.refusal(url)
        if why is not None:
            raise ConfigError(f"the manager may not call this address: {why}", field)

    # silences -------------------------------------------------------------------------------
    async def add_silence(self, silence: SilenceSpec, actor: str) -> Document:
        now = datetime.now(UTC)
        data = silence.model_dump(mode="json") | {
            "starts_at": (silence.starts_at or now).isoformat(),
            "ends_at": silence.ends_at.isoformat(),
            "created_by": actor,
            "created_at": now.isoformat(),
        }
        if silence.ends_at <= now:
            raise ConfigError("ends_at is in the past", "body.ends_at")
        key = f"{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        doc = await self.store.insert(SILENCES, key, data)
        await audit.record(
            self.store, actor, "alert_silence.create", f"{SILENCES}/{key}", None, data
        )
        return doc

    async def delete_silence(self, key: str, actor: str) -> None:
        await self._delete(SILENCES, "alert_silence", key, None, actor)

    # shared ---------------------------------------------------------------------------------
    async def get(self, collection: str, key: str) -> Document:
        doc = await self.store.get(collection, key)
        if doc is None:
            raise NotFound(collection, key)
        return doc

    async def _save(
        self,
        collection: str,
        noun: str,
        key: str,
        data: dict[str, Any],
        actor: str,
        name: str | None,
        expected: int | None,
    ) -> Document:
        target = f"{collection}/{key}"
        if name is None:
            doc = await self.store.insert(collection, key, data)
            await audit.record(self.store, actor, f"{noun}.create", target, None, data)
            return doc
        if key != name:
            raise ConfigError("cannot be changed; create a new one instead", "body.name")
        old = await self.get(collection, name)
        doc = await self.store.replace(
            collection, name, data, expected_version=expected or old.version
        )
        await audit.record(self.store, actor, f"{noun}.update", target, old.data, data)
        return doc

    async def _delete(
        self, collection: str, noun: str, key: str, expected: int | None, actor: str
    ) -> None:
        old = await self.get(collection, key)
        await self.store.delete(collection, key, expected_version=expected)
        await audit.record(
            self.store, actor, f"{noun}.delete", f"{collection}/{key}", old.data, None
        )

    # loops ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.alert_interval > 0:
            self._tasks.append(
                asyncio.create_task(
                    self._every(self.settings.alert_interval, self._evaluate), name="alerts-eval"
                )
            )
            tick = min(1.0, self.settings.alert_retry_base, self.settings.alert_interval)
            self._tasks.append(
                asyncio.create_task(
                    self._every(tick, self._deliver, self._wake), name="alerts-outbox"
                )
            )

    async def _evaluate(self) -> None:
        if await self.engine.evaluate_all():
            self._wake.set()

    async def _deliver(self) -> None:
        await self.outbox.deliver_due()

    @staticmethod
    async def _every(
        seconds: float, job: Callable[[], Awaitable[None]], wake: asyncio.Event | None = None
    ) -> None:
        while True:
            try:
                await job()
            except (StoreError, OSError) as exc:
                log.warning("alerts: %s failed: %s", getattr(job, "__name__", job), exc)
            except Exception:
                log.exception("alerts: %s failed", getattr(job, "__name__", job))
            if wake is None:
                await asyncio.sleep(seconds)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), seconds)
            wake.clear()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()

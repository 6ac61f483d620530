"""Configuration sync: the worker's side of the cluster protocol.

At start the worker asks the manager whether its environment exists (a wrong name exits loudly),
then pulls the desired revision. Afterwards three paths lead to the same ``_converge``: a deploy
push, the answer to a periodic status report (the pull fallback), and a start-up with the
manager away, in which case the last good revision is read from disk. Every revision that compiled
is written to disk atomically before it is served, so a restart serves it without the manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from portway.cluster.messages import (
    DeployAck,
    DeployNotice,
    EnvironmentInfo,
    StatusAnswer,
    StatusReport,
)
from portway.cluster.signing import REQUEST_ID_HEADER, AnswerRefused, sign, verify_answer
from portway.cluster.transport import tls_verification
from portway.config.revision import EnvironmentRevision
from portway.errors import ClusterError, Unauthenticated, UnknownEnvironment

log = logging.getLogger("portway.worker.sync")

Apply = Callable[[EnvironmentRevision], Awaitable[None]]
Counters = Callable[[], dict[str, Any]]


@dataclass(slots=True)
class SyncSettings:
    manager_url: str
    environment: str
    worker_id: str
    advertise_url: str
    secret: bytes
    state_dir: Path
    poll_interval: float = 5.0
    request_timeout: float = 10.0
    watch_disk: bool = False
    """Follow revisions that sibling processes write to the shared state directory."""
    watch_interval: float = 0.25
    ca_file: Path | None = None
    """Pinned CA bundle for an ``https://`` manager (the system's CAs when None)."""


@dataclass(slots=True)
class SyncState:
    served_revision: int | None = None
    desired_revision: int | None = None
    """The newest revision the manager asked for (push, report answer or join), once known."""
    last_error: str | None = None
    last_contact: float | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class ManagerUnreachable(ClusterError):
    pass


class ConfigSync:
    def __init__(
        self, settings: SyncSettings, apply: Apply, counters: Counters | None = None
    ) -> None:
        self.settings = settings
        self._apply = apply
        self._counters = counters or dict
        self.state = SyncState()
        self._lock = asyncio.Lock()
        self._skipped_answer: int | None = None
        self._client = httpx.AsyncClient(
            base_url=settings.manager_url.rstrip("/"),
            timeout=settings.request_timeout,
            trust_env=False,
            verify=tls_verification(settings.ca_file),
        )
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def cache_file(self) -> Path:
        return self.settings.state_dir / f"revision-{self.settings.environment}.json"

    # manager calls ------------------------------------------------------------------------
    async def _call(
        self, method: str, path: str, body: bytes = b"", *, revision: int | None = None
    ) -> httpx.Response:
        """One signed call; its answer is returned only once its signature, request id,
        timestamp and (for a 200 to a revision pull) ``revision`` number checked out."""
        headers = sign(self.settings.secret, method, path, body)
        if body:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ManagerUnreachable(f"manager {self.settings.manager_url}: {exc!r}") from exc
        try:
            verify_answer(
                self.settings.secret,
                headers[REQUEST_ID_HEADER],
                response.status_code,
                response.content,
                response.headers,
                revision=revision if response.status_code == 200 else None,
            )
        except AnswerRefused as exc:
            if response.status_code == 401:
                raise Unauthenticated(
                    "the manager refused this worker's signature: is the cluster secret the same?"
                ) from exc
            self.state.last_error = f"refused the manager's answer to {method} {path}: {exc}"
            log.error(
                "refused the manager's answer to %s %s: %s; still serving revision %s",
                method,
                path,
                exc,
                self.state.served_revision,
            )
            raise
        if response.status_code == 401:
            raise Unauthenticated(
                "the manager refused this worker's signature: is the cluster secret the same?"
            )
        self.state.last_contact = time.monotonic()
        return response

    async def environment_info(self) -> EnvironmentInfo:
        response = await self._call(
            "GET", f"/_portway/cluster/environments/{self.settings.environment}"
        )
        if response.status_code == 404:
            raise UnknownEnvironment(self.settings.environment)
        if response.status_code != 200:
            raise ManagerUnreachable(f"manager answered {response.status_code}")
        return EnvironmentInfo.model_validate(response.json())

    async def pull(self, number: int) -> EnvironmentRevision:
        env = self.settings.environment
        response = await self._call(
            "GET", f"/_portway/cluster/environments/{env}/revisions/{number}", revision=number
        )
        if response.status_code != 200:
            raise ClusterError(f"pulling revision {number} failed: {response.status_code}")
        revision = EnvironmentRevision.read_for_serving(response.content)
        if revision.environment != env or revision.revision != number:
            raise ClusterError(f"manager sent {revision.environment}@{revision.revision}")
        return revision

    async def report(self) -> StatusAnswer:
        report = StatusReport(
            environment=self.settings.environment,
            address=self.settings.advertise_url,
            served_revision=self.state.served_revision,
            healthy=self.state.served_revision is not None,
            started_at=self.state.started_at,
            counters=self._counters(),
        )
        path = f"/_portway/cluster/workers/{self.settings.worker_id}/status"
        response = await self._call("POST", path, report.model_dump_json().encode())
        if response.status_code == 404:
            raise UnknownEnvironment(self.settings.environment)
        if response.status_code != 200:
            raise ManagerUnreachable(f"status report answered {response.status_code}")
        return StatusAnswer.model_validate(response.json())

    # disk ---------------------------------------------------------------------------------
    def _save(self, revision: EnvironmentRevision) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(revision.model_dump_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.cache_file)

    def load_cached(self) -> EnvironmentRevision | None:
        try:
            raw = self.cache_file.read_bytes()
        except FileNotFoundError:
            return None
        try:
            revision = EnvironmentRevision.read_for_serving(raw)
        except ValueError as exc:
            log.error("ignoring unreadable cached revision %s: %s", self.cache_file, exc)
            return None
        return revision if revision.environment == self.settings.environment else None

    # converging ---------------------------------------------------------------------------
    async def _converge(self, desired: int | None, from_report: bool = False) -> None:
        async with self._lock:
            # judged under the lock: a push may have installed a newer revision while this
            # report answer waited for it, and must not be undone by the answer it overtook
            if from_report and self._older_answer(desired):
                return
            if desired is not None:
                self.state.desired_revision = desired
            if desired is None or desired == self.state.served_revision:
                return
            revision = await self.pull(desired)
            await self._install(revision)

    def _older_answer(self, desired: int | None) -> bool:
        """A report answer naming an older revision than the one served was composed before a
        push this worker installed (revision numbers only grow): skip it once. The same answer
        twice in a row is the manager's word (an environment made anew) and is followed."""
        served = self.state.served_revision
        if desired is None or served is None or desired >= served:
            self._skipped_answer = None
            return False
        if self._skipped_answer == desired:
            return False
        self._skipped_answer = desired
        log.info(
            "report answer names revision %d while %d is served; asking again", desired, served
        )
        return True

    async def _install(self, revision: EnvironmentRevision) -> None:
        try:
            await self._apply(revision)
        except Exception as exc:
            self.state.last_error = f"revision {revision.revision}: {exc}"
            log.exception(
                "revision %d refused; still serving %s",
                revision.revision,
                self.state.served_revision,
            )
            raise
        self._save(revision)
        self.state.served_revision = revision.revision
        self.state.last_error = None
        log.info("serving %s@%d", revision.environment, revision.revision)

    async def join(self) -> None:
        """Join the environment and serve its desired (or cached) revision.

        Raises ``UnknownEnvironment`` / ``Unauthenticated`` loudly; a manager that cannot be
        reached is not an error: the cached revision is served and reports retry later.
        """
        try:
            info = await self.environment_info()
        except ManagerUnreachable as exc:
            cached = self.load_cached()
            log.warning(
                "manager unreachable (%s); serving the cached revision %s",
                exc,
                cached.revision if cached else None,
            )
            if cached is not None:
                async with self._lock:
                    await self._install(cached)
        else:
            cached = self.load_cached()
            if cached is not None and cached.revision == info.desired_revision:
                async with self._lock:
                    await self._install(cached)
            await self._converge(info.desired_revision)

    def start_reporting(self) -> None:
        """Report status every ``poll_interval``; each answer may bring a revision to pull."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="portway-config-sync")
        if self.settings.watch_disk and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="portway-revision-watch")

    async def _watch(self) -> None:
        """Install revisions a sibling process wrote, without asking the manager again."""
        seen: int | None = None
        while True:
            await asyncio.sleep(self.settings.watch_interval)
            try:
                mtime = self.cache_file.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if mtime == seen:
                continue
            seen = mtime
            cached = self.load_cached()
            if cached is None or cached.revision == self.state.served_revision:
                continue
            async with self._lock:
                if cached.revision != self.state.served_revision:
                    # _install logs a refused revision; the watcher keeps watching
                    with contextlib.suppress(Exception):
                        await self._install(cached)

    async def on_push(self, notice: DeployNotice) -> DeployAck:
        if notice.environment != self.settings.environment:
            return DeployAck(
                worker_id=self.settings.worker_id,
                served_revision=self.state.served_revision,
                success=False,
                error=f"this worker serves {self.settings.environment}, not {notice.environment}",
            )
        try:
            await self._converge(notice.revision)
        except Exception as exc:
            return DeployAck(
                worker_id=self.settings.worker_id,
                served_revision=self.state.served_revision,
                success=False,
                error=str(exc)[:300],
            )
        asyncio.get_running_loop().create_task(self._report_quietly())
        return DeployAck(
            worker_id=self.settings.worker_id,
            served_revision=self.state.served_revision,
            success=self.state.served_revision == notice.revision,
        )

    async def _report_quietly(self) -> StatusAnswer | None:
        try:
            return await self.report()
        except UnknownEnvironment:
            log.error("the manager no longer knows environment %s", self.settings.environment)
        except ClusterError as exc:
            log.warning("status report failed: %s", exc)
        return None

    async def _loop(self) -> None:
        while True:
            answer = await self._report_quietly()
            if answer is not None:
                try:
                    await self._converge(answer.desired_revision, from_report=True)
                except Exception as exc:
                    log.warning("converging to %s failed: %s", answer.desired_revision, exc)
            await asyncio.sleep(self.settings.poll_interval)

    async def close(self) -> None:
        for task in (self._task, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._client.aclose()

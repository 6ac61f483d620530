"""Evaluating a rule's condition: each kind looks at one source (the worker registry, the traffic
log, the file system, an HTTP endpoint) and answers one ``Observation`` per subject it watches (a
worker, an API, a URL, a certificate). ``None`` means "nothing new this time" (an uptime check that
is not due yet), so the alert's state stays as it is."""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from portway.errors import StoreError
from portway.manager.alerts.specs import (
    Anomaly,
    CertificateExpiry,
    Condition,
    DiskUsage,
    ErrorRate,
    LatencyP99,
    LogStoreUnreachable,
    SpoolBacklog,
    TrafficZero,
    Uptime,
    WorkerDown,
    WorkerNotConverged,
)
from portway.manager.analytics import Analytics
from portway.manager.registry import WorkerRegistry
from portway.manager.settings import ManagerSettings
from portway.policies.jsonpath import compile_jsonpath
from portway.stores.config_store import Document
from portway.stores.traffic import AnalyticsQuery, AnalyticsResult


@dataclass(frozen=True, slots=True)
class Observation:
    subject: str
    bad: bool
    value: float | None
    summary: str


Desired = Callable[[], Awaitable[dict[str, int | None]]]


@dataclass
class _Ema:
    mean: float = 0.0
    variance: float = 0.0
    samples: int = 0


@dataclass
class Sources:
    """What conditions read; one instance per manager process."""

    settings: ManagerSettings
    registry: WorkerRegistry
    analytics: Analytics
    desired: Desired
    http: httpx.AsyncClient
    _checked: dict[str, tuple[float, Observation]] = field(default_factory=dict)
    _ema: dict[str, _Ema] = field(default_factory=dict)

    async def observe(
        self, rule: str, condition: Condition, now: datetime
    ) -> list[Observation] | None:
        match condition:
            case WorkerDown():
                return await self._workers(condition.environment, now, _down)
            case WorkerNotConverged():
                return await self._not_converged(condition, now)
            case SpoolBacklog():
                return await self._spool(condition, now)
            case ErrorRate() | LatencyP99() | TrafficZero():
                return [await self._traffic(condition, now)]
            case Anomaly():
                return [await self._anomaly(rule, condition, now)]
            case LogStoreUnreachable():
                return [await self._log_store(now)]
            case DiskUsage():
                return [_disk(self.settings.data_dir, condition)]
            case CertificateExpiry():
                return _certificates(self._certificate_files(), condition, now)
            case Uptime():
                return await self._uptime(rule, condition)
        raise AssertionError(f"unhandled condition {condition!r}")  # pragma: no cover

    # workers --------------------------------------------------------------------------------
    async def _workers(
        self,
        environment: str | None,
        now: datetime,
        judge: Callable[[str, Document, datetime], Observation],
    ) -> list[Observation]:
        docs = await self.registry.workers(environment)
        return [judge(self.registry.state(d, now), d, now) for d in docs]

    async def _not_converged(
        self, condition: WorkerNotConverged, now: datetime
    ) -> list[Observation]:
        desired = await self.desired()

        def judge(state: str, doc: Document, at: datetime) -> Observation:
            want = desired.get(str(doc.data.get("environment")))
            served = doc.data.get("served_revision")
            since = doc.data.get("desired_at")
            lag = 0.0
            if state in ("up", "unreachable") and want is not None and served != want and since:
                lag = max((at - datetime.fromisoformat(since)).total_seconds(), 0.0)
            return Observation(
                doc.id,
                lag > condition.seconds,
                lag,
                f"worker {doc.id} serves revision {served}, asked for {want} ({lag:.0f} s ago)",
            )

        return await self._workers(condition.environment, now, judge)

    async def _spool(self, condition: SpoolBacklog, now: datetime) -> list[Observation]:
        def judge(state: str, doc: Document, at: datetime) -> Observation:
            log = (doc.data.get("counters") or {}).get("traffic_log") or {}
            spooled = int(log.get("spooled", 0)) if state == "up" else 0
            return Observation(
                doc.id,
                spooled > condition.max_records,
                float(spooled),
                f"worker {doc.id} holds {spooled} traffic records in its spool "
                f"(limit {condition.max_records})",
            )

        return await self._workers(condition.environment, now, judge)

    # traffic --------------------------------------------------------------------------------
    async def _window(
        self, environment: str | None, api: str | None, seconds: int, now: datetime
    ) -> AnalyticsResult:
        return await self.analytics.result(
            AnalyticsQuery(
                start=now - timedelta(seconds=seconds),
                end=now,
                bucket_seconds=seconds,
                environment=environment,
                api=api,
                top_n=1,
            )
        )

    async def _traffic(
        self, condition: ErrorRate | LatencyP99 | TrafficZero, now: datetime
    ) -> Observation:
        result = await self._window(
            condition.environment, condition.api, condition.window_seconds, now
        )
        scope = _scope(condition.environment, condition.api)
        window = f"the last {condition.window_seconds} s"
        if isinstance(condition, TrafficZero):
            return Observation(
                scope,
                result.total == 0,
                float(result.total),
                f"{scope}: {result.total} requests in {window}",
            )
        enough = result.total >= condition.min_requests
        if isinstance(condition, ErrorRate):
            errors = sum(n for status, n in result.by_status.items() if status >= 500)
            rate = errors / result.total if result.total else 0.0
            return Observation(
                scope,
                enough and rate > condition.threshold,
                rate,
                f"{scope}: {rate:.1%} of {result.total} requests answered 5xx in {window} "
                f"(threshold {condition.threshold:.1%})",
            )
        p99 = float(result.latency_ms.get("p99", 0.0))
        return Observation(
            scope,
            enough and p99 > condition.threshold_ms,
            p99,
            f"{scope}: p99 latency {p99:.0f} ms over {result.total} requests in {window} "
            f"(threshold {condition.threshold_ms:.0f} ms)",
        )

    async def _anomaly(self, rule: str, condition: Anomaly, now: datetime) -> Observation:
        result = await self._window(
            condition.environment, condition.api, condition.window_seconds, now
        )
        if condition.metric == "request_rate":
            value = result.total / condition.window_seconds
        else:
            value = float(result.latency_ms.get("p99", 0.0))
        ema = self._ema.setdefault(rule, _Ema())
        std = math.sqrt(ema.variance)
        band = condition.deviations * std
        bad = ema.samples >= condition.warmup and abs(value - ema.mean) > band
        summary = (
            f"{_scope(condition.environment, condition.api)}: {condition.metric} {value:.3g} "
            f"outside {ema.mean:.3g} ± {band:.3g}"
            if bad
            else f"{condition.metric} {value:.3g} (mean {ema.mean:.3g}, ±{band:.3g}, "
            f"{ema.samples} samples)"
        )
        _update(ema, value, condition.alpha)
        return Observation(_scope(condition.environment, condition.api), bad, value, summary)

    async def _log_store(self, now: datetime) -> Observation:
        try:
            await self._window(None, None, 60, now)
        except (StoreError, OSError) as exc:
            return Observation("traffic-log", True, None, f"the traffic log store fails: {exc}")
        return Observation("traffic-log", False, None, "the traffic log store answers")

    # files ----------------------------------------------------------------------------------
    def _certificate_files(self) -> list[Path]:
        s = self.settings
        found = [s.tls_cert_file, s.cluster_ca_file, s.smtp.ca_file if s.smtp else None]
        return [p for p in found if p is not None]

    # uptime ---------------------------------------------------------------------------------
    async def _uptime(self, rule: str, check: Uptime) -> list[Observation] | None:
        key = f"{rule}:{check.model_dump_json()}"
        last = self._checked.get(key)
        if last is not None and time.monotonic() - last[0] < check.interval_seconds:
            return None
        failure = ""
        for attempt in range(check.retries + 1):
            if attempt:
                await asyncio.sleep(min(1.0, check.interval_seconds / 10))
            failure = await self._check_once(check)
            if not failure:
                break
        observation = Observation(
            check.url, bool(failure), None, failure or f"{check.method} {check.url} passes"
        )
        self._checked[key] = (time.monotonic(), observation)
        return [observation]

    async def _check_once(self, check: Uptime) -> str:
        """The first failed assertion, or '' when all pass."""
        started = time.monotonic()
        try:
            response = await self.http.request(
                check.method, check.url, timeout=check.timeout_seconds
            )
        except httpx.HTTPError as exc:
            return f"{check.method} {check.url}: {type(exc).__name__}: {exc}"
        elapsed_ms = (time.monotonic() - started) * 1000
        if response.status_code not in check.expect_status:
            return f"{check.url} answered {response.status_code}, expected {check.expect_status}"
        if check.max_latency_ms is not None and elapsed_ms > check.max_latency_ms:
            return f"{check.url} took {elapsed_ms:.0f} ms (limit {check.max_latency_ms:.0f} ms)"
        if check.body_jsonpath is not None:
            return _body_failure(check, response)
        return ""


def _down(state: str, doc: Document, _: datetime) -> Observation:
    return Observation(
        doc.id,
        state in ("down", "unreachable"),
        None,
        f"worker {doc.id} ({doc.data.get('environment')}, {doc.data.get('address')}) is {state}",
    )


def _scope(environment: str | None, api: str | None) -> str:
    return f"{environment or '*'}/{api or '*'}"


def _update(ema: _Ema, value: float, alpha: float) -> None:
    """Exponentially weighted mean and variance (West's incremental form)."""
    if ema.samples == 0:
        ema.mean, ema.variance = value, 0.0
    else:
        delta = value - ema.mean
        ema.mean += alpha * delta
        ema.variance = (1 - alpha) * (ema.variance + alpha * delta * delta)
    ema.samples += 1


def _disk(path: Path, condition: DiskUsage) -> Observation:
    usage = shutil.disk_usage(path if path.exists() else Path.cwd())
    percent = 100.0 * usage.used / usage.total if usage.total else 0.0
    return Observation(
        str(path),
        percent > condition.max_percent,
        percent,
        f"{path}: {percent:.1f} % used (limit {condition.max_percent:.0f} %)",
    )


def _certificates(
    files: list[Path], condition: CertificateExpiry, now: datetime
) -> list[Observation]:
    found = []
    for path in files:
        try:
            certs = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            found.append(Observation(str(path), True, None, f"{path} cannot be read: {exc}"))
            continue
        for cert in certs:
            left = cert.not_valid_after_utc - now.astimezone(UTC)
            name = cert.subject.rfc4514_string()
            found.append(
                Observation(
                    f"{path}: {name}",
                    left < timedelta(days=condition.days),
                    left.total_seconds() / 86400,
                    f"{name} in {path} expires {cert.not_valid_after_utc.isoformat()} "
                    f"({left.days} days)",
                )
            )
    return found


def _body_failure(check: Uptime, response: httpx.Response) -> str:
    assert check.body_jsonpath is not None
    try:
        document: Any = response.json()
    except ValueError:
        return f"{check.url}: the body is not JSON"
    matched, value = compile_jsonpath(check.body_jsonpath).first(document)
    if not matched:
        return f"{check.url}: {check.body_jsonpath} matches nothing"
    if check.body_equals is not None and value != check.body_equals:
        return f"{check.url}: {check.body_jsonpath} is {value!r}, expected {check.body_equals!r}"
    return ""

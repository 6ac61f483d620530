"""Quota: at most N requests per hour / day / week / month per identity, periods aligned to a
configured time zone (a day is a local day, DST included)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from portway.errors import StoreUnavailable
from portway.policies._counting import (
    STORE_ERRORS,
    CountingConfig,
    Limits,
    counter_key,
    rate_headers,
    retry_after,
)
from portway.policies.base import Build, Deny, ErrorSpec, Policy
from portway.policies.consumers import grant_for
from portway.policies.contract import PolicyContext, Reply

Period = Literal["hour", "day", "week", "month"]


def check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def period_bounds(now: float, period: Period, zone: ZoneInfo) -> tuple[str, float]:
    """(an id of the period containing ``now``, the epoch second it ends)."""
    local = datetime.fromtimestamp(now, zone)
    if period == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        end_ts = start.timestamp() + 3600
        return start.strftime("%Y-%m-%dT%H%z"), end_ts
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m-%d"), end.replace(tzinfo=zone).timestamp()


class QuotaConfig(CountingConfig):
    period: Annotated[Period, Field(description="the quota period")] = "day"
    time_zone: Annotated[
        str, Field(max_length=100, description="IANA time zone periods are aligned to")
    ] = "UTC"

    _zone = field_validator("time_zone")(classmethod(lambda cls, v: check_zone(v)))


class QuotaPolicy(Policy[QuotaConfig]):
    type_name = "quota"
    summary = "Limit each client to N requests per hour, day, week or month (in a time zone)."
    config_model = QuotaConfig
    errors = {**STORE_ERRORS, "quota_exceeded": ErrorSpec(429, "the quota is used up")}
    __slots__ = ("_limits", "_zone")

    def __init__(self, config: QuotaConfig, build: Build) -> None:
        super().__init__(config, build)
        self._limits = Limits(config)
        self._zone = ZoneInfo(config.time_zone)

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        now = self.services.clock()
        grant = grant_for(self.build.consumers, ctx, now) if cfg.use_grant_limits else None
        period: Period = cfg.period
        if grant is not None and grant.quota is not None and ctx.consumer:
            identity = f"grant:{ctx.consumer}"
            limit = grant.quota.limit
            period = cast(Period, grant.quota.period)
        else:
            identity = await self._limits.identify(ctx, now)
            limit = self._limits.limit_for(identity)
        period_id, end = period_bounds(now, period, self._zone)
        key = counter_key(
            f"quota:{period}:{period_id}",
            self.build.label,
            self.name,
            cfg.counter_name,
            identity,
        )
        remaining_seconds = max(1.0, end - now)
        try:
            # the key names the period, so the window only needs to outlive it
            counted = await self.services.cache.increment(key, window=remaining_seconds + 60)
        except StoreUnavailable:
            if cfg.on_store_unavailable == "fail":
                raise Deny("store_unavailable") from None
            return None
        if cfg.headers:
            rate_headers(ctx, limit, limit - counted.count, remaining_seconds)
        if counted.count > limit:
            raise Deny("quota_exceeded", headers=retry_after(remaining_seconds))
        return None

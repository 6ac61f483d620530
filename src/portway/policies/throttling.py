"""Throttling: at most N requests per interval per identity, FIXED or SLIDING window, counters
in the shared cache (atomic increments), 429 with Retry-After, fail-open/closed explicit.

``sync: exact`` (the default) counts every request in the shared cache before answering;
``sync: batched`` counts locally and adds the counts to the shared cache every
``sync_interval_ms`` (``_batched.BatchedCounter`` documents the maximum overshoot)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from portway.errors import StoreUnavailable
from portway.policies._batched import BatchedCounter
from portway.policies._counting import (
    STORE_ERRORS,
    CountingConfig,
    Limits,
    counter_prefix,
    key_identity,
    rate_headers,
    retry_after,
)
from portway.policies.base import Build, Deny, ErrorSpec, Policy
from portway.policies.consumers import grant_for
from portway.policies.contract import PolicyContext, Reply
from portway.stores.cache import Cache


class ThrottlingConfig(CountingConfig):
    interval_seconds: Annotated[
        int, Field(ge=1, le=86400, description="length of the window in seconds")
    ] = 60
    window: Annotated[
        Literal["fixed", "sliding"],
        Field(description="fixed windows, or a sliding estimate over the previous window"),
    ] = "fixed"
    sync: Annotated[
        Literal["exact", "batched"],
        Field(
            description="exact: every request is counted in the shared cache before it passes; "
            "batched: counted locally, added to the shared cache every sync_interval_ms (faster; "
            "may admit up to what the other workers admit in one interval beyond the limit)"
        ),
    ] = "exact"
    sync_interval_ms: Annotated[
        int, Field(ge=10, le=60_000, description="how often batched counts are synchronised")
    ] = 100


class ThrottlingPolicy(Policy[ThrottlingConfig]):
    type_name = "throttling"
    summary = "Limit each client to N requests per interval (429 with Retry-After beyond)."
    config_model = ThrottlingConfig
    errors = {**STORE_ERRORS, "rate_limited": ErrorSpec(429, "too many requests")}
    __slots__ = ("_counter", "_limits", "_prefix")

    def __init__(self, config: ThrottlingConfig, build: Build) -> None:
        super().__init__(config, build)
        self._limits = Limits(config)
        self._prefix = counter_prefix("throttle", build.label, self.name, config.counter_name)
        self._counter: Cache | BatchedCounter = self.services.cache
        if config.sync == "batched":
            self._counter = BatchedCounter(
                self.services.cache, config.sync_interval_ms / 1000, self.services.clock
            )

    async def _count(self, key: str, now: float, interval: float) -> tuple[float, float]:
        """(requests counted in the window including this one, seconds until it resets)."""
        cfg = self.config
        cache = self._counter
        if cfg.window == "fixed":
            counted = await cache.increment(key, window=interval)
            return counted.count, counted.reset_after
        index = math.floor(now / interval)
        elapsed = now - index * interval
        current = await cache.increment(f"{key}:{index}", window=2 * interval)
        previous = await cache.increment(f"{key}:{index - 1}", window=2 * interval, amount=0)
        weight = 1.0 - elapsed / interval
        return previous.count * weight + current.count, interval - elapsed

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        now = self.services.clock()
        grant = grant_for(self.build.consumers, ctx, now) if cfg.use_grant_limits else None
        interval: float = cfg.interval_seconds
        if grant is not None and grant.throttling is not None and ctx.consumer:
            identity = f"grant:{ctx.consumer}"
            limit, interval = grant.throttling.limit, grant.throttling.interval
        else:
            identity = await self._limits.identify(ctx, now)
            limit = self._limits.limit_for(identity)
        key = self._prefix + key_identity(identity)
        try:
            count, reset = await self._count(key, now, interval)
        except StoreUnavailable:
            if cfg.on_store_unavailable == "fail":
                raise Deny("store_unavailable") from None
            return None
        used = math.ceil(count)
        if cfg.headers:
            rate_headers(ctx, limit, limit - used, reset)
        if count > limit:
            raise Deny("rate_limited", headers=retry_after(reset))
        return None

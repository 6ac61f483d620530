"""Client ban: a client that causes N errors (or P percent errors) within a window is refused
for T seconds, with Retry-After."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from portway.errors import StoreUnavailable
from portway.policies._counting import counter_key, retry_after
from portway.policies.base import Build, Deny, ErrorSpec, Policy, PolicyConfig
from portway.policies.contract import PolicyContext, Reply
from portway.policies.variables import as_text, compile_variable

_BANNED_HERE = "_portway.client_ban.denied"


class ClientBanConfig(PolicyConfig):
    identity: Annotated[
        str, Field(max_length=500, description="variable that tells clients apart")
    ] = "client_ip"
    max_errors: Annotated[
        int | None, Field(ge=1, le=1_000_000, description="errors in the window that ban")
    ] = None
    error_percent: Annotated[
        float | None, Field(gt=0, le=100, description="error share in the window that bans")
    ] = None
    min_requests: Annotated[
        int, Field(ge=1, le=1_000_000, description="requests needed before a percentage bans")
    ] = 20
    window_seconds: Annotated[int, Field(ge=1, le=86400, description="error counting window")] = 60
    ban_seconds: Annotated[int, Field(ge=1, le=7 * 86400, description="how long a ban lasts")] = 300
    min_error_status: Annotated[
        int, Field(ge=400, le=599, description="statuses from this one up count as errors")
    ] = 400
    on_store_unavailable: Annotated[
        Literal["fail", "continue"],
        Field(description="when the cache cannot be reached: reject (fail) or let through"),
    ] = "continue"

    @field_validator("identity")
    @classmethod
    def _identity(cls, value: str) -> str:
        compile_variable(value)
        return value

    @model_validator(mode="after")
    def _rules(self) -> ClientBanConfig:
        if (self.max_errors is None) == (self.error_percent is None):
            raise ValueError("set exactly one of max_errors and error_percent")
        return self


class ClientBanPolicy(Policy[ClientBanConfig]):
    type_name = "client_ban"
    summary = "Ban a client for a while after too many errors in a window."
    config_model = ClientBanConfig
    errors = {
        "client_banned": ErrorSpec(403, "too many failed requests; try again later"),
        "store_unavailable": ErrorSpec(503, "the ban list cannot be checked right now"),
    }
    __slots__ = ("_identity",)

    def __init__(self, config: ClientBanConfig, build: Build) -> None:
        super().__init__(config, build)
        self._identity = compile_variable(config.identity)

    async def _key(self, ctx: PolicyContext, kind: str) -> str:
        value = as_text(await self._identity.resolve(ctx, self.services.clock())) or ""
        return counter_key(f"ban-{kind}", self.build.label, self.name, None, value)

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        key = await self._key(ctx, "until")
        try:
            until = await self.services.cache.get(key)
        except StoreUnavailable:
            if self.config.on_store_unavailable == "fail":
                raise Deny("store_unavailable") from None
            return None
        if until is not None:
            remaining = float(until) - self.services.clock()
            if remaining > 0:
                ctx.variables[_BANNED_HERE] = True
                raise Deny("client_banned", headers=retry_after(remaining))
        return None

    async def finish(self, ctx: PolicyContext, status: int) -> None:
        if ctx.variables.get(_BANNED_HERE):
            return  # our own refusals do not extend the ban
        cfg = self.config
        cache = self.services.cache
        is_error = status >= cfg.min_error_status
        try:
            if cfg.error_percent is not None:
                total = await cache.increment(
                    await self._key(ctx, "total"), window=cfg.window_seconds
                )
                errors = await cache.increment(
                    await self._key(ctx, "errors"),
                    window=cfg.window_seconds,
                    amount=1 if is_error else 0,
                )
                banned = (
                    is_error
                    and total.count >= cfg.min_requests
                    and errors.count * 100 >= cfg.error_percent * total.count
                )
            elif is_error:
                errors = await cache.increment(
                    await self._key(ctx, "errors"), window=cfg.window_seconds
                )
                banned = cfg.max_errors is not None and errors.count >= cfg.max_errors
            else:
                return
            if banned:
                until = self.services.clock() + cfg.ban_seconds
                await cache.set(
                    await self._key(ctx, "until"), repr(until).encode(), ttl=cfg.ban_seconds
                )
        except StoreUnavailable:
            return

"""Cache invalidation: after a write (POST, PUT, PATCH, DELETE by default) succeeded, the
``response_cache`` entries of this API — all of them (``scope: api``) or those whose rendered
``invalidation_key`` equals this policy's rendered ``key`` (``scope: key``) — are no longer served.

It replaces generation tokens (``response_cache`` explains why tokens) in both the shared cache
and this worker's local one, so every worker's distributed response cache and this worker's local
one miss from then on; a local response cache on another worker keeps its entries until they
expire. The key is rendered when the request arrives (before later policies rewrite it); the
tokens are replaced once the backend answered, only for a 2xx answer unless ``only_success`` is
false, so a failed write leaves the cache as it was. A cache that cannot be reached is logged and
counted as the policy's error; the client's answer is not changed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from portway.policies.base import Build, Policy, PolicyConfig
from portway.policies.contract import PolicyContext, Reply
from portway.policies.response_cache import (
    check_group_template,
    generation_keys,
    new_generation,
    render_group,
    upper_methods,
)
from portway.policies.variables import VariableTemplate

_PENDING = "_portway.cache_invalidation"


class CacheInvalidationConfig(PolicyConfig):
    scope: Annotated[
        Literal["api", "key"],
        Field(description="every entry of the API, or the entries of one invalidation key"),
    ] = "api"
    key: Annotated[
        str | None,
        Field(max_length=500, description="${variable} template matching invalidation_key"),
    ] = None
    methods: Annotated[
        list[str], Field(min_length=1, description="methods whose requests invalidate")
    ] = Field(default_factory=lambda: ["POST", "PUT", "PATCH", "DELETE"])
    only_success: Annotated[
        bool, Field(description="invalidate only when the backend answered 2xx")
    ] = True

    _methods = field_validator("methods")(classmethod(lambda cls, v: upper_methods(v)))

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return check_group_template(value) if value is not None else None

    @model_validator(mode="after")
    def _rules(self) -> CacheInvalidationConfig:
        if self.scope == "key" and self.key is None:
            raise ValueError("scope key needs a key (e.g. ${path})")
        if self.scope == "api" and self.key is not None:
            raise ValueError("scope api takes no key")
        return self


class CacheInvalidationPolicy(Policy[CacheInvalidationConfig]):
    type_name = "cache_invalidation"
    summary = "After a successful write, stop serving this API's cached responses."
    config_model = CacheInvalidationConfig
    errors = {}
    __slots__ = ("_key",)

    def __init__(self, config: CacheInvalidationConfig, build: Build) -> None:
        super().__init__(config, build)
        self._key = VariableTemplate(config.key) if config.key is not None else None

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        if ctx.request.method in self.config.methods:
            group = None
            if self._key is not None:
                group = render_group(self._key, ctx, self.services.clock())
            ctx.variables[_PENDING + "." + self.name] = generation_keys(
                ctx.project, ctx.api, group
            )[-1]
        return None

    async def after_response(self, ctx: PolicyContext) -> None:
        key = ctx.variables.get(_PENDING + "." + self.name)
        response = ctx.response
        if key is None or response is None:
            return
        if self.config.only_success and not 200 <= response.status < 300:
            return
        services = self.services
        await new_generation(services.local_cache, key)
        await new_generation(services.cache, key)

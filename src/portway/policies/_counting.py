"""What throttling and quota share: the identity, per-identity overrides, keys, headers."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from portway.policies.base import ErrorSpec, PolicyConfig, pending_reply_headers
from portway.policies.contract import PolicyContext
from portway.policies.variables import Variable, as_text, compile_variable

MAX_KEY_PART = 200


class Override(PolicyConfig):
    value: Annotated[
        str | None, Field(max_length=1000, description="identity this override applies to")
    ] = None
    regex: Annotated[
        str | None, Field(max_length=1000, description="regular expression the identity matches")
    ] = None
    limit: Annotated[int, Field(ge=0, le=1_000_000_000, description="limit for this identity")]

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one(self) -> Override:
        if (self.value is None) == (self.regex is None):
            raise ValueError("set exactly one of value and regex")
        return self


def _check_identity(value: str) -> str:
    compile_variable(value)
    return value


class CountingConfig(PolicyConfig):
    limit: Annotated[int, Field(ge=1, le=1_000_000_000, description="requests allowed")]
    identity: Annotated[
        str,
        Field(
            max_length=500,
            description="variable that tells clients apart (client_ip, consumer, header.X ...)",
        ),
    ] = "client_ip"
    overrides: Annotated[
        list[Override], Field(max_length=1000, description="per-identity limits, first match wins")
    ] = Field(default_factory=list)
    headers: Annotated[bool, Field(description="send X-RateLimit-Limit / -Remaining / -Reset")] = (
        True
    )
    on_store_unavailable: Annotated[
        Literal["fail", "continue"],
        Field(description="when the cache cannot be reached: reject (fail) or let through"),
    ] = "continue"
    use_grant_limits: Annotated[
        bool,
        Field(
            description="an authenticated consumer whose grant sets a limit for this API and "
            "environment is counted on its own with that limit"
        ),
    ] = True
    counter_name: Annotated[
        str | None,
        Field(
            max_length=100,
            pattern=r"^[A-Za-z0-9_.:-]+$",
            description="share one counter across APIs that use the same name",
        ),
    ] = None

    _identity = field_validator("identity")(classmethod(lambda cls, v: _check_identity(v)))


STORE_ERRORS = {"store_unavailable": ErrorSpec(503, "the limit cannot be checked right now")}


class Limits:
    """Compiled overrides and identity variable."""

    __slots__ = ("_from_body", "default", "exact", "identity", "patterns")

    def __init__(self, config: CountingConfig) -> None:
        self.identity: Variable = compile_variable(config.identity)
        self._from_body = self.identity.needs_body
        self.default = config.limit
        self.exact = {o.value: o.limit for o in config.overrides if o.value is not None}
        self.patterns = [
            (re.compile(o.regex), o.limit) for o in config.overrides if o.regex is not None
        ]

    async def identify(self, ctx: PolicyContext, now: float) -> str:
        identity = self.identity
        if self._from_body:
            value = as_text(await identity.resolve(ctx, now))
        else:  # the common case (consumer, client_ip, a header): no coroutine
            value = as_text(identity.resolve_now(ctx, now))
        return value if value is not None else ""

    def limit_for(self, identity: str) -> int:
        found = self.exact.get(identity)
        if found is not None:
            return found
        for pattern, limit in self.patterns:
            if pattern.fullmatch(identity):
                return limit
        return self.default


def counter_key(kind: str, label: str, policy: str, shared: str | None, identity: str) -> str:
    return counter_prefix(kind, label, policy, shared) + key_identity(identity)


def counter_prefix(kind: str, label: str, policy: str, shared: str | None) -> str:
    """What every counter key of one policy starts with (``counter_key`` without the identity)."""
    scope = f"shared:{shared}" if shared else f"{label}:{policy}"
    return f"{kind}:{scope}:"


def key_identity(identity: str) -> str:
    """The identity's part of a counter key: itself, or its hash when long or unprintable."""
    if len(identity) > MAX_KEY_PART or not identity.isprintable():
        return "sha256:" + hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()
    return identity


def rate_headers(ctx: PolicyContext, limit: int, remaining: int, reset: float) -> None:
    # decimal numbers: nothing for ``add_reply_header``'s cleaning to do
    pending_reply_headers(ctx).extend(
        (
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(max(0, remaining))),
            ("X-RateLimit-Reset", str(max(0, math.ceil(reset)))),
        )
    )


def retry_after(seconds: float) -> list[tuple[str, str]]:
    return [("Retry-After", str(max(1, math.ceil(seconds))))]

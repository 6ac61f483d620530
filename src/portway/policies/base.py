"""What every policy is made of: a config model, an error table and hooks.

A policy object is built once per revision and route (``compile_pipeline``); it holds compiled
configuration only, never per-request state. Its hooks:

- ``on_request``     when placed in the request list: continue (``None``), answer (``Reply``) or
                     refuse (``raise Deny(code)``);
- ``after_response`` for a request-list policy that ran: sees the final backend response
                     (used by the response cache);
- ``on_response``    when placed in the response list;
- ``on_error``       when placed in the error list: ``ctx.error`` is set and ``ctx.response`` holds
                     the rendered error response, which the hook may change or replace;
- ``finish``         for a request-list policy that ran, once the status sent to the client is known
                     (used by the client ban).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from portway.config.base import FrozenModel
from portway.policies._headers import clean_header_value
from portway.policies.contract import REPLY_HEADERS, PolicyContext, Reply

if TYPE_CHECKING:
    from portway.policies.consumers import ConsumerIndex
    from portway.policies.resources import PolicyServices


class Phase(StrEnum):
    REQUEST = "request"
    RESPONSE = "response"
    ERROR = "error"


ALL_PHASES = frozenset(Phase)
REQUEST_ONLY = frozenset({Phase.REQUEST})


class PolicyConfig(FrozenModel):
    """Base of every policy config: unknown fields are errors, and strict, so no value changes
    type on the way in (``"limit": true`` or ``"limit": "100"`` is refused, naming the field)."""


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    status: int
    message: str


class Deny(Exception):
    """Raised by a hook to refuse the request with one of the policy's error codes; ``status``
    and ``message`` replace the code's defaults (a policy whose operator configures them)."""

    def __init__(
        self,
        code: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        details: Mapping[str, Any] | None = None,
        message: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.headers = headers or []
        self.details = details
        self.message = message


@dataclass(frozen=True, slots=True)
class Build:
    """What a policy receives when it is compiled."""

    name: str
    label: str
    services: PolicyServices
    consumers: ConsumerIndex


C = TypeVar("C", bound=PolicyConfig)


def pending_reply_headers(ctx: PolicyContext) -> list[tuple[str, str]]:
    """The headers added so far to whatever reaches the client (the list itself, to add to)."""
    headers: list[tuple[str, str]] = ctx.variables.setdefault(REPLY_HEADERS, [])
    return headers


def add_reply_header(ctx: PolicyContext, name: str, value: str) -> None:
    pending_reply_headers(ctx).append((name, clean_header_value(value)))


class Policy(Generic[C]):
    """Base class of a policy type; subclasses set the class variables and override hooks."""

    type_name: ClassVar[str]
    summary: ClassVar[str]
    config_model: ClassVar[type[PolicyConfig]]
    phases: ClassVar[frozenset[Phase]] = REQUEST_ONLY
    errors: ClassVar[Mapping[str, ErrorSpec]] = {}

    __slots__ = ("build", "config", "name")

    def __init__(self, config: C, build: Build) -> None:
        self.config = config
        self.build = build
        self.name = build.name

    @property
    def services(self) -> PolicyServices:
        return self.build.services

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        return None

    async def after_response(self, ctx: PolicyContext) -> None:
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return None

    async def finish(self, ctx: PolicyContext, status: int) -> None:
        return None

    @classmethod
    def overrides(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(Policy, hook)

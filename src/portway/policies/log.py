"""Log: write chosen values into the request's traffic record (``variables``), for searching and
reading a request later. Each value is a ``${variable}`` template (``variables.py``), rendered
when the policy runs (so a request-list entry logs the request as it arrived there, a
response-list entry can log ``response.status``), cut to ``max_value_chars``.

Masking happens in the worker, where the API's capture rules live
(``portway.worker.capture.CaptureRules.mask_logged``): a value read from a masked header or query
parameter (credentials always are) or from a masked JSONPath/ElementPath is written as ``****``,
and a masked value that appears inside another logged value is replaced there too."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from portway.policies.base import ALL_PHASES, Build, Policy, PolicyConfig
from portway.policies.contract import PolicyContext, Reply
from portway.policies.variables import VariableTemplate

LOGGED = "variables"
"""ctx.log key: name → (text, variable sources) of the values to write."""
MAX_VALUES = 20
NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


def _same(text: str) -> str:
    return text


class LogConfig(PolicyConfig):
    variables: Annotated[
        dict[str, str],
        Field(
            min_length=1,
            max_length=MAX_VALUES,
            description="name in the traffic record → ${variable} template",
        ),
    ]
    max_value_chars: Annotated[int, Field(ge=16, le=4096, description="longer values are cut")] = (
        256
    )

    @field_validator("variables")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for name, template in value.items():
            if not re.match(NAME, name):
                raise ValueError(f"name {name!r} must be a letter then letters, digits, _ or -")
            if len(template) > 2000:
                raise ValueError(f"{name}: a template may have at most 2000 characters")
            VariableTemplate(template)
        return value


class LogPolicy(Policy[LogConfig]):
    type_name = "log"
    summary = "Write chosen variables into the traffic record, masked like captured values."
    config_model = LogConfig
    phases = ALL_PHASES
    errors = {}
    __slots__ = ("_templates",)

    def __init__(self, config: LogConfig, build: Build) -> None:
        super().__init__(config, build)
        self._templates = [(k, VariableTemplate(v)) for k, v in config.variables.items()]

    async def _record(self, ctx: PolicyContext) -> None:
        now = self.services.clock()
        limit = self.config.max_value_chars
        logged: dict[str, tuple[str, tuple[str, ...]]] = ctx.log.setdefault(LOGGED, {})
        for name, template in self._templates:
            text = await template.render(ctx, now, _same)
            logged[name] = (text[:limit], tuple(v.source for v in template.variables))

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        await self._record(ctx)
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        await self._record(ctx)
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        await self._record(ctx)
        return None

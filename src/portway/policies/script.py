"""Script: CEL expressions over the request (and response) that refuse it, set headers or store
variables. Never Python: the expressions run in the bounded CEL interpreter of ``_cel``.

Inputs every expression may read: ``request`` (method, path, query, headers by lower-case name,
client_ip, scheme), ``context`` (api, project, environment, endpoint, consumer, roles,
correlation_id, path_params), ``response`` (status, headers; null in the request list), and the
inputs the operator declares by name (``"qty": "body.$.qty"``, any ``variables.py`` source).

Order: ``deny_when`` first (true refuses with the configured status and message), then
``set_variables`` (stored for later policies, read as ``var.NAME``), then ``set_headers`` (on the
request in the request list, on the response in the response list; null removes the header).
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from portway.policies._cel import Budget, CelFailed, CelProgram, cel_values, compile_cel
from portway.policies._headers import check_header_name, clean_header_value
from portway.policies._inputs import BUILT_IN, InputTooLarge, check_inputs, resolve_inputs
from portway.policies.base import Build, Deny, ErrorSpec, Phase, Policy, PolicyConfig
from portway.policies.contract import HeaderMap, PolicyContext, Reply
from portway.policies.variables import as_text, compile_variable

log = logging.getLogger("portway.policies")

MAX_EXPRESSIONS = 20
VARIABLE_NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


class ScriptConfig(PolicyConfig):
    inputs: Annotated[
        dict[str, str],
        Field(description="names the expressions may read → variable (header.X, body.$.a ...)"),
    ] = Field(default_factory=dict)
    deny_when: Annotated[
        str | None, Field(max_length=2000, description="CEL: when true, the request is refused")
    ] = None
    deny_status: Annotated[int, Field(ge=400, le=499, description="status of a refusal")] = 403
    deny_message: Annotated[
        str, Field(min_length=1, max_length=500, description="message of a refusal")
    ] = "the request was refused by a script"
    set_variables: Annotated[
        dict[str, str],
        Field(max_length=MAX_EXPRESSIONS, description="variable name → CEL expression"),
    ] = Field(default_factory=dict)
    set_headers: Annotated[
        dict[str, str],
        Field(max_length=MAX_EXPRESSIONS, description="header name → CEL (null removes it)"),
    ] = Field(default_factory=dict)
    on_error: Annotated[
        Literal["deny", "continue"],
        Field(description="when an expression fails: refuse (500) or go on without its effect"),
    ] = "deny"

    _inputs = field_validator("inputs")(classmethod(lambda cls, v: check_inputs(v)))

    @field_validator("set_variables")
    @classmethod
    def _variable_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(VARIABLE_NAME, name):
                raise ValueError(
                    f"variable name {name!r} must be a letter then letters, digits, _ . or -"
                )
        return value

    @field_validator("set_headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            check_header_name(name)
            if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                raise ValueError(f"the {name} header is the gateway's to set")
        return value

    @model_validator(mode="after")
    def _programs(self) -> ScriptConfig:
        if self.deny_when is None and not self.set_variables and not self.set_headers:
            raise ValueError("give deny_when, set_variables or set_headers")
        names = frozenset(self.inputs) | BUILT_IN
        for where, text in self._expressions():
            try:
                compile_cel(text, names)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        return self

    def _expressions(self) -> list[tuple[str, str]]:
        found = [("deny_when", self.deny_when)] if self.deny_when is not None else []
        found += [(f"set_variables.{k}", v) for k, v in self.set_variables.items()]
        found += [(f"set_headers.{k}", v) for k, v in self.set_headers.items()]
        return found


class ScriptPolicy(Policy[ScriptConfig]):
    type_name = "script"
    summary = "CEL expressions that refuse the request, set headers or store variables."
    config_model = ScriptConfig
    phases = frozenset({Phase.REQUEST, Phase.RESPONSE})
    errors = {
        "script_denied": ErrorSpec(403, "the request was refused by a script"),
        "script_failed": ErrorSpec(500, "a script could not be evaluated"),
    }
    __slots__ = ("_deny", "_headers", "_inputs", "_variables")

    def __init__(self, config: ScriptConfig, build: Build) -> None:
        super().__init__(config, build)
        names = frozenset(config.inputs) | BUILT_IN
        self._inputs = {name: compile_variable(src) for name, src in config.inputs.items()}
        self._deny = compile_cel(config.deny_when, names) if config.deny_when else None
        self._variables = [(k, compile_cel(v, names)) for k, v in config.set_variables.items()]
        self._headers = [(k, compile_cel(v, names)) for k, v in config.set_headers.items()]

    def _failed(self, ctx: PolicyContext, where: str, reason: str) -> None:
        log.warning("script %s: %s failed: %s", self.name, where, reason[:300])
        if self.config.on_error == "deny":
            raise Deny("script_failed")

    async def _run(self, ctx: PolicyContext, headers: HeaderMap) -> None:
        try:
            inputs = cel_values(await resolve_inputs(ctx, self._inputs, self.services.clock()))
        except InputTooLarge as exc:
            self._failed(ctx, "inputs", str(exc))
            return
        budget = Budget()
        if self._deny is not None:
            verdict = self._evaluate(ctx, "deny_when", self._deny, inputs, budget)
            if verdict is True:
                cfg = self.config
                raise Deny("script_denied", status=cfg.deny_status, message=cfg.deny_message)
            if verdict is not False and verdict is not _FAILED:
                self._failed(ctx, "deny_when", "the expression is not a boolean")
        for name, program in self._variables:
            value = self._evaluate(ctx, f"set_variables.{name}", program, inputs, budget)
            if value is not _FAILED:
                ctx.variables[name] = value
        for name, program in self._headers:
            value = self._evaluate(ctx, f"set_headers.{name}", program, inputs, budget)
            if value is _FAILED:
                continue
            text = as_text(value)
            if text is None:
                headers.remove(name)
            else:
                headers.set(name, clean_header_value(text))

    def _evaluate(
        self,
        ctx: PolicyContext,
        where: str,
        program: CelProgram,
        inputs: dict[str, object],
        budget: Budget,
    ) -> object:
        try:
            return program.evaluate(inputs, budget)
        except CelFailed as exc:
            self._failed(ctx, where, str(exc))
            return _FAILED

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        await self._run(ctx, ctx.request.headers)
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        if ctx.response is not None:
            await self._run(ctx, ctx.response.headers)
        return None


_FAILED = object()

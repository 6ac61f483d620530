"""Header, query and path rewrites. In the request list: request headers, query and path; in
the response and error lists: response headers. Values may use ``${variable}`` placeholders
(any variable that does not read the body); a computed value never carries CR/LF."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from portway.policies._headers import check_header_name, check_header_value, clean_header_value
from portway.policies.base import ALL_PHASES, Build, Deny, ErrorSpec, Policy, PolicyConfig
from portway.policies.contract import HeaderMap, PolicyContext, Reply
from portway.policies.variables import VariableTemplate

_GROUP_REF = re.compile(r"\\(\d+)|\\g<(\w+)>")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")


def check_template(value: str) -> str:
    check_header_value(value)
    for variable in VariableTemplate(value).variables:
        if variable.needs_body:
            raise ValueError(f"${{{variable.source}}} reads the body; rewrites may not")
    return value


class Template(VariableTemplate):
    __slots__ = ()

    def render_header(self, ctx: PolicyContext, now: float) -> str:
        return clean_header_value(self.render_now(ctx, now, _same))


def _same(text: str) -> str:
    return text


class HeaderRules(PolicyConfig):
    set: Annotated[dict[str, str], Field(max_length=100, description="replace or add")] = Field(
        default_factory=dict
    )
    add: Annotated[dict[str, str], Field(max_length=100, description="add a value")] = Field(
        default_factory=dict
    )
    remove: Annotated[list[str], Field(max_length=100, description="remove all values")] = Field(
        default_factory=list
    )
    rename: Annotated[dict[str, str], Field(max_length=100, description="old → new name")] = Field(
        default_factory=dict
    )

    @field_validator("set", "add")
    @classmethod
    def _values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, template in value.items():
            check_header_name(name)
            check_template(template)
        return value

    @field_validator("remove")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            check_header_name(name)
        return value

    @field_validator("rename")
    @classmethod
    def _renames(cls, value: dict[str, str]) -> dict[str, str]:
        for old, new in value.items():
            check_header_name(old)
            check_header_name(new)
        return value


class QueryRules(PolicyConfig):
    set: Annotated[
        dict[str, str], Field(max_length=100, description="replace or add a parameter")
    ] = Field(default_factory=dict)
    remove: Annotated[list[str], Field(max_length=100, description="remove parameters")] = Field(
        default_factory=list
    )
    rename: Annotated[dict[str, str], Field(max_length=100, description="old → new name")] = Field(
        default_factory=dict
    )

    @field_validator("set")
    @classmethod
    def _values(cls, value: dict[str, str]) -> dict[str, str]:
        for template in value.values():
            check_template(template)
        return value


class PathRule(PolicyConfig):
    pattern: Annotated[str, Field(min_length=1, max_length=1000, description="regex on the path")]
    replacement: Annotated[
        str, Field(max_length=2000, description="replacement; \\1 or \\g<name> for groups")
    ]

    @model_validator(mode="after")
    def _rules(self) -> PathRule:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern is not a regular expression: {exc}") from None
        for number, name in _GROUP_REF.findall(self.replacement):
            if number and int(number) > compiled.groups:
                raise ValueError(
                    f"replacement refers to group {number}, the pattern has {compiled.groups}"
                )
            if name and not name.isdigit() and name not in compiled.groupindex:
                raise ValueError(f"replacement refers to unknown group {name!r}")
            if name.isdigit() and int(name) > compiled.groups:
                raise ValueError(
                    f"replacement refers to group {name}, the pattern has {compiled.groups}"
                )
        return self


class RewriteConfig(PolicyConfig):
    request_headers: Annotated[
        HeaderRules, Field(description="request header rules (request list)")
    ] = HeaderRules()
    response_headers: Annotated[
        HeaderRules, Field(description="response header rules (response and error lists)")
    ] = HeaderRules()
    query: Annotated[QueryRules, Field(description="query rules (request list)")] = QueryRules()
    path: Annotated[PathRule | None, Field(description="path rewrite (request list)")] = None


class _CompiledHeaders:
    __slots__ = ("add", "remove", "rename", "set")

    def __init__(self, rules: HeaderRules) -> None:
        self.set = [(n, Template(v)) for n, v in rules.set.items()]
        self.add = [(n, Template(v)) for n, v in rules.add.items()]
        self.remove = list(rules.remove)
        self.rename = list(rules.rename.items())

    def apply(self, headers: HeaderMap, ctx: PolicyContext, now: float) -> None:
        for name in self.remove:
            headers.remove(name)
        for old, new in self.rename:
            values = headers.get_all(old)
            if values:
                headers.remove(old)
                headers.remove(new)
                for value in values:
                    headers.add(new, value)
        for name, template in self.set:
            headers.set(name, template.render_header(ctx, now))
        for name, template in self.add:
            headers.add(name, template.render_header(ctx, now))


class RewritePolicy(Policy[RewriteConfig]):
    type_name = "rewrite"
    summary = "Set, add, remove or rename headers and query parameters; rewrite the path."
    config_model = RewriteConfig
    phases = ALL_PHASES
    errors = {"rewrite_failed": ErrorSpec(500, "the request path could not be rewritten")}
    __slots__ = ("_path", "_query_set", "_request", "_response")

    def __init__(self, config: RewriteConfig, build: Build) -> None:
        super().__init__(config, build)
        self._request = _CompiledHeaders(config.request_headers)
        self._response = _CompiledHeaders(config.response_headers)
        self._query_set = [(n, Template(v)) for n, v in config.query.set.items()]
        self._path = (
            (re.compile(config.path.pattern), config.path.replacement) if config.path else None
        )

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        now = self.services.clock()
        req = ctx.request
        self._request.apply(req.headers, ctx, now)
        rules = self.config.query
        if rules.remove or rules.rename or self._query_set:
            query = [(k, v) for k, v in req.query if k not in rules.remove]
            query = [(rules.rename.get(k, k), v) for k, v in query]
            for name, template in self._query_set:
                query = [(k, v) for k, v in query if k != name]
                query.append((name, template.render_header(ctx, now)))
            req.query[:] = query
        if self._path is not None:
            pattern, replacement = self._path
            rewritten = pattern.sub(replacement, req.path, count=1)
            if (
                not _SAFE_PATH.fullmatch(rewritten)
                or "/../" in rewritten + "/"
                or "//" in rewritten
            ):
                raise Deny("rewrite_failed")
            req.path = rewritten
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        if ctx.response is not None:
            self._response.apply(ctx.response.headers, ctx, self.services.clock())
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return await self.on_response(ctx)

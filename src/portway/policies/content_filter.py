"""Content filter: refuse requests whose body (or path, query, headers) matches a configured
pattern, or whose body goes past size, nesting-depth or key/element-count limits.

Patterns are RE2 expressions (``google-re2``): matching takes time linear in the input whatever
the pattern (no catastrophic backtracking), and each compiled program is bounded in memory
(``MAX_PROGRAM_MEMORY``), so a pattern that is too large is refused when the policy is saved.
JSON limits are checked by a scan of the raw body, not by parsing it, so a body nested deeper
than any parser would accept is refused with the rule named rather than as malformed.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import re2
from pydantic import Field, field_validator, model_validator

from portway.config.base import FrozenModel
from portway.policies.base import Build, Deny, ErrorSpec, Policy, PolicyConfig
from portway.policies.contract import PolicyContext, Reply, RequestView
from portway.policies.xmlsafe import MAX_DEPTH, XmlRejected, XmlTooLarge, parse_xml

MAX_PROGRAM_MEMORY = 1 << 20
MAX_PATTERNS = 50

Target = Literal["body", "path", "query", "headers"]

_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:]')


def compile_pattern(pattern: str, ignore_case: bool) -> re2._Regexp[str]:
    options = re2.Options()
    options.max_mem = MAX_PROGRAM_MEMORY
    options.log_errors = False
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"not a usable RE2 regular expression: {reason}") from None


class PatternRule(FrozenModel):
    name: Annotated[
        str,
        Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$", description="rule name"),
    ]
    pattern: Annotated[
        str, Field(min_length=1, max_length=1000, description="RE2 regular expression")
    ]
    ignore_case: Annotated[bool, Field(description="match regardless of case")] = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        compile_pattern(value, False)
        return value


class ContentFilterConfig(PolicyConfig):
    patterns: Annotated[
        list[PatternRule], Field(max_length=MAX_PATTERNS, description="patterns that refuse")
    ] = []
    targets: Annotated[
        list[Target],
        Field(min_length=1, description="what the patterns are matched against"),
    ] = ["body"]
    max_body_bytes: Annotated[int | None, Field(ge=0, description="largest body (413)")] = None
    max_json_depth: Annotated[
        int | None, Field(ge=1, description="deepest nesting of JSON objects and arrays")
    ] = None
    max_json_keys: Annotated[
        int | None, Field(ge=0, description="most object members in a JSON body (413)")
    ] = None
    max_xml_depth: Annotated[
        int | None, Field(ge=1, le=MAX_DEPTH, description="deepest nesting of XML elements")
    ] = None
    max_xml_elements: Annotated[
        int | None, Field(ge=1, description="most elements in an XML body (413)")
    ] = None

    def shape_limits(self) -> list[int | None]:
        return [self.max_json_depth, self.max_json_keys, self.max_xml_depth, self.max_xml_elements]

    @model_validator(mode="after")
    def _something(self) -> ContentFilterConfig:
        limits = [self.max_body_bytes, *self.shape_limits()]
        if not self.patterns and all(limit is None for limit in limits):
            raise ValueError("give patterns or at least one limit")
        return self


class ContentFilterPolicy(Policy[ContentFilterConfig]):
    type_name = "content_filter"
    summary = "Refuse requests matching patterns or past size, depth and count limits."
    config_model = ContentFilterConfig
    errors = {
        "pattern_matched": ErrorSpec(400, "the request contains forbidden content"),
        "too_deep": ErrorSpec(400, "the body is nested too deeply"),
        "too_large": ErrorSpec(413, "the body is too large"),
        "encoded_body": ErrorSpec(415, "a compressed body cannot be filtered"),
    }
    __slots__ = ("_judges_body", "_patterns")

    def __init__(self, config: ContentFilterConfig, build: Build) -> None:
        super().__init__(config, build)
        self._patterns = [
            (rule.name, compile_pattern(rule.pattern, rule.ignore_case)) for rule in config.patterns
        ]
        self._judges_body = bool(config.patterns and "body" in config.targets) or any(
            limit is not None for limit in config.shape_limits()
        )

    def _texts(self, request: RequestView, body: bytes) -> list[tuple[Target, str]]:
        texts: list[tuple[Target, str]] = []
        for target in self.config.targets:
            if target == "body":
                texts.append((target, body.decode("utf-8", "replace")))
            elif target == "path":
                texts.append((target, request.path))
            elif target == "query":
                texts.extend((target, f"{k}={v}") for k, v in request.query)
            else:
                texts.extend((target, f"{k}: {v}") for k, v in request.headers.items())
        return texts

    def _json_limits(self, body: bytes) -> None:
        max_depth, max_keys = self.config.max_json_depth, self.config.max_json_keys
        depth = keys = 0
        for token in _JSON_TOKEN.finditer(body):
            char = token.group()
            if char in (b"{", b"["):
                depth += 1
                if max_depth is not None and depth > max_depth:
                    raise Deny("too_deep", details={"rule": "max_json_depth"})
            elif char in (b"}", b"]"):
                depth -= 1
            elif char == b":":
                keys += 1
                if max_keys is not None and keys > max_keys:
                    raise Deny("too_large", details={"rule": "max_json_keys"})

    def _xml_limits(self, body: bytes) -> None:
        cfg = self.config
        try:
            parse_xml(
                body, max_depth=cfg.max_xml_depth or MAX_DEPTH, max_elements=cfg.max_xml_elements
            )
        except XmlTooLarge as exc:
            if exc.limit == "depth":
                raise Deny("too_deep", details={"rule": "max_xml_depth"}) from None
            raise Deny("too_large", details={"rule": "max_xml_elements"}) from None
        except XmlRejected:
            return  # not XML this filter can judge; well-formedness is another policy's job

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        cfg = self.config
        body = await ctx.request.body()
        if cfg.max_body_bytes is not None and len(body) > cfg.max_body_bytes:
            raise Deny("too_large", details={"rule": "max_body_bytes"})
        encoding = (ctx.request.headers.get("content-encoding") or "identity").strip().lower()
        if body and encoding != "identity" and self._judges_body:
            # the filter would judge bytes the backend never reads as they are
            raise Deny("encoded_body", details={"rule": "content-encoding"})
        start = body.lstrip()[:1]
        if start in (b"{", b"[") and (cfg.max_json_depth, cfg.max_json_keys) != (None, None):
            self._json_limits(body)
        if start == b"<" and (cfg.max_xml_depth, cfg.max_xml_elements) != (None, None):
            self._xml_limits(body)
        if self._patterns:
            for target, text in self._texts(ctx.request, body):
                for name, regex in self._patterns:
                    if regex.search(text) is not None:
                        raise Deny("pattern_matched", details={"rule": name, "target": target})
        return None

"""Variables: named values read from the request, its context or the response, compiled once.

    header.NAME           request header (first value)      query.NAME   query parameter
    path.NAME             path parameter of the route        form.NAME    urlencoded form field
    body.$.json.path      JSONPath (subset) into JSON body   xml./a/b     ElementPath into XML body
    client_ip method path environment project api endpoint scheme correlation_id consumer roles
    time.epoch time.hour time.minute time.weekday time.date   (UTC; weekday 1 = Monday)
    var.NAME              a value a policy stored in ctx.variables
    consumer.metadata.KEY an attribute of the consumer an authentication policy identified
    response.status       response.header.NAME               (response and error lists)

A missing value resolves to ``None``. Malformed bodies resolve to ``None`` too: a condition on a
body field never turns a bad request into a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from portway.policies.contract import PolicyContext
from portway.policies.jsonpath import JsonPath, compile_jsonpath, load_json
from portway.policies.xmlsafe import ElementPath, XmlRejected, compile_element_path, parse_xml

_CONTEXT: dict[str, Callable[[PolicyContext], Any]] = {
    "client_ip": lambda c: c.client_ip,
    "method": lambda c: c.request.method,
    "path": lambda c: c.request.path,
    "environment": lambda c: c.environment,
    "project": lambda c: c.project,
    "api": lambda c: c.api,
    "endpoint": lambda c: c.endpoint,
    "scheme": lambda c: c.scheme,
    "correlation_id": lambda c: c.correlation_id,
    "consumer": lambda c: c.consumer,
    "roles": lambda c: list(c.roles),
}
_TIME: dict[str, Callable[[datetime], Any]] = {
    "epoch": lambda d: int(d.timestamp()),
    "hour": lambda d: d.hour,
    "minute": lambda d: d.minute,
    "weekday": lambda d: d.isoweekday(),
    "date": lambda d: d.date().isoformat(),
}
_PREFIXES = (
    "header.",
    "query.",
    "path.",
    "form.",
    "var.",
    "response.header.",
    "consumer.metadata.",
)
CONSUMER_METADATA = "_portway.consumer_metadata"
"""ctx.variables key: the metadata of the identified consumer (set by ``apply_identity``)."""

_JSON_CACHE = "_portway.json_body"
_XML_CACHE = "_portway.xml_body"
_FORM_CACHE = "_portway.form_body"


@dataclass(frozen=True, slots=True)
class Variable:
    source: str
    kind: str
    name: str = ""
    jsonpath: JsonPath | None = None
    element_path: ElementPath | None = None

    @property
    def needs_body(self) -> bool:
        return self.kind in ("body", "xml", "form")

    def resolve_now(self, ctx: PolicyContext, now: float) -> Any:
        """Resolve a variable that does not need the body."""
        kind = self.kind
        if kind == "header":
            return ctx.request.headers.get(self.name)
        if kind == "query":
            return ctx.request.query_get(self.name)
        if kind == "path":
            return ctx.path_params.get(self.name)
        if kind == "context":
            return _CONTEXT[self.name](ctx)
        if kind == "time":
            return _TIME[self.name](datetime.fromtimestamp(now, UTC))
        if kind == "var":
            return ctx.variables.get(self.name)
        if kind == "consumer.metadata":
            metadata = ctx.variables.get(CONSUMER_METADATA)
            return metadata.get(self.name) if metadata else None
        if kind == "response.status":
            return ctx.response.status if ctx.response is not None else None
        if kind == "response.header":
            return ctx.response.headers.get(self.name) if ctx.response is not None else None
        raise ValueError(f"variable {self.source!r} needs the body")

    async def resolve(self, ctx: PolicyContext, now: float) -> Any:
        if not self.needs_body:
            return self.resolve_now(ctx, now)
        body = await ctx.request.body()
        if self.kind == "form":
            return _form(ctx, body).get(self.name)
        if self.kind == "body":
            document = _json(ctx, body)
            if document is _INVALID or self.jsonpath is None:
                return None
            return self.jsonpath.first(document)[1]
        root = _xml(ctx, body)
        if root is None or self.element_path is None:
            return None
        values = self.element_path.values(root)
        return values[0] if values else None


_INVALID = object()


def _json(ctx: PolicyContext, body: bytes) -> Any:
    cached = ctx.variables.get(_JSON_CACHE)
    if cached is not None and cached[0] is body:
        return cached[1]
    try:
        document: Any = load_json(body)
    except ValueError:
        document = _INVALID
    ctx.variables[_JSON_CACHE] = (body, document)
    return document


def _xml(ctx: PolicyContext, body: bytes) -> Any:
    cached = ctx.variables.get(_XML_CACHE)
    if cached is not None and cached[0] is body:
        return cached[1]
    try:
        root: Any = parse_xml(body)
    except XmlRejected:
        root = None
    ctx.variables[_XML_CACHE] = (body, root)
    return root


def _form(ctx: PolicyContext, body: bytes) -> dict[str, str]:
    cached = ctx.variables.get(_FORM_CACHE)
    if cached is not None and cached[0] is body:
        return dict(cached[1])
    content_type = (ctx.request.headers.get("content-type") or "").lower()
    fields: dict[str, str] = {}
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
                fields.setdefault(key, value)
        except (UnicodeDecodeError, ValueError):
            fields = {}
    ctx.variables[_FORM_CACHE] = (body, fields)
    return fields


def compile_variable(source: str) -> Variable:
    """Parse a variable name; raise ``ValueError`` with an exact message when unknown."""
    if source in _CONTEXT:
        return Variable(source, "context", source)
    if source.startswith("time.") and source[5:] in _TIME:
        return Variable(source, "time", source[5:])
    if source == "response.status":
        return Variable(source, "response.status")
    if source.startswith("body."):
        return Variable(source, "body", jsonpath=compile_jsonpath(source[5:]))
    if source.startswith("xml."):
        return Variable(source, "xml", element_path=compile_element_path(source[4:]))
    for prefix in _PREFIXES:
        if source.startswith(prefix) and len(source) > len(prefix):
            kind = prefix[:-1]
            return Variable(source, kind, source[len(prefix) :])
    raise ValueError(
        f"unknown variable {source!r} (use header.X, query.X, path.X, form.X, body.$..., "
        "xml./..., var.X, consumer.metadata.X, response.status, response.header.X, time.* or "
        "a context value)"
    )


_PLACEHOLDER = re.compile(r"\$\{([^{}]+)\}")


class VariableTemplate:
    """Text with ``${variable}`` placeholders (any variable above), compiled once. A missing
    value renders as the empty string; ``escape`` makes each value safe where it goes (a header,
    a URL, a JSON string) — placeholders are substituted, never evaluated."""

    __slots__ = ("needs_body", "parts")

    def __init__(self, text: str) -> None:
        self.parts: list[str | Variable] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(text):
            self.parts.append(text[pos : match.start()])
            self.parts.append(compile_variable(match.group(1)))
            pos = match.end()
        self.parts.append(text[pos:])
        self.needs_body = any(isinstance(p, Variable) and p.needs_body for p in self.parts)

    @property
    def variables(self) -> list[Variable]:
        return [p for p in self.parts if isinstance(p, Variable)]

    def render_now(self, ctx: PolicyContext, now: float, escape: Callable[[str], str]) -> str:
        """Render without reading the body (``needs_body`` must be false)."""
        return "".join(
            p if isinstance(p, str) else escape(as_text(p.resolve_now(ctx, now)) or "")
            for p in self.parts
        )

    async def render(self, ctx: PolicyContext, now: float, escape: Callable[[str], str]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(escape(as_text(await part.resolve(ctx, now)) or ""))
        return "".join(out)


def as_text(value: Any) -> str | None:
    """The text form used for comparisons and keys (JSON scalars as JSON spells them)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return (
            repr(value)
            if isinstance(value, float) and not value.is_integer()
            else str(int(value) if isinstance(value, float) else value)
        )
    return json.dumps(value, separators=(",", ":"), sort_keys=True)

"""Message builder: replace the request body (request list), the backend's body (response list)
or the error answer (error list) with a Jinja2 template rendered in Jinja's immutable sandbox.

The template reads ``request``, ``context``, ``response`` and the declared ``inputs`` (as the
script policy does, ``_inputs``), plus ``body`` (the text of the message being replaced) and
``json`` (that body parsed, or none). Values are escaped for ``content_type``: HTML/XML through
Jinja's autoescape (``|safe`` is not available), JSON by writing each ``{{ value }}`` as JSON
spells it inside or outside quotes (a string's quotes and backslashes escaped, ``none`` as
``null``), plain text as is.

Threat model: the policy's author writes the template; the client controls its inputs. Neither
may run Python or hold the worker. A template is expressions, ``if`` and ``for`` only: ``set``,
``with``, macros, call blocks and template inheritance are refused when saved, and
``ImmutableSandboxedEnvironment`` refuses ``_`` attributes and mutating methods
(``list.append``), so nothing can carry a value from one step into the next to double it. Only
the filters in ``FILTERS`` exist (``center``, ``indent``, ``wordwrap``, ``format``, ``replace``
and ``safe`` are gone; ``join`` is size-checked); ``*``, ``**``, ``+`` and ``~`` are checked
before they run (``'a' * 10**9`` fails, it does not allocate); loops nest at most
``MAX_LOOP_NESTING`` deep and every iteration and call counts against ``MAX_STEPS`` per render;
``range`` gives at most ``MAX_RANGE`` numbers; the output is cut off past ``max_output_bytes``.
Templates are at most ``MAX_TEMPLATE`` characters and ``MAX_TEMPLATE_NODES`` syntax nodes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import jinja2
import markupsafe
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from pydantic import Field, field_validator, model_validator

from portway.policies._headers import SafeHeaderValue
from portway.policies._inputs import BUILT_IN, InputTooLarge, check_inputs, resolve_inputs
from portway.policies.base import ALL_PHASES, Build, Deny, ErrorSpec, Policy, PolicyConfig
from portway.policies.contract import HeaderMap, PolicyContext, Reply
from portway.policies.jsonpath import load_json
from portway.policies.render import escape_for
from portway.policies.variables import compile_variable

log = logging.getLogger("portway.policies")

MAX_TEMPLATE = 64 * 1024
MAX_TEMPLATE_NODES = 2000
MAX_STEPS = 100_000
MAX_RANGE = 10_000
MAX_VALUE = 1 << 20
MAX_EXPONENT = 64
MAX_INT_BITS = 8192
MAX_LOOP_NESTING = 3

FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
        "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
        "rejectattr", "reverse", "round", "select", "selectattr", "sort", "string", "striptags",
        "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
    }
)  # fmt: skip
_LOOP = "portway_loop"
_CONCAT = "portway_concat"
_NO_STATE = (
    nodes.Assign, nodes.AssignBlock, nodes.With, nodes.Macro, nodes.CallBlock,
    nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport, nodes.Block,
)  # fmt: skip
_STEPS: contextvars.ContextVar[list[int]] = contextvars.ContextVar("message_builder_steps")


class BuildFailed(Exception):
    pass


def _spend(amount: int = 1) -> None:
    steps = _STEPS.get()
    steps[0] += amount
    if steps[0] > MAX_STEPS:
        raise SecurityError(f"the template took more than {MAX_STEPS} steps")


def _bounded_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _spend()
        yield item


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() may give at most {MAX_RANGE} numbers")
    return numbers


def _int_bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


def _bounded_concat(*parts: Any) -> str:
    """``a ~ b``: every part is text already; the joined result is bounded like ``+``."""
    _spend()
    texts = [p if isinstance(p, str) else str(p) for p in parts]
    if sum(map(len, texts)) > MAX_VALUE:
        raise SecurityError(f"the result would be larger than {MAX_VALUE}")
    return str(markup_join(parts))


def _size(value: Any) -> int:
    """About how many characters ``value`` prints as (strings and containers, nested), counted
    without recursion and only up to just past ``MAX_VALUE``."""
    total = 0
    stack = [value]
    while stack and total <= MAX_VALUE:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, list | tuple):
            total += len(item) + 1
            stack.extend(item)
        elif isinstance(item, dict):
            total += len(item) + 1
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += 1
    return total


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        _spend()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sequence = isinstance(seq, str | bytes | list | tuple)
                if sequence and isinstance(times, int) and _size(seq) * times > MAX_VALUE:
                    raise SecurityError(f"the result would be larger than {MAX_VALUE}")
            if _int_bits(left) + _int_bits(right) > MAX_INT_BITS:
                raise SecurityError(f"numbers may have at most {MAX_INT_BITS} bits")
        elif operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponents may be at most {MAX_EXPONENT}")
            if _int_bits(left) * int(abs(right) if isinstance(right, int) else 1) > MAX_INT_BITS:
                raise SecurityError(f"numbers may have at most {MAX_INT_BITS} bits")
        elif (
            not isinstance(left, int | float)
            and not isinstance(right, int | float)
            and _size(left) + _size(right) > MAX_VALUE
        ):
            raise SecurityError(f"the result would be larger than {MAX_VALUE}")
        return super().call_binop(context, operator, left, right)

    def call(
        __self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any
    ) -> Any:
        _spend()
        return super().call(__context, __obj, *args, **kwargs)


def _safe_join(value: Iterable[Any], d: str = "", attribute: str | None = None) -> str:
    items = [str(v) for v in value]
    if sum(map(len, items)) + len(d) * len(items) > MAX_VALUE:
        raise SecurityError(f"the result would be larger than {MAX_VALUE}")
    _spend(len(items))
    return d.join(items)


def _json_finalize(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        return ""  # as Jinja renders it (``{{ "," if x }}``); ``|default(none)`` gives null
    if isinstance(value, markupsafe.Markup):
        return str(value)  # from tojson: already JSON (HTML-escaping filters do not exist here)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    if isinstance(value, str):
        return escape_for("application/json", value)
    return json.dumps(value, separators=(",", ":"), default=str)


def _environment(content_type: str) -> _Sandbox:
    lowered = content_type.lower()
    markup = "xml" in lowered or "html" in lowered
    env = _Sandbox(
        autoescape=markup,
        undefined=jinja2.ChainableUndefined,
        finalize=_json_finalize if "json" in lowered else None,
        keep_trailing_newline=True,
    )
    allowed = FILTERS - {"e", "escape"} if "json" in lowered and not markup else FILTERS
    env.filters = {name: f for name, f in env.filters.items() if name in allowed}
    env.filters["join"] = _safe_join
    env.globals = {
        "range": _bounded_range,
        "dict": dict,
        _LOOP: _bounded_loop,
        _CONCAT: _bounded_concat,
    }
    return env


def _loop_depth(loop: nodes.For) -> int:
    inner = [_loop_depth(n) for n in loop.find_all(nodes.For) if n is not loop]
    return 1 + max(inner, default=0)


class _Bounded(NodeTransformer):
    """Every loop iterates through ``portway_loop`` (counted) and every ``~`` joins through
    ``portway_concat`` (size-checked)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name(_LOOP, "load"), [node.iter], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.Name(_CONCAT, "load"), list(node.nodes), [], None, None)


def compile_template(text: str, content_type: str) -> jinja2.Template:
    """The compiled template; ``ValueError`` with an exact message when refused."""
    env = _environment(content_type)
    try:
        tree = env.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    for count, node in enumerate(tree.find_all(nodes.Node)):
        if count >= MAX_TEMPLATE_NODES:
            raise ValueError(f"a template may have at most {MAX_TEMPLATE_NODES} parts")
        if isinstance(node, nodes.Filter) and node.name not in env.filters:
            known = ", ".join(sorted(FILTERS))
            raise ValueError(f"filter {node.name!r} is not available (available: {known})")
        if isinstance(node, nodes.Name) and node.name in (_LOOP, _CONCAT):
            raise ValueError(f"{node.name} is reserved")
        if isinstance(node, _NO_STATE):
            raise ValueError(
                "set, with, macro, call, block, extends, include and import are not available "
                "(a template is expressions, if and for)"
            )
        if isinstance(node, nodes.For) and _loop_depth(node) > MAX_LOOP_NESTING:
            raise ValueError(f"for loops may be nested at most {MAX_LOOP_NESTING} deep")
    tree = _Bounded().visit(tree)
    try:
        return env.from_string(tree)
    except jinja2.TemplateError as exc:
        raise ValueError(f"template error: {exc}") from None


def render(template: jinja2.Template, values: dict[str, Any], limit: int) -> bytes:
    """Render within the step budget; ``BuildFailed`` when it fails or passes ``limit`` bytes."""
    token = _STEPS.set([0])
    out: list[bytes] = []
    size = 0
    try:
        for chunk in template.generate(values):
            data = chunk.encode()
            size += len(data)
            if size > limit:
                raise BuildFailed(f"the message is larger than {limit} bytes")
            out.append(data)
    except SecurityError as exc:
        raise BuildFailed(str(exc)) from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise BuildFailed(f"{type(exc).__name__}: {exc}") from None
    except RecursionError:
        raise BuildFailed("the template recursed too deeply") from None
    finally:
        _STEPS.reset(token)
    return b"".join(out)


class MessageBuilderConfig(PolicyConfig):
    template: Annotated[
        str, Field(min_length=1, max_length=MAX_TEMPLATE, description="Jinja2 template")
    ]
    content_type: Annotated[
        SafeHeaderValue,
        Field(max_length=200, description="Content-Type of the message; chooses the escaping"),
    ] = "application/json"
    inputs: Annotated[
        dict[str, str],
        Field(description="names the template may read → variable (header.X, body.$.a ...)"),
    ] = Field(default_factory=dict)
    max_output_bytes: Annotated[
        int, Field(ge=1, le=8 << 20, description="a larger message is a failure")
    ] = 1 << 20

    _inputs = field_validator("inputs")(classmethod(lambda cls, v: check_inputs(v)))

    @model_validator(mode="after")
    def _compiles(self) -> MessageBuilderConfig:
        reserved = BUILT_IN | {"body", "json"}
        taken = sorted(set(self.inputs) & reserved)
        if taken:
            raise ValueError(f"input name {taken[0]!r} is built in")
        try:
            compile_template(self.template, self.content_type)
        except ValueError as exc:
            raise ValueError(f"template: {exc}") from None
        return self


class MessageBuilderPolicy(Policy[MessageBuilderConfig]):
    type_name = "message_builder"
    summary = "Build the request, response or error body from a sandboxed Jinja2 template."
    config_model = MessageBuilderConfig
    phases = ALL_PHASES
    errors = {"build_failed": ErrorSpec(500, "the message could not be built")}
    __slots__ = ("_inputs", "_template")

    def __init__(self, config: MessageBuilderConfig, build: Build) -> None:
        super().__init__(config, build)
        self._template = compile_template(config.template, config.content_type)
        self._inputs = {name: compile_variable(src) for name, src in config.inputs.items()}

    async def _build(self, ctx: PolicyContext, body: bytes, headers: HeaderMap) -> bytes:
        try:
            values = await resolve_inputs(ctx, self._inputs, self.services.clock())
        except InputTooLarge as exc:
            log.warning("message_builder %s failed: %s", self.name, exc)
            raise Deny("build_failed") from None
        text = body.decode("utf-8", "replace")
        values["body"] = text
        try:
            values["json"] = load_json(body) if body.lstrip()[:1] in (b"{", b"[") else None
        except ValueError:
            values["json"] = None
        try:
            built = render(self._template, values, self.config.max_output_bytes)
        except BuildFailed as exc:
            log.warning("message_builder %s failed: %s", self.name, str(exc)[:300])
            raise Deny("build_failed") from None
        headers.set("Content-Type", self.config.content_type)
        headers.remove("content-length")
        return built

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        request = ctx.request
        request.set_body(await self._build(ctx, await request.body(), request.headers))
        return None

    async def on_response(self, ctx: PolicyContext) -> Reply | None:
        response = ctx.response
        if response is not None:
            response.set_body(await self._build(ctx, await response.body(), response.headers))
        return None

    async def on_error(self, ctx: PolicyContext) -> Reply | None:
        return await self.on_response(ctx)

"""Conditions: nested AND / OR / NOT over comparisons, compiled once.

    {"and": [c1, c2, ...]}   {"or": [c1, ...]}   {"not": c}
    {"variable": "header.X-Env", "operator": "EQ", "value": "beta", "ignore_case": false}

Operators: LT LE GT GE EQ NE STARTS_WITH ENDS_WITH CONTAINS NOT_CONTAINS IS_EMPTY IS_NOT_EMPTY
IS_EXISTS IS_NOT_EXISTS IN NOT_IN. Ordering operators compare numbers when both sides are
numbers, text otherwise. A missing variable makes every comparison false except NE,
NOT_CONTAINS, NOT_IN, IS_EMPTY and IS_NOT_EXISTS.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from portway.errors import ConfigError
from portway.policies.contract import PolicyContext
from portway.policies.variables import Variable, as_text, compile_variable

MAX_DEPTH = 16
MAX_NODES = 200
MAX_LIST = 1000

OPERATORS = frozenset(
    {
        "LT", "LE", "GT", "GE", "EQ", "NE", "STARTS_WITH", "ENDS_WITH", "CONTAINS",
        "NOT_CONTAINS", "IS_EMPTY", "IS_NOT_EMPTY", "IS_EXISTS", "IS_NOT_EXISTS", "IN", "NOT_IN",
    }
)  # fmt: skip
_UNARY = frozenset({"IS_EMPTY", "IS_NOT_EMPTY", "IS_EXISTS", "IS_NOT_EXISTS"})
_LISTS = frozenset({"IN", "NOT_IN"})
_TRUE_WHEN_MISSING = frozenset({"NE", "NOT_CONTAINS", "NOT_IN", "IS_EMPTY", "IS_NOT_EXISTS"})

Evaluator = Callable[[PolicyContext, float], Awaitable[bool]]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _compare(op: str, actual: Any, expected: Any, ignore_case: bool) -> bool:
    if actual is None:
        return op in _TRUE_WHEN_MISSING
    if op == "IS_EXISTS":
        return True
    if op == "IS_NOT_EXISTS":
        return False
    if op in ("IS_EMPTY", "IS_NOT_EMPTY"):
        empty = actual in ("", [], {})
        return empty if op == "IS_EMPTY" else not empty

    def norm(v: Any) -> str:
        text = as_text(v) or ""
        return text.casefold() if ignore_case else text

    if op in _LISTS:
        found = norm(actual) in {norm(v) for v in expected}
        return found if op == "IN" else not found
    if op in ("CONTAINS", "NOT_CONTAINS"):
        if isinstance(actual, list):
            found = norm(expected) in {norm(v) for v in actual}
        else:
            found = norm(expected) in norm(actual)
        return found if op == "CONTAINS" else not found
    if op == "STARTS_WITH":
        return norm(actual).startswith(norm(expected))
    if op == "ENDS_WITH":
        return norm(actual).endswith(norm(expected))
    a_num, e_num = _number(actual), _number(expected)
    both_numbers = a_num is not None and e_num is not None and not isinstance(expected, str)
    if op in ("EQ", "NE"):
        same = a_num == e_num if both_numbers else norm(actual) == norm(expected)
        return same if op == "EQ" else not same
    left: Any
    right: Any
    left, right = (a_num, e_num) if both_numbers else (norm(actual), norm(expected))
    if op == "LT":
        return bool(left < right)
    if op == "LE":
        return bool(left <= right)
    if op == "GT":
        return bool(left > right)
    return bool(left >= right)  # GE


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition tree."""

    evaluate: Evaluator
    needs_body: bool
    source: Mapping[str, Any]

    async def __call__(self, ctx: PolicyContext, now: float) -> bool:
        return await self.evaluate(ctx, now)


class _Counter:
    nodes = 0


def compile_condition(tree: Mapping[str, Any], where: str = "condition") -> Condition:
    """Compile ``tree``; a ``ConfigError`` names the offending field (``where.and[1].value``)."""
    counter = _Counter()
    evaluate, needs_body = _compile(tree, where, 0, counter)
    return Condition(evaluate, needs_body, tree)


def _compile(node: Any, where: str, depth: int, counter: _Counter) -> tuple[Evaluator, bool]:
    counter.nodes += 1
    if counter.nodes > MAX_NODES:
        raise ConfigError(f"a condition may have at most {MAX_NODES} nodes", where)
    if depth > MAX_DEPTH:
        raise ConfigError(f"conditions may be nested at most {MAX_DEPTH} deep", where)
    if not isinstance(node, Mapping):
        raise ConfigError("a condition must be an object", where)
    logical = [k for k in ("and", "or", "not") if k in node]
    if logical:
        key = logical[0]
        if len(node) != 1:
            raise ConfigError(f"'{key}' must be the only key of its object", where)
        if key == "not":
            inner, body = _compile(node["not"], f"{where}.not", depth + 1, counter)

            async def negate(ctx: PolicyContext, now: float) -> bool:
                return not await inner(ctx, now)

            return negate, body
        items = node[key]
        if not isinstance(items, Sequence) or isinstance(items, str) or not items:
            raise ConfigError(f"'{key}' needs a non-empty list of conditions", f"{where}.{key}")
        compiled = [
            _compile(item, f"{where}.{key}[{i}]", depth + 1, counter)
            for i, item in enumerate(items)
        ]
        # body-free comparisons first: cheap ones often decide alone
        compiled.sort(key=lambda pair: pair[1])
        parts = [fn for fn, _ in compiled]
        needs_body = any(b for _, b in compiled)
        if key == "and":

            async def all_of(ctx: PolicyContext, now: float) -> bool:
                for part in parts:
                    if not await part(ctx, now):
                        return False
                return True

            return all_of, needs_body

        async def any_of(ctx: PolicyContext, now: float) -> bool:
            for part in parts:
                if await part(ctx, now):
                    return True
            return False

        return any_of, needs_body
    return _comparison(node, where)


def _comparison(node: Mapping[str, Any], where: str) -> tuple[Evaluator, bool]:
    unknown = sorted(set(node) - {"variable", "operator", "value", "ignore_case"})
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}", f"{where}.{unknown[0]}")
    source = node.get("variable")
    if not isinstance(source, str) or not source:
        raise ConfigError("a comparison needs a 'variable'", f"{where}.variable")
    try:
        variable: Variable = compile_variable(source)
    except ValueError as exc:
        raise ConfigError(str(exc), f"{where}.variable") from exc
    op = node.get("operator")
    if not isinstance(op, str) or op.upper() not in OPERATORS:
        raise ConfigError(
            f"operator must be one of {', '.join(sorted(OPERATORS))}", f"{where}.operator"
        )
    op = op.upper()
    ignore_case = node.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise ConfigError("ignore_case must be true or false", f"{where}.ignore_case")
    value = node.get("value")
    if op in _UNARY:
        if "value" in node:
            raise ConfigError(f"{op} takes no value", f"{where}.value")
    elif op in _LISTS:
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            raise ConfigError(f"{op} needs a list of 1 to {MAX_LIST} values", f"{where}.value")
        if any(isinstance(v, dict | list) or v is None for v in value):
            raise ConfigError(f"{op} values must be strings, numbers or booleans", f"{where}.value")
    elif not isinstance(value, str | int | float | bool) or value is None:
        raise ConfigError(f"{op} needs a string, number or boolean value", f"{where}.value")

    async def compare(ctx: PolicyContext, now: float) -> bool:
        actual = await variable.resolve(ctx, now)
        return _compare(op, actual, value, ignore_case)

    return compare, variable.needs_body

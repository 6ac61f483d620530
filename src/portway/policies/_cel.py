"""CEL (Common Expression Language) as the script policy runs it: ``cel-python`` (``celpy``), its
tree-walking interpreter only, with limits checked when the policy is saved and while it runs.

Threat model: whoever may edit an API's policies writes the expression; whoever sends requests
controls its inputs. Neither may run Python, reach Python objects, or hold a worker's event loop
or memory for long. CEL itself has no loops, no assignment and no attribute access on host objects
(``x.__class__`` looks up a map key). What ``celpy`` adds beyond the spec is closed here:

- at save: at most ``MAX_LENGTH`` characters and ``MAX_NESTING`` levels of brackets (checked
  before parsing, so a deep expression never reaches the recursive parser), at most ``MAX_NODES``
  syntax nodes, only the functions and macros in ``FUNCTIONS`` / ``MACROS`` (``reduce``, whose
  accumulator can double on every step, is not one of them; nor is ``type``, which hands out Python
  classes), comprehensions nested at most ``MAX_COMPREHENSION_NESTING`` deep, no name starting with
  ``_``, and only the declared input names;
- at run: at most ``MAX_STEPS`` syntax-node evaluations and ``MAX_PRODUCED`` characters or
  items produced by all nodes together, for all the expressions of one policy run (``Budget``),
  whatever the inputs (``CelLimit``); ``matches`` uses RE2 with a bounded program (linear time,
  no backtracking); ``*`` multiplies numbers only (``"a" * 1000000000`` and ``[x] * n`` are
  errors).

Cost: ``celpy`` is slow — some 20 µs per syntax node on this machine, about 0.5 ms for a
comparison like ``qty > 10 && !('x-vip' in request.headers)`` — so ``MAX_STEPS`` caps what one
policy run may hold the event loop for at about 70 ms (measured, 2 cores under load).

The interpreter is never the ``CompiledRunner`` (that one turns the expression into Python source
and ``exec``s it). Building the environment raises the process's recursion limit inside
``celpy``; it is restored at once, and raised only while an expression runs
(``EVALUATION_RECURSION_LIMIT``).
"""

from __future__ import annotations

import functools
import operator
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import celpy
import celpy.celtypes as ct
import lark
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import Activation, CELEvalError, Evaluator

from portway.policies.content_filter import compile_pattern

MAX_LENGTH = 2000
MAX_NESTING = 12
MAX_NODES = 400
MAX_COMPREHENSION_NESTING = 2
MAX_TREE_DEPTH = 300
EVALUATION_RECURSION_LIMIT = 2500
"""``celpy`` evaluates recursively, some 5.5 Python frames per syntax-tree level: while an
expression runs the recursion limit is this (what ``celpy`` itself sets, for good, on import),
and a tree deeper than ``MAX_TREE_DEPTH`` is refused at save, so evaluation stays below it."""
MAX_STEPS = 3_000
MAX_PRODUCED = 1 << 20

MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})
FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double",
        "string", "bool", "bytes", "duration", "timestamp", "dyn", "lowerAscii", "upperAscii",
        "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getMonth",
        "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    }
)  # fmt: skip
_OPEN, _CLOSE = "([{", ")]}"
_Tree = lark.Tree[Any]


class CelLimit(Exception):
    """An evaluation went past ``MAX_STEPS`` or ``MAX_PRODUCED``."""


class CelFailed(Exception):
    """An evaluation failed (missing key, wrong type, division by zero ...) or hit a limit."""


def _multiply(left: Any, right: Any) -> Any:
    numbers = (ct.IntType, ct.UintType, ct.DoubleType)
    if not (isinstance(left, numbers) and isinstance(right, numbers)):
        raise TypeError("'*' multiplies numbers only")
    return operator.mul(left, right)


def _matches(text: Any, pattern: Any) -> Any:
    if not isinstance(text, str) or not isinstance(pattern, str):
        return CELEvalError("matches() needs two strings", TypeError, None)
    try:
        regex = compile_pattern(pattern, False)
    except ValueError as exc:
        return CELEvalError(str(exc), ValueError, None)
    return ct.BoolType(regex.search(text) is not None)


def _lower(text: Any) -> Any:
    return (
        ct.StringType(str(text).lower()) if isinstance(text, str) else CELEvalError("", TypeError)
    )


def _upper(text: Any) -> Any:
    return (
        ct.StringType(str(text).upper()) if isinstance(text, str) else CELEvalError("", TypeError)
    )


_OVERRIDES: dict[str, Any] = {
    "_*_": _multiply,
    "matches": _matches,
    "lowerAscii": _lower,
    "upperAscii": _upper,
}


@dataclass(slots=True)
class Budget:
    """What evaluations have used so far; one budget is shared by all the expressions a policy
    runs for one request, so the limits bound the policy, not each expression."""

    steps: int = 0
    produced: int = 0


class _BoundedEvaluator(Evaluator):
    """Counts every node it visits and every character or item a node produces."""

    def __init__(self, ast: _Tree, activation: Activation, budget: Budget) -> None:
        super().__init__(ast, activation)
        self.budget = budget

    def sub_evaluator(self, ast: _Tree) -> Evaluator:
        return _BoundedEvaluator(ast, self.activation, self.budget)

    def _visit_tree(self, tree: _Tree) -> Any:
        # lark's Interpreter sends every node (the root through visit, the others through
        # visit_children) to _visit_tree: the one place that sees them all
        budget = self.budget
        budget.steps += 1
        if budget.steps > MAX_STEPS:
            raise CelLimit(f"the expression took more than {MAX_STEPS} steps")
        result = super()._visit_tree(tree)
        if isinstance(result, str | bytes | list | dict):
            budget.produced += len(result)
            if budget.produced > MAX_PRODUCED:
                raise CelLimit(f"the expression produced more than {MAX_PRODUCED} characters")
        return result


@functools.cache
def _environment() -> celpy.Environment:
    """Built on first use: building its parser takes most of a second."""
    limit = sys.getrecursionlimit()
    try:
        return celpy.Environment()
    finally:
        sys.setrecursionlimit(limit)


def _check_text(text: str) -> None:
    if len(text) > MAX_LENGTH:
        raise ValueError(f"an expression may have at most {MAX_LENGTH} characters")
    depth = 0
    quote: str | None = None
    escaped = False
    for char in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in _OPEN:
            depth += 1
            if depth > MAX_NESTING:
                raise ValueError(f"brackets may be nested at most {MAX_NESTING} deep")
        elif char in _CLOSE:
            depth -= 1


def _called_name(node: _Tree) -> str | None:
    """The function or macro a call node names (``f(x)`` or ``x.f(y)``)."""
    if node.data == "ident_arg":
        return str(node.children[0])
    if node.data == "member_dot_arg":
        return str(node.children[1])
    return None


def _walk(tree: _Tree) -> None:
    nodes = 0
    stack: list[tuple[_Tree, int, int]] = [(tree, 0, 1)]
    while stack:
        node, comprehensions, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ValueError(f"an expression may have at most {MAX_NODES} parts")
        if depth > MAX_TREE_DEPTH:
            raise ValueError("the expression is nested too deeply")
        called = _called_name(node)
        if called is not None:
            if called not in FUNCTIONS and called not in MACROS:
                known = ", ".join(sorted(FUNCTIONS | MACROS))
                raise ValueError(f"function {called!r} is not allowed (allowed: {known})")
            if called in MACROS - {"has"}:
                comprehensions += 1
                if comprehensions > MAX_COMPREHENSION_NESTING:
                    raise ValueError(
                        f"comprehensions (all, exists, map, filter) may be nested at most "
                        f"{MAX_COMPREHENSION_NESTING} deep"
                    )
        for child in node.children:
            if isinstance(child, lark.Tree):
                stack.append((child, comprehensions, depth + 1))
            elif (
                isinstance(child, lark.Token)
                and child.type == "IDENT"
                and child.value.startswith("_")
            ):
                raise ValueError(f"names starting with '_' are not allowed ({child.value!r})")


def _free_names(tree: _Tree) -> set[str]:
    """Identifiers read as variables, minus those bound by comprehensions."""
    bound: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in MACROS - {"has"}:
            args = node.children[2]
            if isinstance(args, lark.Tree) and args.children:
                first = args.children[0]
                if isinstance(first, lark.Tree):
                    bound |= {str(t.children[0]) for t in first.find_data("ident")}
    return {
        str(node.children[0])
        for node in tree.find_data("ident")
        if str(node.children[0]) not in bound
    }


@dataclass(frozen=True, slots=True)
class CelProgram:
    source: str
    _runner: celpy.Runner

    def evaluate(self, values: Mapping[str, Any], budget: Budget | None = None) -> Any:
        """The expression's value (plain Python) for ``values`` (from ``cel_values``);
        ``CelFailed`` when it fails or goes past a limit."""
        activation = self._runner.new_activation()
        evaluator = _BoundedEvaluator(self._runner.ast, activation, budget or Budget())
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, EVALUATION_RECURSION_LIMIT))
        try:
            result = evaluator.evaluate(cast(Any, values))
        except CelLimit as exc:
            raise CelFailed(str(exc)) from None
        except CELEvalError as exc:
            raise CelFailed(str(exc.args[0]) if exc.args else "evaluation failed") from None
        except (TypeError, ValueError, ArithmeticError, KeyError, IndexError, RecursionError):
            raise CelFailed("evaluation failed") from None
        finally:
            sys.setrecursionlimit(limit)
        return to_python(result)


def cel_values(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-like Python values as CEL values (converted once for all of a policy's expressions)."""
    return {name: json_to_cel(value) for name, value in inputs.items()}


def to_python(value: Any) -> Any:
    """A CEL value as plain Python (JSON-like)."""
    if isinstance(value, ct.BoolType):
        return bool(value)
    if isinstance(value, ct.IntType | ct.UintType):
        return int(value)
    if isinstance(value, ct.DoubleType):
        return float(value)
    if isinstance(value, ct.StringType):
        return str(value)
    if isinstance(value, ct.BytesType):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, ct.ListType):
        return [to_python(v) for v in value]
    if isinstance(value, ct.MapType):
        return {str(to_python(k)): to_python(v) for k, v in value.items()}
    if value is None:
        return None
    return str(value)


def compile_cel(text: str, names: frozenset[str]) -> CelProgram:
    """Parse and check ``text``; ``ValueError`` with an exact message when refused.
    ``names`` are the inputs the expression may read."""
    _check_text(text)
    try:
        tree = _environment().compile(text)
    except CELParseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise ValueError(f"not a valid CEL expression: {first}") from None
    except RecursionError:
        raise ValueError(f"brackets may be nested at most {MAX_NESTING} deep") from None
    _walk(tree)
    unknown = sorted(_free_names(tree) - names)
    if unknown:
        raise ValueError(f"unknown name {unknown[0]!r} (known: {', '.join(sorted(names))})")
    runner = _environment().program(tree, functions=_OVERRIDES)
    return CelProgram(text, runner)

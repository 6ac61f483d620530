"""JSON bodies as policies read them, and a small, safe subset of JSONPath (RFC 9535), compiled
once.

Supported: ``$`` (root), ``.name``, ``['name']`` / ``["name"]``, ``[3]`` / ``[-1]`` (index),
``[*]`` / ``.*`` (wildcard), ``..name`` / ``..*`` (recursive descent). Not supported (refused when
the policy is saved, naming the position): filters ``[?…]``, slices ``[1:3]``, unions ``[a,b]``,
functions. Nothing in a path can execute code or loop forever. Where RFC 9535 and this subset both
define a path, they select the same nodes in the same order.

``load_json`` is how every policy parses a body: a document nested deeper than ``MAX_JSON_DEPTH``
is refused like malformed JSON (never a recursion error, never a 500).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_PATH_LENGTH = 500
MAX_STEPS = 32
MAX_JSON_DEPTH = 256

_NAME = re.compile(r"[A-Za-z_$@][A-Za-z0-9_$@-]*")
_BRACKET = re.compile(r"\[\s*(?:(\*)|(-?\d{1,9})|'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\")\s*\]")

WILDCARD = object()


def json_depth(value: Any, limit: int) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), counted without recursion;
    stops counting once past ``limit``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > limit:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def load_json(body: bytes) -> Any:
    """The parsed body; ``ValueError`` when it is not UTF-8 JSON nested at most
    ``MAX_JSON_DEPTH`` deep."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if json_depth(document, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return document


@dataclass(frozen=True, slots=True)
class Step:
    key: str | int | object  # str = member, int = index, WILDCARD
    recursive: bool = False


@dataclass(frozen=True, slots=True)
class JsonPath:
    source: str
    steps: tuple[Step, ...]

    def find(self, document: Any) -> list[Any]:
        return [node for _, node in self.find_paths(document)]

    def find_paths(self, document: Any) -> list[tuple[tuple[str | int, ...], Any]]:
        """Every match with its concrete location (``("items", 0, "qty")``)."""
        nodes: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
        for step in self.steps:
            nodes = [found for node in nodes for found in _apply(step, node)]
            if not nodes:
                break
        return nodes

    def first(self, document: Any) -> tuple[bool, Any]:
        found = self.find(document)
        return (True, found[0]) if found else (False, None)


Located = tuple[tuple[str | int, ...], Any]


def _children(located: Located) -> Iterator[Located]:
    path, node = located
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), value
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*path, index), value


def _select(key: str | int | object, located: Located) -> Iterator[Located]:
    path, node = located
    if key is WILDCARD:
        yield from _children(located)
    elif isinstance(key, str):
        if isinstance(node, dict) and key in node:
            yield (*path, key), node[key]
    elif isinstance(key, int) and isinstance(node, list) and -len(node) <= key < len(node):
        yield (*path, key % len(node)), node[key]


def _descendants(located: Located) -> Iterator[Located]:
    stack = [located]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(_children(current))))


def _apply(step: Step, located: Located) -> Iterator[Located]:
    if not step.recursive:
        yield from _select(step.key, located)
        return
    for descendant in _descendants(located):
        yield from _select(step.key, descendant)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def compile_jsonpath(path: str) -> JsonPath:
    """Parse ``path``; raise ``ValueError`` with a message naming the offending position."""
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(f"JSONPath is longer than {MAX_PATH_LENGTH} characters")
    if not path.startswith("$"):
        raise ValueError("JSONPath must start with '$'")
    steps: list[Step] = []
    pos = 1
    while pos < len(path):
        recursive = False
        if path.startswith("..", pos):
            recursive = True
            pos += 2
        elif path[pos] == ".":
            pos += 1
        elif path[pos] != "[":
            raise ValueError(f"unexpected {path[pos]!r} at position {pos} of the JSONPath")
        if pos < len(path) and path[pos] == "*" and (recursive or path[pos - 1] == "."):
            steps.append(Step(WILDCARD, recursive))
            pos += 1
        elif pos < len(path) and path[pos] == "[":
            match = _BRACKET.match(path, pos)
            if match is None:
                raise ValueError(f"bad bracket expression at position {pos} of the JSONPath")
            star, index, single, double = match.groups()
            key: str | int | object
            if star:
                key = WILDCARD
            elif index is not None:
                key = int(index)
            else:
                key = _unescape(single if single is not None else double)
            steps.append(Step(key, recursive))
            pos = match.end()
        else:
            match = _NAME.match(path, pos)
            if match is None:
                raise ValueError(f"expected a member name at position {pos} of the JSONPath")
            steps.append(Step(match.group(), recursive))
            pos = match.end()
        if len(steps) > MAX_STEPS:
            raise ValueError(f"JSONPath has more than {MAX_STEPS} steps")
    return JsonPath(path, tuple(steps))


def format_path(parts: Iterator[str | int] | list[str | int] | tuple[str | int, ...]) -> str:
    """A jsonschema error path as JSONPath text (``$.items[0].qty``)."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _NAME.fullmatch(part):
            out += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            out += f"['{escaped}']"
    return out

"""The routing table: virtual host, then path (prefix or ``{param}`` template), then method.

Compiled once per revision into a segment trie per host, so a lookup costs a few dictionary
probes per path segment whatever the number of routes. Most specific wins:

* host: an exact host (with, then without the port) before ``*.suffix`` wildcards (longest
  suffix first) before mounts that name no host; the first of these tables that has a matching
  mount answers;
* path: the deepest base path wins; at the same depth a literal segment beats a ``{param}``;
* inside the mounted API, an endpoint whose path matches exactly (literal before param; one
  trailing ``/`` ignored) and whose methods allow the request's method (``HEAD`` where ``GET`` is
  listed) gives the endpoint; a path that matches endpoints none of which allows the method
  answers 405 with their methods, unless the mount opts into ``fallthrough``; a path that
  matches no endpoint is the API's own;
* method: a mount whose methods exclude the request's answers 405 with the allowed ones.
* ``TRACE`` reaches a backend only where a methods list names it (the mount's or the matched
  endpoint's): a mount or endpoint that lists no methods admits every other method and answers
  ``TRACE`` with 405 (a backend that answers TRACE echoes the request back, headers the gateway
  added included; nginx refuses TRACE always).

``match`` expects the canonical path (``portway.http.target.canonical_path``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")
_MAX_DEPTH = 64

ANY_METHOD = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""The ``Allow`` of a 405 from a mount or endpoint that lists no methods (its refused method is
``TRACE``). ``CONNECT`` never gets here: the HTTP layer refuses it."""


@dataclass(slots=True)
class EndpointMount(Generic[T]):
    path: str
    """Relative path under the base path, ``{name}`` segments for parameters."""
    methods: frozenset[str]
    """Empty: every method."""
    value: T


@dataclass(slots=True)
class Mount(Generic[T]):
    base_path: str
    value: T
    hosts: Sequence[str] = ()
    methods: frozenset[str] = frozenset()
    endpoints: Sequence[EndpointMount[T]] = ()
    fallthrough: bool = False
    """A method no matching endpoint lists goes to the API itself instead of 405."""


@dataclass(slots=True)
class Match(Generic[T]):
    value: T
    params: dict[str, str]
    rest: str
    """The raw path after the base path: ``""`` or ``/...``."""
    endpoint: bool


@dataclass(slots=True)
class NotAllowed(Generic[T]):
    allowed: frozenset[str]
    value: T | None = field(default=None, compare=False)
    """The mount whose methods refused: its API answers (a SOAP API with a fault)."""


class _Node(Generic[T]):
    __slots__ = ("children", "entries", "param")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.param: _Node[T] | None = None
        self.entries: list[_Entry[T]] = []


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    methods: frozenset[str]
    names: tuple[str, ...]
    endpoints: _Node[T] | None = None
    fallthrough: bool = False


def _segments(path: str) -> list[str]:
    return [] if path in ("", "/") else path.split("/")[1:]


def _insert(root: _Node[T], path: str) -> tuple[_Node[T], tuple[str, ...]]:
    node = root
    names: list[str] = []
    for seg in _segments(path):
        if seg.startswith("{") and seg.endswith("}"):
            names.append(seg[1:-1])
            if node.param is None:
                node.param = _Node()
            node = node.param
        else:
            nxt = node.children.get(seg)
            if nxt is None:
                nxt = node.children[seg] = _Node()
            node = nxt
    return node, tuple(names)


def _deepest(root: _Node[T], segs: list[str]) -> tuple[int, _Node[T], list[str]] | None:
    """The deepest node with entries along ``segs`` (literal before param at equal depth)."""
    best: tuple[int, _Node[T], list[str]] | None = None
    values: list[str] = []
    count = len(segs)

    def visit(node: _Node[T], i: int) -> None:
        nonlocal best
        if node.entries and (best is None or i > best[0]):
            best = (i, node, values.copy())
        if i == count or i >= _MAX_DEPTH:
            return
        seg = segs[i]
        child = node.children.get(seg)
        if child is not None:
            visit(child, i + 1)
        if node.param is not None and seg:
            values.append(seg)
            visit(node.param, i + 1)
            values.pop()

    visit(root, 0)
    return best


def _deepest_literal(root: _Node[T], segs: list[str]) -> tuple[int, _Node[T], list[str]] | None:
    """``_deepest`` for a table without ``{param}`` segments: a plain walk."""
    best: tuple[int, _Node[T], list[str]] | None = (0, root, []) if root.entries else None
    node = root
    for i, seg in enumerate(segs):
        nxt = node.children.get(seg)
        if nxt is None:
            break
        node = nxt
        if node.entries:
            best = (i + 1, node, [])
    return best


def _allows(methods: frozenset[str], method: str, trace: bool) -> bool:
    """An endpoint's methods admit ``method`` (``HEAD`` where ``GET`` is listed); listing none,
    every method but ``TRACE``, unless its API's methods name it (``trace``)."""
    if not methods:
        return trace or method != "TRACE"
    return method in methods or (method == "HEAD" and "GET" in methods)


def _exact(
    root: _Node[T], segs: list[str], method: str, listed: set[str], trace: bool
) -> tuple[_Entry[T], list[str]] | None:
    """The first (literal-first) full match whose methods allow ``method`` (``_allows``); the
    methods of the full matches that do not are added to ``listed``."""
    values: list[str] = []
    count = len(segs)

    def visit(node: _Node[T], i: int) -> tuple[_Entry[T], list[str]] | None:
        if i == count:
            for entry in node.entries:
                if _allows(entry.methods, method, trace):
                    return entry, values.copy()
                listed.update(entry.methods or ANY_METHOD)
            return None
        seg = segs[i]
        child = node.children.get(seg)
        if child is not None:
            found = visit(child, i + 1)
            if found is not None:
                return found
        if node.param is not None and seg:
            values.append(seg)
            found = visit(node.param, i + 1)
            values.pop()
            return found
        return None

    if count > _MAX_DEPTH:
        return None
    return visit(root, 0)


class Router(Generic[T]):
    """An immutable routing table."""

    def __init__(self, mounts: Iterable[Mount[T]]) -> None:
        self._exact: dict[str, _Node[T]] = {}
        self._wild: dict[str, _Node[T]] = {}
        self._any: _Node[T] | None = None
        self._with_params: set[int] = set()
        self.size = 0
        for mount in mounts:
            self.size += 1 + len(mount.endpoints)
            tables: list[_Node[T]] = []
            if not mount.hosts:
                if self._any is None:
                    self._any = _Node()
                tables.append(self._any)
            for host in mount.hosts:
                host = host.lower()
                if host.startswith("*."):
                    tables.append(self._wild.setdefault(host[2:], _Node()))
                else:
                    tables.append(self._exact.setdefault(host, _Node()))
            endpoints: _Node[T] | None = None
            if mount.endpoints:
                endpoints = _Node()
                for ep in mount.endpoints:
                    node, names = _insert(endpoints, ep.path)
                    node.entries.append(_Entry(ep.value, ep.methods, names))
                    # an endpoint for every method sorts after those naming the method
                    node.entries.sort(key=lambda e: not e.methods)
            for table in tables:
                node, names = _insert(table, mount.base_path)
                if names:
                    self._with_params.add(id(table))
                node.entries.append(
                    _Entry(mount.value, mount.methods, names, endpoints, mount.fallthrough)
                )

    def _tables(self, host: str) -> list[_Node[T]]:
        tables: list[_Node[T]] = []
        if host:
            table = self._exact.get(host)
            if table is not None:
                tables.append(table)
            name = host
            if host[-1] != "]" and ":" in host:
                name = host.rsplit(":", 1)[0]
                table = self._exact.get(name)
                if table is not None:
                    tables.append(table)
            if self._wild:
                dot = name.find(".")
                while dot != -1:
                    table = self._wild.get(name[dot + 1 :])
                    if table is not None:
                        tables.append(table)
                    dot = name.find(".", dot + 1)
        if self._any is not None:
            tables.append(self._any)
        return tables

    def match(self, host: str, method: str, path: str) -> Match[T] | NotAllowed[T] | None:
        """Route a request; ``path`` is the canonical (percent-encoded) path."""
        raw = path.split("/")[1:] if path != "/" else []
        segs = [unquote(s) for s in raw] if "%" in path else raw
        for table in self._tables(host):
            if id(table) in self._with_params:
                found = _deepest(table, segs)
            else:
                found = _deepest_literal(table, segs)
            if found is None:
                continue
            depth, node, values = found
            allowed: set[str] = set()
            for entry in node.entries:
                if entry.methods and method not in entry.methods:
                    allowed |= entry.methods
                    continue
                unlisted_trace = not entry.methods and method == "TRACE"
                params = dict(zip(entry.names, values, strict=False)) if entry.names else {}
                rest_raw = raw[depth:]
                rest = "/" + "/".join(rest_raw) if rest_raw else ""
                if entry.endpoints is not None:
                    rel = segs[depth:]
                    if rel and rel[-1] == "":
                        rel = rel[:-1]
                    listed: set[str] = set()
                    hit = _exact(entry.endpoints, rel, method, listed, "TRACE" in entry.methods)
                    if hit is not None:
                        ep, ep_values = hit
                        if ep.names:
                            params = {**params, **dict(zip(ep.names, ep_values, strict=False))}
                        return Match(ep.value, params, rest, True)
                    if listed and not entry.fallthrough:
                        if "GET" in listed:
                            listed.add("HEAD")
                        return NotAllowed(frozenset(listed), entry.value)
                if unlisted_trace:  # only an endpoint that lists TRACE admits it here
                    allowed |= ANY_METHOD
                    continue
                return Match(entry.value, params, rest, False)
            return NotAllowed(frozenset(allowed), node.entries[0].value)
        return None

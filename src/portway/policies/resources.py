"""What policies may use besides the request: caches, clock, HTTP client, consumers, counters."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from portway.config.revision import EnvironmentRevision
from portway.policies.consumers import ConsumerIndex
from portway.stores.cache import Cache

Clock = Callable[[], float]


@dataclass(slots=True)
class PolicyCounters:
    """Per-policy counters for the worker's status report."""

    evaluated: int = 0
    allowed: int = 0
    denied: int = 0
    errors: int = 0
    skipped: int = 0
    shadow_denied: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "evaluated": self.evaluated,
            "allowed": self.allowed,
            "denied": self.denied,
            "errors": self.errors,
            "skipped": self.skipped,
            "shadow_denied": self.shadow_denied,
        }


class PolicyStats:
    """Counters keyed by (scope key, scope, policy name); they survive revision swaps, and a
    proxy-level policy counts once for every endpoint route of its API."""

    __slots__ = ("_counters",)

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str, str], PolicyCounters] = {}

    def counters(self, label: str, scope: str, name: str) -> PolicyCounters:
        key = (label, scope, name)
        found = self._counters.get(key)
        if found is None:
            found = self._counters[key] = PolicyCounters()
        return found

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {"key": label, "scope": scope, "policy": name, **c.as_dict()}
            for (label, scope, name), c in sorted(self._counters.items())
        ]


class Memo:
    """A bounded in-process map with expiry (LRU), for values that must stay Python objects
    (parsed JWKS, positive password checks). Single event loop: no locking needed."""

    __slots__ = ("_clock", "_items", "_max")

    def __init__(self, clock: Clock, max_items: int = 10_000) -> None:
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._clock = clock
        self._max = max_items

    def get(self, key: str) -> Any | None:
        found = self._items.get(key)
        if found is None:
            return None
        expires, value = found
        if expires <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def set(self, key: str, value: Any, ttl: float) -> None:
        self._items[key] = (self._clock() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def delete(self, key: str) -> None:
        self._items.pop(key, None)


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """A platform error rule: the body template used for errors of a code (or any code: '*')."""

    code: str
    body: str
    content_type: str = "application/json"
    status: int | None = None
    message: str | None = None


def _default_http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False)


@dataclass(slots=True)
class PolicyServices:
    """Shared by every pipeline of a worker; ``with_revision`` gives the per-revision view."""

    environment: str
    cache: Cache
    local_cache: Cache
    clock: Clock = time.time
    http_client_factory: Callable[[], httpx.AsyncClient] = _default_http_client
    error_rules: tuple[ErrorRule, ...] = ()
    stats: PolicyStats = field(default_factory=PolicyStats)
    memo: Memo | None = None
    consumers: ConsumerIndex = field(default_factory=ConsumerIndex)
    _consumers_of: int | None = None
    _http: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        if self.memo is None:
            self.memo = Memo(self.clock)

    @property
    def shared_memo(self) -> Memo:
        assert self.memo is not None
        return self.memo

    def consumer_index(self, revision: EnvironmentRevision) -> ConsumerIndex:
        """The index of ``revision``'s consumers, built once per revision object."""
        if self._consumers_of != id(revision):
            self.consumers = ConsumerIndex.for_revision(revision)
            self._consumers_of = id(revision)
        return self.consumers

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = self.http_client_factory()
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

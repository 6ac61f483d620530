"""The cache interface: values with a TTL, atomic windowed counters, compare-and-set.

Used for throttling and quota counters, the response cache, shared balancing state and token caches.
Every call is bounded by the backend's per-call timeout; a backend that cannot answer raises
``StoreUnavailable`` (never hangs), and the caller decides to fail open or closed.
Counters are atomic inside the engine (a Lua script on Redis, an entry processor / CAS loop on
Hazelcast, a lock in-process) — never get-then-set across the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class WindowCount:
    """The result of an increment: the count in the current window and seconds until it resets."""

    count: int
    reset_after: float


class Cache(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def increment(self, key: str, *, window: float, amount: int = 1) -> WindowCount:
        """Add ``amount`` to the counter of the fixed window ``key`` lives in, created at 0 with a
        lifetime of ``window`` seconds on first use; returns the new count atomically."""

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, *, ttl: float | None = None
    ) -> bool:
        """Set ``value`` only if the current value equals ``expected`` (``None`` = absent)."""

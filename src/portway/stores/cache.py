"""The cache interface: values with a TTL, atomic windowed counters, compare-and-set.

Used for throttling and quota counters, the response cache, shared balancing state and token caches.
Every call is bounded by the backend's per-call timeout; a backend that cannot answer raises
``StoreUnavailable`` (never hangs), and the caller decides to fail open or closed.
Counters are atomic inside the engine (a Lua script on Redis, an entry processor / CAS loop on
Hazelcast, a lock in-process) — never get-then-set across the network.

Backends are chosen by URL with ``open_cache``:

- ``local://?max_entries=100000`` — in-process (``cache_local``); each process counts alone;
- ``redis://host:6379/0?timeout=0.5&prefix=portway:`` (``rediss://`` for TLS) — ``cache_redis``;
- ``hazelcast://host:5701,host2:5701/cluster?timeout=0.5&map=portway`` — ``cache_hazelcast``.

``timeout`` is the per-call bound in seconds (default 1); ``connect_timeout`` bounds ``open()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit


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


DEFAULT_TIMEOUT = 1.0


def url_options(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def float_option(options: Mapping[str, str], name: str, default: float) -> float:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"cache URL option {name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"cache URL option {name}={raw!r} must be positive")
    return value


def check_ttl(ttl: float | None, what: str = "ttl") -> None:
    if ttl is not None and not ttl > 0:
        raise ValueError(f"{what} must be positive seconds, got {ttl!r}")


def open_cache(url: str) -> Cache:
    """Build a cache from a URL (see the module docstring); call ``await cache.open()`` next."""
    parts = urlsplit(url)
    options = url_options(url)
    timeout = float_option(options, "timeout", DEFAULT_TIMEOUT)
    if parts.scheme == "local":
        from portway.stores.cache_local import LocalCache

        return LocalCache(max_entries=int(options.get("max_entries", 100_000)))
    if parts.scheme in ("redis", "rediss", "unix"):
        from portway.stores.cache_redis import RedisCache

        return RedisCache(
            url,
            timeout=timeout,
            connect_timeout=float_option(options, "connect_timeout", timeout),
            prefix=options.get("prefix", "portway:"),
        )
    if parts.scheme == "hazelcast":
        from portway.stores.cache_hazelcast import HazelcastCache

        members = [m for m in parts.netloc.rsplit("@", 1)[-1].split(",") if m]
        return HazelcastCache(
            members or ["127.0.0.1:5701"],
            cluster=parts.path.strip("/") or "dev",
            timeout=timeout,
            connect_timeout=float_option(options, "connect_timeout", max(timeout, 5.0)),
            map_name=options.get("map", "portway"),
            username=parts.username,
            password=parts.password,
        )
    raise ValueError(f"cache URL scheme {parts.scheme!r} is not one of local, redis, hazelcast")

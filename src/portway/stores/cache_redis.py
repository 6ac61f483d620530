"""The Redis cache (``redis.asyncio``): counters and compare-and-set run as Lua scripts.

A script runs atomically inside Redis (nothing else executes meanwhile), so ``increment`` adds,
reads the remaining lifetime and starts the window in one step, and ``compare_and_set`` compares
and writes in one step: no get-then-set crosses the network, whatever the number of workers.
Scripts go by ``EVALSHA`` (redis-py falls back to ``EVAL`` once after a server restart).

Increments issued in the same event-loop turn are coalesced (``_Increments``): one script call per
counter with the sum of their amounts, all in one pipeline. Each caller still gets the count its
own increment produced (the running total inside that sum), so the counts stay exact and distinct,
exactly as if the increments had run one after another: at 32 concurrent requests of one consumer
this is one Redis command instead of 32.

Connections come from a bounded pool (``max_connections`` in the URL, default 32); a call waits for
a free one within its deadline. Every call is bounded by ``timeout`` seconds (socket timeouts plus
an overall deadline) and maps
connection failures and timeouts to ``StoreUnavailable``; one immediate retry on a fresh connection
covers a pooled connection that a server restart has closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from portway.errors import StoreError, StoreUnavailable
from portway.stores.cache import WindowCount, check_ttl

T = TypeVar("T")

# KEYS[1] counter; ARGV[1] amount, ARGV[2] window in ms. Returns {count, ms until reset}.
_INCREMENT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
"""

# KEYS[1]; ARGV[1] '1' if a value is expected else '0', ARGV[2] expected, ARGV[3] new value,
# ARGV[4] ttl in ms or ''. Returns 1 when written.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""

_PORTWAY_OPTIONS = {"timeout", "connect_timeout", "prefix"}
DEFAULT_MAX_CONNECTIONS = 32


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class _Increments:
    """Coalesces the increments of one event-loop turn into one pipeline (see the module doc)."""

    __slots__ = ("_cache", "_pending", "_tasks")

    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache
        # (prefixed key, window ms) -> [(amount, the caller's future)] in arrival order
        self._pending: dict[tuple[str, int], list[tuple[int, asyncio.Future[WindowCount]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, key: str, amount: int, window_ms: int) -> asyncio.Future[WindowCount]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WindowCount] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.setdefault((key, window_ms), []).append((amount, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._send(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, pending: dict[tuple[str, int], list[tuple[int, asyncio.Future[WindowCount]]]]
    ) -> None:
        try:
            results = await self._cache._call(self._run(pending))
        except Exception as exc:
            for waiters in pending.values():
                for _, future in waiters:
                    if not future.done():
                        future.set_exception(type(exc)(*exc.args))
            return
        for waiters, (count, ttl_ms) in zip(pending.values(), results, strict=True):
            running = int(count) - sum(amount for amount, _ in waiters)
            reset_after = int(ttl_ms) / 1000
            for amount, future in waiters:
                running += amount
                if not future.done():
                    future.set_result(WindowCount(running, reset_after))

    async def _run(
        self, pending: dict[tuple[str, int], list[tuple[int, asyncio.Future[WindowCount]]]]
    ) -> list[Any]:
        cache = self._cache
        client = cache._client()
        if len(pending) == 1:
            ((key, window_ms), waiters), *_ = pending.items()
            total = sum(amount for amount, _ in waiters)
            return [await cache._increment(keys=[key], args=[total, window_ms])]
        pipe = client.pipeline(transaction=False)
        for (key, window_ms), waiters in pending.items():
            total = sum(amount for amount, _ in waiters)
            await cache._increment(keys=[key], args=[total, window_ms], client=pipe)
        return list(await pipe.execute())

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))


class RedisCache:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.0,
        connect_timeout: float | None = None,
        prefix: str = "portway:",
    ) -> None:
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _PORTWAY_OPTIONS]
        self._url = urlunsplit(parts._replace(query=urlencode(query)))
        self._timeout = timeout
        self._connect_timeout = connect_timeout or timeout
        self._prefix = prefix
        self._redis: Redis | None = None
        self._increment: Any = None
        self._cas: Any = None
        self._increments = _Increments(self)

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await op
        except TimeoutError as exc:
            raise StoreUnavailable(f"redis: no answer within {self._timeout}s") from exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    def _client(self) -> Redis:
        if self._redis is None:
            raise StoreUnavailable("cache is not open")
        return self._redis

    async def open(self) -> None:
        if self._redis is not None:
            return
        # A bounded pool that waits (within the call's deadline) for a free connection, instead of
        # opening one per concurrent request or failing when the bound is reached.
        options: dict[str, Any] = {}
        if "max_connections" not in dict(parse_qsl(urlsplit(self._url).query)):
            options["max_connections"] = DEFAULT_MAX_CONNECTIONS
        pool = BlockingConnectionPool.from_url(
            self._url,
            timeout=self._timeout,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._connect_timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
            **options,
        )
        self._redis = Redis.from_pool(pool)  # the client owns the pool and closes it
        self._increment = self._redis.register_script(_INCREMENT)
        self._cas = self._redis.register_script(_COMPARE_AND_SET)
        try:
            await self._call(self._redis.ping())
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._increments.close()
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    async def get(self, key: str) -> bytes | None:
        value = await self._call(self._client().get(self._key(key)))
        return value.encode() if isinstance(value, str) else value  # bytes: no decode_responses

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_ttl(ttl)
        px = None if ttl is None else _ms(ttl)
        await self._call(self._client().set(self._key(key), value, px=px))

    async def delete(self, key: str) -> None:
        await self._call(self._client().delete(self._key(key)))

    async def increment(self, key: str, *, window: float, amount: int = 1) -> WindowCount:
        check_ttl(window, "window")
        self._client()
        return await self._increments.add(self._key(key), amount, _ms(window))

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, *, ttl: float | None = None
    ) -> bool:
        check_ttl(ttl)
        self._client()
        args: list[bytes | str] = [
            "0" if expected is None else "1",
            expected if expected is not None else b"",
            value,
            "" if ttl is None else str(_ms(ttl)),
        ]
        written = await self._call(self._cas(keys=[self._key(key)], args=args))
        return bool(written)

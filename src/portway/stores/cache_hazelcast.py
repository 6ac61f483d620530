"""The Hazelcast cache, on the client's native asyncio API (``hazelcast.asyncio``, GA since 5.7).

Values live in the IMap ``<map>``, counters in ``<map>.counters``.

Atomic counters: a compare-and-set loop on the IMap. Each attempt reads the counter's stored value
``b"<count>:<window end, epoch ms>"`` and writes the incremented value with ``replace_if_same``
(or ``put_if_absent`` for a new window). The member compares and swaps in one operation on the
key's partition thread, so of several workers racing on the same old value exactly one wins and
the others re-read and retry: no increment is lost or counted twice. Why not something else:

- an entry processor would do it in one round trip, but Hazelcast runs only Java entry
  processors whose classes are deployed on every member — not something Portway can install;
- ``IAtomicLong`` belongs to the CP subsystem, an Enterprise feature since Hazelcast 5.5, and has
  no expiry;
- ``PNCounter`` is a CRDT: eventually consistent, it can admit more than the limit;
- ``map.lock`` + get + put works, but a lock held by a worker that stalls past its lease lets a
  second holder in; the CAS loop needs no lease and cannot over-admit.

The window end inside the value is what decides expiry (to the millisecond, on the clock of the
worker that opened the window: keep worker clocks NTP-synchronised). ``replace_if_same`` resets an
entry's TTL, so after each write the TTL is set again to the remaining window plus one more window
of slack — only to collect dead counters. The slack makes that late ``set_ttl`` safe: even if it
lands after another worker opened the next window, it cannot expire that window early.
Under heavy contention on one key each increment may take a few attempts (a few round trips).

Values are stored as Hazelcast byte arrays (``bytearray``; the client would pickle ``bytes``).
Plain values use ``set``/``put_if_absent``/``replace_if_same`` directly; Hazelcast keeps TTLs in
whole seconds (a sub-second TTL would expire at once), so TTLs are rounded up. A compare-and-set
with a TTL sets it with a second call, so a concurrent writer may see its TTL replaced: acceptable
for cached values, never used for counters.

Losing the cluster: the client reconnects on its own for ``connect_timeout`` seconds, then shuts
itself down for good. The cache then answers ``StoreUnavailable`` at once and opens a new client
in the background (one attempt at a time) until the cluster is back — without that, a worker
whose only member restarted would never count again (found by the lab's drill 5).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import warnings
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from portway.errors import StoreError, StoreUnavailable
from portway.stores.cache import WindowCount, check_ttl

with warnings.catch_warnings():
    # The package imports its legacy asyncore reactor (deprecated in Python 3.11) even when only the
    # asyncio client is used.
    warnings.filterwarnings("ignore", "The asyncore module is deprecated", DeprecationWarning)
    from hazelcast.asyncio import HazelcastClient, Map
    from hazelcast.errors import (
        HazelcastError,
        HazelcastSerializationError,
        IllegalArgumentError,
        InvalidConfigurationError,
    )

T = TypeVar("T")

CLOCK_SKEW_ALLOWANCE = 5.0  # seconds of clock difference between workers the TTL slack absorbs


def _pack(count: int, end_ms: int) -> bytearray:
    return bytearray(b"%d:%d" % (count, end_ms))


def _unpack(raw: bytes | bytearray) -> tuple[int, int]:
    count, _, end = bytes(raw).partition(b":")
    return int(count), int(end)


def _blob(value: bytes) -> bytearray:
    # bytearray goes as a Hazelcast byte array; the client would pickle ``bytes`` instead.
    return bytearray(value)


def _bytes(value: bytes | bytearray | None) -> bytes | None:
    return None if value is None else bytes(value)


def _seconds(ttl: float | None) -> float | None:
    # Hazelcast keeps TTLs in whole seconds and expires a sub-second TTL at once: round up.
    return None if ttl is None else float(math.ceil(ttl))


class HazelcastCache:
    def __init__(
        self,
        members: Sequence[str],
        *,
        cluster: str = "dev",
        timeout: float = 1.0,
        connect_timeout: float = 5.0,
        map_name: str = "portway",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._members = list(members)
        self._cluster = cluster
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._map_name = map_name
        self._credentials = (username, password)
        self._client: Any = None
        self._values: Map[str, bytearray] | None = None
        self._counters: Map[str, bytearray] | None = None
        self._reopening: asyncio.Task[None] | None = None

    async def _call(self, op: Awaitable[T], limit: float | None = None) -> T:
        limit = limit or self._timeout
        try:
            async with asyncio.timeout(limit):
                return await op
        except TimeoutError as exc:
            raise StoreUnavailable(f"hazelcast: no answer within {limit}s") from exc
        except (HazelcastSerializationError, IllegalArgumentError) as exc:
            raise StoreError(f"hazelcast: {exc}") from exc
        except (HazelcastError, OSError) as exc:
            raise StoreUnavailable(f"hazelcast: {exc}") from exc

    def _maps(self) -> tuple[Map[str, bytearray], Map[str, bytearray]]:
        client = self._client
        if client is not None and not client.lifecycle_service.is_running():
            if self._reopening is None or self._reopening.done():
                self._reopening = asyncio.get_running_loop().create_task(self._reopen(client))
            raise StoreUnavailable("hazelcast: the client lost the cluster; reconnecting")
        if self._reopening is not None and not self._reopening.done():
            raise StoreUnavailable("hazelcast: reconnecting to the cluster")
        if self._values is None or self._counters is None:
            raise StoreUnavailable("cache is not open")
        return self._values, self._counters

    async def _reopen(self, dead: Any) -> None:
        """Replace a client that gave up on the cluster; retry until a new one connects."""
        if self._client is dead:
            self._client = None
            self._values = self._counters = None
        while self._client is None:
            try:
                await self.open()
            except StoreUnavailable:
                await asyncio.sleep(min(1.0, self._connect_timeout))

    async def open(self) -> None:
        if self._client is not None:
            return
        username, password = self._credentials
        options: dict[str, Any] = {
            "cluster_name": self._cluster,
            "cluster_members": self._members,
            "cluster_connect_timeout": self._connect_timeout,
            "connection_timeout": self._timeout,
            "invocation_timeout": self._timeout,
            "statistics_enabled": False,
        }
        if username:
            options["creds_username"] = username
            options["creds_password"] = password or ""
        try:
            client = await self._call(
                HazelcastClient.create_and_start(**options), self._connect_timeout + self._timeout
            )
        except InvalidConfigurationError as exc:
            raise ValueError(f"hazelcast configuration: {exc}") from exc
        self._client = client
        try:
            self._values = await self._call(client.get_map(self._map_name))
            self._counters = await self._call(client.get_map(self._map_name + ".counters"))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        reopening = self._reopening
        if reopening is not None and reopening is not asyncio.current_task():
            self._reopening = None  # (open() closes a half-opened client from inside _reopen)
            reopening.cancel()
            await asyncio.gather(reopening, return_exceptions=True)
        client, self._client = self._client, None
        self._values = self._counters = None
        if client is not None:
            await client.shutdown()

    async def get(self, key: str) -> bytes | None:
        values, _ = self._maps()
        return _bytes(await self._call(values.get(key)))

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_ttl(ttl)
        values, _ = self._maps()
        await self._call(values.set(key, _blob(value), ttl=_seconds(ttl)))

    async def delete(self, key: str) -> None:
        values, counters = self._maps()
        await self._call(asyncio.gather(values.delete(key), counters.delete(key)))

    async def increment(self, key: str, *, window: float, amount: int = 1) -> WindowCount:
        check_ttl(window, "window")
        _, counters = self._maps()
        window_ms = max(1, round(window * 1000))
        slack = window + CLOCK_SKEW_ALLOWANCE

        async def attempt() -> WindowCount | None:
            now = int(time.time() * 1000)
            raw = await counters.get(key)
            if raw is None:
                end = now + window_ms
                ttl = math.ceil(window + slack)
                taken = await counters.put_if_absent(key, _pack(amount, end), ttl=ttl)
                return WindowCount(amount, float(window)) if taken is None else None
            count, end = _unpack(raw)
            if end <= now:
                count, end = 0, now + window_ms
            count += amount
            # (the client annotates replace_if_same's key as the value type)
            if not await counters.replace_if_same(key, raw, _pack(count, end)):  # type: ignore[arg-type]
                return None
            remaining = (end - now) / 1000
            await counters.set_ttl(key, math.ceil(remaining + slack))
            return WindowCount(count, remaining)

        async def loop() -> WindowCount:
            tries = 0
            while True:
                result = await attempt()
                if result is not None:
                    return result
                tries += 1
                # Lost a race: back off a little, at random, so racing workers spread out.
                await asyncio.sleep(random.uniform(0, 0.001 * min(tries, 20)))

        return await self._call(loop())

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, *, ttl: float | None = None
    ) -> bool:
        check_ttl(ttl)
        values, _ = self._maps()

        async def run() -> bool:
            if expected is None:
                return await values.put_if_absent(key, _blob(value), ttl=_seconds(ttl)) is None
            # (the client annotates replace_if_same's key as the value type)
            if not await values.replace_if_same(key, _blob(expected), _blob(value)):  # type: ignore[arg-type]
                return False
            if ttl is not None:
                await values.set_ttl(key, math.ceil(ttl))
            return True

        return await self._call(run())

"""A DNS cache: answers kept for a configured time, lookups of one name shared while in flight,
and the last good answer served when a refresh fails (a DNS outage must not stop the gateway)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from portway.http import ConnectError, Resolver


class DnsCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[list[tuple[str, int]]]] = {}

    def resolver(self, ttl: float) -> Resolver:
        async def resolve(host: str, port: int) -> list[tuple[str, int]]:
            return await self.resolve(host, port, ttl)

        return resolve

    async def resolve(self, host: str, port: int, ttl: float) -> list[tuple[str, int]]:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            return [(host.strip("[]"), port)]
        key = (host, port)
        loop = asyncio.get_running_loop()
        now = loop.time()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[list[tuple[str, int]]] = loop.create_future()
        self._pending[key] = future
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses: list[tuple[str, int]] = []
            for info in infos:
                address = (str(info[4][0]), int(info[4][1]))
                if address not in addresses:
                    addresses.append(address)
            self._entries[key] = (now + ttl, addresses)
            future.set_result(addresses)
            return addresses
        except OSError as exc:
            if entry is not None:
                future.set_result(entry[1])
                return entry[1]  # serve stale
            error = ConnectError(f"cannot resolve {host}: {exc}")
            future.set_exception(error)
            future.exception()
            raise error from exc
        finally:
            del self._pending[key]

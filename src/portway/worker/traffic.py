"""Traffic management at request time: which backend group and address a request goes to, and
the mirror (``ApiProxy.traffic``, compiled once per revision into each API's ``Upstream``).

Choosing (``TrafficRouter.choose``), in this order:

1. the rules, in their order: the first whose header (or cookie) is present with an accepted
   value names the group;
2. sticky sessions: a valid sticky cookie pins its address (and so its group) when no rule chose
   another group and its group still gets traffic (weight > 0), so a blue/green flip moves pinned
   clients too; in hash mode the hash key places the request among the weights deterministically;
3. the weights (random in proportion, or by the hash key).

Inside the group the address is the pinned one while it is available, else the group's balancer,
or in hash mode a weighted rendezvous hash of the key over the available addresses (consistent:
an address going away moves only the keys it held).

A header or cookie sent more than once with different values is ambiguous and counts as absent:
the gateway does not guess which copy a client or an intermediary meant.

**Sticky cookie, threat model.** The cookie names an address by an opaque id (a hash of group,
position and URL: no backend URL reaches the client) followed by an HMAC-SHA256 tag over the API
and that id, keyed per environment from the cluster secret (``sticky_key``), so every worker and
process of the environment accepts the cookies the others set, with no shared state. A client can
replay its own cookie (that is what it is for) but cannot forge one for another address: a
cookie whose tag does not verify, that is oversized, or names no current address is ignored and
replaced. No mode keeps balancing state outside the process, so none needs the shared cache.

**Mirror.** Sampled requests are copied to the mirror address in a background task; at most
``max_in_flight`` copies per process run at once and any beyond are dropped, so a hanging mirror
costs bounded memory and never the client's time. The copy's answer is read and discarded.
Counters per API: ``mirrored`` (answered, any status), ``failed`` (no answer: refused, reset,
timeout), ``dropped`` (not sent: too many in flight, or a body not in hand or too large).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portway.config.models import DEFAULT_GROUP, ApiProxy, HashOn, Mirror, StickyMode
from portway.http import Body, Headers, HTTPError
from portway.http.target import BadTarget, check_forward_path

if TYPE_CHECKING:
    from portway.worker.balancing import Balancer
    from portway.worker.upstream import Address

log = logging.getLogger("portway.worker")

MAX_STICKY_COOKIE = 64
"""Longer sticky cookie values are ignored unread (ours are 31 characters)."""
_ID_BYTES = 6
_TAG_BYTES = 16


def sticky_key(secret: bytes, environment: str) -> bytes:
    """The environment's sticky-cookie key, derived from the cluster secret (domain-separated, so
    a cookie tag never verifies as a cluster signature or the other way round)."""
    return hmac.new(secret, b"portway sticky cookie v1\n" + environment.encode(), "sha256").digest()


class MirrorStats:
    """Per-process mirror counters per API (``project/name``); they outlive revisions."""

    OUTCOMES = ("mirrored", "dropped", "failed")

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}

    def add(self, api: str, outcome: int) -> None:
        counts = self._counts.get(api)
        if counts is None:
            counts = self._counts[api] = [0, 0, 0]
        counts[outcome] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            api: dict(zip(self.OUTCOMES, counts, strict=True))
            for api, counts in self._counts.items()
        }


MIRRORED, DROPPED, FAILED = 0, 1, 2


@dataclass(slots=True)
class TrafficShared:
    """What a worker process's runtimes share across revisions: the sticky-cookie key and the
    mirror counters. Without a cluster secret (tests, one process) the key is random: cookies
    then stick within this process only."""

    sticky_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    mirror_stats: MirrorStats = field(default_factory=MirrorStats)


class Group:
    """One backend group of an API: its primary and failover addresses and its balancer."""

    __slots__ = ("balancer", "failovers", "name", "primaries")

    def __init__(
        self, name: str, primaries: list[Address], failovers: list[Address], balancer: Balancer
    ) -> None:
        self.name = name
        self.primaries = primaries
        self.failovers = failovers
        self.balancer = balancer


def single_header(headers: Headers, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower case); ``None`` when absent or ambiguous."""
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            if found is not None and found != value:
                return None
            found = value
    return found


def cookie_jar(headers: Headers) -> dict[str, str | None]:
    """The request's cookies by name (every Cookie header); ``None`` for an ambiguous name."""
    jar: dict[str, str | None] = {}
    for key, value in headers:
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, eq, content = part.strip().partition("=")
            if not eq or not name:
                continue
            content = content.strip()
            if name in jar and jar[name] != content:
                jar[name] = None
            else:
                jar[name] = content
    return jar


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unit(data: bytes) -> float:
    """A hash of ``data`` as a number in (0, 1)."""
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def rendezvous(candidates: Sequence[Address], key: bytes) -> int:
    """Weighted rendezvous (highest random weight) hashing: the index whose score for ``key`` is
    highest; removing a candidate moves only the keys it won."""
    best, best_score = 0, -1.0
    for index, address in enumerate(candidates):
        score = address.weight / -math.log(_unit(key + b"\n" + address.url.encode()))
        if score > best_score:
            best, best_score = index, score
    return best


class Choice:
    """Where one request goes: its group, the pinned address (a valid sticky cookie) or the hash
    key, and whether the answer must set a sticky cookie."""

    __slots__ = ("_router", "_secure", "group", "hash_key", "pinned")

    def __init__(
        self,
        router: TrafficRouter,
        group: Group,
        pinned: Address | None,
        hash_key: bytes | None,
        secure: bool,
    ) -> None:
        self._router = router
        self._secure = secure
        self.group = group
        self.pinned = pinned
        self.hash_key = hash_key

    def set_cookie(self, address: Address) -> bytes | None:
        """The ``Set-Cookie`` value when the answering address is not the one the request's own
        valid cookie named (cookie mode only)."""
        if self._router.cookie_mode and address is not self.pinned:
            return self._router.cookie_for(address, self._secure)
        return None


class TrafficRouter:
    """An API's compiled traffic settings (immutable after construction)."""

    def __init__(self, api: ApiProxy, groups: dict[str, Group], shared: TrafficShared) -> None:
        traffic = api.traffic
        self._groups = groups
        self._rules = [
            (
                None if rule.header is None else rule.header.lower().encode("latin-1"),
                rule.cookie,
                frozenset(rule.values),
                groups[rule.group],
            )
            for rule in traffic.rules
        ]
        weights = traffic.weights or {DEFAULT_GROUP: 1}
        self._weights = [(groups[name], w) for name, w in weights.items() if w > 0]
        self._weighted = frozenset(group.name for group, _ in self._weights)
        self._total = sum(w for _, w in self._weights)
        self._random = random.Random()
        sticky = traffic.sticky
        self.cookie_mode = sticky.mode == StickyMode.COOKIE
        self._hash_on = sticky.hash_on if sticky.mode == StickyMode.HASH else None
        self._hash_header = (sticky.hash_name or "").lower().encode("latin-1")
        self._hash_cookie = sticky.hash_name or ""
        self._cookie_name = sticky.cookie_name
        self._needs_jar = self.cookie_mode or self._hash_on == HashOn.COOKIE
        self._needs_jar = self._needs_jar or any(cookie for _, cookie, _, _ in self._rules)
        self._key = shared.sticky_key
        self._scope = f"{api.project}/{api.name}\n".encode()
        path = "/" if "{" in api.base_path else api.base_path
        tail = f"; Path={path}; HttpOnly; SameSite=Lax"
        if sticky.max_age is not None:
            tail += f"; Max-Age={sticky.max_age}"
        self._cookie_tail = tail
        self._by_id: dict[str, Address] = {}
        self._ids: dict[int, str] = {}
        for group in groups.values():
            for position, address in enumerate(group.primaries):
                seed = f"{group.name}\n{position}\n{address.url}".encode()
                ident = _b64(hashlib.sha256(seed).digest()[:_ID_BYTES])
                self._by_id[ident] = address
                self._ids[id(address)] = ident
        self._group_of = {
            id(address): group for group in groups.values() for address in group.primaries
        }

    def _tag(self, ident: str) -> str:
        mac = hmac.new(self._key, self._scope + ident.encode(), "sha256").digest()
        return _b64(mac[:_TAG_BYTES])

    def cookie_for(self, address: Address, secure: bool) -> bytes | None:
        """The cookie naming ``address``; ``None`` for a failover address, which nobody should
        stay on once the primaries are back."""
        ident = self._ids.get(id(address))
        if ident is None:
            return None
        value = f"{self._cookie_name}={ident}.{self._tag(ident)}{self._cookie_tail}"
        return (value + "; Secure" if secure else value).encode("ascii")

    def pinned_address(self, value: str | None) -> Address | None:
        """The address a sticky cookie value names, when its tag verifies."""
        if not value or len(value) > MAX_STICKY_COOKIE:
            return None
        ident, dot, tag = value.partition(".")
        address = self._by_id.get(ident) if dot else None
        if address is None or not hmac.compare_digest(tag, self._tag(ident)):
            return None
        return address

    def choose(self, headers: Headers, client_ip: str) -> Choice:
        """Where a request with these (forwarded) headers goes."""
        jar = cookie_jar(headers) if self._needs_jar else {}
        group: Group | None = None
        for header, cookie, values, target in self._rules:
            if header is not None:
                raw = single_header(headers, header)
                value = None if raw is None else raw.decode("latin-1")
            else:
                value = jar.get(cookie or "")
            if value is not None and (not values or value in values):
                group = target
                break
        pinned: Address | None = None
        key: bytes | None = None
        if self.cookie_mode:
            address = self.pinned_address(jar.get(self._cookie_name))
            if address is not None:
                home = self._group_of[id(address)]
                if home is group or (group is None and home.name in self._weighted):
                    pinned, group = address, home
        elif self._hash_on is not None:
            key = self._hash_key(headers, jar, client_ip)
        if group is None:
            group = self._by_weight(key)
        secure = self.cookie_mode and single_header(headers, b"x-forwarded-proto") == b"https"
        return Choice(self, group, pinned, key, secure)

    def _hash_key(
        self, headers: Headers, jar: dict[str, str | None], client_ip: str
    ) -> bytes | None:
        if self._hash_on == HashOn.CLIENT_IP:
            return client_ip.encode() or None
        if self._hash_on == HashOn.HEADER:
            return single_header(headers, self._hash_header) or None
        value = jar.get(self._hash_cookie)
        return value.encode("latin-1") if value else None

    def _by_weight(self, key: bytes | None) -> Group:
        weights = self._weights
        if len(weights) == 1:
            return weights[0][0]
        unit = self._random.random() if key is None else _unit(b"group\n" + key)
        point = unit * self._total
        for group, weight in weights:
            point -= weight
            if point < 0:
                return group
        return weights[-1][0]


class MirrorSender:
    """Copies sampled requests to the mirror address (see the module docstring)."""

    def __init__(self, config: Mirror, address: Address, api: str, stats: MirrorStats) -> None:
        self._config = config
        self._address = address
        self._api = api
        self._stats = stats
        self._random = random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self.max_body = config.max_body_bytes

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def sampled(self) -> bool:
        percent = self._config.percent
        return percent >= 100 or self._random.random() * 100 < percent

    async def offer(
        self,
        method: str,
        path: bytes,
        headers: Headers,
        data: bytes | None,
        body: Body | None,
    ) -> bytes | None:
        """Mirror this request when it is sampled. A body not yet in hand whose announced length
        is within ``max_body_bytes`` is read first and returned (the real request then sends
        those bytes); otherwise ``data`` is returned unchanged."""
        if not self.sampled():
            return data
        known = body is not None and body.length is not None and body.length <= self.max_body
        if data is None and body is not None and known:
            data = await body.read_all(self.max_body)
        self.submit(method, path, headers, data)
        return data

    def submit(self, method: str, path: bytes, headers: Headers, data: bytes | None) -> None:
        full = len(self._tasks) >= self._config.max_in_flight
        if data is None or len(data) > self.max_body or full:
            self._stats.add(self._api, DROPPED)
            return
        try:
            check_forward_path(path)
        except BadTarget:
            return  # the real request is refused with 400 as well
        address = self._address
        target = address.base_path + path if address.base_path else path
        if target[:1] != b"/":
            target = b"/" + target
        copy = [(b"host", address.host_header), *headers]
        task = asyncio.get_running_loop().create_task(self._send(method, target, copy, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, method: str, target: bytes, headers: Headers, data: bytes) -> None:
        timeout = self._config.timeout
        try:
            async with asyncio.timeout(timeout):
                response = await self._address.pool.request(
                    method, target, headers, data, read_timeout=timeout, total_timeout=timeout
                )
                async for _ in response:
                    pass
        except (HTTPError, TimeoutError, OSError):
            self._stats.add(self._api, FAILED)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("mirror request failed")
            self._stats.add(self._api, FAILED)
        else:
            self._stats.add(self._api, MIRRORED)

    async def close(self) -> None:
        """Cancel the copies still in flight (the revision is being retired)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

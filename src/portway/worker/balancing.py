"""Load-balancing strategies: each picks one address among the available ones."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from typing import Protocol

from portway.config.models import Balancing


class Weighted(Protocol):
    weight: int
    current_weight: int

    @property
    def active(self) -> int: ...


class Balancer(Protocol):
    def pick(self, candidates: Sequence[Weighted], client_ip: str) -> int:
        """Index of the chosen candidate (``candidates`` is never empty)."""
        ...


class RoundRobin:
    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Weighted], client_ip: str) -> int:
        index = self._next % len(candidates)
        self._next = index + 1
        return index


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: spreads the heavy addresses' turns evenly."""

    __slots__ = ()

    def pick(self, candidates: Sequence[Weighted], client_ip: str) -> int:
        total = 0
        best = 0
        best_weight = None
        for index, candidate in enumerate(candidates):
            candidate.current_weight += candidate.weight
            total += candidate.weight
            if best_weight is None or candidate.current_weight > best_weight:
                best_weight = candidate.current_weight
                best = index
        candidates[best].current_weight -= total
        return best


class LeastConnections:
    """Fewest requests in flight; ties go round robin so equal addresses share the load."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Weighted], client_ip: str) -> int:
        count = len(candidates)
        start = self._next % count
        self._next = start + 1
        best = start
        best_load = candidates[start].active / candidates[start].weight
        for step in range(1, count):
            index = (start + step) % count
            load = candidates[index].active / candidates[index].weight
            if load < best_load:
                best, best_load = index, load
        return best


class RandomChoice:
    """Random, in proportion to the weights."""

    __slots__ = ("_random",)

    def __init__(self) -> None:
        self._random = random.Random()

    def pick(self, candidates: Sequence[Weighted], client_ip: str) -> int:
        if len(candidates) == 1:
            return 0
        total = sum(c.weight for c in candidates)
        point = self._random.random() * total
        for index, candidate in enumerate(candidates):
            point -= candidate.weight
            if point < 0:
                return index
        return len(candidates) - 1


class IpHash:
    """The same client IP goes to the same address while the set of available addresses holds."""

    __slots__ = ()

    def pick(self, candidates: Sequence[Weighted], client_ip: str) -> int:
        return zlib.crc32(client_ip.encode()) % len(candidates)


def make_balancer(kind: Balancing) -> Balancer:
    if kind == Balancing.ROUND_ROBIN:
        return RoundRobin()
    if kind == Balancing.WEIGHTED_ROUND_ROBIN:
        return SmoothWeightedRoundRobin()
    if kind == Balancing.LEAST_CONNECTIONS:
        return LeastConnections()
    if kind == Balancing.RANDOM:
        return RandomChoice()
    return IpHash()

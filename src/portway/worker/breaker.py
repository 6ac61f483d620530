"""The circuit breaker of one backend address.

closed: requests pass; outcomes are counted in one-second buckets over ``window`` seconds. When the
failures reach ``threshold_count`` (or ``threshold_percent`` of at least ``min_requests``) the
breaker opens: the address gets no request for ``sleep_window`` seconds. Then one trial request
passes (half-open): success closes the breaker, failure opens it again.
"""

from __future__ import annotations

from collections import deque

from portway.config.models import CircuitBreaker

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class Breaker:
    __slots__ = ("_buckets", "_config", "_opened_at", "_trial", "state")

    def __init__(self, config: CircuitBreaker) -> None:
        self._config = config
        self._buckets: deque[list[int]] = deque()  # [second, total, failures]
        self.state = CLOSED
        self._opened_at = 0.0
        self._trial = False

    def allows(self, now: float) -> bool:
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now - self._opened_at < self._config.sleep_window:
                return False
            self.state = HALF_OPEN
            self._trial = False
        return not self._trial

    def on_attempt(self) -> None:
        if self.state == HALF_OPEN:
            self._trial = True

    def record(self, ok: bool, now: float) -> None:
        if self.state == HALF_OPEN:
            self._buckets.clear()
            if ok:
                self.state = CLOSED
            else:
                self._open(now)
            return
        if self.state == OPEN:
            return
        second = int(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            bucket = buckets[-1]
        else:
            bucket = [second, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        if not ok:
            bucket[2] += 1
        horizon = now - self._config.window
        while buckets and buckets[0][0] < horizon:
            buckets.popleft()
        if ok:
            return
        total = sum(b[1] for b in buckets)
        failures = sum(b[2] for b in buckets)
        config = self._config
        if total < config.min_requests:
            return
        if (config.threshold_count is not None and failures >= config.threshold_count) or (
            config.threshold_percent is not None
            and failures * 100 >= config.threshold_percent * total
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = OPEN
        self._opened_at = now
        self._trial = False

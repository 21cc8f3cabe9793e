"""A per-account limit on actions, so that one runaway automation cannot flood AllMySMS (or the service):
a token bucket per caller, in each web process."""

from __future__ import annotations

import hashlib
import math
import threading
import time

_MAX_CALLERS = 10_000


class RateLimit:
    """``per_minute`` actions a minute per caller, in bursts of up to a quarter of that; 0 means no limit.

    A caller is a login with its API key: requests with somebody's login and a wrong key fill their own
    bucket, not that account's.
    """

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 4)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_for(self, login: str, api_key: str) -> int:
        """0 when the caller may go ahead now (a token is taken), else whole seconds until it may."""
        if self.rate <= 0:
            return 0
        caller = hashlib.sha256(f"{login}\0{api_key}".encode()).hexdigest()
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[caller] = (tokens - 1, now)
                if len(self._buckets) > _MAX_CALLERS:
                    self._forget_full(now)
                return 0
            self._buckets[caller] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate))

    def _forget_full(self, now: float) -> None:
        # A bucket that has filled up again is the same as no bucket.
        for caller, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.capacity:
                del self._buckets[caller]

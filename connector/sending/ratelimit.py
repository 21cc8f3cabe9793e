"""Limits per caller, in each web process: actions per account, so that one runaway automation cannot flood
AllMySMS (or the service); failed authentications per address and per login, so that nobody guesses API keys
through the service."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from typing import Any

_MAX_CALLERS = 10_000


class RateLimit:
    """``per_minute`` actions a minute per caller, in bursts of up to a quarter of that; 0 means no limit.

    A caller is a login with its API key: requests with somebody's login and a wrong key fill their own
    bucket, not that account's.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
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


class Refusals:
    """Failed authentications, so that the service is no free oracle for guessing AllMySMS API keys and
    AllMySMS has no reason to block the service's address for every tenant.

    Failures are counted per client address and per login (token buckets of ``per_minute`` and
    ``per_login_minute``, each a minute's worth in a burst); past either, the caller waits. A login/key pair
    AllMySMS refused is remembered for ``remember_for`` seconds and refused again from memory. A pair
    AllMySMS accepted is never held back: behind a shared proxy, or while somebody guesses at a login, the
    key that works keeps working.
    """

    def __init__(
        self,
        per_minute: int,
        per_login_minute: int,
        remember_for: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        address_of: Callable[[str | None, str | None], str] | None = None,
    ) -> None:
        self.clock = clock
        #: (peer address, X-Forwarded-For) -> the client's address; the peer unless told which proxies to believe.
        self.address_of = address_of or (lambda peer, forwarded_for: peer or "-")
        self.remember_for = remember_for
        self._by_address = _Failures(per_minute, clock)
        self._by_login = _Failures(per_login_minute, clock)
        self._refused: dict[str, float] = {}
        self._accepted: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait_for(self, address: str, login: str | None, api_key: str | None) -> int:
        """0 when this caller may be checked now, else whole seconds until it may."""
        if login is not None and self._recent(self._accepted, _pair(login, api_key or ""), 24 * 3600):
            return 0
        waits = [self._by_address.wait_for(address)]
        if login is not None:
            waits.append(self._by_login.wait_for(login))
        return max(waits)

    def refused_before(self, login: str, api_key: str) -> bool:
        """Whether AllMySMS refused this very pair a moment ago: the answer would be the same."""
        return self._recent(self._refused, _pair(login, api_key), self.remember_for)

    def failed(self, address: str, login: str | None, api_key: str | None) -> None:
        self._by_address.take(address)
        if login is not None:
            self._by_login.take(login)
            if api_key is not None:
                self._note(self._refused, _pair(login, api_key))

    def accepted(self, login: str, api_key: str) -> None:
        pair = _pair(login, api_key)
        self._note(self._accepted, pair)
        with self._lock:
            self._refused.pop(pair, None)

    def _recent(self, seen: dict[str, Any], pair: str, ttl: float) -> bool:
        with self._lock:
            when = seen.get(pair)
        return when is not None and self.clock() - when < ttl

    def _note(self, seen: dict[str, Any], pair: str) -> None:
        with self._lock:
            if len(seen) >= _MAX_CALLERS:
                seen.clear()  # guessers fill this with pairs never seen again: start over, never grow
            seen[pair] = self.clock()


class _Failures:
    """Token buckets that only failures take from: a minute's worth in a burst, then one per refill."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_for(self, key: str) -> int:
        if self.rate <= 0:
            return 0
        with self._lock:
            tokens = self._tokens(key, self.clock())
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / self.rate))

    def take(self, key: str) -> None:
        if self.rate <= 0:
            return
        now = self.clock()
        with self._lock:
            self._buckets[key] = (max(0.0, self._tokens(key, now) - 1), now)
            if len(self._buckets) > _MAX_CALLERS:
                for known, (tokens, then) in list(self._buckets.items()):
                    if tokens + (now - then) * self.rate >= self.capacity:
                        del self._buckets[known]
                if len(self._buckets) > _MAX_CALLERS:
                    self._buckets.clear()

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - then) * self.rate)


def _pair(login: str, api_key: str) -> str:
    return hashlib.sha256(f"{login}\0{api_key}".encode()).hexdigest()

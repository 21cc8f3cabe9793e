"""Per-host pacing: how many deliveries each host may receive from one worker, and how long a delivery waits
for its host's turn. Many subscriptions (of many accounts) can point at one host."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from connector.events.targets import AllowList
from connector.storage.tables import Due


class HostBudget:
    """A token bucket per host: how many deliveries it may receive now. Over it, a delivery waits its turn;
    it is neither dropped nor counted as a failure. Many subscriptions (of many accounts) can point at one
    host, which must not receive more from us than it would from one busy subscriber."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_second
        self.capacity = max(1.0, per_second)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # host -> (tokens, when)
        self._next_turn: dict[str, float] = {}  # host -> when the next delivery sent back may be due

    def take(self, host: str) -> float:
        """0 when a delivery to ``host`` may go now, else the seconds until it may (its token is taken:
        it is to wait that long, then go)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, then = self._buckets.get(host, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate) - 1
        self._buckets[host] = (tokens, now)
        if len(self._buckets) > 10_000:
            self._forget_full(now)
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def give_back(self, host: str, wait: float) -> float:
        """Return the token of a delivery that will not wait ``wait`` seconds here after all; the seconds
        from now when it may be due, spaced from the others sent back, so they do not all return at once."""
        tokens, then = self._buckets[host]
        self._buckets[host] = (tokens + 1, then)
        now = self.clock()
        turn = max(now + wait, self._next_turn.get(host, 0.0))
        self._next_turn[host] = turn + 1 / self.rate
        if len(self._next_turn) > 10_000:
            self._next_turn = {h: t for h, t in self._next_turn.items() if t > now}
        return turn - now

    def spent(self) -> set[str]:
        """The hosts that have no delivery left to take now."""
        if self.rate <= 0 or not self._buckets:
            return set()
        now = self.clock()
        return {host for host, (tokens, then) in self._buckets.items() if tokens + (now - then) * self.rate < 1}

    def _forget_full(self, now: float) -> None:
        # A bucket that has filled up again is the same as no bucket.
        for host, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.capacity:
                del self._buckets[host]


class Pacing:
    """A worker's view of its hosts: how long a delivery waits for its host's turn, and which subscriptions'
    hosts have had their share for the moment. Hosts of ``unlimited`` (the operator's own) never wait."""

    def __init__(self, budget: HostBudget, unlimited: AllowList):
        self.budget = budget
        self._unlimited = unlimited
        self._host_of: dict[str, str] = {}  # subscription id -> its target's host

    def wait(self, due: Due) -> float:
        """Seconds until ``due`` may be sent; its host's token is taken."""
        host = _host(due.target_url)
        if host is None:
            return 0.0
        if len(self._host_of) > 50_000:
            self._host_of.clear()
        self._host_of[due.subscription_id] = host
        return 0.0 if self._unlimited.allows_host(host) else self.budget.take(host)

    def give_back(self, due: Due, wait: float) -> float:
        """Return the token of a delivery that will not wait ``wait`` seconds here after all: the seconds from
        now when it may be due again (see HostBudget.give_back)."""
        host = _host(due.target_url)
        if host is None:  # such a delivery took no token (see take)
            return 0.0
        return self.budget.give_back(host, wait)

    def held_back(self) -> list[str]:
        """The subscriptions whose host has had its share for the moment."""
        spent = self.budget.spent()
        return [sub for sub, host in self._host_of.items() if host in spent] if spent else []


def _host(url: str) -> str | None:
    """The host deliveries to ``url`` are counted against; None when the URL cannot be read (its delivery
    then fails when sent, as it would anyway)."""
    try:
        return (urlsplit(url).hostname or "").rstrip(".") or None
    except ValueError:
        return None

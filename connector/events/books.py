"""A delivery worker's bookkeeping, done in its database thread: outcomes recorded with what follows each
(the retry policy), due deliveries claimed, old events and keys pruned now and then."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

from connector.events.fairness import Shares
from connector.events.policy import Policy, next_step
from connector.observe import metrics
from connector.storage import outbox
from connector.storage.store import Store
from connector.storage.tables import Due

log = logging.getLogger("connector.events.delivery")

#: How soon the database is looked at again while deliveries are due that the worker may not take yet
#: (their hosts have had their share for the moment), or after a turn that failed (seconds).
RECHECK = 0.025
#: How often the database is looked at while the worker cannot hear the doorbell (seconds).
DEAF_POLL = 0.25


class Books:
    """What the worker writes and claims, one transaction a turn."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        shares: Shares,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: float,
        retention_seconds: float,
        keys_kept_for: float,
    ):
        self._store = store
        self.policy = policy
        self.shares = shares
        self.clock = clock
        self.rng = random.Random()
        self.lease_seconds = lease_seconds
        self.retention_seconds = retention_seconds
        self.keys_kept_for = keys_kept_for
        self._pruned_at = 0.0

    def turn(
        self, results: list[dict[str, Any]], room: tuple[int, list[str]], busy: AbstractSet[int | None] = frozenset()
    ) -> list[Due]:
        """In the database thread: record finished attempts and claim what is due, in one transaction;
        prune now and then."""
        now = self.clock()
        if now - self._pruned_at > 3600:
            self._pruned_at = now
            pruned = self._store.events.prune(now - self.retention_seconds)
            if pruned:
                log.info("pruned %d events older than the retention", pruned)
            self._store.keys.prune(now - self.keys_kept_for)
        free, full = room
        outcomes = self._outcomes(results, now)
        claimed = self._store.outbox.finish_and_claim(
            outcomes, now, free, self.lease_seconds, skip_subscriptions=full, later_accounts=busy
        )
        self.shares.claimed(claimed, free, busy)
        # Counted once committed: a turn undone is made again, and would count its attempts twice.
        metrics.deliveries([o for o in outcomes if not o.get("postponed")])
        return claimed

    def rest(self, held_back: bool, hearing: bool, longest: float) -> float:
        """In the database thread, after a turn that left the worker nothing to do: how long it may sleep unless
        rung (see storage/doorbell.py), ``longest`` at most. ``held_back``: due deliveries wait for their hosts'
        turn, which no ring announces; ``hearing``: whether the worker hears the doorbell."""
        if held_back:
            return RECHECK
        if not hearing:
            return min(longest, DEAF_POLL)
        now = self.clock()
        try:
            due = outbox.next_due(self._store.database, now)
        except Exception as exc:  # the next turn finds out, and says so if need be
            self._store.outage.failed(exc)
            return RECHECK
        if due is None:
            return longest
        # Due already, yet not taken by the turn just made (it came due meanwhile): looked at again shortly.
        return RECHECK if due <= now else min(longest, due - now)

    def _record(self, results: list[dict[str, Any]]) -> None:
        if results:
            now = self.clock()
            outcomes = self._outcomes(results, now)
            self._store.outbox.finish(outcomes, now)
            metrics.deliveries([o for o in outcomes if not o.get("postponed")])

    def settle(self, results: list[dict[str, Any]], unfinished: list[Due]) -> None:
        """In the database thread, last: record the outcomes, give back the deliveries not finished. With the
        database away, both stay as they are: the deliveries leased, sent again once the lease ends."""
        recorded = False
        try:
            self._record(results)
            recorded = True
            self._store.outbox.give_back(unfinished, self.clock())
        except Exception as exc:
            left = 0 if recorded else len(results)
            if self._store.outage.failed(exc):
                log.warning(
                    "stopping with %d outcomes not recorded and %d deliveries not given back, as the "
                    "database does not answer: they are sent again once their lease ends",
                    left,
                    len(unfinished),
                )
            else:
                log.exception(
                    "stopping: %d outcomes not recorded and %d deliveries not given back", left, len(unfinished)
                )

    def _outcomes(self, results: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """What follows each attempt (next_step), with what the delivery log keeps of it."""
        if not results:
            return []
        failing = self._store.subscriptions.failing_since(
            {r["due"].subscription_id for r in results if not r.get("postponed") and not ok(r["status_code"])}
        )
        outcomes = []
        for result in results:
            if result.get("postponed"):
                outcomes.append(result)
                continue
            result = dict(result)  # kept as it was, should this turn be undone and made again
            due = result["due"]
            since = None if ok(result["status_code"]) else (failing.get(due.subscription_id) or result["attempted_at"])
            outcome = next_step(
                self.policy, due.attempts, result["status_code"], result.pop("retry_after"), now, since, self.rng
            )
            outcome.update(result)
            outcomes.append(outcome)
        return outcomes


def ok(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300

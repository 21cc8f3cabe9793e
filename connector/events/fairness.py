"""How a worker shares its slots: no subscription holds more than a quarter of them, and an account that has more
than its share out, or just claimed, has the other accounts' due deliveries claimed before its own."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Set as AbstractSet
from typing import TypeVar

from connector.storage.tables import Due

# How many turns' claims tell which accounts already have their share.
RECENT_TURNS = 4
_Key = TypeVar("_Key")


class Shares:
    """Deliveries in flight per subscription and per account, and who claimed what lately."""

    def __init__(self, concurrency: int):
        # A quarter of the slots at most go to any one subscription: slow ones do not hold back the rest.
        self.per_subscription = max(1, concurrency // 4)
        # An account with more than half of them out has the others' due deliveries claimed before its own.
        self.per_account = max(1, concurrency // 2)
        self._sending: dict[str, int] = {}  # subscription id -> deliveries in flight
        self._account_sending: dict[int | None, int] = {}  # account id -> deliveries in flight
        self._probe_after = 0.0
        # Deliveries claimed per account in the last few turns. More than the last one: a turn that finds
        # every slot free (its deliveries all ended while it waited, as on a busy machine) would otherwise
        # see no account as busy, and hand every slot to the oldest backlog again.
        self._claimed_lately: deque[dict[int | None, int]] = deque(maxlen=RECENT_TURNS)

    def begun(self, due: Due) -> None:
        self._sending[due.subscription_id] = self._sending.get(due.subscription_id, 0) + 1
        self._account_sending[due.account_id] = self._account_sending.get(due.account_id, 0) + 1

    def ended(self, due: Due) -> None:
        _count_down(self._sending, due.subscription_id)
        _count_down(self._account_sending, due.account_id)

    def full(self) -> list[str]:
        """The subscriptions with their share out."""
        return [sub for sub, sending in self._sending.items() if sending >= self.per_subscription]

    def later(self) -> set[int | None]:
        """Accounts with more than their share out or just taken: the other accounts' due deliveries are
        claimed first. Once such a turn found none, the next few turns do not look again."""
        recent: dict[int | None, int] = {}
        for turn in self._claimed_lately:
            for account, count in turn.items():
                recent[account] = recent.get(account, 0) + count
        busy = {
            account
            for account in self._account_sending.keys() | recent.keys()
            if self._account_sending.get(account, 0) + recent.get(account, 0) >= self.per_account
        }
        if not busy or time.monotonic() < self._probe_after:
            return set()
        return busy

    def claimed(self, claimed: list[Due], free: int, busy: AbstractSet[int | None]) -> None:
        """Note a turn's claims, made with ``free`` slots while ``busy`` accounts came later."""
        if busy and free > 0 and not any(due.account_id not in busy for due in claimed):
            self._probe_after = time.monotonic() + 0.25
        if free > 0:  # a turn with no room to claim says nothing of who had their share: not counted as one
            by_account: dict[int | None, int] = {}
            for due in claimed:
                by_account[due.account_id] = by_account.get(due.account_id, 0) + 1
            self._claimed_lately.append(by_account)


def _count_down(counts: dict[_Key, int], key: _Key) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]

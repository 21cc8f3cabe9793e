"""What one SMS costs in each destination country, as AllMySMS prices it, and an estimate's breakdown by country.

Prices are read with getCreditsByCountryIsoCode and kept in this process only (no database): a restart, or
another process of the service, asks AllMySMS again. They change seldom, so a day is fresh enough.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector.errors import ConnectorError
from connector.sending import feeds, phones, segments
from connector.sending.messages import SmsRequest, render
from connector.sending.upstream import AllMySMS, Credentials

DAY = 86400.0
UNPRICED = "AllMySMS gives no price for this country; the total credits still come from AllMySMS's simulation."
UNREAD = "AllMySMS did not answer the price of this country just now; the total credits are still AllMySMS's own."
NO_COUNTRY = "These numbers belong to no country (international services), so no country price applies."


@dataclass(frozen=True)
class Price:
    """Credits one SMS part costs to a country (None: no figure), and why there is none."""

    credits_per_sms: int | None
    note: str | None = None


class Prices:
    """Credits per SMS by account and country, kept in this process for ``ttl`` seconds (a day) so that an
    account's estimates ask AllMySMS once per country per day. At most ``size`` entries are kept: past that,
    the least recently used goes. Safe across threads; two requests missing the same entry at the same
    moment may both ask AllMySMS, which costs a call and nothing else."""

    def __init__(self, ttl: float = DAY, size: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[float, Price]] = OrderedDict()

    def of(self, upstream: AllMySMS, credentials: Credentials, country: str) -> Price:
        """The price of one SMS part to ``country`` for this account, from the cache or from AllMySMS."""
        key = (credentials.login, country)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None and self._clock() < cached[0]:
                self._entries.move_to_end(key)
                return cached[1]
        try:
            reply = upstream.credits_by_country(credentials, country)
        except ConnectorError:
            # The estimate's total does not depend on it: say so in the breakdown, and ask again next time.
            return Price(None, UNREAD)
        credits = feeds.credits_per_sms(reply)
        price = Price(credits, None if credits is not None else UNPRICED)
        with self._lock:
            self._entries[key] = (self._clock() + self._ttl, price)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return price

    def __len__(self) -> int:
        return len(self._entries)


def by_country(request: SmsRequest, price_of: Callable[[str], Price]) -> list[dict[str, Any]]:
    """The request's recipients and SMS parts per destination country, priced by ``price_of``; the countries
    in the order their first recipient comes, the numbers of no country last."""
    recipients: dict[str | None, int] = {}
    parts: dict[str | None, int] = {}
    for recipient in request.recipients:
        country = phones.region(recipient.e164)
        count = request.text.parts
        if request.dynamic:
            count = segments.analyse(render(request.message, recipient.params)).parts
        recipients[country] = recipients.get(country, 0) + 1
        parts[country] = parts.get(country, 0) + count
    rows = []
    for country in sorted(recipients, key=lambda c: c is None):
        price = price_of(country) if country is not None else Price(None, NO_COUNTRY)
        per_sms = price.credits_per_sms
        rows.append(
            {
                "country": country,
                "recipients": recipients[country],
                "sms_parts": parts[country],
                "credits_per_sms": per_sms,
                "credits": per_sms * parts[country] if per_sms is not None else None,
                "note": price.note,
            }
        )
    return rows

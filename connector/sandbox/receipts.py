"""Receipts and replies as the sandbox invents them: each SMS's outcome, and the fields pushed.

Receipt codes follow AllMySMS: 1 delivered, 2 not delivered, 3 transmitted to the operator
(pending), 4 rejected, 5 rejected as an unknown number or absent subscriber. The texts are the
sandbox's wording; the real ones are not documented.

Outcomes are drawn from a weighted mix with a seeded `random.Random`, so one seed and one
sequence of sends always give the same receipts. Some numbers are forced first; by default
(`demo_outcome`) a number ending in 99 is an unknown number (5), one ending in 98 is not
delivered (2) and one ending in 97 is rejected (4), so a demo can show failures on purpose.
"""

import random
from collections.abc import Mapping
from itertools import accumulate

from . import phones

DELIVERED = 1
NOT_DELIVERED = 2
PENDING = 3
REJECTED = 4
UNKNOWN_NUMBER = 5

RECEIPT_TEXTS = {
    DELIVERED: "Delivered",
    NOT_DELIVERED: "Not delivered",
    PENDING: "Pending",
    REJECTED: "Rejected",
    UNKNOWN_NUMBER: "Unknown number",
}

DEFAULT_OUTCOMES = {DELIVERED: 0.9, NOT_DELIVERED: 0.05, UNKNOWN_NUMBER: 0.05}

# The feed key AllMySMS echoes the client reference under; the push field keeps its name.
CLIENT_REFERENCE_FIELD = "CLIMSGID"

_DEMO_ENDINGS = {"99": UNKNOWN_NUMBER, "98": NOT_DELIVERED, "97": REJECTED}


def demo_outcome(phone_number):
    """The default forced outcome: by the last two digits (99, 98, 97), else None (draw)."""
    return _DEMO_ENDINGS.get(phone_number[-2:])


class OutcomePicker:
    """Chooses each SMS's receipt status. Not thread-safe: the state calls it under its lock.

    `mix` maps status -> weight. `forced` is None, a mapping of phone number -> status (any
    accepted number format), or a function of the normalised number returning a status or None
    to fall back on the mix. `pending_share` is the fraction of SMS that first get a pending (3)
    receipt before their final one.
    """

    def __init__(self, mix=DEFAULT_OUTCOMES, forced=demo_outcome, *, pending_share=0.0, seed=0):
        if not isinstance(mix, Mapping) or not mix:
            raise ValueError("outcomes must map receipt statuses to weights")
        for status, weight in mix.items():
            _check_status(status)
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ValueError("outcome weights must be numbers >= 0")
        if sum(mix.values()) <= 0:
            raise ValueError("at least one outcome weight must be above 0")
        if not isinstance(pending_share, (int, float)) or not 0 <= pending_share <= 1:
            raise ValueError("pending_share must be between 0 and 1")
        self._statuses = list(mix)
        self._cumulative = list(accumulate(mix.values()))
        self._forced = _forced_rule(forced)
        self._pending_share = pending_share
        self._random = random.Random(seed)

    def draw(self, phone_number):
        """The final status of the SMS sent to this normalised number."""
        forced = self._forced(phone_number) if self._forced is not None else None
        if forced is not None:
            return _check_status(forced)
        return self._random.choices(self._statuses, cum_weights=self._cumulative)[0]

    def pending_first(self):
        """Whether this SMS reports "pending" before its final status."""
        return self._pending_share > 0 and self._random.random() < self._pending_share


def receipt_fields(sms_id, campaign_id, phone_number, reception_date, status, client_msg_id=""):
    """The fields of one delivery receipt as pushed to the callback URL."""
    fields = {
        "smsId": sms_id,
        "campaignId": campaign_id,
        "phoneNumber": phone_number,
        "receptionDate": reception_date,
        "status": status,
        "statusText": RECEIPT_TEXTS[status],
    }
    if client_msg_id:
        fields[CLIENT_REFERENCE_FIELD] = client_msg_id
    return fields


def reply_fields(reply, sms_id):
    """The fields of one reply (an SMS-MO) as pushed, from the record getPulls returns."""
    return {
        "smsMoId": reply["id"],
        "smsId": sms_id or "",
        "campaignId": reply["campaignId"],
        "phoneNumber": reply["phoneNumber"],
        "receptionDate": reply["receptionDate"],
        "message": reply["message"],
    }


def _forced_rule(forced):
    if forced is None or callable(forced):
        return forced
    if not isinstance(forced, Mapping):
        raise ValueError("forced_outcomes must be None, a mapping or a function")
    table = {}
    for raw, status in forced.items():
        number = phones.normalise_number(raw)
        if number is None:
            raise ValueError("forced_outcomes holds an invalid phone number")
        table[number] = _check_status(status)
    return table.get


def _check_status(status):
    if type(status) is not int or status not in RECEIPT_TEXTS:
        raise ValueError("a receipt status is a whole number from 1 to 5")
    return status

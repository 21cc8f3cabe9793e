"""What comes back to a sandbox account from phones: replies (MO), handed out once by getPulls and kept for
getPull, and its STOP list."""

import secrets
from collections import deque
from typing import Any

from . import phones
from .ledger import paris_timestamp
from .receipts import reply_fields

DEFAULT_PULL_LIMIT = 100


class Inbox:
    """Replies and blacklists of each account of `accounts`, under the state's (re-entrant) `lock`; `ledger`
    resolves the SMS a reply answers, `clock` dates what has no date of its own, `pusher` pushes a reply
    received to the account's callback URL."""

    def __init__(self, accounts, ledger, lock, clock, pusher):
        self._accounts = accounts
        self._ledger = ledger
        self._lock = lock
        self._clock = clock
        self._pusher = pusher
        self._replies: dict[str, deque[Any]] = {login: deque() for login in accounts.logins}
        # Every reply ever received, by campaign id: getPull searches them whether getPulls took them or not.
        self._by_campaign: dict[str, dict[str, Any]] = {login: {} for login in accounts.logins}
        self._blacklists: dict[str, list[Any]] = {login: [] for login in accounts.logins}

    def add_reply(self, login, phone_number, message, *, sms_id=None, campaign_id="", reception_date=None):
        """Queue an SMS reply for getPulls and return it; `sms_id` fills in its campaign."""
        number = required_number(phone_number)
        with self._lock:
            self._accounts.get(login)
            if sms_id is not None:
                found = self._ledger.locate_sms(sms_id)
                if found is None:
                    raise KeyError("unknown SMS id")
                campaign_id = found[0].id
            reply = {
                "phoneNumber": number,
                "id": secrets.token_hex(8),
                "campaignId": campaign_id,
                "message": message,
                "receptionDate": reception_date or paris_timestamp(self._clock()),
            }
            self._replies[login].append(reply)
            if campaign_id:
                self._by_campaign[login].setdefault(campaign_id, []).append(reply)
            return dict(reply)

    def receive(self, login, phone_number, message, sms_id=None):
        """A reply from a phone to `login`: kept for getPulls, pushed to the callback URL.

        Without `sms_id` the reply answers the latest SMS the account sent to that number, if
        any. Returns the pushed fields (smsMoId, smsId, campaignId, phoneNumber, receptionDate,
        message). Raises ValueError for a bad number or an empty message, and LookupError when
        `sms_id` is not an SMS this account sent to that number.
        """
        number = required_number(phone_number)
        if not isinstance(message, str) or not message.strip():
            raise ValueError("a reply needs a message")
        with self._lock:
            url, callback_format = self._accounts.callback(login)
            if sms_id is None:
                sms_id = self._ledger.latest_sms_to(login, number)
            else:
                found = self._ledger.locate_sms(sms_id)
                owned = found is not None and found[0].login == login
                if not owned or found[0].numbers[found[1]] != number:
                    raise LookupError("no SMS with this id was sent to this number by this account")
            fields = reply_fields(self.add_reply(login, number, message, sms_id=sms_id), sms_id)
        if message.strip().upper().startswith("STOP"):
            # As on the short code 36180: a STOP answer puts the number on the account's STOP list.
            self.add_blacklist(login, number, comment="stop")
        if url is not None:
            self._pusher.push(url, callback_format, dict(fields), "reply")
        return fields

    def pull_replies(self, login, limit=DEFAULT_PULL_LIMIT):
        """Remove and return up to `limit` replies not fetched before, oldest first."""
        with self._lock:
            self._accounts.get(login)
            queue = self._replies[login]
            return [queue.popleft() for _ in range(min(limit, len(queue)))]

    def campaign_replies(self, login, campaign_id):
        """Every reply to a campaign, oldest first, fetched by getPulls or not; None when `login` did not send
        that campaign."""
        with self._lock:
            self._accounts.get(login)
            if self._ledger.owned(login, campaign_id) is None:
                return None
            return [dict(reply) for reply in self._by_campaign[login].get(campaign_id, ())]

    def add_blacklist(self, login, phone_number, comment="manual unsubscribe", reception_date=None):
        """Add a number to the account's STOP list (comment: stop, Refused, manual unsubscribe)."""
        number = required_number(phone_number)
        with self._lock:
            self._accounts.get(login)
            entry = {
                "phoneNumber": number,
                "comment": comment,
                "receptionDate": reception_date or paris_timestamp(self._clock()),
            }
            self._blacklists[login].append(entry)
            return dict(entry)

    def blacklist(self, login):
        with self._lock:
            self._accounts.get(login)
            return [dict(entry) for entry in self._blacklists[login]]


def required_number(phone_number):
    """The number normalised as the sandbox keeps numbers; ValueError when it is not one."""
    number = phones.normalise_number(phone_number)
    if number is None:
        raise ValueError("not a valid phone number")
    return number

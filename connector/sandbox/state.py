"""In-memory state of the sandbox (accounts, campaigns, receipts, replies, blacklists), one lock.

Every read and write goes through `SandboxState.lock`, a re-entrant lock, so the threaded
development server and tests can hit the sandbox concurrently. Code that fills `acks` directly
must hold that lock too; the helper methods do it for you.

The state also plays AllMySMS's callbacks: every SMS that goes out gets a receipt
`receipt_delay` seconds (on the state's clock) after it was sent or after its scheduled date,
recorded for getAcks and pushed to the account's callback URL, if it has one; replies received
through `receive_reply` are pushed too. A `Dispatcher` thread times the receipts and a `Pusher`
sends them; `close()` stops both.
"""

import dataclasses
import hmac
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from types import MappingProxyType
from urllib.parse import urlsplit

from . import phones, statuses
from .campaigns import DATE_FORMAT, PARIS
from .dispatcher import INJECTED_CLOCK_RECHECK, REAL_CLOCK_RECHECK, Dispatcher
from .pushes import (
    DEFAULT_FORMAT,
    DEFAULT_RETRY_DELAYS,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    FORMATS,
    Pusher,
)
from .receipts import (
    DEFAULT_OUTCOMES,
    PENDING,
    RECEIPT_TEXTS,
    OutcomePicker,
    demo_outcome,
    receipt_fields,
    reply_fields,
)
from .statuses import ApiError

DEMO_ACCOUNTS = MappingProxyType(
    {
        "demo": MappingProxyType({"api_key": "demo-api-key", "credits": 100000}),
        # No credit at all: every send answers 103.
        "broke": MappingProxyType({"api_key": "broke-api-key", "credits": 0}),
        # One French SMS costs 15: a second recipient already answers 104.
        "low": MappingProxyType({"api_key": "low-api-key", "credits": 20}),
    }
)

# Where create_sandbox_app keeps the state in `app.extensions`.
EXTENSION_KEY = "allmysms_sandbox"

SENT = "sent"
SCHEDULED = "scheduled"
CANCELLED = "cancelled"

DEFAULT_PULL_LIMIT = 100
DEFAULT_RECEIPT_DELAY = 0.5
# Receipts are made this many SMS per dispatcher job, so a 100,000-recipient campaign never holds
# the lock (or delays other campaigns' receipts) for long.
RECEIPT_BATCH = 1000


def paris_timestamp(moment):
    """Format an aware datetime the way AllMySMS writes dates: French local time, no zone."""
    return moment.astimezone(PARIS).strftime(DATE_FORMAT)


@dataclass
class Account:
    login: str
    api_key: str = field(repr=False)
    credits: int
    first_name: str = "Demo"
    last_name: str = "User"
    society: str = "AllMySMS Sandbox"
    email: str = ""
    callback_url: str | None = field(default=None, repr=False)
    callback_format: str = DEFAULT_FORMAT

    @property
    def client_code(self):
        """The code a feed's CLIENT tag must carry: the sandbox's choice is the login in capitals."""
        return self.login.upper()


@dataclass(frozen=True)
class Recipient:
    phone_number: str
    sms_id: str


@dataclass
class Campaign:
    """One accepted send. Numbers are stored once; SMS ids are derived as "<campaign id>-<n>".

    Deriving the ids keeps a 100,000-recipient launch cheap and lets `find_sms` resolve an id
    without a second index.
    """

    id: str
    login: str
    kind: str
    message: str
    numbers: tuple = field(repr=False)
    status: str
    scheduled_at: datetime | None
    created_at: datetime
    credits_used: int
    nb_sms: int
    sender: str = ""
    name: str = ""
    client_msg_id: str = ""
    flash: bool = False
    invalid_numbers: tuple = ()
    extra: dict = field(default_factory=dict)

    def sms_id(self, index):
        """SMS id of the recipient at `index` (0-based) in `numbers`."""
        return f"{self.id}-{index + 1}"

    @property
    def recipients(self):
        return tuple(Recipient(number, self.sms_id(i)) for i, number in enumerate(self.numbers))

    @property
    def scheduled_date(self):
        """The scheduled date as AllMySMS writes it, or None for an immediate send."""
        return None if self.scheduled_at is None else paris_timestamp(self.scheduled_at)


class SandboxState:
    """Thread-safe state of one sandbox instance.

    `accounts` maps login -> {"api_key": str, "credits": int} (optionally "first_name",
    "last_name", "society", "email"); it defaults to DEMO_ACCOUNTS. `clock` returns the current
    aware datetime; tests pass their own to move time forward without sleeping.

    Receipts and pushes (see receipts.py and pushes.py):
    - `receipt_delay` (0.5): seconds on the clock between an SMS going out and its receipt.
    - `outcomes` ({1: 0.9, 2: 0.05, 5: 0.05}): receipt status -> weight, drawn with a
      `random.Random(seed)` (`seed` 0).
    - `forced_outcomes` (receipts.demo_outcome: numbers ending in 99 -> 5, 98 -> 2, 97 -> 4):
      None, a mapping phone number -> status, or a function number -> status or None.
    - `pending_share` (0.0): fraction of SMS that get a pending (3) receipt first, then their
      final one `receipt_delay` later.
    - `push_retry_delays` ((0.5, 1.0, 2.0)): seconds before each retry of a failed push.
    - `push_timeout` (5.0), `push_workers` (8), `push_session` (a new requests.Session).
    """

    def __init__(
        self,
        accounts=None,
        *,
        clock=None,
        receipt_delay=DEFAULT_RECEIPT_DELAY,
        outcomes=DEFAULT_OUTCOMES,
        forced_outcomes=demo_outcome,
        pending_share=0.0,
        seed=0,
        push_retry_delays=DEFAULT_RETRY_DELAYS,
        push_timeout=DEFAULT_TIMEOUT,
        push_workers=DEFAULT_WORKERS,
        push_session=None,
    ):
        if not isinstance(receipt_delay, (int, float)) or receipt_delay < 0:
            raise ValueError("receipt_delay must be a number of seconds >= 0")
        self.lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._receipt_delay = timedelta(seconds=receipt_delay)
        self._outcomes = OutcomePicker(
            outcomes, forced_outcomes, pending_share=pending_share, seed=seed
        )
        recheck = REAL_CLOCK_RECHECK if clock is None else INJECTED_CLOCK_RECHECK
        self._dispatcher = Dispatcher(self._clock, recheck=recheck)
        self._pusher = Pusher(
            self._dispatcher,
            retry_delays=push_retry_delays,
            timeout=push_timeout,
            workers=push_workers,
            session=push_session,
        )
        accounts = DEMO_ACCOUNTS if accounts is None else accounts
        self._accounts = {login: _build_account(login, spec) for login, spec in accounts.items()}
        # Compared against when the login is unknown, so a wrong login and a wrong key take the
        # same time to refuse.
        self._decoy_key = secrets.token_hex(16).encode()
        self._campaigns = {}
        # sms id -> {"phoneNumber", "statut", "comment", "receptionDate"}; filled by receipts.
        self.acks = {}
        self._replies = {login: deque() for login in self._accounts}
        self._blacklists = {login: [] for login in self._accounts}

    def now(self):
        return self._clock()

    def close(self):
        """Stop timing receipts and pushing them; idempotent. The stored data stays readable."""
        self._dispatcher.stop()
        self._pusher.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def push_failures(self):
        """Pushes dropped after their last retry failed."""
        return self._pusher.failures

    @property
    def pushes_delivered(self):
        """Pushes a callback URL answered with a 2xx status."""
        return self._pusher.delivered

    # Accounts

    def authenticate(self, login, api_key):
        """True when `login` exists and `api_key` is its key (constant-time comparison)."""
        account = self._accounts.get(login) if isinstance(login, str) else None
        expected = account.api_key.encode() if account else self._decoy_key
        given = api_key.encode() if isinstance(api_key, str) else b""
        return hmac.compare_digest(given, expected) and account is not None

    def account_info(self, login):
        """The account's profile and credits, without its API key."""
        with self.lock:
            account = self._account(login)
            return {
                "login": account.login,
                "credits": account.credits,
                "first_name": account.first_name,
                "last_name": account.last_name,
                "society": account.society,
                "email": account.email,
            }

    def credits(self, login):
        with self.lock:
            return self._account(login).credits

    def set_credits(self, login, credits):
        if type(credits) is not int or credits < 0:
            raise ValueError("credits must be a whole number >= 0")
        with self.lock:
            self._account(login).credits = credits

    def set_callback_url(self, login, url, callback_format=None):
        """Set (or with None or "" remove) the account's callback URL; return callback_settings.

        `callback_format` is "form", "json", "xml" or "get"; None keeps the current one. Raises
        ValueError for a URL that is not absolute http(s) or an unknown format.
        """
        url = _callback_url(url)
        if callback_format is not None and callback_format not in FORMATS:
            raise ValueError(f"callback format must be one of {', '.join(FORMATS)}")
        with self.lock:
            account = self._account(login)
            account.callback_url = url
            if callback_format is not None:
                account.callback_format = callback_format
            return self.callback_settings(login)

    def callback_settings(self, login):
        """{"url": str or None, "format": "form" | "json" | "xml" | "get"} of the account."""
        with self.lock:
            account = self._account(login)
            return {"url": account.callback_url, "format": account.callback_format}

    # Campaigns

    def check_feed_accounts(self, login, data):
        """Raise 108 when the feed's CLIENT is not the account's client code, 118 when its MASTERACCOUNT
        names no account."""
        with self.lock:
            account = self._account(login)
            if "CLIENT" in data and data["CLIENT"] != account.client_code:
                raise ApiError(statuses.WRONG_CLIENT_CODE)
            master = data.get("MASTERACCOUNT")
            if master not in (None, "") and master not in self._accounts:
                raise ApiError(statuses.UNKNOWN_MASTER_ACCOUNT)

    def launch(self, login, plan):
        """Debit the plan's credits and store it as a campaign; return (campaign, credits left).

        Raises ApiError 103 when the account is empty and 104 when it cannot pay for this send.
        """
        now = self.now()
        with self.lock:
            account = self._account(login)
            if account.credits <= 0:
                raise ApiError(statuses.NO_CREDIT)
            if plan.credits_needed > account.credits:
                raise ApiError(
                    statuses.NOT_ENOUGH_CREDIT,
                    needed=plan.credits_needed,
                    available=account.credits,
                )
            account.credits -= plan.credits_needed
            campaign = Campaign(
                id=self._new_campaign_id(),
                login=login,
                kind=plan.kind,
                message=plan.message,
                numbers=plan.numbers,
                status=SENT if plan.scheduled_at is None else SCHEDULED,
                scheduled_at=plan.scheduled_at,
                created_at=now,
                credits_used=plan.credits_needed,
                nb_sms=plan.nb_sms,
                sender=plan.sender,
                name=plan.name,
                client_msg_id=plan.client_msg_id,
                flash=plan.flash,
                invalid_numbers=plan.invalid_numbers,
                extra=dict(plan.extra),
            )
            self._campaigns[campaign.id] = campaign
            # Voice messages get no receipts. One job per campaign, whatever its size.
            if campaign.kind == "sms":
                due = (campaign.scheduled_at or now) + self._receipt_delay
                self._dispatcher.at(due, partial(self._make_receipts, campaign.id, 0, due))
            return _snapshot(campaign), account.credits

    def cancel(self, login, campaign_id):
        """Cancel a scheduled campaign of `login` and refund it; return (campaign, credits left).

        Raises ApiError 119 when the campaign is unknown, belongs to another account, or has
        already gone out (or been cancelled).
        """
        with self.lock:
            campaign = self._owned_campaign(login, campaign_id)
            if campaign is None or campaign.status != SCHEDULED:
                raise ApiError(statuses.NOT_FOUND)
            campaign.status = CANCELLED
            account = self._account(login)
            account.credits += campaign.credits_used
            return _snapshot(campaign), account.credits

    def campaign(self, campaign_id):
        """A copy of the campaign, or None. Its status is up to date with the clock."""
        with self.lock:
            campaign = self._campaigns.get(campaign_id)
            if campaign is None:
                return None
            self._refresh(campaign)
            return _snapshot(campaign)

    def campaigns(self, login=None):
        """Copies of all campaigns, or of one account's, oldest first."""
        with self.lock:
            found = [c for c in self._campaigns.values() if login is None or c.login == login]
            for campaign in found:
                self._refresh(campaign)
            return [_snapshot(c) for c in found]

    def find_sms(self, sms_id):
        """Return (campaign copy, Recipient) for an SMS id, or None when no campaign issued it."""
        with self.lock:
            found = self._locate_sms(sms_id)
            if found is None:
                return None
            campaign, index = found
            self._refresh(campaign)
            return _snapshot(campaign), Recipient(campaign.numbers[index], sms_id)

    # Receipts (acks)

    def record_ack(self, sms_id, statut, comment="", reception_date=None):
        """Store the delivery receipt of an SMS (statut: 1 delivered ... 5 rejected); return it.

        Raises KeyError for an SMS id no campaign issued.
        """
        with self.lock:
            found = self._locate_sms(sms_id)
            if found is None:
                raise KeyError("unknown SMS id")
            campaign, index = found
            date = reception_date or paris_timestamp(self.now())
            ack = _ack(campaign, index, statut, comment, date)
            self.acks[sms_id] = ack
            return dict(ack)

    def campaign_acks(self, login, campaign_id):
        """(receipts of the campaign's SMS in send order, its client reference); None if `login` does
        not own it."""
        with self.lock:
            campaign = self._owned_campaign(login, campaign_id)
            if campaign is None:
                return None
            acks = self.acks
            if not acks:
                return [], campaign.client_msg_id
            found = (acks.get(campaign.sms_id(i)) for i in range(len(campaign.numbers)))
            return [dict(ack) for ack in found if ack is not None], campaign.client_msg_id

    def sms_ack(self, login, sms_id):
        """The receipt of one SMS of `login`; None if unknown, foreign, or not received yet."""
        with self.lock:
            found = self._locate_sms(sms_id)
            if found is None or found[0].login != login or sms_id not in self.acks:
                return None
            return dict(self.acks[sms_id])

    # Replies (MO) and blacklist

    def add_reply(
        self, login, phone_number, message, *, sms_id=None, campaign_id="", reception_date=None
    ):
        """Queue an SMS reply for getPulls and return it; `sms_id` fills in its campaign."""
        number = _required_number(phone_number)
        with self.lock:
            self._account(login)
            if sms_id is not None:
                found = self._locate_sms(sms_id)
                if found is None:
                    raise KeyError("unknown SMS id")
                campaign_id = found[0].id
            reply = {
                "phoneNumber": number,
                "id": secrets.token_hex(8),
                "campaignId": campaign_id,
                "message": message,
                "receptionDate": reception_date or paris_timestamp(self.now()),
            }
            self._replies[login].append(reply)
            return dict(reply)

    def receive_reply(self, login, phone_number, message, sms_id=None):
        """A reply from a phone to `login`: kept for getPulls, pushed to the callback URL.

        Without `sms_id` the reply answers the latest SMS the account sent to that number, if
        any. Returns the pushed fields (smsMoId, smsId, campaignId, phoneNumber, receptionDate,
        message). Raises ValueError for a bad number or an empty message, and LookupError when
        `sms_id` is not an SMS this account sent to that number.
        """
        number = _required_number(phone_number)
        if not isinstance(message, str) or not message.strip():
            raise ValueError("a reply needs a message")
        with self.lock:
            account = self._account(login)
            if sms_id is None:
                sms_id = self._latest_sms_to(login, number)
            else:
                found = self._locate_sms(sms_id)
                owned = found is not None and found[0].login == login
                if not owned or found[0].numbers[found[1]] != number:
                    raise LookupError("no SMS with this id was sent to this number by this account")
            reply = self.add_reply(login, number, message, sms_id=sms_id)
            fields = reply_fields(reply, sms_id)
            url, callback_format = account.callback_url, account.callback_format
        if message.strip().upper().startswith("STOP"):
            # As on the short code 36180: a STOP answer puts the number on the account's STOP list.
            self.add_blacklist(login, number, comment="stop")
        if url is not None:
            self._pusher.push(url, callback_format, dict(fields), "reply")
        return fields

    def pull_replies(self, login, limit=DEFAULT_PULL_LIMIT):
        """Remove and return up to `limit` replies not fetched before, oldest first."""
        with self.lock:
            self._account(login)
            queue = self._replies[login]
            return [queue.popleft() for _ in range(min(limit, len(queue)))]

    def add_blacklist(self, login, phone_number, comment="manual unsubscribe", reception_date=None):
        """Add a number to the account's STOP list (comment: stop, Refused, manual unsubscribe)."""
        number = _required_number(phone_number)
        with self.lock:
            self._account(login)
            entry = {
                "phoneNumber": number,
                "comment": comment,
                "receptionDate": reception_date or paris_timestamp(self.now()),
            }
            self._blacklists[login].append(entry)
            return dict(entry)

    def blacklist(self, login):
        with self.lock:
            self._account(login)
            return [dict(entry) for entry in self._blacklists[login]]

    # Internals: call with the lock held.

    def _account(self, login):
        try:
            return self._accounts[login]
        except KeyError:
            raise KeyError("unknown sandbox login") from None

    def _new_campaign_id(self):
        while True:
            campaign_id = secrets.token_hex(8)
            if campaign_id not in self._campaigns:
                return campaign_id

    def _owned_campaign(self, login, campaign_id):
        campaign = self._campaigns.get(campaign_id) if isinstance(campaign_id, str) else None
        if campaign is None or campaign.login != login:
            return None
        self._refresh(campaign)
        return campaign

    def _locate_sms(self, sms_id):
        if not isinstance(sms_id, str):
            return None
        campaign_id, _, position = sms_id.rpartition("-")
        campaign = self._campaigns.get(campaign_id)
        # The length bound keeps int() cheap on hostile input.
        digits = position.isascii() and position.isdigit()
        if campaign is None or not digits or len(position) > 9:
            return None
        index = int(position) - 1
        if not 0 <= index < len(campaign.numbers):
            return None
        return campaign, index

    def _refresh(self, campaign):
        # A scheduled campaign has gone out once its date has passed.
        if campaign.status == SCHEDULED and campaign.scheduled_at <= self.now():
            campaign.status = SENT

    def _latest_sms_to(self, login, number):
        for campaign in reversed(self._campaigns.values()):
            if campaign.login != login or campaign.kind != "sms":
                continue
            self._refresh(campaign)
            if campaign.status != SENT:
                continue
            numbers = campaign.numbers
            try:
                # Searching a reversed copy finds the last occurrence at C speed.
                return campaign.sms_id(len(numbers) - 1 - numbers[::-1].index(number))
            except ValueError:
                continue
        return None

    # Receipts: dispatcher jobs. They run on the dispatcher's thread and push after the lock.

    def _make_receipts(self, campaign_id, start, due):
        """Receipts of up to RECEIPT_BATCH SMS of a campaign from `start`; queues the rest."""
        date = paris_timestamp(due)
        pushes, finals = [], []
        with self.lock:
            campaign = self._campaigns.get(campaign_id)
            if campaign is None:
                return
            self._refresh(campaign)
            # A campaign cancelled before its date sent nothing, so nothing comes back.
            if campaign.status != SENT:
                return
            account = self._account(campaign.login)
            url, callback_format = account.callback_url, account.callback_format
            end = min(start + RECEIPT_BATCH, len(campaign.numbers))
            picker = self._outcomes
            for index in range(start, end):
                status = picker.draw(campaign.numbers[index])
                if status != PENDING and picker.pending_first():
                    finals.append((index, status))
                    status = PENDING
                fields = self._store_receipt(campaign, index, status, date)
                if url is not None:
                    pushes.append(fields)
            if end < len(campaign.numbers):
                self._dispatcher.at(due, partial(self._make_receipts, campaign_id, end, due))
            if finals:
                later = due + self._receipt_delay
                job = partial(self._make_final_receipts, campaign_id, finals, later)
                self._dispatcher.at(later, job)
        for fields in pushes:
            self._pusher.push(url, callback_format, fields, "receipt")

    def _make_final_receipts(self, campaign_id, finals, due):
        """Final receipts of SMS that first reported "pending"; `finals` is [(index, status)]."""
        date = paris_timestamp(due)
        with self.lock:
            campaign = self._campaigns[campaign_id]
            account = self._account(campaign.login)
            url, callback_format = account.callback_url, account.callback_format
            store = self._store_receipt
            pushes = [store(campaign, index, status, date) for index, status in finals]
        if url is not None:
            for fields in pushes:
                self._pusher.push(url, callback_format, fields, "receipt")

    def _store_receipt(self, campaign, index, status, date):
        """Record the receipt for getAcks and return the fields a push carries."""
        sms_id = campaign.sms_id(index)
        self.acks[sms_id] = _ack(campaign, index, status, RECEIPT_TEXTS[status], date)
        number = campaign.numbers[index]
        return receipt_fields(sms_id, campaign.id, number, date, status, campaign.client_msg_id)


def _ack(campaign, index, statut, comment, reception_date):
    # `statut` as text, as the public example of getAcks writes it; the client reference is the
    # campaign's, named once beside the acks (getAcks's cliMsgId).
    return {
        "phoneNumber": campaign.numbers[index],
        "statut": str(statut),
        "comment": comment,
        "receptionDate": reception_date,
    }


def _callback_url(url):
    if url is None or url == "":
        return None
    if not isinstance(url, str):
        raise ValueError("the callback URL must be text")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the callback URL must be an absolute http:// or https:// URL")
    return url.strip()


def _snapshot(campaign):
    # numbers and invalid_numbers are tuples, so only `extra` needs its own copy.
    return dataclasses.replace(campaign, extra=dict(campaign.extra))


def _build_account(login, spec):
    api_key, credits = spec.get("api_key"), spec.get("credits")
    if not isinstance(api_key, str) or not api_key:
        raise ValueError(f"account {login!r}: api_key must be a non-empty string")
    if type(credits) is not int or credits < 0:
        raise ValueError(f"account {login!r}: credits must be a whole number >= 0")
    return Account(
        login=login,
        api_key=api_key,
        credits=credits,
        first_name=spec.get("first_name", "Demo"),
        last_name=spec.get("last_name", "User"),
        society=spec.get("society", "AllMySMS Sandbox"),
        email=spec.get("email", f"{login}@example.com"),
    )


def _required_number(phone_number):
    number = phones.normalise_number(phone_number)
    if number is None:
        raise ValueError("not a valid phone number")
    return number

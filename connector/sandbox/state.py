"""In-memory state of the sandbox, one lock: the facade over its accounts (accounts.py), campaigns
(ledger.py), receipts (acks.py), replies and blacklists (inbox.py) and contact lists (lists.py).

Every read and write goes through `SandboxState.lock`, a re-entrant lock, so the threaded
development server and tests can hit the sandbox concurrently. Code that fills `acks` directly
must hold that lock too; the helper methods do it for you.

The state also plays AllMySMS's callbacks: every SMS that goes out gets a receipt
`receipt_delay` seconds (on the state's clock) after it was sent or after its scheduled date,
recorded for getAcks and pushed to the account's callback URL, if it has one; replies received
through `receive_reply` are pushed too. A `Dispatcher` thread times the receipts and a `Pusher`
sends them; `close()` stops both.
"""

import threading
from datetime import UTC, datetime

from . import statuses
from .accounts import DEMO_ACCOUNTS, Accounts
from .acks import Acks
from .dispatcher import INJECTED_CLOCK_RECHECK, REAL_CLOCK_RECHECK, Dispatcher
from .inbox import DEFAULT_PULL_LIMIT, Inbox
from .ledger import CANCELLED, SCHEDULED, Ledger, Recipient, snapshot
from .lists import ContactLists
from .pushes import DEFAULT_RETRY_DELAYS, DEFAULT_TIMEOUT, DEFAULT_WORKERS, Pusher
from .receipts import DEFAULT_OUTCOMES, OutcomePicker, demo_outcome
from .statuses import ApiError

# Where create_sandbox_app keeps the state in `app.extensions`.
EXTENSION_KEY = "allmysms_sandbox"

DEFAULT_RECEIPT_DELAY = 0.5


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
        self._clock = clock or (lambda: datetime.now(UTC))
        recheck = REAL_CLOCK_RECHECK if clock is None else INJECTED_CLOCK_RECHECK
        self._dispatcher = Dispatcher(self._clock, recheck=recheck)
        self._pusher = Pusher(
            self._dispatcher,
            retry_delays=push_retry_delays,
            timeout=push_timeout,
            workers=push_workers,
            session=push_session,
        )
        self.accounts = Accounts(DEMO_ACCOUNTS if accounts is None else accounts, self.lock)
        self.ledger = Ledger(self._clock)
        self.inbox = Inbox(self.accounts, self.ledger, self.lock, self._clock, self._pusher)
        self.contact_lists = ContactLists(self.accounts, self.lock, self._clock)
        self.receipts = Acks(
            lock=self.lock,
            clock=self._clock,
            accounts=self.accounts,
            ledger=self.ledger,
            dispatcher=self._dispatcher,
            pusher=self._pusher,
            outcomes=OutcomePicker(outcomes, forced_outcomes, pending_share=pending_share, seed=seed),
            receipt_delay=receipt_delay,
        )
        # sms id -> {"phoneNumber", "statut", "comment", "receptionDate"}; filled by receipts.
        self.acks = self.receipts.by_sms

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

    # Accounts: see accounts.py

    def authenticate(self, login, api_key):
        return self.accounts.authenticate(login, api_key)

    def account_info(self, login):
        return self.accounts.info(login)

    def credits(self, login):
        return self.accounts.credits(login)

    def set_credits(self, login, credits):
        self.accounts.set_credits(login, credits)

    def set_callback_url(self, login, url, callback_format=None):
        return self.accounts.set_callback_url(login, url, callback_format)

    def callback_settings(self, login):
        return self.accounts.callback_settings(login)

    def check_feed_accounts(self, login, data):
        self.accounts.check_feed(login, data)

    # Campaigns: see ledger.py

    def launch(self, login, plan):
        """Debit the plan's credits and store it as a campaign; return (campaign, credits left).

        Raises ApiError 103 when the account is empty and 104 when it cannot pay for this send.
        """
        now = self.now()
        with self.lock:
            left = self.accounts.debit(login, plan.credits_needed)
            campaign = self.ledger.add(login, plan, now)
            self.receipts.expect(campaign, now)
            return snapshot(campaign), left

    def cancel(self, login, campaign_id):
        """Cancel a scheduled campaign of `login` and refund it; return (campaign, credits left).

        Raises ApiError 119 when the campaign is unknown, belongs to another account, or has
        already gone out (or been cancelled).
        """
        with self.lock:
            campaign = self.ledger.owned(login, campaign_id)
            if campaign is None or campaign.status != SCHEDULED:
                raise ApiError(statuses.NOT_FOUND)
            campaign.status = CANCELLED
            return snapshot(campaign), self.accounts.refund(login, campaign.credits_used)

    def campaign(self, campaign_id):
        """A copy of the campaign, or None. Its status is up to date with the clock."""
        with self.lock:
            campaign = self.ledger.get(campaign_id)
            return None if campaign is None else snapshot(campaign)

    def campaigns(self, login=None):
        """Copies of all campaigns, or of one account's, oldest first."""
        with self.lock:
            return [snapshot(c) for c in self.ledger.all(login)]

    def find_sms(self, sms_id):
        """Return (campaign copy, Recipient) for an SMS id, or None when no campaign issued it."""
        with self.lock:
            found = self.ledger.locate_sms(sms_id)
            if found is None:
                return None
            campaign, index = found
            self.ledger.refresh(campaign)
            return snapshot(campaign), Recipient(campaign.numbers[index], sms_id)

    # Receipts: see acks.py

    def record_ack(self, sms_id, statut, comment="", reception_date=None):
        return self.receipts.record(sms_id, statut, comment, reception_date)

    def campaign_acks(self, login, campaign_id):
        return self.receipts.of_campaign(login, campaign_id)

    def sms_ack(self, login, sms_id):
        return self.receipts.of_sms(login, sms_id)

    # Replies (MO) and blacklist: see inbox.py

    def add_reply(self, login, phone_number, message, *, sms_id=None, campaign_id="", reception_date=None):
        return self.inbox.add_reply(
            login, phone_number, message, sms_id=sms_id, campaign_id=campaign_id, reception_date=reception_date
        )

    def receive_reply(self, login, phone_number, message, sms_id=None):
        """A reply from a phone to `login`: kept for getPulls, pushed to the callback URL (Inbox.receive)."""
        return self.inbox.receive(login, phone_number, message, sms_id)

    def pull_replies(self, login, limit=DEFAULT_PULL_LIMIT):
        return self.inbox.pull_replies(login, limit)

    def campaign_replies(self, login, campaign_id):
        return self.inbox.campaign_replies(login, campaign_id)

    def add_blacklist(self, login, phone_number, comment="manual unsubscribe", reception_date=None):
        return self.inbox.add_blacklist(login, phone_number, comment, reception_date)

    def blacklist(self, login):
        return self.inbox.blacklist(login)

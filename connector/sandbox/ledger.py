"""The campaigns a sandbox accepted, and the SMS ids they issued: stored, found, and brought up to date.

The ledger takes no lock of its own: its caller (SandboxState) holds the state's lock around every call.
"""

import dataclasses
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from .campaigns import DATE_FORMAT, PARIS

SENT = "sent"
SCHEDULED = "scheduled"
CANCELLED = "cancelled"


def paris_timestamp(moment):
    """Format an aware datetime the way AllMySMS writes dates: French local time, no zone."""
    return moment.astimezone(PARIS).strftime(DATE_FORMAT)


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


class Ledger:
    """Campaigns by id, oldest first. `clock` returns the current aware datetime: a scheduled campaign
    counts as sent once its date has passed on it."""

    def __init__(self, clock):
        self._clock = clock
        self._campaigns = {}

    def add(self, login, plan, now):
        """Store a priced, paid-for plan as a new campaign of `login` and return it."""
        campaign = Campaign(
            id=self._new_id(),
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
        return campaign

    def get(self, campaign_id):
        """The campaign itself (not a copy), up to date with the clock, or None."""
        campaign = self._campaigns.get(campaign_id)
        if campaign is not None:
            self.refresh(campaign)
        return campaign

    def all(self, login=None):
        """The campaigns themselves, or one account's, oldest first, up to date with the clock."""
        found = [c for c in self._campaigns.values() if login is None or c.login == login]
        for campaign in found:
            self.refresh(campaign)
        return found

    def owned(self, login, campaign_id):
        """The campaign when `login` launched it, else None."""
        campaign = self._campaigns.get(campaign_id) if isinstance(campaign_id, str) else None
        if campaign is None or campaign.login != login:
            return None
        self.refresh(campaign)
        return campaign

    def locate_sms(self, sms_id):
        """(campaign, index of the recipient) of an SMS id, or None when no campaign issued it."""
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

    def latest_sms_to(self, login, number):
        """The id of the last SMS `login` sent to `number`, or None."""
        for campaign in reversed(self._campaigns.values()):
            if campaign.login != login or campaign.kind != "sms":
                continue
            self.refresh(campaign)
            if campaign.status != SENT:
                continue
            numbers = campaign.numbers
            try:
                # Searching a reversed copy finds the last occurrence at C speed.
                return campaign.sms_id(len(numbers) - 1 - numbers[::-1].index(number))
            except ValueError:
                continue
        return None

    def refresh(self, campaign):
        # A scheduled campaign has gone out once its date has passed.
        if campaign.status == SCHEDULED and campaign.scheduled_at <= self._clock():
            campaign.status = SENT

    def _new_id(self):
        while True:
            campaign_id = secrets.token_hex(8)
            if campaign_id not in self._campaigns:
                return campaign_id


def snapshot(campaign):
    """A copy of the campaign that its owner may keep: later changes to the ledger do not reach it."""
    # numbers and invalid_numbers are tuples, so only `extra` needs its own copy.
    return dataclasses.replace(campaign, extra=dict(campaign.extra))

"""The delivery receipts (acks) of the SMS a sandbox sent: made on the dispatcher's clock, kept for
getAcks and getAckBySmsId, pushed to the account's callback URL.

Every SMS that goes out gets a receipt `receipt_delay` after it was sent or after its scheduled date;
a share of them get a pending (3) one first and their final one `receipt_delay` later. Jobs run on the
dispatcher's thread and push once the state's lock is released.
"""

from datetime import timedelta
from functools import partial

from .ledger import SENT, paris_timestamp
from .receipts import PENDING, RECEIPT_TEXTS, receipt_fields

# Receipts are made this many SMS per dispatcher job, so a 100,000-recipient campaign never holds
# the lock (or delays other campaigns' receipts) for long.
RECEIPT_BATCH = 1000


class Acks:
    """The receipts of one sandbox. `by_sms` maps sms id -> {"phoneNumber", "statut", "comment",
    "receptionDate"}; code that fills it directly holds `lock`."""

    def __init__(self, *, lock, clock, accounts, ledger, dispatcher, pusher, outcomes, receipt_delay):
        self._lock = lock
        self._clock = clock
        self._accounts = accounts
        self._ledger = ledger
        self._dispatcher = dispatcher
        self._pusher = pusher
        self._outcomes = outcomes
        self._receipt_delay = timedelta(seconds=receipt_delay)
        self.by_sms = {}

    def expect(self, campaign, now):
        """Time the receipts of a campaign just launched: one job for the whole campaign, whatever its size.
        SMS and MMS get receipts; voice messages and e-mails none."""
        if campaign.kind in ("sms", "mms"):
            due = (campaign.scheduled_at or now) + self._receipt_delay
            self._dispatcher.at(due, partial(self._make_receipts, campaign.id, 0, due))

    def record(self, sms_id, statut, comment="", reception_date=None):
        """Store the delivery receipt of an SMS (statut: 1 delivered ... 5 rejected); return it.

        Raises KeyError for an SMS id no campaign issued.
        """
        with self._lock:
            found = self._ledger.locate_sms(sms_id)
            if found is None:
                raise KeyError("unknown SMS id")
            campaign, index = found
            date = reception_date or paris_timestamp(self._clock())
            ack = _ack(campaign, index, statut, comment, date)
            self.by_sms[sms_id] = ack
            return dict(ack)

    def of_campaign(self, login, campaign_id):
        """(receipts of the campaign's SMS in send order, its client reference); None if `login` does
        not own it."""
        with self._lock:
            campaign = self._ledger.owned(login, campaign_id)
            if campaign is None:
                return None
            acks = self.by_sms
            if not acks:
                return [], campaign.client_msg_id
            found = (acks.get(campaign.sms_id(i)) for i in range(len(campaign.numbers)))
            return [dict(ack) for ack in found if ack is not None], campaign.client_msg_id

    def of_sms(self, login, sms_id):
        """The receipt of one SMS of `login`; None if unknown, foreign, or not received yet."""
        with self._lock:
            found = self._ledger.locate_sms(sms_id)
            if found is None or found[0].login != login or sms_id not in self.by_sms:
                return None
            return dict(self.by_sms[sms_id])

    # Dispatcher jobs.

    def _make_receipts(self, campaign_id, start, due):
        """Receipts of up to RECEIPT_BATCH SMS of a campaign from `start`; queues the rest."""
        date = paris_timestamp(due)
        pushes, finals = [], []
        with self._lock:
            campaign = self._ledger.get(campaign_id)
            # A campaign cancelled before its date sent nothing, so nothing comes back.
            if campaign is None or campaign.status != SENT:
                return
            url, callback_format = self._accounts.callback(campaign.login)
            end = min(start + RECEIPT_BATCH, len(campaign.numbers))
            picker = self._outcomes
            for index in range(start, end):
                status = picker.draw(campaign.numbers[index])
                if status != PENDING and picker.pending_first():
                    finals.append((index, status))
                    status = PENDING
                fields = self._store(campaign, index, status, date)
                if url is not None:
                    pushes.append(fields)
            if end < len(campaign.numbers):
                self._dispatcher.at(due, partial(self._make_receipts, campaign_id, end, due))
            if finals:
                later = due + self._receipt_delay
                self._dispatcher.at(later, partial(self._make_final_receipts, campaign_id, finals, later))
        for fields in pushes:
            self._pusher.push(url, callback_format, fields, "receipt")

    def _make_final_receipts(self, campaign_id, finals, due):
        """Final receipts of SMS that first reported "pending"; `finals` is [(index, status)]."""
        date = paris_timestamp(due)
        with self._lock:
            campaign = self._ledger.get(campaign_id)
            url, callback_format = self._accounts.callback(campaign.login)
            pushes = [self._store(campaign, index, status, date) for index, status in finals]
        if url is not None:
            for fields in pushes:
                self._pusher.push(url, callback_format, fields, "receipt")

    def _store(self, campaign, index, status, date):
        """Record the receipt for getAcks and return the fields a push carries."""
        sms_id = campaign.sms_id(index)
        self.by_sms[sms_id] = _ack(campaign, index, status, RECEIPT_TEXTS[status], date)
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

"""Receipts and replies read from AllMySMS when platforms poll their triggers: the events the inbound URL
would get, with the same ids, for accounts whose inbound URL AllMySMS does not call.

Each is written as the record a push carries and read by the same code (callbacks.normalise through
inbound.read), so an event has one id whichever way it came, and is stored, and fanned out to subscribers,
once.

Receipts (getAcks) are read by campaign: the campaigns the account's sends made are kept with each number's
SMS id, which getAcks does not give and a receipt's id is made of. Replies (getPulls) are handed out once by
AllMySMS, so each page is stored, or journalled when the database is away, before the next one is asked for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from connector.errors import ConnectorError, StorageUnavailable
from connector.events import inbound
from connector.sending import feeds
from connector.sending.upstream import AllMySMS, Credentials
from connector.storage import campaigns, outage
from connector.storage.campaigns import Campaign

log = logging.getLogger(__name__)

#: Receipt codes after which an SMS's status no longer changes: delivered, undelivered, rejected, unknown number.
FINAL = frozenset(code for code, word in feeds.RECEIPT_STATUSES.items() if word != "pending")
#: Replies asked for per getPulls call, and calls per poll at most (each page is kept before the next).
PULL_PAGE = 100
PULL_PAGES = 10


class Services(inbound.Services, Protocol):
    """What polling needs of the services built at start-up (connector.services.Services)."""

    @property
    def settings(self) -> Mapping[str, Any]: ...
    @property
    def upstream(self) -> AllMySMS: ...


class Account(Protocol):
    """The polling account: its id in the store, its AllMySMS login and its inbound URL token."""

    @property
    def id(self) -> int: ...
    @property
    def login(self) -> str: ...
    @property
    def token(self) -> str: ...


def record_sends(
    services: Services, account_id: int, sent: Iterable[tuple[str, list[dict[str, Any]]]], now: float
) -> None:
    """Keep the campaigns a send made, with each number's SMS id, for their receipts to be read later. They are
    written after the send is answered; a database away only means these receipts are not polled for."""
    kept = [(campaign, {m["phone_number"]: m["sms_id"] for m in messages}) for campaign, messages in sent]
    services.store.campaigns.record(account_id, kept, now)


def receipts(services: Services, credentials: Credentials, account: Account, now: float) -> int:
    """Read the receipts of the account's recent campaigns from AllMySMS into stored events, when its last
    read is an interval old: how many events were new."""
    settings = services.settings
    store = services.store.campaigns
    if not store.claim_read(account.id, campaigns.RECEIPTS, now, settings["CONNECTOR_POLL_INTERVAL_SECONDS"]):
        return 0
    since = now - settings["CONNECTOR_POLL_CAMPAIGN_HOURS"] * 3600
    store.forget(account.id, since)
    fresh = 0
    for campaign in store.due(account.id, since, settings["CONNECTOR_POLL_CAMPAIGNS_MAX"]):
        try:
            reply = services.upstream.get_acks(credentials, campaign.campaign_id)
        except ConnectorError as error:
            log.warning("receipts of a campaign could not be read from AllMySMS (%s)", error.code)
            if error.retryable or error.disposition == "fix_credentials":
                break  # the next poll tries again; meanwhile the events already stored are answered
            # AllMySMS will not give this campaign's receipts: the campaigns after it are still read.
            store.read(account.id, campaign.campaign_id, now, settled=True)
            continue
        records, settled = receipt_records(campaign, feeds.acks(reply, services.rules.zone))
        if records:
            fresh += _store(services, account, records, now)
        store.read(account.id, campaign.campaign_id, now, settled)
    return fresh


def replies(services: Services, credentials: Credentials, account: Account, now: float) -> int:
    """Read the replies AllMySMS has not handed out yet into stored events, when the account's last read is an
    interval old: how many events were new. A page that cannot be stored is journalled (inbound.keep) and
    stored when the database answers again, never dropped."""
    interval = services.settings["CONNECTOR_POLL_INTERVAL_SECONDS"]
    # Claimed in the database: a database away fails here, before AllMySMS hands anything out.
    if not services.store.campaigns.claim_read(account.id, campaigns.REPLIES, now, interval):
        return 0
    fresh = 0
    for _ in range(PULL_PAGES):
        try:
            reply = services.upstream.pulls(credentials, PULL_PAGE)
        except ConnectorError as error:
            log.warning("replies could not be read from AllMySMS (%s)", error.code)
            break
        pulled = feeds.pulls(reply, services.rules.zone)
        if not pulled:
            break
        fresh += _keep_replies(services, account, pulled, now)
        if len(pulled) < PULL_PAGE:
            break
    return fresh


def receipt_records(campaign: Campaign, acks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """getAcks's receipts of a campaign as the records a push carries, and whether every SMS of the campaign
    has a final one. A receipt is left out when its number is none the send made an SMS to (its id could not
    be the one a push of it gets) or when its status is not a code."""
    records, final = [], set()
    for ack in acks:
        sms_id = campaign.messages.get(ack["phone_number"] or "")
        code = ack["status_code"]
        if sms_id is None or code is None:
            continue
        if code in FINAL:
            final.add(sms_id)
        records.append(
            _present(
                smsId=sms_id,
                campaignId=campaign.campaign_id,
                phoneNumber=ack["phone_number"],
                status=str(code),
                statusText=ack["comment"],
                receptionDate=ack["received_at"],
            )
        )
    settled = bool(campaign.messages) and final >= set(campaign.messages.values())
    return records, settled


def reply_records(pulled: list[dict[str, Any]], sends: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """getPulls's replies as the records a push carries; ``sends`` (numbers' SMS ids by campaign) names the SMS
    each one answers where getPulls does not."""
    records = []
    for item in pulled:
        sms_id = item["sms_id"] or sends.get(item["campaign_id"] or "", {}).get(item["phone_number"] or "")
        records.append(
            _present(
                smsMoId=item["reply_id"],
                smsId=sms_id,
                campaignId=item["campaign_id"],
                phoneNumber=item["phone_number"],
                message=item["message"],
                receptionDate=item["received_at"],
            )
        )
    return records


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _callback(account: Account, records: list[dict[str, Any]], now: float) -> inbound.Callback:
    """Records as the callback that would have pushed them: stored, or journalled and replayed, as one."""
    body = json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()
    return inbound.Callback(account.token, "POST", "application/json", b"", body, now)


def _store(services: Services, account: Account, records: list[dict[str, Any]], now: float) -> int:
    callback = _callback(account, records, now)
    try:
        accepted, refused = inbound.read(services, callback, account.login)
    except inbound.Refused as refusal:
        log.warning("records read from AllMySMS were refused: %s", refusal)
        return 0
    return sum(inbound.store(services, callback, account.id, accepted, refused))


def _keep_replies(services: Services, account: Account, pulled: list[dict[str, Any]], now: float) -> int:
    """Store replies AllMySMS will not hand out again; journal them when that fails."""
    sends: dict[str, dict[str, str]] = {}
    records: list[dict[str, Any]] = []
    try:
        sends = services.store.campaigns.messages(account.id, (item["campaign_id"] or "" for item in pulled))
        records = reply_records(pulled, sends)
        return _store(services, account, records, now)
    except Exception as error:
        # Whatever failed, these replies exist nowhere else now: kept in the journal, they are stored as a
        # callback of them would be (503 to this poll when even the journal cannot take them).
        try:
            inbound.keep(services, _callback(account, records or reply_records(pulled, sends), now))
        except StorageUnavailable:
            log.error("%d replies read from AllMySMS could be neither stored nor journalled", len(pulled))
            raise
        if not outage.unavailable(error):
            raise
        log.warning("%d replies read from AllMySMS were journalled: the database is away", len(pulled))
        # No more pages now: they would only be journalled too, and this poll cannot list events anyway.
        raise StorageUnavailable(
            "The replies could not be stored now; they are kept and will be listed once the database answers. "
            "Poll again later.",
            log_detail=None,
            retry_after=30,
        ) from None

"""What each search does: read the input, ask AllMySMS through the upstream client, and answer the items found,
an empty list when there are none."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from connector.description.validation import invalid_input
from connector.errors import ConnectorError, FieldError
from connector.sending import feeds, messages
from connector.sending.actions import Context

#: What answers a search: the items found, an empty list when there are none.
Finder = Callable[[Context, dict[str, Any]], list[dict[str, Any]]]
SEARCHES: dict[str, Finder] = {}

#: What a refusal AllMySMS does not document is coded as. AllMySMS documents no answer for an id it does not
#: know on its read methods; such an answer, to a search, is read as nothing found.
_UNDOCUMENTED_REFUSAL = "refused_by_allmysms"

#: Campaigns one search reads at most, each a call to AllMySMS: the largest send the default settings allow
#: (100,000 recipients, 2,000 a campaign) makes 50.
MAX_CAMPAIGNS = 50


def search(key: str) -> Callable[[Finder], Finder]:
    def register(func: Finder) -> Finder:
        SEARCHES[key] = func
        return func

    return register


def _campaigns(payload: dict[str, Any]) -> list[str]:
    found = messages.campaign_ids(payload["campaign_id"])
    if len(found) > MAX_CAMPAIGNS:
        raise invalid_input(
            [FieldError("campaign_id", f"{len(found)} campaign IDs: one search reads at most {MAX_CAMPAIGNS}.")]
        )
    return found


def _or_nothing(read: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """AllMySMS's reply, or None when it answers that it knows no such id."""
    try:
        return read()
    except ConnectorError as error:
        if error.code == _UNDOCUMENTED_REFUSAL:
            return None
        raise


@search("find_sms_status")
def find_sms_status(ctx: Context, payload: dict[str, Any]) -> list[dict[str, Any]]:
    sms_id = payload["sms_id"]
    reply = _or_nothing(partial(ctx.upstream.ack_by_sms_id, ctx.credentials, sms_id))
    receipt = feeds.ack(reply, ctx.rules.zone) if reply is not None else None
    return [] if receipt is None else [{"id": sms_id, "sms_id": sms_id, **receipt}]


@search("find_campaign_report")
def find_campaign_report(ctx: Context, payload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for campaign in _campaigns(payload):
        reply = _or_nothing(partial(ctx.upstream.get_acks, ctx.credentials, campaign))
        receipts = feeds.acks(reply, ctx.rules.zone) if reply is not None else []
        found += [
            {"id": f"{campaign}:{position}", "campaign_id": campaign, **receipt}
            for position, receipt in enumerate(receipts, start=1)
        ]
    return found


@search("find_replies")
def find_replies(ctx: Context, payload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for campaign in _campaigns(payload):
        reply = _or_nothing(partial(ctx.upstream.pull, ctx.credentials, campaign))
        replies = feeds.pulls(reply, ctx.rules.zone) if reply is not None else []
        found += [
            {**answer, "id": answer["reply_id"] or f"{campaign}:{position}", "campaign_id": campaign}
            for position, answer in enumerate(replies, start=1)
        ]
    return found

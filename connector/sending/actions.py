"""What each action does: read the input, call AllMySMS through the upstream client, shape the result."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.errors import ConnectorError
from connector.sending import contacts, emails, feeds, messages, prices
from connector.sending.prices import Prices
from connector.sending.upstream import AllMySMS, Credentials


@dataclass(frozen=True)
class Context:
    upstream: AllMySMS
    credentials: Credentials
    rules: messages.Rules
    feed_format: str
    recipients_per_feed: int
    credits_per_sms_fr: int
    #: Shared by every request of the process, so that prices are asked once a day (see Prices).
    prices: Prices = field(default_factory=Prices)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: Told of each campaign a send made, with its messages ({phone_number, sms_id}), as soon as it is made:
    #: receipts can then be read from AllMySMS by campaign.
    sent: Callable[[str, list[dict[str, Any]]], None] | None = None


Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}


def handler(key: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        HANDLERS[key] = func
        return func

    return register


def _chunks(ctx: Context, request: messages.SmsRequest) -> Iterator[str]:
    size = ctx.recipients_per_feed
    for start in range(0, len(request.recipients), size):
        yield feeds.sms_data(request, start, start + size, ctx.feed_format)


def _send(ctx: Context, request: messages.SmsRequest) -> dict[str, Any]:
    sent = _sent_in_turn(
        ctx,
        _chunks(ctx, request),
        ctx.upstream.send_sms,
        len(request.recipients),
        scheduled=request.send_at is not None,
    )
    return feeds.sms_result(request, sent)


def _sent_in_turn(
    ctx: Context,
    fed: Iterable[str],
    send: Callable[[Credentials, str], tuple[str, dict[str, Any]]],
    total: int,
    *,
    scheduled: bool,
) -> list[dict[str, Any]]:
    """Each feed (a campaign) sent in turn, what AllMySMS said of each; a failure after the first says which
    campaigns went out (see _partial). Each campaign is told to ``ctx.sent`` as soon as it is sent."""
    chunks: list[dict[str, Any]] = []
    for feed in fed:
        try:
            word, reply = send(ctx.credentials, feed)
        except ConnectorError as error:
            if chunks:
                raise _partial(error, chunks, total) from None
            raise
        chunks.append(feeds.sent_chunk(reply, word, scheduled))
        if ctx.sent is not None:
            ctx.sent(chunks[-1]["campaign_id"], chunks[-1]["sms_ids"])
    return chunks


def _partial(error: ConnectorError, chunks: list[dict[str, Any]], total: int) -> ConnectorError:
    """A later chunk failed after earlier ones went out: say exactly what was sent."""
    return _partly_sent(error, [c["campaign_id"] for c in chunks], sum(len(c["sms_ids"]) for c in chunks), total)


def _partly_sent(error: ConnectorError, campaigns: list[str], sent: int, total: int) -> ConnectorError:
    error.message = (
        f"Only part of this send went out: {sent} of {total} recipients, in campaign(s) "
        f"{', '.join(campaigns)}. The rest was not sent because: {error.message}"
    )
    error.extra.update(partially_sent={"campaign_ids": campaigns, "recipients": sent})
    return error.with_disposition("check_before_retry")


# Handlers own their payload (the view keeps no reference): once read into a request, a
# 100,000-recipient body (some 45 MB of dicts) is let go before the sends begin.


@handler("send_sms")
def send_sms(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = messages.sms_request(payload, ctx.rules, ctx.now())
    del payload
    return _send(ctx, request)


@handler("schedule_sms")
def schedule_sms(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = messages.sms_request(payload, ctx.rules, ctx.now(), schedule=True)
    del payload
    return _send(ctx, request)


@handler("estimate_sms")
def estimate_sms(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = messages.sms_request(payload, ctx.rules, ctx.now())
    del payload
    fed = list(_chunks(ctx, request))
    replies = [ctx.upstream.simulate(ctx.credentials, feed) for feed in fed]
    breakdown = prices.by_country(request, lambda country: ctx.prices.of(ctx.upstream, ctx.credentials, country))
    return feeds.estimate_result(request, feeds.digest(*fed), replies, breakdown)


@handler("cancel_scheduled")
def cancel_scheduled(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    ids = messages.campaign_ids(payload["campaign_id"])
    for campaign in ids:
        ctx.upstream.delete_campaign(ctx.credentials, campaign)
    return {"id": ids[0], "campaign_ids": ids, "status": "cancelled"}


@handler("send_voice")
def send_voice(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = messages.voice_request(payload, ctx.rules, ctx.now())
    word, reply = ctx.upstream.send_voice(ctx.credentials, feeds.voice_body(request, request.recipients))
    return feeds.voice_result(request, word, reply)


@handler("get_account")
def get_account(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    reply = ctx.upstream.account(ctx.credentials)
    return feeds.account_result(ctx.credentials.login, reply, ctx.credits_per_sms_fr)


@handler("send_mms")
def send_mms(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = messages.mms_request(payload, ctx.rules, ctx.now())
    del payload
    size = ctx.recipients_per_feed
    fed = (
        feeds.mms_data(
            [r.e164 for r in request.recipients[start : start + size]],
            ctx.feed_format,
            message=request.message,
            kind=messages.MMS_KINDS[request.kind],
            media_url=request.media_url or None,
            campaign_name=request.campaign_name or None,
            send_at_local=request.send_at.local_text if request.send_at else None,
            client_reference=request.client_reference or None,
        )
        for start in range(0, len(request.recipients), size)
    )
    sent = _sent_in_turn(
        ctx, fed, ctx.upstream.send_mms, len(request.recipients), scheduled=request.send_at is not None
    )
    return _mms_result(request, sent)


def _mms_result(request: messages.MmsRequest, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    campaigns = [c["campaign_id"] for c in chunks]
    # What AllMySMS did, not what was asked, as for an SMS: 101 is scheduled, 100 went out now.
    scheduled = all(c["status"] == "scheduled" for c in chunks)
    when = request.send_at if scheduled else None
    return {
        "id": campaigns[0],
        "campaign_id": campaigns[0],
        "campaign_ids": campaigns,
        "status": "scheduled" if scheduled else "sent",
        "status_text": chunks[-1]["status_text"],
        "kind": request.kind,
        "recipients": sum(c["recipients"] for c in chunks),
        "sms_ids": [m for c in chunks for m in c["sms_ids"]],
        "invalid_numbers": [n.as_json() for n in request.invalid] + [n for c in chunks for n in c["invalid_numbers"]],
        "credits_used": sum(c["credits_used"] for c in chunks),
        "credits_left": chunks[-1]["credits_left"],
        "scheduled_at": when.utc_text if when else None,
        "scheduled_at_local": when.local_text if when else None,
    }


@handler("send_email")
def send_email(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = emails.email_request(payload, ctx.rules, ctx.now())
    del payload
    # emailData carries one TO: each address is a send, and a campaign, of its own.
    sent: list[tuple[str, dict[str, Any]]] = []
    for address in request.to:
        feed = feeds.email_data(
            ctx.feed_format,
            sender=request.sender,
            to=address,
            subject=request.subject,
            html=request.html,
            alias=request.alias or None,
            text=request.text or None,
            campaign_name=request.campaign_name or None,
            send_at_local=request.send_at.local_text if request.send_at else None,
            reply_to=request.reply_to or None,
        )
        try:
            sent.append(ctx.upstream.send_email(ctx.credentials, feed))
        except ConnectorError as error:
            if sent:
                done = [str(reply.get("campaignId", "")) for _, reply in sent]
                raise _partly_sent(error, done, len(sent), len(request.to)) from None
            raise
    campaigns = [str(reply.get("campaignId", "")) for _, reply in sent]
    scheduled = all(word == "scheduled" for word, _ in sent)
    when = request.send_at if scheduled else None
    return {
        "id": campaigns[0],
        "campaign_id": campaigns[0],
        "campaign_ids": campaigns,
        "status": "scheduled" if scheduled else "sent",
        "status_text": str(sent[-1][1].get("statusText", "")),
        "recipients": len(request.to),
        "to": list(request.to),
        "scheduled_at": when.utc_text if when else None,
        "scheduled_at_local": when.local_text if when else None,
    }


def list_names(ctx: Context) -> list[str]:
    """The names of the account's contact lists, in AllMySMS's order: what a list name may be."""
    return [found["name"] for found in feeds.contact_lists(ctx.upstream.lists(ctx.credentials))]


@handler("create_list")
def create_list(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = contacts.new_list(payload)
    if request.name in list_names(ctx):
        raise contacts.taken_name(request.name)
    return contacts.created(request, ctx.upstream.create_list(ctx.credentials, contacts.list_data(request)))


@handler("add_contact")
def add_contact(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = _known_list(ctx, contacts.contact(payload, ctx.rules))
    return contacts.changed(request, ctx.upstream.populate_list(ctx.credentials, contacts.populate_data(request)))


@handler("remove_contact")
def remove_contact(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = _known_list(ctx, contacts.contact(payload, ctx.rules))
    return contacts.changed(request, ctx.upstream.delete_contacts(ctx.credentials, contacts.delete_data(request)))


def _known_list(ctx: Context, request: contacts.Contact) -> contacts.Contact:
    """The input schema cannot know the account's lists: an unknown one is refused before AllMySMS is asked."""
    names = list_names(ctx)
    if request.list_name not in names:
        raise contacts.unknown_list(request.list_name, names)
    return request

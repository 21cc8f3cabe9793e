"""What each action does: read the input, call AllMySMS through the upstream client, shape the result."""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any, cast

from connector.errors import ConnectorError, UpstreamUnavailable
from connector.sending import contacts, emails, feeds, messages, phones, prices
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
    #: Campaigns of one large send out to AllMySMS at once (1: one after the other); see _sent_at_once.
    concurrent_feeds: int = 1
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


#: A feed (one campaign's smsData or mmsData) and its recipients: the numbers as AllMySMS writes them, each
#: with its E.164 form, so that the reply's numbers are read back into the request's own strings.
Fed = tuple[str, Mapping[str, str]]
Send = Callable[[Credentials, str], tuple[str, dict[str, Any]]]


def _chunks(ctx: Context, request: messages.SmsRequest, recipients: list[messages.Recipient]) -> Iterator[Fed]:
    """The feeds of ``request`` to ``recipients``, each taken out of the list as its feed is written."""
    size = ctx.recipients_per_feed
    while recipients:
        part = tuple(recipients[:size])
        del recipients[:size]
        yield (
            feeds.sms_data(dataclasses.replace(request, recipients=part), 0, len(part), ctx.feed_format),
            _numbers(part),
        )


def _send(ctx: Context, request: messages.SmsRequest) -> dict[str, Any]:
    """``request`` is the caller's to give away (hand it over, keep no reference): its recipients are let go
    as their feeds are written, so that the result of a large send (its sms_ids) takes the memory they held
    rather than adding to it."""
    total = len(request.recipients)
    if total <= ctx.recipients_per_feed:  # one campaign: nothing to let go of sooner
        fed: Iterable[Fed] = [(feeds.sms_data(request, 0, total, ctx.feed_format), _numbers(request.recipients))]
    else:
        recipients = list(request.recipients)
        request = dataclasses.replace(request, recipients=())
        fed = _chunks(ctx, request, recipients)
    sent = _sent(ctx, fed, ctx.upstream.send_sms, total, request.send_at is not None)
    return feeds.sms_result(request, sent)


def _numbers(recipients: Iterable[messages.Recipient]) -> dict[str, str]:
    return {phones.upstream(r.e164): r.e164 for r in recipients}


def _sent(ctx: Context, fed: Iterable[Fed], send: Send, total: int, scheduled: bool) -> list[dict[str, Any]]:
    """Each feed sent as a campaign, what AllMySMS said of each (sent_chunk), in the order of the feeds; a
    failure after one went out says which campaigns did (see _partial). Each campaign is told to ``ctx.sent``
    as soon as it is sent. A send of one feed, or with ``concurrent_feeds`` 1, takes no thread."""
    feeds_left = iter(fed)
    first = next(feeds_left, None)
    if first is None:
        return []
    second = next(feeds_left, None) if ctx.concurrent_feeds > 1 else None
    if second is None:
        return _sent_in_turn(ctx, chain([first], feeds_left), send, total, scheduled)
    return _sent_at_once(ctx, chain([first, second], feeds_left), send, total, scheduled)


def _sent_in_turn(ctx: Context, fed: Iterable[Fed], send: Send, total: int, scheduled: bool) -> list[dict[str, Any]]:
    """Each feed sent once the one before has been answered."""
    chunks: list[dict[str, Any]] = []
    for feed, numbers in fed:
        try:
            word, reply = send(ctx.credentials, feed)
        except ConnectorError as error:
            if chunks:
                raise _partial(error, chunks, total) from None
            raise
        chunks.append(feeds.sent_chunk(reply, word, scheduled, numbers))
        del reply  # a reply holds its 2,000 smsIds as AllMySMS wrote them
        if ctx.sent is not None:
            ctx.sent(chunks[-1]["campaign_id"], chunks[-1]["sms_ids"])
    return chunks


def _sent_at_once(ctx: Context, fed: Iterator[Fed], send: Send, total: int, scheduled: bool) -> list[dict[str, Any]]:
    """The feeds sent ``concurrent_feeds`` at a time, the next one built while they are out: the time of a
    large send is then AllMySMS's, not the sum of its answers and of our work in between. At most that many
    feeds, and one more, are held at once.

    Once a feed is known to have failed no other is started, as no other would have been in turn; those
    already out are waited for, and each that went out is reported (``ctx.sent`` and the partial error),
    whatever the order they ended in. Should several fail, the error told is the first (in the feeds' order)
    whose campaign may have gone out (its disposition says to check before retrying), else the first.

    The process's calls to AllMySMS are capped (ALLMYSMS_MAX_CONCURRENT_CALLS), and a call that finds none
    free is refused before anything is sent (upstream_busy). This send's own calls may be what holds them:
    while some are out, such a feed is not a failure but is sent again once one of them is back, and the send
    goes on with one fewer at once."""
    pending: dict[Future[dict[str, Any]], tuple[int, Fed]] = {}
    done: dict[int, dict[str, Any]] = {}
    failed: dict[int, Exception] = {}
    again: list[tuple[int, Fed]] = []  # refused for want of a free call, sent again first
    window = ctx.concurrent_feeds

    def post(context: contextvars.Context, feed: str, numbers: Mapping[str, str]) -> dict[str, Any]:
        # In a copy of the request's context: the logs of the call carry the request's id.
        word, reply = context.run(send, ctx.credentials, feed)
        return feeds.sent_chunk(reply, word, scheduled, numbers)

    with ThreadPoolExecutor(max_workers=ctx.concurrent_feeds, thread_name_prefix="feeds") as pool:
        index, ahead = 0, _next(fed, failed, 0)
        while True:
            while (again or ahead is not None) and not failed and len(pending) < window:
                if again:
                    at, item = again.pop(0)
                else:
                    at, item = index, cast(Fed, ahead)
                    index += 1
                    ahead = _next(fed, failed, index)
                pending[pool.submit(post, contextvars.copy_context(), *item)] = (at, item)
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            crowded = len(pending) > 1  # other feeds of this send were out beside each that ended
            for future in sorted(finished, key=lambda f: pending[f][0]):
                at, item = pending.pop(future)
                try:
                    chunk = done[at] = future.result()
                except UpstreamUnavailable as error:
                    if error.code == "upstream_busy" and crowded:
                        # Nothing went out; one fewer at once from now on, down to one, when being refused
                        # again is a failure as it would be in turn.
                        again.append((at, item))
                        window = max(1, window - 1)
                    else:
                        failed[at] = error
                    continue
                except Exception as error:
                    failed[at] = error
                    continue
                if ctx.sent is not None:
                    ctx.sent(chunk["campaign_id"], chunk["sms_ids"])
    chunks = [done[at] for at in sorted(done)]
    if not failed:
        return chunks
    told = _told(failed)
    if chunks and isinstance(told, ConnectorError):
        raise _partial(told, chunks, total) from None
    raise told


def _next(fed: Iterator[Fed], failed: dict[int, Exception], index: int) -> Fed | None:
    """The next feed, None when there is none; a feed that cannot be built counts as that feed failing."""
    try:
        return next(fed, None)
    except Exception as error:
        failed[index] = error
        return None


def _told(failed: dict[int, Exception]) -> Exception:
    """Which of several failures the caller is told of: an unexpected one first (it is a bug), then the first
    that may have sent something, then the first."""
    errors = [failed[at] for at in sorted(failed)]
    unexpected = [e for e in errors if not isinstance(e, ConnectorError)]
    unsure = [e for e in errors if isinstance(e, ConnectorError) and e.disposition == "check_before_retry"]
    return (unexpected or unsure or errors)[0]


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


# Handlers own their payload (the view keeps no reference): a 100,000-recipient body is some 45 MB of dicts,
# its request some 30 MB and the sms_ids of its result as much again. sms_request(taken=True) lets each
# recipient of the body go once read, and _send each of the request's once its feed is written: each stage
# is built in the memory the one before held.


@handler("send_sms")
def send_sms(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    # Straight to _send, with no name holding the request here: see _send.
    return _send(ctx, messages.sms_request(payload, ctx.rules, ctx.now(), taken=True))


@handler("schedule_sms")
def schedule_sms(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return _send(ctx, messages.sms_request(payload, ctx.rules, ctx.now(), schedule=True, taken=True))


@handler("estimate_sms")
def estimate_sms(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    request = messages.sms_request(payload, ctx.rules, ctx.now(), taken=True)
    del payload
    fed = [feed for feed, _ in _chunks(ctx, request, list(request.recipients))]
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
        _mms_feed(ctx, request, [r.e164 for r in request.recipients[start : start + size]])
        for start in range(0, len(request.recipients), size)
    )
    sent = _sent(ctx, fed, ctx.upstream.send_mms, len(request.recipients), request.send_at is not None)
    return _mms_result(request, sent)


def _mms_feed(ctx: Context, request: messages.MmsRequest, numbers: list[str]) -> Fed:
    return (
        feeds.mms_data(
            numbers,
            ctx.feed_format,
            message=request.message,
            kind=messages.MMS_KINDS[request.kind],
            media_url=request.media_url or None,
            campaign_name=request.campaign_name or None,
            send_at_local=request.send_at.local_text if request.send_at else None,
            client_reference=request.client_reference or None,
        ),
        {phones.upstream(e164): e164 for e164 in numbers},
    )


def _mms_result(request: messages.MmsRequest, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    # What AllMySMS did, not what was asked, as for an SMS: 101 is scheduled, 100 went out now.
    return _campaigns_result(
        [c["campaign_id"] for c in chunks],
        all(c["status"] == "scheduled" for c in chunks),
        chunks[-1]["status_text"],
        request.send_at,
        kind=request.kind,
        recipients=sum(c["recipients"] for c in chunks),
        sms_ids=[m for c in chunks for m in c["sms_ids"]],
        invalid_numbers=[n.as_json() for n in request.invalid] + [n for c in chunks for n in c["invalid_numbers"]],
        credits_used=sum(c["credits_used"] for c in chunks),
        credits_left=chunks[-1]["credits_left"],
    )


def _campaigns_result(
    campaigns: list[str], scheduled: bool, status_text: str, send_at: messages.SendTime | None, **details: Any
) -> dict[str, Any]:
    """The result of a send made of campaigns: which, whether AllMySMS scheduled them (and for when), and the
    send's own ``details`` between."""
    when = send_at if scheduled else None
    return {
        "id": campaigns[0],
        "campaign_id": campaigns[0],
        "campaign_ids": campaigns,
        "status": "scheduled" if scheduled else "sent",
        "status_text": status_text,
        **details,
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
    return _campaigns_result(
        [str(reply.get("campaignId", "")) for _, reply in sent],
        all(word == "scheduled" for word, _ in sent),
        str(sent[-1][1].get("statusText", "")),
        request.send_at,
        recipients=len(request.to),
        to=list(request.to),
    )


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

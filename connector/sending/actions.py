"""What each action does: read the input, call AllMySMS through the upstream client, shape the result."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.errors import ConnectorError
from connector.sending import feeds, messages
from connector.sending.upstream import AllMySMS, Credentials


@dataclass(frozen=True)
class Context:
    upstream: AllMySMS
    credentials: Credentials
    rules: messages.Rules
    feed_format: str
    recipients_per_feed: int
    credits_per_sms_fr: int
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


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
    chunks: list[dict[str, Any]] = []
    for feed in _chunks(ctx, request):
        try:
            word, reply = ctx.upstream.send_sms(ctx.credentials, feed)
        except ConnectorError as error:
            if chunks:
                raise _partial(error, chunks, len(request.recipients)) from None
            raise
        chunks.append(feeds.sent_chunk(reply, word, request.send_at is not None))
    return feeds.sms_result(request, chunks)


def _partial(error: ConnectorError, chunks: list[dict[str, Any]], total: int) -> ConnectorError:
    """A later chunk failed after earlier ones went out: say exactly what was sent."""
    sent = sum(len(c["sms_ids"]) for c in chunks)
    campaigns = [c["campaign_id"] for c in chunks]
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
    return feeds.estimate_result(request, feeds.digest(*fed), replies)


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

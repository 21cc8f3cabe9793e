"""Pure: the one table of every way a call to AllMySMS can end, and what each means for the caller.

A call ends in one of the rows of ENDINGS: it never connected, it was sent and no answer came, the answer
was too large or unreadable, HTTP said something (redirect, 4xx, 429, 5xx), or the body carried a status
(a success, a documented refusal, a status nobody documents, none where one is expected). Each row says
whether AllMySMS may have acted on the request, and so what a caller should do: for a send, any ending
that is not a success or a documented refusal means the messages may have gone out (check before
retrying: an Idempotency-Key stays taken); for anything else, asking again is harmless.

Which methods carry a status, and how a success is written, is per method (METHODS): the feed methods
that send (sendSms, sendMms, simulateCampaign) answer a numeric status, getInfo and deleteCampaign a word
("Active Account", "OK"), the contact-list methods the status "1", and the read methods (getBlacklist,
getAcks, getPull, getPulls, getLists, ...) none at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, cast

from connector.errors import (
    AuthenticationFailed,
    ConnectorError,
    CreditExhausted,
    FieldError,
    InvalidInput,
    OutcomeUnknown,
    Throttled,
    UpstreamFailed,
    UpstreamUnavailable,
)

SUCCESS = {100: "sent", 101: "scheduled", 113: "sent"}


@dataclass(frozen=True)
class Method:
    """An AllMySMS method as the table needs to know it."""

    name: str
    #: A success sends messages: an ending that may have reached AllMySMS may have sent them.
    sends: bool = False
    #: How a success is written: "code" (100, 101, 113), "word" (any text: "OK", "Active Account"),
    #: "one" (the status 1, as the contact-list methods write it: "1"), or "none" (the data alone, no
    #: status key; a status present is still read as a refusal).
    success: str = "code"
    #: The table's field names as this method's action input calls them.
    field_names: dict[str, Any] = field(default_factory=dict)
    #: The method in the URL, when it is not ``name``.
    feed: str = ""

    @property
    def feed_name(self) -> str:
        return self.feed or self.name


SEND_SMS = Method("sendSms", sends=True)
SIMULATE_CAMPAIGN = Method("simulateCampaign")
GET_INFO = Method("getInfo", success="word")
# Deleting twice is harmless, so a lost answer may be retried like a read.
DELETE_CAMPAIGN = Method("deleteCampaign", success="word", field_names={"recipients": "campaign_id"})
GET_BLACKLIST = Method("getBlacklist", success="none")
GET_ACKS = Method("getAcks", success="none")
GET_ACK_BY_SMS_ID = Method("getAckBySmsId", success="none")
GET_PULLS = Method("getPulls", success="none")
GET_PULL = Method("getPull", success="none")
GET_CREDITS_BY_COUNTRY = Method("getCreditsByCountryIsoCode", success="none")
# The one public client shows sendMms answering as sendSms does.
SEND_MMS = Method("sendMms", sends=True)
# No public source shows what sendEmail answers: it is read as the other sends are (100 or 101), so that
# anything else says the e-mail may have gone out rather than claiming it did.
SEND_EMAIL = Method("sendEmail", sends=True)
GET_LISTS = Method("getLists", success="none")
CREATE_LIST = Method("createList", success="one")
# The one public client fills and empties a list through createList (populateData, deleteData), not through
# methods of their own. Adding a contact twice is counted as a duplicate, so a lost answer may be asked again.
POPULATE_LIST = Method("populateList", success="one", feed="createList")
DELETE_CONTACTS = Method("deleteContacts", success="one", feed="createList")
SEND_VOICE = Method("voice/send/bulk", sends=True, field_names={"message": "text"})
SIMULATE_VOICE = Method("voice/send/bulk", field_names={"message": "text"})

METHODS = {
    m.name: m
    for m in (
        SEND_SMS,
        SIMULATE_CAMPAIGN,
        GET_INFO,
        DELETE_CAMPAIGN,
        GET_BLACKLIST,
        GET_ACKS,
        GET_ACK_BY_SMS_ID,
        GET_PULL,
        GET_PULLS,
        GET_CREDITS_BY_COUNTRY,
        SEND_MMS,
        SEND_EMAIL,
        GET_LISTS,
        CREATE_LIST,
        POPULATE_LIST,
        DELETE_CONTACTS,
    )
}


@dataclass(frozen=True)
class Answer:
    """What the caller is told: the error raised, its stable code, its words, the input field it blames
    (as the SMS actions call it), what to do (the error's own disposition when None) and its HTTP status."""

    error: type[ConnectorError]
    code: str
    message: str
    field: str | None = None
    disposition: str | None = None
    status: int | None = None


_CHECK = (
    "Check the campaigns or the delivery receipts in the AllMySMS customer area before sending again; "
    "sending again blindly could send the messages twice."
)


@dataclass(frozen=True)
class Ending:
    """One way a call can end. ``acted``: whether AllMySMS may have carried the request out ("no",
    "maybe", "yes"). ``on_send`` answers a call that sends, ``on_other`` any other call; a success
    ("yes") and a documented refusal (answered from STATUSES) have none."""

    name: str
    acted: str
    on_send: Answer | None = None
    on_other: Answer | None = None


def _ending(name: str, acted: str, on_send: Answer | None = None, on_other: Answer | None = None) -> Ending:
    return Ending(name, acted, on_send, on_other or on_send)


ENDINGS: dict[str, Ending] = {
    e.name: e
    for e in (
        # Transport: the request provably never left (refused, or timed out while connecting).
        _ending(
            "not_connected",
            "no",
            Answer(
                UpstreamUnavailable,
                "upstream_unavailable",
                "AllMySMS cannot be reached right now. Nothing was sent; try again in a few minutes.",
            ),
            Answer(
                UpstreamUnavailable,
                "upstream_unavailable",
                "AllMySMS cannot be reached right now. Nothing was changed; try again in a few minutes.",
            ),
        ),
        # Transport: the request went out, and the connection dropped or the answer did not come in time.
        _ending(
            "no_answer",
            "maybe",
            Answer(
                OutcomeUnknown,
                "outcome_unknown",
                "AllMySMS received the send but did not answer in time, so the messages MAY have been sent. " + _CHECK,
            ),
            Answer(
                UpstreamUnavailable,
                "upstream_timeout",
                "AllMySMS did not answer in time. Asking again is harmless; try again later.",
                status=504,
            ),
        ),
        _ending(
            "too_large",
            "maybe",
            Answer(
                UpstreamFailed,
                "upstream_reply_too_large",
                "AllMySMS answered with far more than a reply, so nothing tells whether the messages were sent. "
                + _CHECK,
                disposition="check_before_retry",
            ),
            Answer(UpstreamFailed, "upstream_reply_too_large", "AllMySMS sent an answer far larger than expected."),
        ),
        _ending(
            "unreadable",
            "maybe",
            Answer(
                UpstreamFailed,
                "upstream_unreadable_reply",
                "AllMySMS answered with something that is not a reply it documents (a page from a proxy, "
                "broken data), so nothing tells whether the messages were sent. " + _CHECK,
                disposition="check_before_retry",
            ),
            Answer(
                UpstreamUnavailable,
                "upstream_unreadable_reply",
                "AllMySMS answered with something that is not a reply it documents. Asking again is harmless; "
                "try again later.",
            ),
        ),
        # HTTP: AllMySMS answers 200 even to its own refusals; another HTTP status comes from in front of it.
        _ending(
            "redirect",
            "maybe",
            Answer(
                UpstreamFailed,
                "upstream_redirect",
                "AllMySMS answered with a redirect, which it never does for this request (is the service's "
                "ALLMYSMS_BASE_URL right?). Nothing tells whether the messages were sent. " + _CHECK,
                disposition="check_before_retry",
            ),
            Answer(
                UpstreamFailed,
                "upstream_redirect",
                "AllMySMS answered with a redirect, which it never does for this request: the service's "
                "ALLMYSMS_BASE_URL is probably wrong. Tell the people who run this service.",
            ),
        ),
        _ending(
            "throttled",
            "no",
            Answer(Throttled, "rate_limited", "AllMySMS asks to slow down. Nothing was sent; try again shortly."),
        ),
        _ending(
            "credentials_refused",
            "no",
            Answer(
                AuthenticationFailed,
                "invalid_credentials",
                "AllMySMS does not recognise this login and API key. Copy them again from the AllMySMS "
                "customer area (menu API) into the connection.",
            ),
        ),
        _ending(
            "client_error",
            "maybe",
            Answer(
                UpstreamFailed,
                "upstream_error",
                "AllMySMS answered with an HTTP error it does not document, so nothing tells whether the "
                "messages were sent. " + _CHECK,
                disposition="check_before_retry",
            ),
            Answer(
                UpstreamFailed,
                "upstream_error",
                "AllMySMS refused the request with an HTTP error it does not document.",
            ),
        ),
        _ending(
            "server_error",
            "maybe",
            Answer(
                UpstreamFailed,
                "upstream_error",
                "AllMySMS answered with a server error. The messages were probably not sent, but nothing "
                "proves it. " + _CHECK,
                disposition="check_before_retry",
            ),
            Answer(
                UpstreamUnavailable,
                "upstream_error",
                "AllMySMS answered with a server error. Asking again is harmless; try again later.",
            ),
        ),
        # The body's status.
        _ending("success", "yes"),
        _ending("refused", "no"),
        _ending(
            "status_unknown",
            "maybe",
            # 116 is in no list: an undocumented status might mean anything, a send included.
            Answer(
                UpstreamFailed,
                "unknown_allmysms_status",
                "AllMySMS answered with a status it does not document, so nothing tells whether the messages "
                "were sent. " + _CHECK,
                disposition="check_before_retry",
            ),
            Answer(InvalidInput, "refused_by_allmysms", "AllMySMS refused the request."),
        ),
        _ending(
            "status_missing",
            "maybe",
            Answer(
                UpstreamFailed,
                "upstream_no_status",
                "AllMySMS answered without a status, so nothing tells whether the messages were sent. " + _CHECK,
                disposition="check_before_retry",
            ),
            Answer(
                UpstreamFailed,
                "upstream_no_status",
                "AllMySMS answered without the status this request always gets; try again later, and tell "
                "the people who run this service if it persists.",
                disposition="retry_later",
            ),
        ),
        _ending(
            "status_unreadable",
            "maybe",
            Answer(
                UpstreamFailed,
                "upstream_unreadable_status",
                "AllMySMS answered with a status that is not a number, so nothing tells whether the messages "
                "were sent. " + _CHECK,
                disposition="check_before_retry",
            ),
            Answer(
                UpstreamFailed,
                "upstream_unreadable_status",
                "AllMySMS answered with a status this service cannot read; try again later, and tell the "
                "people who run this service if it persists.",
                disposition="retry_later",
            ),
        ),
    )
}


# The refusals of the HTTP API 9.0, as documented: nothing was done. 113 (some numbers invalid, others
# sent) is a success.
STATUSES: dict[int, Answer] = {
    102: Answer(
        AuthenticationFailed,
        "invalid_credentials",
        "AllMySMS does not recognise this login and API key. Copy them again from the AllMySMS "
        "customer area (menu API) into the connection.",
    ),
    103: Answer(
        CreditExhausted,
        "no_credit",
        "The AllMySMS account has no credit left. Buy credits in the customer area, then try again.",
    ),
    104: Answer(
        CreditExhausted,
        "insufficient_credit",
        "The AllMySMS account does not have enough credit for this send. Buy credits or send to fewer recipients.",
    ),
    105: Answer(InvalidInput, "empty_feed", "AllMySMS received an empty send.", "recipients"),
    106: Answer(InvalidInput, "invalid_feed", "AllMySMS could not read the send.", None),
    107: Answer(InvalidInput, "invalid_feed", "AllMySMS found the list of recipients incomplete.", "recipients"),
    # The CLIENT code of the feed, not the client reference (CLIMSGID): this service never writes CLIENT, so
    # the account or its AllMySMS settings expect one.
    108: Answer(
        InvalidInput,
        "invalid_client_code",
        "AllMySMS refused the send's client code: it must be the account's client code, in capitals. "
        "This service does not send one, so check the account's API settings in the AllMySMS customer "
        "area, or ask AllMySMS support.",
        None,
    ),
    109: Answer(InvalidInput, "invalid_feed", "AllMySMS found the send incomplete.", None),
    110: Answer(InvalidInput, "empty_message", "The message is empty.", "message"),
    111: Answer(
        InvalidInput, "message_too_long", "The message is longer than the 640 characters AllMySMS accepts.", "message"
    ),
    112: Answer(InvalidInput, "invalid_feed", "AllMySMS found the send incomplete.", None),
    114: Answer(InvalidInput, "no_valid_number", "None of the phone numbers can receive an SMS.", "recipients"),
    115: Answer(InvalidInput, "invalid_date", "AllMySMS refused the date: give a time in the future.", "send_at"),
    117: Answer(
        InvalidInput,
        "link_too_long",
        "A link in the message is longer than the 80 characters AllMySMS accepts; shorten it.",
        "message",
    ),
    118: Answer(
        InvalidInput, "unknown_master_account", "AllMySMS does not know the master account of this login.", None
    ),
}


def status_of(reply: dict[str, Any]) -> int | None:
    """The numeric status of a reply (``status`` in feeds, ``code`` in the REST API), written as a number or
    as text; None when there is none or it is not a number."""
    value: Any = reply.get("status", reply.get("code"))
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def classify(http_status: int, reply: dict[str, Any] | None, method: Method) -> str:
    """The row of ENDINGS for an answer that came back: its HTTP status and its body read as a dict
    (None when the body could not be read)."""
    if http_status == 429:
        return "throttled"
    if 300 <= http_status < 400:
        return "redirect"
    if http_status >= 500:
        return "server_error"
    code = status_of(reply) if reply is not None else None
    if http_status >= 400:
        # The REST API answers its refusals with a 4xx and the code in the body: that body is the answer.
        if code in STATUSES:
            return "refused"
        return "credentials_refused" if http_status in (401, 403) else "client_error"
    if reply is None:
        return "unreadable"
    if code in SUCCESS or (code == 1 and method.success == "one"):
        return "success"
    if code in STATUSES:
        return "refused"
    if code is not None:
        return "status_unknown"
    raw = reply.get("status", reply.get("code"))
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return "success" if method.success == "none" else "status_missing"
    return "success" if method.success == "word" and isinstance(raw, str) else "status_unreadable"


def settle(
    ending: str,
    method: Method,
    reply: dict[str, Any] | None = None,
    *,
    log_detail: str | None = None,
    retry_after: int | None = None,
) -> str:
    """The success word of a call that ended as ``ending`` ('sent', 'scheduled', or 'ok'), or the error
    the table says it stands for."""
    row = ENDINGS[ending]
    if row.acted == "yes":
        code = status_of(reply or {})
        return SUCCESS.get(code, "ok") if code is not None else "ok"
    if ending == "refused":
        # A reply is classified "refused" by its status alone: it has one.
        raise _refusal(cast(int, status_of(reply or {})), reply or {}, method)
    answer = row.on_send if method.sends else row.on_other
    if answer is None:  # the table answers every ending but a success
        raise LookupError(f"the ending {ending!r} has no answer for {method.name}")

    extra = {}
    code = status_of(reply) if reply else None
    if code is not None:
        extra["allmysms_status"] = code
    text = _text_of(reply)
    message = answer.message + (f" AllMySMS says: {text}" if text else "")
    error = answer.error(
        message,
        code=answer.code,
        extra=extra,
        status=answer.status,
        log_detail=log_detail or f"{method.name}: {ending}",
        retry_after=retry_after,
    )
    if answer.disposition:
        error.with_disposition(answer.disposition)
    raise error


def _refusal(status: int, reply: dict[str, Any], method: Method) -> ConnectorError:
    outcome = STATUSES[status]
    text = _text_of(reply)
    message = outcome.message + (f" AllMySMS says: {text}" if text else "")
    field_name = method.field_names.get(outcome.field, outcome.field) if outcome.field else None
    extra = {"allmysms_status": status}
    if outcome.error is CreditExhausted:
        extra.update(_credit_figures(text, status))
    return outcome.error(
        message, code=outcome.code, extra=extra, fields=[FieldError(field_name, message)] if field_name else []
    )


def _text_of(reply: dict[str, Any] | None) -> str:
    if not reply:
        return ""
    text = reply.get("statusText") or reply.get("description") or ""
    return text.strip()[:300] if isinstance(text, str) else ""


def _credit_figures(text: str, status: int) -> dict[str, Any]:
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    if status == 103:
        return {"credits_available": 0}
    if len(numbers) >= 2:
        return {"credits_needed": numbers[0], "credits_available": numbers[1]}
    return {}

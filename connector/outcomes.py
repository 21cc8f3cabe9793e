"""Pure: the one table that says what each AllMySMS reply status means for the caller."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import AuthenticationFailed, ConnectorError, CreditExhausted, FieldError, InvalidInput, UpstreamFailed

SUCCESS = {100: "sent", 101: "scheduled", 113: "sent"}


@dataclass(frozen=True)
class Outcome:
    error: type[ConnectorError]
    code: str
    message: str
    field: str | None = None


# The statuses of the HTTP API 9.0, as documented; 113 (some numbers invalid, others sent) is a success.
STATUSES: dict[int, Outcome] = {
    102: Outcome(AuthenticationFailed, "invalid_credentials",
                 "AllMySMS does not recognise this login and API key. Copy them again from the AllMySMS "
                 "customer area (menu API) into the connection."),
    103: Outcome(CreditExhausted, "no_credit",
                 "The AllMySMS account has no credit left. Buy credits in the customer area, then try again."),
    104: Outcome(CreditExhausted, "insufficient_credit",
                 "The AllMySMS account does not have enough credit for this send. Buy credits or send to fewer "
                 "recipients."),
    105: Outcome(InvalidInput, "empty_feed", "AllMySMS received an empty send.", "recipients"),
    106: Outcome(InvalidInput, "invalid_feed", "AllMySMS could not read the send.", None),
    107: Outcome(InvalidInput, "invalid_feed", "AllMySMS found the list of recipients incomplete.", "recipients"),
    108: Outcome(InvalidInput, "invalid_client_code", "AllMySMS refused the client reference.", "client_reference"),
    109: Outcome(InvalidInput, "invalid_feed", "AllMySMS found the send incomplete.", None),
    110: Outcome(InvalidInput, "empty_message", "The message is empty.", "message"),
    111: Outcome(InvalidInput, "message_too_long", "The message is longer than the 640 characters AllMySMS accepts.",
                 "message"),
    112: Outcome(InvalidInput, "invalid_feed", "AllMySMS found the send incomplete.", None),
    114: Outcome(InvalidInput, "no_valid_number", "None of the phone numbers can receive an SMS.", "recipients"),
    115: Outcome(InvalidInput, "invalid_date", "AllMySMS refused the date: give a time in the future.", "send_at"),
    117: Outcome(InvalidInput, "link_too_long",
                 "A link in the message is longer than the 80 characters AllMySMS accepts; shorten it.", "message"),
    118: Outcome(InvalidInput, "unknown_master_account", "AllMySMS does not know the master account of this login.",
                 None),
}

# A status outside the table on anything but a send (a cancel, a read): nothing went out, whatever it meant.
UNKNOWN = Outcome(InvalidInput, "refused_by_allmysms", "AllMySMS refused the request.", None)



def status_of(reply: dict) -> int | None:
    """The numeric status of a reply; AllMySMS writes it as a number or as text."""
    value = reply.get("status", reply.get("code"))
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def raise_for_status(reply: dict, *, field_names: dict[str, str] | None = None, textual_ok: bool = False,
                     sends: bool = False) -> str:
    """The success word ('sent', 'scheduled') of a reply, or the error it stands for.

    ``field_names`` renames the table's field for actions whose input calls it otherwise;
    ``textual_ok`` accepts a status written as words (getInfo answers "Active Account"); ``sends`` says
    the request sends messages, so that a status nobody documents is never read as "nothing was sent".
    """
    status = status_of(reply)
    if status in SUCCESS:
        return SUCCESS[status]
    if status is None:
        if textual_ok and str(reply.get("status", "")).strip():
            return "ok"
        raise UpstreamFailed("AllMySMS answered without a status, so nothing tells whether the request was carried "
                             "out; check the AllMySMS customer area before trying again.",
                             log_detail=f"reply without status, keys {sorted(reply)[:10]}")
    text = str(reply.get("statusText") or reply.get("description") or "").strip()
    if status not in STATUSES and sends:
        # Every status AllMySMS documents as an error means nothing was done; one it does not document
        # (116 is in no list) might mean anything, a send included: never read it as "nothing was sent".
        raise UpstreamFailed(f"AllMySMS answered with status {status}, which it does not document, so nothing "
                             "tells whether the request was carried out: check the campaigns in the AllMySMS "
                             "customer area before trying again." + (f" AllMySMS says: {text}" if text else ""),
                             code="unknown_allmysms_status", extra={"allmysms_status": status},
                             log_detail=f"undocumented status {status}").with_disposition("check_before_retry")
    outcome = STATUSES.get(status, UNKNOWN)
    message = outcome.message + (f" AllMySMS says: {text}" if text else "")
    field = (field_names or {}).get(outcome.field, outcome.field) if outcome.field else None
    extra = {"allmysms_status": status}
    if outcome.error is CreditExhausted:
        extra.update(_credit_figures(text, status))
    raise outcome.error(message, code=outcome.code, extra=extra,
                        fields=[FieldError(field, message)] if field else [])


def _credit_figures(text: str, status: int) -> dict:
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    if status == 103:
        return {"credits_available": 0}
    if len(numbers) >= 2:
        return {"credits_needed": numbers[0], "credits_available": numbers[1]}
    return {}

"""Pure: Send E-mail input read into a request: addresses checked by one written rule, texts checked, time resolved.

The rule for an address (no public source says which ones AllMySMS accepts, so it is deliberately plain):
``local@domain`` in ASCII, at most 254 characters. The local part is 1 to 64 letters, digits, dots and
``! # $ % & ' * + / = ? ^ _ ` { | } ~ -``, with no dot first, last or twice in a row. The domain is at least
two labels of letters, digits and hyphens (no hyphen first or last in a label, 63 characters at most), the
last one letters only (or an ``xn--`` name). Not accepted: a display name (``Ann <ann@example.com>``: the name
goes in From name), a quoted local part, an address at an IP literal, and international characters (write an
international domain in its ``xn--`` form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.description.validation import invalid_input
from connector.errors import FieldError
from connector.sending.messages import Rules, SendTime, optional_send_time

MAX_RECIPIENTS = 100
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"(?P<local>{_LOCAL})@(?P<domain>(?:{_LABEL}\.)+(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}}))")
_SEPARATORS = re.compile(r"[\s,;]+")
_DISPLAY_NAME = re.compile(r".*<([^<>]*)>\s*")
# Control characters cannot travel in a mail header, and a line break in one would start another header.
_HEADER_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
# In a body, tabs and line breaks are text; the other control characters are not, and XML cannot carry them.
_BODY_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


@dataclass(frozen=True)
class EmailRequest:
    sender: str
    to: tuple[str, ...]
    subject: str
    html: str
    alias: str = ""
    text: str = ""
    reply_to: str = ""
    campaign_name: str = ""
    send_at: SendTime | None = None


def address_problem(text: str) -> str | None:
    """Why ``text`` is not an e-mail address by the module's rule, or None."""
    if _DISPLAY_NAME.fullmatch(text):
        return "a name with an address: give the address alone, e.g. ann@example.com (put the name in From name)"
    if len(text) > 254:
        return "longer than the 254 characters an e-mail address may have"
    if text.count("@") != 1:
        return "not an e-mail address: it needs exactly one @, as in ann@example.com"
    if not text.isascii():
        return (
            "not an address this service accepts: letters with accents or other scripts are not allowed (write "
            "an international domain in its xn-- form)"
        )
    found = _ADDRESS.fullmatch(text)
    if found is None:
        return (
            "not an e-mail address: the part before @ is letters, digits and . _ % + - (no dot first, last or "
            "twice), the part after @ a domain such as example.com"
        )
    if len(found.group("local")) > 64:
        return "not an e-mail address: the part before @ has more than 64 characters"
    return None


def recipients(value: str | list[str]) -> tuple[list[str], list[FieldError]]:
    """The addresses of ``to`` (a list, or one text separated by commas, semicolons, spaces or new lines) in
    order, each once (whatever its case), with a problem for each one that is not an address."""
    if isinstance(value, str):
        items = [part for part in _SEPARATORS.split(value) if part]
        paths = ["to"] * len(items)
    else:
        items = [item.strip() for item in value]
        paths = [f"to[{index}]" for index in range(len(items))]
    problems = [
        FieldError(path, f"{item!r} is {reason}.")
        for path, item in zip(paths, items, strict=True)
        if (reason := address_problem(item))
    ]
    if not items:
        problems.append(FieldError("to", "Give at least one e-mail address."))
    unique: list[str] = []
    seen: set[str] = set()
    for item in items:
        if item.lower() not in seen:
            seen.add(item.lower())
            unique.append(item)
    if len(unique) > MAX_RECIPIENTS:
        problems.append(
            FieldError("to", f"{len(unique)} addresses is more than the {MAX_RECIPIENTS} one request accepts.")
        )
    return unique, problems


def email_request(payload: dict[str, Any], rules: Rules, now: datetime) -> EmailRequest:
    """Raises InvalidInput listing every problem; ``payload`` already matches its JSON Schema."""
    problems: list[FieldError] = []
    sender = payload["from_email"].strip()
    reason = address_problem(sender)
    if reason:
        problems.append(FieldError("from_email", f"{sender!r} is {reason}."))
    reply_to = payload.get("reply_to", "").strip()
    reason = address_problem(reply_to) if reply_to else None
    if reason:
        problems.append(FieldError("reply_to", f"{reply_to!r} is {reason}."))
    to, to_problems = recipients(payload["to"])
    problems += to_problems
    subject = payload["subject"].strip()
    if not subject:
        problems.append(FieldError("subject", "Give a subject."))
    for name in ("subject", "from_name", "campaign_name"):
        problems += _forbidden("header", name, payload.get(name, ""))
    for name in ("html", "text"):
        problems += _forbidden("body", name, payload.get(name, ""))
    if not payload["html"].strip():
        problems.append(FieldError("html", "Give the body of the e-mail."))
    send_at, time_problems = optional_send_time(payload, rules, now)
    problems += time_problems
    if problems:
        raise invalid_input(problems)
    return EmailRequest(
        sender=sender,
        to=tuple(to),
        subject=subject,
        html=payload["html"],
        alias=payload.get("from_name", "").strip(),
        text=payload.get("text", ""),
        reply_to=reply_to,
        campaign_name=payload.get("campaign_name", ""),
        send_at=send_at,
    )


def _forbidden(place: str, path: str, text: str) -> list[FieldError]:
    bad = (_HEADER_FORBIDDEN if place == "header" else _BODY_FORBIDDEN).search(text)
    if bad is None:
        return []
    what = "a line break" if bad.group() in "\r\n" else f"the character U+{ord(bad.group()):04X}"
    return [
        FieldError(
            path,
            f"Contains {what} at position {bad.start() + 1}, which "
            f"{'cannot stand in this one-line field' if place == 'header' else 'an e-mail cannot carry'}; remove it.",
        )
    ]

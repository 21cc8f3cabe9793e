"""Validation and costing of a REST voice send (`POST /voice/send/bulk`), as a pure function.

Field names follow the one client known to use this endpoint: `from` is a French landline written
nationally (0123456789; mobiles are refused for bulk sends), `url` any public http(s) link (it need not
end in .mp3 or .wav), `simulate` the integer 0 or 1. The text-to-speech field (`text`) is the
sandbox's assumption, kept here so it changes in one place. Every refusal names the field.
"""

import re

from . import phones, statuses
from .campaigns import Plan, as_text, parse_schedule
from .statuses import ApiError

VOICE_TYPES = ("directdeposit", "tts")
_AUDIO_URL = re.compile(r"https?://[^\s/?#]+\S*", re.IGNORECASE)
_LANDLINE = re.compile(r"0[1-59]\d{8}", re.ASCII)
_MOBILE = re.compile(r"0[67]\d{8}", re.ASCII)


def plan_voice(body, now):
    """Validate a decoded JSON body and price it at phones.VOICE_CREDITS per recipient.

    Returns (plan, simulate). A bad or past `date` answers the feed's code 115.
    """
    if not isinstance(body, dict):
        raise _bad_field("body", "must be a JSON object")
    recipients = body.get("to")
    if not isinstance(recipients, list) or not recipients:
        raise _bad_field("to", "must be a non-empty list of phone numbers")
    voice_type = body.get("type")
    if voice_type not in VOICE_TYPES:
        raise _bad_field("type", "must be 'directdeposit' or 'tts'")
    content = _content(body, voice_type)
    sender = _sender(body.get("from"))
    name = body.get("campaignName") or ""
    if not isinstance(name, str):
        raise _bad_field("campaignName", "must be text")
    simulate = body.get("simulate", 0)
    if simulate not in (0, 1):  # True and False are 1 and 0 too
        raise _bad_field("simulate", "must be 0 or 1")
    date = body.get("date")
    if date is not None and not isinstance(date, str):
        raise _bad_field("date", "must be 'YYYY-MM-DD HH:MM:SS'")
    scheduled_at = parse_schedule(date, now)
    numbers, invalid = _split_numbers(recipients)
    if not numbers:
        raise ApiError(statuses.NO_VALID_NUMBER)
    plan = Plan(
        kind="voice",
        message=content,
        numbers=numbers,
        invalid_numbers=invalid,
        credits_needed=phones.VOICE_CREDITS * len(numbers),
        nb_sms=len(numbers),
        scheduled_at=scheduled_at,
        sender=sender,
        name=name,
        extra={"type": voice_type},
    )
    return plan, bool(simulate)


def _content(body, voice_type):
    """The audio link of a voicemail drop, or the text of a text-to-speech message."""
    if voice_type == "directdeposit":
        url = body.get("url")
        if not isinstance(url, str) or _AUDIO_URL.fullmatch(url.strip()) is None:
            raise _bad_field("url", "must be a public http(s) link to the audio file")
        return url.strip()
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _bad_field("text", "must be the text to read out")
    return text


def _sender(value):
    if value is None or value == "":
        return ""
    text = value.strip() if isinstance(value, str) else ""
    if _MOBILE.fullmatch(text):
        raise _bad_field("from", "must be a landline: mobile numbers are refused for bulk voice sends")
    if _LANDLINE.fullmatch(text) is None:
        raise _bad_field("from", "must be a French landline written nationally, e.g. 0123456789")
    return text


def _split_numbers(recipients):
    numbers, invalid = [], []
    for raw in recipients:
        number = phones.normalise_number(str(raw) if type(raw) is int else raw)
        if number is None:
            invalid.append(as_text(raw))
        else:
            numbers.append(number)
    return tuple(numbers), tuple(invalid)


def _bad_field(name, problem):
    return ApiError(statuses.INVALID_FEED, f"Invalid field '{name}': {problem}")

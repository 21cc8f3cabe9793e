"""Validation and costing of an SMS, MMS or e-mail send, as pure functions: a parsed feed dict in, a Plan out.

For an SMS, checks run in the order AllMySMS documents its status codes and the first failing one is raised
as an ApiError: 110 empty message, 111 too long, 115 bad date, 117 long link, 106 bad sender, 107 no
recipient, 109/112 a recipient's tag missing, 114 no valid number. Checks that need the account (103/104
credit, 108 client code, 118 master account) are the state's.
"""

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from connector.sending.segments import analyse

from . import phones, statuses
from .statuses import ApiError, invalid_feed

PARIS = ZoneInfo("Europe/Paris")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_MESSAGE_LENGTH = 640
MAX_LINK_LENGTH = 80

_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
_LINK = re.compile(r"https?://\S+", re.IGNORECASE)
# Lower case, as documented: "#PARAM_1#" is not known to be read, so it stays text here.
_PLACEHOLDER = re.compile(r"#param_(\d+)#", re.ASCII)
# At most 11 characters, letters and digits, starting with a letter; one public client allows spaces
# and one allows 1 or 2 characters, so neither is refused here.
_SENDER = re.compile(r"[A-Za-z][A-Za-z0-9 ]{0,10}", re.ASCII)
_WHOLE_NUMBER = re.compile(r"\d{1,6}", re.ASCII)


@dataclass(frozen=True)
class Plan:
    """Everything needed to launch (or simulate) a campaign, already validated and priced.

    `numbers` holds one normalised number per message to send, in feed order; duplicates are
    kept because the real API documents no de-duplication.
    """

    kind: str
    message: str
    numbers: tuple
    invalid_numbers: tuple
    credits_needed: int
    nb_sms: int
    scheduled_at: datetime | None = None
    sender: str = ""
    name: str = ""
    client_msg_id: str = ""
    flash: bool = False
    extra: dict = field(default_factory=dict)


def plan_sms(data, now):
    """Validate a parsed feed (see feeds.parse_feed) and price it; `now` is an aware datetime."""
    message = _message(data.get("MESSAGE"))
    scheduled_at = parse_schedule(data.get("DATE"), now)
    if has_long_link(message):
        raise ApiError(statuses.LINK_TOO_LONG)
    sender = as_text(data.get("TPOA"))
    if sender and _SENDER.fullmatch(sender) is None:
        raise invalid_feed("TPOA must be 1 to 11 letters, digits or spaces, starting with a letter")
    recipients = data.get("SMS")
    if recipients is None or recipients == [] or recipients == "":
        raise ApiError(statuses.NO_RECIPIENTS)
    if not isinstance(recipients, list):
        raise invalid_feed("SMS must be a list of recipients")
    template, keys = _compile_template(message, _dynamic(data.get("DYNAMIC")))
    numbers, invalid, credits, nb_sms = _price_recipients(recipients, template, keys)
    if not numbers:
        raise ApiError(statuses.NO_VALID_NUMBER)
    return Plan(
        kind="sms",
        message=message,
        numbers=tuple(numbers),
        invalid_numbers=tuple(invalid),
        credits_needed=credits,
        nb_sms=nb_sms,
        scheduled_at=scheduled_at,
        sender=sender,
        name=as_text(data.get("CAMPAIGN_NAME")),
        client_msg_id=as_text(data.get("CLIMSGID")),
        flash=_flag(data.get("FLASH")),
    )


# mmsData: MSGCLASS -> the tag carrying the media's URL (0 is a text MMS, with none).
MMS_MEDIA_TAGS = {0: None, 1: "IMAGE", 2: "VIDEO", 3: "SOUND"}


def plan_mms(data, now):
    """Validate a parsed mmsData feed and price it: one MMS per valid number, MMS_CREDITS each.

    The sandbox's rules, none documented: MSGCLASS is 0 (text) to 3 (sound), 106 otherwise; a text MMS needs a
    MESSAGE (110), the others the URL of their IMAGE, VIDEO or SOUND (106). A MESSAGE is not held to the
    640 characters of an SMS.
    """
    msg_class = _dynamic(data.get("MSGCLASS"))
    if msg_class not in MMS_MEDIA_TAGS:
        raise invalid_feed("MSGCLASS must be 0 (text), 1 (image), 2 (video) or 3 (sound)")
    message = as_text(data.get("MESSAGE"))
    media_tag = MMS_MEDIA_TAGS[msg_class]
    media_url = as_text(data.get(media_tag)) if media_tag else ""
    if media_tag is None and not message.strip():
        raise ApiError(statuses.EMPTY_MESSAGE)
    if media_tag is not None and _LINK.fullmatch(media_url.strip()) is None:
        raise invalid_feed(f"{media_tag} must be the http(s) URL of the media")
    scheduled_at = parse_schedule(data.get("DATE"), now)
    recipients = data.get("MMS")
    if recipients is None or recipients == [] or recipients == "":
        raise ApiError(statuses.NO_RECIPIENTS)
    if not isinstance(recipients, list):
        raise invalid_feed("MMS must be a list of recipients")
    numbers: list[str] = []
    invalid: list[str] = []
    for entry in recipients:
        if not isinstance(entry, dict):
            raise invalid_feed("each MMS entry must be an object")
        if "MOBILEPHONE" not in entry:
            raise ApiError(statuses.MISSING_PHONE_TAG)
        raw = entry.get("MOBILEPHONE")
        number = phones.normalise_number(str(raw) if type(raw) is int else raw)
        (numbers if number else invalid).append(number or as_text(raw))
    if not numbers:
        raise ApiError(statuses.NO_VALID_NUMBER)
    return Plan(
        kind="mms",
        message=message,
        numbers=tuple(numbers),
        invalid_numbers=tuple(invalid),
        credits_needed=phones.MMS_CREDITS * len(numbers),
        nb_sms=len(numbers),
        scheduled_at=scheduled_at,
        name=as_text(data.get("CAMPAIGN_NAME")),
        client_msg_id=as_text(data.get("CLIMSGID")),
        extra={"msg_class": msg_class, "media_url": media_url.strip()},
    )


def plan_email(data, now):
    """Validate a parsed emailData feed and price it (EMAIL_CREDITS). FROM, TO, SUBJECT and HTML are required
    and HTML is base64, as the one public client sends them; anything missing or not base64 answers 106."""
    for key in ("FROM", "TO", "SUBJECT", "HTML"):
        if not as_text(data.get(key)).strip():
            raise invalid_feed(f"{key} is missing")
    for key in ("FROM", "TO"):
        if "@" not in as_text(data.get(key)):
            raise invalid_feed(f"{key} must be an e-mail address")
    try:
        base64.b64decode(as_text(data.get("HTML")), validate=True)
    except ValueError:
        raise invalid_feed("HTML must be base64") from None
    return Plan(
        kind="email",
        message=as_text(data.get("SUBJECT")),
        numbers=(),
        invalid_numbers=(),
        credits_needed=phones.EMAIL_CREDITS,
        nb_sms=0,
        scheduled_at=parse_schedule(data.get("DATE"), now),
        name=as_text(data.get("CAMPAIGN_NAME")),
        extra={"to": as_text(data.get("TO")).strip()},
    )


def parse_schedule(value, now):
    """Return a DATE value as an aware Europe/Paris datetime, None when absent; raise 115 if bad.

    A date not strictly in the future is refused, and so is a wall-clock time that does not exist
    because the clocks jump forward that night.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or _DATE.fullmatch(value.strip()) is None:
        raise ApiError(statuses.INVALID_DATE)
    try:
        naive = datetime.strptime(value.strip(), DATE_FORMAT)
    except ValueError:
        raise ApiError(statuses.INVALID_DATE) from None
    local = naive.replace(tzinfo=PARIS)
    round_trip = local.astimezone(UTC).astimezone(PARIS).replace(tzinfo=None)
    if round_trip != naive or local <= now:
        raise ApiError(statuses.INVALID_DATE)
    return local


def has_long_link(text):
    """True when an http(s) link in `text` is longer than AllMySMS's 80-character limit."""
    return "://" in text and any(len(link) > MAX_LINK_LENGTH for link in _LINK.findall(text))


def _message(value):
    if value is None:
        raise ApiError(statuses.EMPTY_MESSAGE)
    if not isinstance(value, str):
        raise invalid_feed("MESSAGE must be text")
    if not value.strip():
        raise ApiError(statuses.EMPTY_MESSAGE)
    # The documented limit applies to the template; personalised texts are priced, not refused.
    if len(value) > MAX_MESSAGE_LENGTH:
        raise ApiError(statuses.MESSAGE_TOO_LONG)
    return value


def _dynamic(value):
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
        return int(value)
    raise invalid_feed("DYNAMIC must be a whole number")


def _compile_template(message, dynamic):
    """Turn `#param_n#` (n <= DYNAMIC) into str.format fields: one C-level call per recipient.

    Returns the format string and the recipient keys (PARAM_n) feeding its fields in order;
    no keys means every recipient gets the same text.
    """
    pieces: list[str] = []
    keys: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(message):
        index = int(match.group(1))
        if 1 <= index <= dynamic:
            pieces.append(_escape_braces(message[position : match.start()]))
            pieces.append(f"{{{len(keys)}}}")
            keys.append(f"PARAM_{index}")
            position = match.end()
    if not keys:
        return message, ()
    pieces.append(_escape_braces(message[position:]))
    return "".join(pieces), tuple(keys)


def _escape_braces(text):
    return text.replace("{", "{{").replace("}", "}}")


def _price_recipients(recipients, template, keys):
    # The hot loop of a 100,000-recipient feed: names are bound locally and the text of a
    # non-personalised message is measured once.
    normalise = phones.normalise_number
    france = phones.FRANCE_PREFIX
    per_part_france, per_part_abroad = phones.SMS_CREDITS_FRANCE, phones.sms_credits_per_part
    fixed_parts = None if keys else analyse(template).parts
    numbers: list[Any] = []
    invalid: list[Any] = []
    append_number, append_invalid = numbers.append, invalid.append
    credits = nb_sms = 0
    for entry in recipients:
        if not isinstance(entry, dict):
            raise invalid_feed("each SMS entry must be an object")
        if "MOBILEPHONE" not in entry:
            raise ApiError(statuses.MISSING_PHONE_TAG)
        raw = entry.get("MOBILEPHONE")
        if type(raw) is int:
            raw = str(raw)
        number = normalise(raw)
        if number is None:
            append_invalid(as_text(raw))
            continue
        if fixed_parts is None:
            missing = next((key for key in keys if key not in entry), None)
            if missing:
                raise ApiError(statuses.MISSING_PARAM_TAG, tag=missing)
            text = template.format(*[as_text(entry.get(key)) for key in keys])
            if has_long_link(text):
                raise ApiError(statuses.LINK_TOO_LONG)
            parts = analyse(text).parts
        else:
            parts = fixed_parts
        append_number(number)
        nb_sms += parts
        credits += parts * (per_part_france if number.startswith(france) else per_part_abroad(number))
    return numbers, invalid, credits, nb_sms


def _flag(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return value is True or (type(value) is int and value == 1)


def as_text(value):
    """Text of a feed value: JSON numbers become text, absent or structured values become ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""

"""Pure: validated action input turned into a send request (recipients read, texts checked, time resolved)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from connector.description.validation import field_path, invalid_input
from connector.errors import FieldError
from connector.sending import phones, segments

MAX_MESSAGE_CHARACTERS = 640
#: The kinds of MMS as the action names them, and as the mmsData feed does (feeds.MMS_CLASSES).
MMS_KINDS = {"picture": "image", "video": "video", "sound": "sound", "text": "text"}
# Names that only ever mean this machine or a private network: AllMySMS could never download from them.
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")
_PLACEHOLDER = re.compile(r"#param_(\d+)#")
# AllMySMS documents #param_1# in lower case only: another case would go out as written.
_PLACEHOLDER_OTHER_CASE = re.compile(r"#(?!param_)(?i:param_)\d+#")
# XML 1.0 cannot carry these, and no phone shows them: refuse them rather than send a broken feed.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Recipient:
    e164: str
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class InvalidNumber:
    path: str
    input: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"input": self.input, "reason": self.reason}


@dataclass(frozen=True)
class SendTime:
    utc: datetime
    local: datetime

    @property
    def utc_text(self) -> str:
        return self.utc.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def local_text(self) -> str:
        return self.local.strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class SmsRequest:
    message: str
    recipients: tuple[Recipient, ...]
    invalid: tuple[InvalidNumber, ...]
    dynamic: int
    text: segments.Analysis
    parts_max: int
    sender: str = ""
    campaign_name: str = ""
    flash: bool = False
    client_reference: str = ""
    send_at: SendTime | None = None


@dataclass(frozen=True)
class VoiceRequest:
    recipients: tuple[Recipient, ...]
    invalid: tuple[InvalidNumber, ...]
    audio_url: str = ""
    text: str = ""
    sender: str = ""
    campaign_name: str = ""
    send_at: SendTime | None = None


@dataclass(frozen=True)
class MmsRequest:
    recipients: tuple[Recipient, ...]
    invalid: tuple[InvalidNumber, ...]
    #: As the action names it: picture, video, sound or text.
    kind: str
    message: str = ""
    media_url: str = ""
    campaign_name: str = ""
    client_reference: str = ""
    send_at: SendTime | None = None


@dataclass(frozen=True)
class Rules:
    """The settings that shape how input is read."""

    region: str = "FR"
    zone: str = "Europe/Paris"
    stop_mention: str = "STOP au 36180"
    max_recipients: int = 100_000


def sms_request(
    payload: dict[str, Any], rules: Rules, now: datetime, *, schedule: bool = False, taken: bool = False
) -> SmsRequest:
    """Raises InvalidInput listing every problem; ``payload`` already matches its JSON Schema.

    ``taken``: the caller gives ``payload`` away (a handler owns its payload): each recipient is let go from
    it once read, so that the request of a large send is built in the memory its input held, not beside it.
    """
    problems: list[FieldError] = []
    message = payload["message"]
    if payload.get("add_stop_mention") and rules.stop_mention.lower() not in message.lower():
        message = f"{message}\n{rules.stop_mention}"
    problems += _text_problems("message", message)
    problems += _text_problems("campaign_name", payload.get("campaign_name", ""))
    if len(message) > MAX_MESSAGE_CHARACTERS:
        problems.append(
            FieldError(
                "message",
                f"With the STOP mention the message has {len(message)} characters; "
                f"the most AllMySMS accepts is {MAX_MESSAGE_CHARACTERS}.",
            )
        )
    other_case = _PLACEHOLDER_OTHER_CASE.search(message)
    if other_case:
        problems.append(
            FieldError(
                "message",
                f"Write {other_case.group()} in lower case, "
                f"{other_case.group().lower()}: AllMySMS reads only that form as a "
                "placeholder and would send the other as written.",
            )
        )
    used = sorted({int(n) for n in _PLACEHOLDER.findall(message)})
    dynamic = used[-1] if used else 0
    if used and used[0] < 1:
        problems.append(FieldError("message", "Placeholders start at #param_1#."))
    recipients, invalid, recipient_problems, personalised = _read_recipients(
        payload["recipients"], rules, dynamic, taken=taken
    )
    if not used and personalised:
        problems.append(
            FieldError(
                "message",
                "Recipients carry personalisation values but the message has no #param_1# placeholder to put them in.",
            )
        )
    problems += recipient_problems
    problems += _invalid_number_problems(invalid, payload.get("invalid_numbers", "reject"), len(recipients))
    send_at = None
    if schedule:
        send_at, time_problems = send_time(payload["send_at"], rules.zone, now)
        problems += time_problems
    if problems:
        raise invalid_input(problems)
    text = segments.analyse(message)
    parts_max = _parts_max(message, recipients) if dynamic else text.parts
    return SmsRequest(
        message=message,
        recipients=tuple(recipients),
        invalid=tuple(invalid),
        dynamic=dynamic,
        text=text,
        parts_max=parts_max,
        sender=payload.get("sender", ""),
        campaign_name=payload.get("campaign_name", ""),
        flash=bool(payload.get("flash", False)),
        client_reference=payload.get("client_reference", ""),
        send_at=send_at,
    )


def optional_send_time(
    payload: dict[str, Any], rules: Rules, now: datetime
) -> tuple[SendTime | None, list[FieldError]]:
    """The ``send_at`` of a send that may be scheduled (None: now), and what is wrong with it."""
    if not payload.get("send_at"):
        return None, []
    return send_time(payload["send_at"], rules.zone, now)


def _unpersonalised_recipients(
    payload: dict[str, Any], rules: Rules, what_cannot: str
) -> tuple[list[Recipient], list[InvalidNumber], list[FieldError]]:
    """The recipients of a send that takes no #param_n# values (voice, MMS): read as an SMS's are, with what
    is wrong with them."""
    problems: list[FieldError] = []
    recipients, invalid, recipient_problems, personalised = _read_recipients(payload["recipients"], rules, 0)
    if personalised:
        problems.append(FieldError("recipients", f"{what_cannot} be personalised: give phone numbers only."))
    problems += recipient_problems
    problems += _invalid_number_problems(invalid, payload.get("invalid_numbers", "reject"), len(recipients))
    return recipients, invalid, problems


def voice_request(payload: dict[str, Any], rules: Rules, now: datetime) -> VoiceRequest:
    recipients, invalid, problems = _unpersonalised_recipients(payload, rules, "Voice messages cannot")
    text = payload.get("text", "")
    problems += _text_problems("text", text)
    problems += _text_problems("campaign_name", payload.get("campaign_name", ""))
    sender: str | None = ""
    if payload.get("sender"):
        sender, reason = phones.parse(payload["sender"], rules.region)
        if sender is not None:  # else parse gave its reason
            reason = reason or phones.french_landline_problem(sender)

        if reason:
            problems.append(FieldError("sender", f"The caller number is {reason}."))
    send_at, time_problems = optional_send_time(payload, rules, now)
    problems += time_problems
    if problems:
        raise invalid_input(problems)
    return VoiceRequest(
        recipients=tuple(recipients),
        invalid=tuple(invalid),
        audio_url=payload.get("audio_url", ""),
        text=text,
        sender=sender or "",
        campaign_name=payload.get("campaign_name", ""),
        send_at=send_at,
    )


def mms_request(payload: dict[str, Any], rules: Rules, now: datetime) -> MmsRequest:
    """Raises InvalidInput listing every problem; ``payload`` already matches its JSON Schema."""
    recipients, invalid, problems = _unpersonalised_recipients(payload, rules, "An MMS cannot")
    kind, message, media_url = payload["kind"], payload.get("message", ""), payload.get("media_url", "").strip()
    problems += _text_problems("message", message)
    problems += _text_problems("campaign_name", payload.get("campaign_name", ""))
    problems += _mms_content_problems(kind, message, media_url)
    send_at, time_problems = optional_send_time(payload, rules, now)
    problems += time_problems
    if problems:
        raise invalid_input(problems)
    return MmsRequest(
        recipients=tuple(recipients),
        invalid=tuple(invalid),
        kind=kind,
        message=message,
        media_url=media_url,
        campaign_name=payload.get("campaign_name", ""),
        client_reference=payload.get("client_reference", ""),
        send_at=send_at,
    )


def _mms_content_problems(kind: str, message: str, media_url: str) -> list[FieldError]:
    """A text MMS is a message and no media; the other kinds need the media's public URL."""
    if kind == "text":
        problems = [] if message.strip() else [FieldError("message", "A text MMS needs a message.")]
        if media_url:
            problems.append(
                FieldError(
                    "media_url",
                    "A text MMS carries no media: leave the media URL empty, or choose picture, "
                    "video or sound as the kind.",
                )
            )
        return problems
    if not media_url:
        return [FieldError("media_url", f"A {kind} MMS needs the public http(s) link to its {kind}.")]
    reason = media_url_problem(media_url)
    return [FieldError("media_url", reason)] if reason else []


def media_url_problem(url: str) -> str | None:
    """Why AllMySMS could not download a media from ``url``, or None: it must be a well-formed http(s) URL
    of a public host. Names are not resolved here (AllMySMS downloads, not this service): only what the URL
    itself shows is judged, an address of a private network or a name that only ever means one."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - reading it checks it: a port that is not a number raises
    except ValueError:
        return "This is not a well-formed URL; give a link such as https://example.com/offer.jpg."
    if parts.scheme.lower() not in ("http", "https"):
        return "Give a link starting with https:// (or http://): AllMySMS downloads the media from the internet."
    if any(c.isspace() for c in url) or not host:
        return "This is not a well-formed URL (a host is missing, or it contains spaces); encode spaces as %20."
    if parts.username is not None:
        return "The link must not carry a login or password: give a public link that needs none."
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host == "localhost" or host.endswith(_PRIVATE_SUFFIXES) or "." not in host.rstrip("."):
            return f"{host} is not a public internet name: AllMySMS could not download the media from it."
        return None
    if not address.is_global:
        return f"{host} is not a public internet address: AllMySMS could not download the media from it."
    return None


def campaign_ids(value: str | list[Any]) -> list[str]:
    """Campaign IDs from a list or from one text separated by commas, semicolons or new lines."""
    items = phones.split(value) if isinstance(value, str) else [str(v).strip() for v in value]
    problems = [
        FieldError("campaign_id", f"{item!r} is not a campaign ID: campaign IDs are letters and digits.")
        for item in items
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", item)
    ]
    if not items:
        problems.append(FieldError("campaign_id", "Give the campaign ID returned by the send."))
    if problems:
        raise invalid_input(problems)
    return list(dict.fromkeys(items))


def render(message: str, params: tuple[str, ...]) -> str:
    return _PLACEHOLDER.sub(
        lambda m: params[int(m.group(1)) - 1] if 0 < int(m.group(1)) <= len(params) else "", message
    )


def _parts_max(message: str, recipients: list[Recipient]) -> int:
    """The parts of the longest message once each recipient's values are in it. Each recipient's holds the
    values the message uses, no fewer (sms_request refused the send otherwise)."""
    if not recipients:
        return segments.analyse(message).parts
    if len(recipients) < 8:  # each counted costs less than what follows
        return max(segments.analyse(render(message, r.params)).parts for r in recipients)
    # When the text and every value are in the GSM-7 basic table, each character is one septet and parts
    # grow with length alone: the longest message is the one to count. Otherwise every one is counted.
    values = "".join(value for r in recipients for value in r.params)
    basic = segments.analyse(_PLACEHOLDER.sub("", message) + values)
    if basic.encoding != segments.GSM7 or basic.units != basic.characters:
        return max(segments.analyse(render(message, r.params)).parts for r in recipients)
    used = [int(n) for n in _PLACEHOLDER.findall(message)]
    if sorted(used) == list(range(1, len(used) + 1)):
        # Each value used once, in whatever order: the longest message has the longest values.
        longest = max(recipients, key=lambda r: sum(map(len, r.params)))
    else:
        longest = max(recipients, key=lambda r: len(render(message, r.params)))
    return segments.analyse(render(message, longest.params)).parts


def send_time(value: str, zone_name: str, now: datetime) -> tuple[SendTime | None, list[FieldError]]:
    """An ISO 8601 time (naive ones read in the AllMySMS zone) as UTC and AllMySMS local time."""
    zone = ZoneInfo(zone_name)
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None, [
            FieldError(
                "send_at",
                f"{value!r} is not a date and time. Write it in ISO 8601, e.g. "
                "2026-12-01T09:30:00+01:00, or 2026-12-01 09:30 for AllMySMS local time.",
            )
        ]
    if len(text) <= 10:
        return None, [FieldError("send_at", "Give a time as well as a date, e.g. 2026-12-01 09:30.")]
    try:
        return _send_time(parsed, text, zone, zone_name, now)
    except OverflowError:
        # A moment at the very edge of the calendar (year 1 or 9999) has no UTC or local time within it.
        return None, [
            FieldError(
                "send_at",
                f"{text} is too far {'ahead' if parsed.year > 1 else 'back'} to be "
                "sent at: give a time in the coming years, e.g. 2026-12-01 09:30.",
            )
        ]


def _send_time(
    parsed: datetime, text: str, zone: ZoneInfo, zone_name: str, now: datetime
) -> tuple[SendTime | None, list[FieldError]]:
    if parsed.tzinfo is None:
        local = parsed.replace(tzinfo=zone)
        # Wall-clock times skipped when clocks go forward do not exist; do not guess.
        if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != parsed:
            return None, [
                FieldError(
                    "send_at",
                    f"{text} does not exist in {zone_name}: clocks go forward at that "
                    "time. Choose another time or give an offset.",
                )
            ]
        utc = local.astimezone(UTC)
    else:
        utc = parsed.astimezone(UTC)
    utc = utc.replace(microsecond=0)
    if utc <= now:
        return None, [
            FieldError("send_at", f"{utc.strftime('%Y-%m-%d %H:%M:%S')} UTC is in the past; give a time in the future.")
        ]
    return SendTime(utc=utc, local=utc.astimezone(zone).replace(tzinfo=None)), []


def _param_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_recipients(
    value: str | list[Any], rules: Rules, dynamic: int, *, taken: bool = False
) -> tuple[list[Recipient], list[InvalidNumber], list[FieldError], bool]:
    """The recipients, whichever of the accepted shapes was used (a text of numbers, a list of numbers or of
    {phone_number, params}), the invalid numbers, the problems, and whether any recipient carries values. An
    entry's index is its place in the input, so its field path is ``recipients[index]``. ``taken``: ``value``
    is the caller's to give away, and each entry is dropped from it once read (see sms_request)."""
    entries: list[Any] = phones.split(value) if isinstance(value, str) else value
    count = len(entries)
    problems: list[FieldError] = []
    if not entries:
        problems.append(FieldError("recipients", "Give at least one phone number."))
    if count > rules.max_recipients:
        problems.append(
            FieldError(
                "recipients",
                f"{count} recipients is more than the {rules.max_recipients} one request accepts; split the list.",
            )
        )
        return [], [], problems, any(not isinstance(item, str) and item.get("params") for item in entries)
    recipients: list[Recipient] = []
    invalid: list[InvalidNumber] = []
    personalised = False
    for i in range(count):
        item = entries[i]
        params: tuple[str, ...]
        if taken:
            entries[i] = None
        if isinstance(item, str):
            raw, params = item, ()
        else:
            raw, params = item["phone_number"], tuple(item.get("params", ()))
            personalised = personalised or bool(params)
        del item
        e164, reason = phones.parse(raw, rules.region)
        if reason:
            invalid.append(InvalidNumber(f"recipients[{i}]", raw, reason))
            continue
        if len(params) < dynamic:
            problems.append(
                FieldError(
                    f"recipients[{i}].params",
                    f"The message uses #param_{dynamic}# but this "
                    f"recipient has {len(params)} value(s); give {dynamic}.",
                )
            )
        params = params[:dynamic]
        if params:
            try:
                joined = "".join(params)  # texts, as JSON mostly gives them: kept as they are
            except TypeError:
                params = tuple(_param_text(p) for p in params)  # numbers
                joined = "".join(params)
            if _FORBIDDEN.search(joined):  # the paths are written only for the rare bad value
                for j, param in enumerate(params):
                    problems += _text_problems(f"recipients[{i}].params[{j}]", param)
        recipients.append(Recipient(cast(str, e164), params))  # parse gives a number whenever it gives no reason
    return recipients, invalid, problems, personalised


def _invalid_number_problems(invalid: list[InvalidNumber], mode: str, valid_count: int) -> list[FieldError]:
    if not invalid:
        return []
    if mode == "reject" or valid_count == 0:
        hint = " Correct them, or set invalid_numbers to skip to send to the others." if valid_count else ""
        return [FieldError(n.path, f"{n.input!r} is {n.reason}.{hint}") for n in invalid]
    return []


def lone_surrogates(document: Any) -> list[FieldError]:
    """A field error for each text (value or name) of a decoded JSON ``document`` holding half of a UTF-16
    pair: JSON lets ``"\\ud800"`` through, but no encoder, schema validator or database takes it. To be
    asked before anything else reads the input; a bad name is shown in its path with U+FFFD in its place."""
    problems: list[FieldError] = []
    # A loop, not recursion, and each path a link to its parent's: a body nested as deep as the JSON parser
    # allows must exhaust neither the stack nor the time it takes to copy its paths.
    pending: list[tuple[tuple[Any, ...] | None, object]] = [(None, document)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            bad = _SURROGATE.search(value)
            if bad:
                problems.append(FieldError(_path_text(path), _surrogate_reason("Contains", bad)))
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                bad = _SURROGATE.search(key) if isinstance(key, str) else None
                if bad:
                    problems.append(
                        FieldError(
                            _path_text((path, _SURROGATE.sub("\ufffd", key))),
                            _surrogate_reason("The field's name contains", bad),
                        )
                    )
                else:
                    pending.append(((path, key), item))
        elif isinstance(value, list):
            pending.extend(((path, index), item) for index, item in reversed(list(enumerate(value))))
    return problems


def _path_text(link: tuple[Any, ...] | None) -> str:
    parts = []
    while link is not None:
        link, part = link
        parts.append(part)
    return field_path(reversed(parts))


def _surrogate_reason(start: str, bad: re.Match[str]) -> str:
    return (
        f"{start} U+{ord(bad.group()):04X} at position {bad.start() + 1}, half of a UTF-16 pair without its "
        "other half: it is not a character. Remove it."
    )


def _text_problems(path: str, text: str) -> list[FieldError]:
    bad = _FORBIDDEN.search(text)
    if bad:
        return [
            FieldError(
                path,
                f"Contains the character U+{ord(bad.group()):04X} at position {bad.start() + 1}, "
                "which cannot be sent by SMS; remove it.",
            )
        ]
    return []

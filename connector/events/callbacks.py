"""Pure: what AllMySMS pushes to the inbound URL (receipts, replies) read into canonical events."""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email import policy
from email.parser import BytesParser
from typing import Any, NoReturn, cast
from urllib.parse import unquote_to_bytes
from xml.etree.ElementTree import Element, ParseError
from zoneinfo import ZoneInfo

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from connector.sending import feeds, phones

RECEIPT = "sms.delivery_receipt"
REPLY = "sms.reply_received"
MAX_RECORDS = 1000

#: AllMySMS receipt status codes and the words events carry; any other code reads as "unknown".
STATUSES = feeds.RECEIPT_STATUSES

#: The key every event read from AllMySMS carries in its data: the AllMySMS fields that were sent but could
#: not be read (their values as sent stay in the event's raw record).
UNREADABLE = "unreadable_fields"

_JSON_TYPES = {"application/json", "text/plain"}
_XML_TYPES = {"application/xml", "text/xml"}
_URLENCODED = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
_FORM_TYPES = {_URLENCODED, _MULTIPART}
_SCALARS = (str, int, float, bool, type(None))
_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# AllMySMS documents YYYY-MM-DD HH:MM:SS in Paris time; a T, a fraction of a second or a zone are read too.
_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,]\d{1,9})?"
    r"(?:(Z)|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII | re.IGNORECASE,
)
_SURROGATES = re.compile("[\ud800-\udfff]")
_XML_DECLARED = re.compile(rb"\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z][A-Za-z0-9._:-]*)[\"']")
# Each field's names, lower-cased (keys match whatever their case); the first one present wins.
_SMS_ID = ("smsid",)
_REPLY_ID = ("smsmoid",)
_CAMPAIGN_ID = ("campaignid",)
_PHONE = ("phonenumber",)
_MESSAGE = ("message", "text", "mo")
_STATUS = ("status", "statut", "code")
_STATUS_TEXT = ("statustext", "comment", "description")
_RECEIVED = ("receptiondate",)
_CLIENT_REFERENCE = ("climsgid", "clientreference")
# How reasons and the unreadable-field list spell a field: as AllMySMS does, so they match what its users
# see. A name not listed here is spelled as it was received.
_SPELLING = {
    "smsid": "smsId",
    "smsmoid": "smsMoId",
    "campaignid": "campaignId",
    "phonenumber": "phoneNumber",
    "statustext": "statusText",
    "receptiondate": "receptionDate",
    "climsgid": "CLIMSGID",
    "clientreference": "clientReference",
    "status": "status",
    "statut": "statut",
    "code": "code",
    "comment": "comment",
    "description": "description",
    "message": "message",
    "text": "text",
    "mo": "mo",
    "id": "id",
}


class CallbackRejected(Exception):
    """A callback, or one record of it, that cannot be read. The reason is short and safe to store and
    show: it names fields, never their values."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    timestamp: str
    data: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The event as subscribers receive it (``raw`` stays with us)."""
        return {"id": self.id, "type": self.type, "timestamp": self.timestamp, "data": dict(self.data)}


class _Garbled(str):
    """Text that was not valid in the charset it was declared in: what could not be decoded reads as U+FFFD.
    A str, so records stay plain dicts of text; the type is the mark that the field could not be read."""


# --- Reading a callback into records ---------------------------------------------------------------


def read_callback(
    method: str, content_type: str, query: Mapping[str, str] | bytes, form: Mapping[str, str], body: bytes
) -> list[dict[str, Any]]:
    """The records a callback carries: one for a query string or a form, one or many for JSON or XML.

    ``query`` is the raw query string (bytes) or its fields already decoded; ``form`` is read only when the
    body is empty (the raw body is read otherwise, so that its charset is ours to decide). Text is decoded
    in the charset the callback declares; without one, as UTF-8, and as windows-1252 where it is not UTF-8
    (what browsers do with Latin-1). A value that is not valid in its declared charset is kept, marked, and
    listed by :func:`normalise` among the event's unreadable fields.
    """
    verb = method.upper()
    if verb == "GET":
        return [_record(_query(query))]
    if verb != "POST":
        raise CallbackRejected(f"the {verb} method is not accepted; use GET or POST")
    media, charset = _media(content_type)
    if media in _FORM_TYPES or not body:
        # A POST with nothing in its body is read like a GET: the fields are in the query string.
        if not body:
            record = _flat(form)
        elif media == _MULTIPART:
            record = _multipart(content_type, body, _codec(charset))
        else:
            record = _urlencoded(body, _codec(charset))
        seen = {key.lower() for key in record}
        record.update({key: value for key, value in _query(query).items() if key.lower() not in seen})
        return [_record(record)]
    if media in _XML_TYPES or media.endswith("+xml") or (media == "text/plain" and _looks_like_xml(body)):
        # The Content-Type's charset overrides the XML declaration's, as RFC 7303 says.
        text, valid = _decoded(body, _codec(charset or _declared_encoding(body)))
        records, batch = _xml(text.removeprefix("\ufeff"))
        return [_record(item, index if batch else None, damaged=not valid) for index, item in enumerate(records)]
    if media not in _JSON_TYPES:
        raise CallbackRejected("unsupported content type; send JSON, XML, a form or a query string")
    text, valid = _decoded(body, _codec(charset))
    document = _json(text.removeprefix("\ufeff"))
    if isinstance(document, dict) and not _wrapped(document):
        return [_record(document, damaged=not valid)]
    return [_record(item, index, damaged=not valid) for index, item in enumerate(_batch(document))]


def _media(content_type: str) -> tuple[str, str | None]:
    media, _, parameters = content_type.partition(";")
    charset = None
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
    return media.strip().lower(), charset


def _codec(label: str | None) -> str | None:
    """Python's codec for a declared charset; None when none is declared or no text codec has that name
    (it is then read as if none were declared)."""
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
        # LookupError for codecs that are not text encodings (base64, zlib…). Not b"": an empty input is
        # decoded without asking what the codec is.
        b"a".decode(name)
    except LookupError:
        return None
    except ValueError:  # a text encoding in which a lone "a" is not valid (UTF-16)
        pass
    # As browsers do (WHATWG Encoding): text labelled Latin-1 or ASCII is windows-1252 in practice.
    return "windows-1252" if name in ("iso8859-1", "latin-1", "cp1252", "ascii") else name


def _decoded(raw: bytes, codec: str | None) -> tuple[str, bool]:
    """``raw`` as text, and whether it was valid in its charset (invalid bytes then read as U+FFFD)."""
    if codec is None:
        try:
            return raw.decode("utf-8"), True
        except UnicodeDecodeError:
            return _windows_1252(raw), True
    if codec == "windows-1252":
        return _windows_1252(raw), True
    try:
        return raw.decode(codec), True
    except UnicodeDecodeError:
        return raw.decode(codec, "replace"), False


# The five bytes windows-1252 leaves unassigned stay the C1 controls Latin-1 reads them as, so no byte fails.
_CP1252 = {byte: bytes([byte]).decode("cp1252") for byte in range(0x80, 0xA0) if byte not in b"\x81\x8d\x8f\x90\x9d"}
_CP1252_TABLE = str.maketrans({chr(byte): text for byte, text in _CP1252.items()})


def _windows_1252(raw: bytes) -> str:
    return raw.decode("latin-1").translate(_CP1252_TABLE)


def _text(raw: bytes, codec: str | None) -> str:
    text, valid = _decoded(raw, codec)
    return text if valid else _Garbled(text)


def _query(query: Mapping[str, str] | bytes) -> dict[str, Any]:
    # A URL declares no charset: UTF-8, else windows-1252, as for a body without one.
    return _urlencoded(query, None) if isinstance(query, bytes) else _flat(query)


def _flat(values: Mapping[str, str]) -> dict[str, Any]:
    # A repeated key (a=1&a=2) keeps its first value, as Flask's MultiDict does when indexed.
    return {key: values[key] for key in values}


def _urlencoded(raw: bytes, codec: str | None) -> dict[str, Any]:
    """A query string or form body: each name and value decoded after its %-escapes are undone, since the
    escaped bytes are in the charset too."""
    fields: dict[str, Any] = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        key = str(_text(unquote_to_bytes(name.replace(b"+", b" ")), codec))
        # A repeated key keeps its first value, as Flask's MultiDict does when indexed.
        fields.setdefault(key, _text(unquote_to_bytes(value.replace(b"+", b" ")), codec))
    return fields


def _multipart(content_type: str, body: bytes, codec: str | None) -> dict[str, Any]:
    """A multipart/form-data body's fields; a part declaring its own charset is read in it. Files are not
    fields and are left out."""
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise CallbackRejected("the body is not valid multipart/form-data")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        disposition = part["content-disposition"]
        name = disposition.params.get("name") if disposition is not None else None
        if not name or part.get_filename() is not None:
            continue
        charset = part.get_content_charset()
        # A leaf part's payload, decoded, is bytes.
        payload = cast(bytes | None, part.get_payload(decode=True))
        fields.setdefault(str(name), _text(payload or b"", _codec(charset) if charset else codec))
    return fields


def _looks_like_xml(body: bytes) -> bool:
    return body.lstrip(b" \t\r\n").removeprefix(b"\xef\xbb\xbf").startswith(b"<")


def _declared_encoding(body: bytes) -> str | None:
    found = _XML_DECLARED.match(body.removeprefix(b"\xef\xbb\xbf"))
    return found.group(1).decode("ascii") if found else None


def _xml(text: str) -> tuple[list[dict[str, Any]], bool]:
    """The records of an XML body, and whether it is a batch: a root whose children are fields is one record;
    a root whose children hold fields is one record per child."""
    try:
        # The text is already decoded, so the parser never sees bytes in a charset it might not know.
        root = SafeET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise CallbackRejected("the XML body declares a DTD or entities, which are not accepted") from None
    except (ParseError, ValueError, RecursionError):
        raise CallbackRejected("the body is not valid XML") from None
    children = list(root)
    holders = sum(1 for child in children if len(child))
    if not holders:
        return [_xml_fields(root, "")], False
    if holders != len(children):
        raise CallbackRejected("the XML root holds both fields and elements holding fields; records are flat")
    if len(children) > MAX_RECORDS:
        raise CallbackRejected(f"a callback may carry at most {MAX_RECORDS} records")
    return [_xml_fields(child, f"record {index}: ") for index, child in enumerate(children)], True


def _xml_fields(element: Element, where: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for child in element:
        name = child.tag.rpartition("}")[2] if isinstance(child.tag, str) else ""
        if len(child):
            raise CallbackRejected(f"{where}field {_name(name)} holds a nested value; records are flat")
        # A repeated element keeps its first value, as a repeated form key does. itertext joins the CDATA
        # sections a text containing "]]>" is split into.
        fields.setdefault(name, "".join(child.itertext()))
    return fields


def _json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=_whole)
    except RecursionError:
        raise CallbackRejected("the JSON body nests too deeply") from None
    except ValueError:
        raise CallbackRejected("the body is not valid JSON") from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _finite(literal: str) -> float | str:
    """A JSON number with a fraction or an exponent; one no float holds (1e400) is kept as the text it was,
    as infinity is not JSON and could be neither stored nor sent on."""
    value = float(literal)
    return value if math.isfinite(value) else literal


def _whole(literal: str) -> int | str:
    # Python reads at most 4,300 digits into an int; a longer number is kept as the text it was.
    try:
        return int(literal)
    except ValueError:
        return literal


def _wrapped(document: dict[str, Any]) -> bool:
    """Whether an object is a batch in disguise: its one key holds a list of objects ({"acks": [...]})."""
    if len(document) != 1:
        return False
    (inner,) = document.values()
    return isinstance(inner, list) and bool(inner) and all(isinstance(item, dict) for item in inner)


def _batch(document: Any) -> list[Any]:
    if isinstance(document, dict):
        (document,) = document.values()
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise CallbackRejected("the JSON body must be an object or a list of objects")
    if not document:
        raise CallbackRejected("the JSON list holds no records")
    if len(document) > MAX_RECORDS:
        raise CallbackRejected(f"a callback may carry at most {MAX_RECORDS} records")
    return document


def _record(record: dict[str, Any], index: int | None = None, *, damaged: bool = False) -> dict[str, Any]:
    """``record`` checked flat and free of NUL. ``damaged``: the body was not valid in its declared charset,
    so each text holding U+FFFD is marked as not read."""
    where = "" if index is None else f"record {index}: "
    if not record:
        raise CallbackRejected(f"{where}the record has no fields")
    checked: dict[str, Any] = {}
    for key, value in record.items():
        # A lone surrogate (a JSON \ud800) can be neither encoded nor stored.
        key = _SURROGATES.sub("\ufffd", key)
        if not isinstance(value, _SCALARS):
            raise CallbackRejected(f"{where}field {_name(key)} holds a nested value; records are flat")
        # No text AllMySMS sends holds NUL, and no database may be asked to keep it (PostgreSQL cannot).
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            raise CallbackRejected(f"{where}field {_name(key.replace(chr(0), '?'))} holds a NUL character")
        if isinstance(value, str) and _SURROGATES.search(value):
            value = _Garbled(_SURROGATES.sub("\ufffd", value))
        elif damaged and isinstance(value, str) and "\ufffd" in value:
            value = _Garbled(value)
        checked.setdefault(key, value)
    return checked


def _name(key: str) -> str:
    return repr(key if len(key) <= 40 else key[:40] + "…")


# --- Reading a record into an event ----------------------------------------------------------------


def normalise(
    record: dict[str, Any],
    *,
    account: str,
    zone: str | tzinfo = "Europe/Paris",
    region: str = "FR",
    received_now: datetime | None = None,
) -> Event:
    """One record as a delivery receipt or a reply event.

    Field names match whatever their case. A record is refused only when what tells it apart cannot be
    read: a receipt's smsId, a reply's smsMoId where it has one, else its message. Any other field that
    cannot be read (a date, a phone number, a status that is not a code, text not valid in its charset) is
    listed in the data's ``unreadable_fields`` and kept as sent in ``raw``.

    ``received_now`` (UTC; the clock when not given) is the event time only when the record carries no
    readable receptionDate; it never enters the event id, so a callback received twice keeps its id.
    """
    fields = _Fields(record)
    if fields.first(_MESSAGE) is not None or fields.first(_REPLY_ID) is not None:
        event_type, data, identity = _reply(fields, region, zone)
    elif fields.first(_STATUS) is not None:
        event_type, data, identity = _receipt(fields, region, zone)
    else:
        raise CallbackRejected("the record is neither a delivery receipt (no status) nor a reply (no message)")
    data[UNREADABLE] = fields.unreadable()
    digest = hashlib.sha256(
        json.dumps([account, event_type, *identity], ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()
    if event_type == REPLY and data["reply_id"] is None:
        # Without an id from AllMySMS the reply still needs one, and the same one every time.
        data["reply_id"] = "mo_" + digest[:24]
    timestamp = data["received_at"] or _utc_text(received_now or datetime.now(UTC))
    return Event(id="evt_" + digest[:24], type=event_type, timestamp=timestamp, data=data, raw=fields.unused())


def _reply(fields: _Fields, region: str, zone: str | tzinfo) -> tuple[str, dict[str, Any], list[Any]]:
    reply_id = fields.text(_REPLY_ID, ident=True)
    if reply_id is None:
        reply_id = fields.text(("id",), ident=True)
    message = fields.message()
    if reply_id is None and message is None:
        raise CallbackRejected("the reply has no message")
    if reply_id is None and message is not None and not message.strip():
        # Its text is all that tells such a reply apart.
        raise CallbackRejected("the reply has an empty message")
    received_at, moment = fields.moment(zone)
    data = {
        "reply_id": reply_id,
        "sms_id": fields.text(_SMS_ID),
        "campaign_id": fields.text(_CAMPAIGN_ID),
        "phone_number": fields.phone(region),
        "message": message,
        "received_at": received_at,
    }
    identity = [reply_id] if reply_id is not None else [data["sms_id"], data["phone_number"], message, moment]
    return REPLY, data, identity


def _receipt(fields: _Fields, region: str, zone: str | tzinfo) -> tuple[str, dict[str, Any], list[Any]]:
    sms_id = fields.text(_SMS_ID, ident=True)
    if sms_id is None:
        raise CallbackRejected("the delivery receipt has no smsId")
    name, status = fields.lookup(_STATUS)
    code = _code(status) if status is not None else None
    if code is None:
        fields.flag(name or fields.present(_STATUS))
    received_at, moment = fields.moment(zone)
    data = {
        "sms_id": sms_id,
        "campaign_id": fields.text(_CAMPAIGN_ID),
        "phone_number": fields.phone(region),
        "status": STATUSES.get(code, "unknown") if code is not None else "unknown",
        "status_code": code,
        "status_text": fields.text(_STATUS_TEXT),
        "received_at": received_at,
        "client_reference": fields.text(_CLIENT_REFERENCE),
    }
    # A status that is not a number still tells two receipts apart: its text stands in for the code.
    return RECEIPT, data, [sms_id, code if code is not None else status, moment]


def _code(status: str) -> int | None:
    text = status[1:] if status.startswith("-") else status
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        return None
    return int(status)


def _utc_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(_UTC_FORMAT)


def _utc_of(text: str, zone: str | tzinfo) -> str | None:
    """An AllMySMS time as UTC text to the second, or None when it is not a date and time. Without a zone of
    its own it is ``zone``'s local time; a fraction of a second is dropped, as our times keep none."""
    found = _DATE.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, utc, sign, hours, minutes = found.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        if utc:
            moment = moment.replace(tzinfo=UTC)
        elif sign:
            offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
            moment = moment.replace(tzinfo=timezone(-offset if sign == "-" else offset))
        else:
            # fold=0: during the autumn hour that happens twice, the first one is meant.
            moment = moment.replace(tzinfo=ZoneInfo(zone) if isinstance(zone, str) else zone, fold=0)
        return _utc_text(moment)
    except (ValueError, OverflowError):
        return None


class _Fields:
    """A record's fields looked up by case-insensitive name, remembering which ones were used and which ones
    could not be read."""

    def __init__(self, record: dict[str, Any]):
        self._record = record
        self._folded: dict[str, object] = {}
        self._keys: dict[str, str] = {}
        self._conflicts: set[str] = set()
        self._used: set[str] = set()
        self._unreadable: set[str] = set()
        for key, value in record.items():
            folded = str(key).lower()
            if folded in self._folded:
                if self._folded[folded] != value:
                    self._conflicts.add(folded)
                continue
            self._folded[folded] = value
            self._keys[folded] = str(key)

    def first(self, names: tuple[str, ...]) -> Any:
        """The value of the first of ``names`` present (empty text counts as present), or None."""
        for name in names:
            if self._folded.get(name) is not None:
                return self._folded[name]
        return None

    def present(self, names: tuple[str, ...]) -> str | None:
        """The first of ``names`` present, or None."""
        for name in names:
            if self._folded.get(name) is not None:
                return name
        return None

    def flag(self, name: str | None) -> None:
        """Mark a field as sent but not read: listed in ``unreadable()``, kept as sent in ``unused()``."""
        if name is not None:
            self._unreadable.add(name)

    def text(self, names: tuple[str, ...], *, ident: bool = False) -> str | None:
        """The first of ``names`` present as trimmed text; numbers are written as AllMySMS wrote them,
        so 12345 and "12345" read alike. Empty text reads as absent. A value that cannot be read is flagged
        and reads as absent, or refuses the record when it is an id (``ident``)."""
        return self.lookup(names, ident=ident)[1]

    def lookup(self, names: tuple[str, ...], *, ident: bool = False) -> tuple[str | None, str | None]:
        """``text`` and the name it was read from."""
        for name in names:
            text = self._readable(name, ident)
            if text is not None and text.strip():
                return name, text.strip()
        return None, None

    def message(self) -> str | None:
        """The reply's text as typed, spaces included (empty text too): what the person wrote."""
        for name in _MESSAGE:
            text = self._readable(name, False)
            if text is not None:
                return text
        return None

    def _readable(self, name: str, ident: bool) -> str | None:
        value = self._folded.get(name)
        if value is None:
            return None
        self._used.add(name)
        if name in self._conflicts:
            problem = "is given twice with different values"
        elif isinstance(value, bool):
            problem = "is true or false, not text"
        elif isinstance(value, _Garbled):
            problem = "is not valid text in the charset it was sent in"
        else:
            problem = None
        if problem and ident:
            raise CallbackRejected(f"field {_name(self._spelled(name))} {problem}")
        if problem:
            self.flag(name)
            if not isinstance(value, _Garbled):
                return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    def phone(self, region: str) -> str | None:
        """The number in E.164; as sent (and flagged) when it is not a number; None when none was sent."""
        raw = self.text(_PHONE)
        if raw is None:
            return None
        candidate = raw
        compact = raw.replace(" ", "")
        if compact.isascii() and compact.isdigit() and not compact.startswith("0"):
            # AllMySMS writes international numbers without their plus: 33612345678.
            candidate = phones.from_upstream(compact)
        e164, _ = phones.parse(candidate, region)
        if e164 is None:
            self.flag(_PHONE[0])
            return raw
        return e164

    def moment(self, zone: str | tzinfo) -> tuple[str | None, str | None]:
        """The receptionDate in UTC (None when absent or unreadable), and what stands for it in an event
        id: the same UTC text, so one instant written two ways gives one id; the text as sent when it
        cannot be read, so two such records are still told apart."""
        text = self.text(_RECEIVED)
        if text is None:
            return None, None
        utc = _utc_of(text, zone)
        if utc is None:
            self.flag(_RECEIVED[0])
            return None, text
        return utc, utc

    def unreadable(self) -> list[str]:
        """The fields sent but not read, as AllMySMS spells them, in alphabetical order. Fields the event does
        not map count too when their text was not valid in its charset or they came twice with two values."""
        names = set(self._unreadable) | {name for name in self._conflicts if name not in self._used}
        names |= {
            name for name, value in self._folded.items() if isinstance(value, _Garbled) and name not in self._used
        }
        return sorted({self._spelled(name) for name in names}, key=lambda spelled: (spelled.lower(), spelled))

    def unused(self) -> dict[str, Any]:
        """The record's fields the event does not carry, and those it could not read, as they were sent."""
        return {
            key: value
            for key, value in self._record.items()
            if str(key).lower() not in self._used or str(key).lower() in self._unreadable
        }

    def _spelled(self, name: str) -> str:
        return _SPELLING.get(name, self._keys.get(name, name))


# --- Events read by polling AllMySMS ----------------------------------------------------------------

OPT_OUT = "sms.opt_out"
CREDITS_LOW = "account.credits_low"


def opt_outs(
    entries: Iterable[Any], *, account: str, zone: str | tzinfo = "Europe/Paris", region: str = "FR"
) -> list[Event]:
    """The entries of AllMySMS's STOP list (getBlacklist) as events, in the list's order. An entry without a
    phone number is left out: there is nobody to stop writing to.

    Ids are stable: the same list gives the same ids at every poll, and each is unique in its list. An
    entry's id comes from its number and time. Where the list holds several entries with the same number and
    time, each of them also takes its comment, and entries alike in all three take their rank among them too
    (the first one none).
    """
    read: list[tuple[dict[str, Any], list[Any], dict[str, Any]]] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        fields = _Fields(dict(entry))
        phone = fields.phone(region)
        if phone is None:
            continue
        received_at, moment = fields.moment(zone)
        data: dict[str, Any] = {"phone_number": phone, "reason": fields.text(_STATUS_TEXT), "received_at": received_at}
        data[UNREADABLE] = fields.unreadable()

        read.append((data, [phone, moment], fields.unused()))
    # An entry alone at its number and time keeps the id it had before the comment entered ids: platforms
    # that saw it must not see it as new.
    alone = Counter(_key(identity) for _, identity, _ in read)
    rank: Counter[str] = Counter()
    identity: list[Any]

    found: list[Event] = []
    for data, identity, raw in read:
        if alone[_key(identity)] > 1:
            identity = [*identity, data["reason"]]
            rank[_key(identity)] += 1
            if rank[_key(identity)] > 1:
                identity.append(rank[_key(identity)])
        digest = hashlib.sha256(json.dumps([account, OPT_OUT, *identity], separators=(",", ":")).encode()).hexdigest()
        found.append(
            Event(id="evt_" + digest[:24], type=OPT_OUT, timestamp=data["received_at"] or "", data=data, raw=raw)
        )
    return found


def _key(identity: list[Any]) -> str:
    return json.dumps(identity)


def credits_low(*, account: str, threshold: int, credits: int, crossing: int, now: datetime) -> Event:
    """The account's credits fell below ``threshold`` for the ``crossing``-th time: one event per crossing,
    so a platform polling the list fires once for each."""
    digest = hashlib.sha256(json.dumps([account, CREDITS_LOW, threshold, crossing]).encode()).hexdigest()
    return Event(
        id="evt_" + digest[:24],
        type=CREDITS_LOW,
        timestamp=_utc_text(now),
        data={"login": account, "credits": credits, "threshold": threshold, "crossing": crossing},
        raw={},
    )

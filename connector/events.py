"""Pure: what AllMySMS pushes to the inbound URL (receipts, replies) read into canonical events."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo

from . import phones

RECEIPT = "sms.delivery_receipt"
REPLY = "sms.reply_received"
MAX_RECORDS = 1000

#: AllMySMS receipt status codes and the words events carry; any other code reads as "unknown".
STATUSES = {1: "delivered", 2: "undelivered", 3: "pending", 4: "rejected", 5: "unknown_number"}

_JSON_TYPES = {"application/json", "text/plain"}
_FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
_SCALARS = (str, int, float, bool, type(None))
_LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Each field's names, lower-cased (keys match whatever their case); the first one present wins.
_SMS_ID = ("smsid",)
_REPLY_ID = ("smsmoid",)
_CAMPAIGN_ID = ("campaignid",)
_PHONE = ("phonenumber",)
_MESSAGE = ("message", "text", "mo")
_STATUS = ("status", "statut")
_STATUS_TEXT = ("statustext", "comment")
_RECEIVED = ("receptiondate",)
_CLIENT_REFERENCE = ("climsgid", "clientreference")
# How reasons spell a field: as AllMySMS does, so the reason matches what its users see.
_SPELLING = {"smsid": "smsId", "smsmoid": "smsMoId", "campaignid": "campaignId", "phonenumber": "phoneNumber",
             "statustext": "statusText", "receptiondate": "receptionDate", "climsgid": "CLIMSGID",
             "clientreference": "clientReference"}


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
    data: dict
    raw: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        """The event as subscribers receive it (``raw`` stays with us)."""
        return {"id": self.id, "type": self.type, "timestamp": self.timestamp, "data": dict(self.data)}


# --- Reading a callback into records ---------------------------------------------------------------


def read_callback(method: str, content_type: str, query: Mapping[str, str], form: Mapping[str, str],
                  body: bytes) -> list[dict]:
    """The records a callback carries: one for a query string or a form, one or many for JSON."""
    verb = method.upper()
    if verb == "GET":
        return [_record(_flat(query))]
    if verb != "POST":
        raise CallbackRejected(f"the {verb} method is not accepted; use GET or POST")
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as bad:
        # Said plainly: a form parser would silently drop the fields it cannot read.
        raise CallbackRejected(f"the body is not valid UTF-8 (byte {bad.start})") from None
    if media in _FORM_TYPES or (not body and not form):
        # A POST with nothing in its body is read like a GET: the fields are in the query string.
        record = _flat(form)
        seen = {key.lower() for key in record}
        record.update({key: value for key, value in _flat(query).items() if key.lower() not in seen})
        return [_record(record)]
    if media not in _JSON_TYPES:
        raise CallbackRejected("unsupported content type; send JSON, a form or a query string")
    document = _json(body)
    if isinstance(document, dict) and not _wrapped(document):
        return [_record(document)]
    return [_record(item, index) for index, item in enumerate(_batch(document))]


def _flat(values: Mapping[str, str]) -> dict:
    # A repeated key (a=1&a=2) keeps its first value, as Flask's MultiDict does when indexed.
    return {key: values[key] for key in values}


def _json(body: bytes):
    try:
        return json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise CallbackRejected("the JSON body nests too deeply") from None
    except ValueError:
        raise CallbackRejected("the body is not valid JSON") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _wrapped(document: dict) -> bool:
    """Whether an object is a batch in disguise: its one key holds a list of objects ({"acks": [...]})."""
    if len(document) != 1:
        return False
    (inner,) = document.values()
    return isinstance(inner, list) and bool(inner) and all(isinstance(item, dict) for item in inner)


def _batch(document) -> list:
    if isinstance(document, dict):
        (document,) = document.values()
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise CallbackRejected("the JSON body must be an object or a list of objects")
    if not document:
        raise CallbackRejected("the JSON list holds no records")
    if len(document) > MAX_RECORDS:
        raise CallbackRejected(f"a callback may carry at most {MAX_RECORDS} records")
    return document


def _record(record: dict, index: int | None = None) -> dict:
    where = "" if index is None else f"record {index}: "
    if not record:
        raise CallbackRejected(f"{where}the record has no fields")
    for key, value in record.items():
        if not isinstance(value, _SCALARS):
            raise CallbackRejected(f"{where}field {_name(key)} holds a nested value; records are flat")
        # No text AllMySMS sends holds NUL, and no database may be asked to keep it (PostgreSQL cannot).
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            raise CallbackRejected(f"{where}field {_name(key.replace(chr(0), '?'))} holds a NUL character")
    return dict(record)


def _name(key: str) -> str:
    return repr(key if len(key) <= 40 else key[:40] + "…")


# --- Reading a record into an event ----------------------------------------------------------------


def normalise(record: dict, *, account: str, zone: str | tzinfo = "Europe/Paris", region: str = "FR",
              received_now: datetime | None = None) -> Event:
    """One record as a delivery receipt or a reply event.

    Field names match whatever their case. ``received_now`` (UTC; the clock when not given) is the event
    time only when the record carries no receptionDate; it never enters the event id, so a callback
    received twice keeps its id.
    """
    fields = _Fields(record)
    if fields.first(_MESSAGE) is not None or fields.first(_REPLY_ID) is not None:
        event_type, data, identity = _reply(fields, region, zone)
    elif fields.first(_STATUS) is not None:
        event_type, data, identity = _receipt(fields, region, zone)
    else:
        raise CallbackRejected("the record is neither a delivery receipt (no status) nor a reply (no message)")
    digest = hashlib.sha256(json.dumps([account, event_type, *identity], ensure_ascii=False,
                                       separators=(",", ":")).encode()).hexdigest()
    if event_type == REPLY and data["reply_id"] is None:
        # Without an id from AllMySMS the reply still needs one, and the same one every time.
        data["reply_id"] = "mo_" + digest[:24]
    timestamp = data["received_at"] or _utc_text(received_now or datetime.now(timezone.utc))
    return Event(id="evt_" + digest[:24], type=event_type, timestamp=timestamp, data=data, raw=fields.unused())


def _reply(fields: _Fields, region: str, zone) -> tuple[str, dict, list]:
    reply_id = fields.text(_REPLY_ID)
    if reply_id is None:
        reply_id = fields.text(("id",))
    message = fields.message()
    if message is None:
        raise CallbackRejected("the reply has no message")
    data = {
        "reply_id": reply_id,
        "sms_id": fields.text(_SMS_ID),
        "campaign_id": fields.text(_CAMPAIGN_ID),
        "phone_number": fields.phone(region),
        "message": message,
        "received_at": fields.received_at(zone),
    }
    identity = [reply_id] if reply_id is not None else [
        data["sms_id"], data["phone_number"], message, data["received_at"]]
    return REPLY, data, identity


def _receipt(fields: _Fields, region: str, zone) -> tuple[str, dict, list]:
    sms_id = fields.text(_SMS_ID)
    if sms_id is None:
        raise CallbackRejected("the delivery receipt has no smsId")
    status = fields.text(_STATUS)
    if status is None:
        raise CallbackRejected("the delivery receipt has no status")
    code = _code(status)
    data = {
        "sms_id": sms_id,
        "campaign_id": fields.text(_CAMPAIGN_ID),
        "phone_number": fields.phone(region),
        "status": STATUSES.get(code, "unknown"),
        "status_code": code,
        "status_text": fields.text(_STATUS_TEXT),
        "received_at": fields.received_at(zone),
        "client_reference": fields.text(_CLIENT_REFERENCE),
    }
    # A status that is not a number still tells two receipts apart: its text stands in for the code.
    return RECEIPT, data, [sms_id, code if code is not None else status, data["received_at"]]


def _code(status: str) -> int | None:
    text = status[1:] if status.startswith("-") else status
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        return None
    return int(status)


def _utc_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(_UTC_FORMAT)


class _Fields:
    """A record's fields looked up by case-insensitive name, remembering which ones were used."""

    def __init__(self, record: dict):
        self._record = record
        self._folded: dict[str, object] = {}
        self._used: set[str] = set()
        for key, value in record.items():
            folded = str(key).lower()
            if folded in self._folded and self._folded[folded] != value:
                raise CallbackRejected(f"field {_name(_SPELLING.get(folded, folded))} is given twice "
                                       "with different values")
            self._folded[folded] = value

    def first(self, names: tuple[str, ...]):
        """The value of the first of ``names`` present (empty text counts as present), or None."""
        for name in names:
            if self._folded.get(name) is not None:
                return self._folded[name]
        return None

    def text(self, names: tuple[str, ...]) -> str | None:
        """The first of ``names`` present as trimmed text; numbers are written as AllMySMS wrote them,
        so 12345 and "12345" read alike. Empty text reads as absent."""
        for name in names:
            value = self._folded.get(name)
            if value is None:
                continue
            self._used.add(name)
            text = _as_text(value, name)
            if text.strip():
                return text.strip()
        return None

    def message(self) -> str | None:
        for name in _MESSAGE:
            value = self._folded.get(name)
            if value is None:
                continue
            self._used.add(name)
            # The reply is kept as typed, spaces included; only an empty one is refused.
            text = _as_text(value, name)
            if not text.strip():
                raise CallbackRejected("the reply has an empty message")
            return text
        return None

    def phone(self, region: str) -> str:
        raw = self.text(_PHONE)
        if raw is None:
            raise CallbackRejected("the record has no phoneNumber")
        compact = raw.replace(" ", "")
        if compact.isascii() and compact.isdigit() and not compact.startswith("0"):
            # AllMySMS writes international numbers without their plus: 33612345678.
            raw = phones.from_upstream(compact)
        e164, reason = phones.parse(raw, region)
        if e164 is None:
            raise CallbackRejected(f"phoneNumber is not a valid phone number: {reason}")
        return e164

    def received_at(self, zone) -> str | None:
        text = self.text(_RECEIVED)
        if text is None:
            return None
        try:
            local = datetime.strptime(text, _LOCAL_FORMAT)
            # fold=0: during the autumn hour that happens twice, the first one is meant.
            return _utc_text(local.replace(tzinfo=ZoneInfo(zone) if isinstance(zone, str) else zone, fold=0))
        except (ValueError, OverflowError):
            raise CallbackRejected("receptionDate is not a date written YYYY-MM-DD HH:MM:SS") from None

    def unused(self) -> dict:
        return {key: value for key, value in self._record.items() if str(key).lower() not in self._used}


def _as_text(value, name: str) -> str:
    if isinstance(value, bool):
        raise CallbackRejected(f"field {_name(_SPELLING.get(name, name))} is true or false, not text")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- Events read by polling AllMySMS ----------------------------------------------------------------

OPT_OUT = "sms.opt_out"
CREDITS_LOW = "account.credits_low"


def opt_out(record: dict, *, account: str, zone: str | tzinfo = "Europe/Paris", region: str = "FR") -> Event:
    """One entry of AllMySMS's STOP list (getBlacklist) as an event; the same entry keeps its id."""
    fields = _Fields(record)
    data = {"phone_number": fields.phone(region), "reason": fields.text(_STATUS_TEXT),
            "received_at": fields.received_at(zone)}
    digest = hashlib.sha256(json.dumps([account, OPT_OUT, data["phone_number"], data["received_at"]],
                                       separators=(",", ":")).encode()).hexdigest()
    return Event(id="evt_" + digest[:24], type=OPT_OUT, timestamp=data["received_at"] or "", data=data,
                 raw=fields.unused())


def credits_low(*, account: str, threshold: int, credits: int, crossing: int, now: datetime) -> Event:
    """The account's credits fell below ``threshold`` for the ``crossing``-th time: one event per crossing,
    so a platform polling the list fires once for each."""
    digest = hashlib.sha256(json.dumps([account, CREDITS_LOW, threshold, crossing]).encode()).hexdigest()
    return Event(id="evt_" + digest[:24], type=CREDITS_LOW, timestamp=_utc_text(now),
                 data={"login": account, "credits": credits, "threshold": threshold, "crossing": crossing},
                 raw={})

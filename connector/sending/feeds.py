"""Pure: send requests written as AllMySMS feeds (smsData, mmsData, emailData; JSON or XML), and replies read
into results."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring as _quoted  # what json.dumps writes a text as, without ensure_ascii
from typing import Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from connector.sending import phones
from connector.sending.messages import Recipient, SmsRequest, VoiceRequest
from connector.sending.outcomes import status_of

FORMATS = ("json", "xml")
# AllMySMS lists refused numbers in one text ("" when none), joined by a separator no source pins down.
_NUMBER_SEPARATORS = re.compile(r"[\s,;|]+")
#: What a delivery receipt's status code says (getAcks, getAckBySmsId and the pushed receipts).
RECEIPT_STATUSES = {1: "delivered", 2: "undelivered", 3: "pending", 4: "rejected", 5: "unknown_number"}
#: The mmsData MSGCLASS of each kind of MMS, as the one public client writes it.
MMS_CLASSES = {"text": 0, "image": 1, "video": 2, "sound": 3}
# The mmsData tag carrying the media URL of each kind.
_MMS_MEDIA_TAGS = {"image": "IMAGE", "video": "VIDEO", "sound": "SOUND"}
# AllMySMS writes times as French local time without a zone; some writers add a T or a fraction.
_UPSTREAM_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?", re.ASCII)
_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class Unreadable(ValueError):
    """An answer that is not a reply AllMySMS documents; the message is for logs (it holds no data)."""


def sms_data(request: SmsRequest, start: int, stop: int, fmt: str) -> str:
    """The smsData feed for recipients[start:stop] of ``request``."""
    head = _head(request)
    if fmt == "json":
        return _json_sms_data(head, request.recipients[start:stop], request.dynamic)
    if fmt == "xml":
        rows = [
            {"MOBILEPHONE": phones.upstream(r.e164), **{f"PARAM_{i + 1}": p for i, p in enumerate(r.params)}}
            for r in request.recipients[start:stop]
        ]
        return _xml(head, "SMS", rows)
    raise ValueError(f"unknown feed format {fmt!r}")


def _json_sms_data(head: dict[str, Any], recipients: Sequence[Recipient], dynamic: int) -> str:
    """json.dumps({"DATA": {**head, "SMS": rows}}) in the compact form, each row MOBILEPHONE and, when the message
    is personalised, the recipient's values as PARAM_1…: the same text, written without a dict for each of a
    large send's recipients (three times faster). A recipient whose values are not as many as the message
    uses, which a request never holds, is written the slow way."""
    opening = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1]
    if dynamic:
        row = '{"MOBILEPHONE":%s' + "".join(f',"PARAM_{i + 1}":%s' for i in range(dynamic)) + "}"
        rows = [
            row % (_quoted(phones.upstream(r.e164)), *map(_quoted, r.params))
            if len(r.params) == dynamic
            else _json_row(r)
            for r in recipients
        ]
    else:
        rows = [f'{{"MOBILEPHONE":{_quoted(phones.upstream(r.e164))}}}' for r in recipients]
    return f'{{"DATA":{opening}{"," if head else ""}"SMS":[{",".join(rows)}]}}}}'


def _json_row(recipient: Recipient) -> str:
    row = {
        "MOBILEPHONE": phones.upstream(recipient.e164),
        **{f"PARAM_{i + 1}": p for i, p in enumerate(recipient.params)},
    }
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def mms_data(
    recipients: Sequence[str],
    fmt: str,
    *,
    message: str = "",
    kind: str = "text",
    media_url: str | None = None,
    campaign_name: str | None = None,
    send_at_local: str | None = None,
    client_reference: str | None = None,
) -> str:
    """The mmsData feed: ``recipients`` in E.164, one kind of MMS (text, image, video or sound; the last three
    with the media's public URL). Its keys are those the one public client writes (MSGCLASS 0 text, 1 image,
    2 video, 3 sound; IMAGE, VIDEO or SOUND for the URL); the XML form is the smsData one's, by analogy."""
    if kind not in MMS_CLASSES:
        raise ValueError(f"unknown MMS kind {kind!r}")
    if (kind == "text") == bool(media_url):
        raise ValueError("a text MMS has no media URL, and every other kind needs one")
    head: dict[str, Any] = {"MESSAGE": message}
    if campaign_name:
        head["CAMPAIGN_NAME"] = campaign_name
    if send_at_local:
        head["DATE"] = send_at_local
    head["MSGCLASS"] = MMS_CLASSES[kind]
    if media_url:
        head[_MMS_MEDIA_TAGS[kind]] = media_url
    if client_reference:
        head["CLIMSGID"] = client_reference
    rows = [{"MOBILEPHONE": phones.upstream(e164)} for e164 in recipients]
    if fmt == "json":
        return json.dumps({"DATA": {**head, "MMS": rows}}, ensure_ascii=False, separators=(",", ":"))
    if fmt == "xml":
        return _xml({k: str(v) for k, v in head.items()}, "MMS", rows)
    raise ValueError(f"unknown feed format {fmt!r}")


def email_data(
    fmt: str,
    *,
    sender: str,
    to: str,
    subject: str,
    html: str,
    alias: str | None = None,
    text: str | None = None,
    campaign_name: str | None = None,
    send_at_local: str | None = None,
    reply_to: str | None = None,
) -> str:
    """The emailData feed, with the keys the one public client writes (FROM, TO, SUBJECT, HTML, and ALIAS,
    MAILTEXT, CAMPAIGN_NAME, DATE, REPLY_TO when given). That client sends the HTML base64-encoded, so it is
    here too: UTF-8, then base64."""
    data = {"FROM": sender, "TO": to, "SUBJECT": subject}
    if send_at_local:
        data["DATE"] = send_at_local
    data["HTML"] = base64.b64encode(html.encode("utf-8")).decode("ascii")
    optional = {"ALIAS": alias, "MAILTEXT": text, "CAMPAIGN_NAME": campaign_name, "REPLY_TO": reply_to}
    data.update({key: value for key, value in optional.items() if value})
    if fmt == "json":
        return json.dumps({"DATA": data}, ensure_ascii=False, separators=(",", ":"))
    if fmt == "xml":
        return _xml(data, "", [])
    raise ValueError(f"unknown feed format {fmt!r}")


def _head(request: SmsRequest) -> dict[str, Any]:
    head = {"MESSAGE": request.message}
    if request.sender:
        head["TPOA"] = request.sender
    if request.dynamic:
        head["DYNAMIC"] = str(request.dynamic)
    if request.send_at:
        head["DATE"] = request.send_at.local_text
    if request.campaign_name:
        head["CAMPAIGN_NAME"] = request.campaign_name
    if request.flash:
        head["FLASH"] = "1"
    if request.client_reference:
        head["CLIMSGID"] = request.client_reference
    return head


def _xml(head: dict[str, Any], row_tag: str, rows: list[dict[str, Any]]) -> str:
    """``<DATA>``: the head's elements, then one ``row_tag`` element per row (a recipient; none for an e-mail)."""
    root = ElementTree.Element("DATA")
    for key, value in head.items():
        # MESSAGE stays empty here and receives its CDATA sections below.
        ElementTree.SubElement(root, key).text = None if key == "MESSAGE" else value
    for row in rows:
        element = ElementTree.SubElement(root, row_tag)
        for key, value in row.items():
            ElementTree.SubElement(element, key).text = value
    # XML parsers turn a raw carriage return into a line feed; a character reference keeps it.
    text = ElementTree.tostring(root, encoding="unicode", short_empty_elements=True).replace("\r", "&#13;")
    if "MESSAGE" not in head:
        return text
    # ElementTree writes no CDATA; MESSAGE is DATA's first child, so its empty tag is the first one.
    return text.replace("<MESSAGE />", f"<MESSAGE>{cdata(head['MESSAGE'])}</MESSAGE>", 1)


def cdata(text: str) -> str:
    """``text`` as CDATA sections: ']]>' cannot stand inside one, so it is split between two, and a
    carriage return goes between sections as a character reference."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>").replace("\r", "]]>&#13;<![CDATA[") + "]]>"


def voice_body(request: VoiceRequest, recipients: tuple[Any, ...], *, simulate: bool = False) -> dict[str, Any]:
    """The REST voice request. Only `to`, `from`, `type`, `url`, `campaignName`, `date` and `simulate`
    are attested; the text-to-speech field name (`text`) is an assumption kept here alone. `from` is a
    French landline written nationally (0123456789), and `simulate` the integer 1, as the one client
    that uses this endpoint writes them."""
    body: dict[str, Any] = {"to": [phones.upstream(r.e164) for r in recipients]}
    if request.audio_url:
        body.update(type="directdeposit", url=request.audio_url)
    else:
        body.update(type="tts", text=request.text)
    if request.sender:
        body["from"] = phones.national(request.sender)
    if request.campaign_name:
        body["campaignName"] = request.campaign_name
    if request.send_at:
        body["date"] = request.send_at.local_text
    if simulate:
        body["simulate"] = 1
    return body


def read_reply(body: bytes, content_type: str = "") -> dict[str, Any]:
    """An AllMySMS reply (JSON, or XML when it ignores returnformat) as a dict; anything else raises
    Unreadable."""
    text = body.lstrip()
    if text.startswith((b"{", b"[")):
        try:
            reply = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise Unreadable(f"invalid JSON: {type(exc).__name__}") from None
        if not isinstance(reply, dict):
            raise Unreadable("a JSON reply that is not an object")
        return reply
    if text.startswith(b"<"):
        try:
            root = SafeET.fromstring(body, forbid_dtd=True)
        except (SafeET.ParseError, DefusedXmlException, ValueError, RecursionError) as exc:
            raise Unreadable(f"unreadable XML: {type(exc).__name__}") from None
        if root.tag.rpartition("}")[2].lower() == "html":
            raise Unreadable("an HTML page")
        reply = _xml_value(root)
        return reply if isinstance(reply, dict) else {"value": reply}
    raise Unreadable(f"neither JSON nor XML ({content_type[:60] or 'no content type'}, {len(body)} bytes)")


def _xml_value(element: ElementTree.Element) -> Any:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    tags = [c.tag for c in children]
    if len(children) > 1 and len(set(tags)) == 1:
        return [_xml_value(c) for c in children]
    value: dict[str, Any] = {}
    for child in children:
        item = _xml_value(child)
        if child.tag in value:
            if not isinstance(value[child.tag], list):
                value[child.tag] = [value[child.tag]]
            value[child.tag].append(item)
        else:
            value[child.tag] = item
    return value


def integer(value: Any, default: int = 0) -> int:
    """AllMySMS writes numbers sometimes as numbers, sometimes as text."""
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and len(value) == 1:
        # XML wraps items: <smsIds><sms>…</sms><sms>…</sms></smsIds>, or a single <sms>.
        inner = next(iter(value.values()))
        if isinstance(inner, list):
            return inner
        if isinstance(inner, dict):
            return [inner]
    return [value]


def sent_messages(
    reply: dict[str, Any], key: str = "smsIds", numbers: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Each message of the reply as ``{phone_number (E.164), sms_id}``. ``numbers`` maps numbers as AllMySMS
    writes them (33612345678) to their E.164 form: the feed's recipients, whose strings are then shared by
    the result rather than made again for each message of a large send."""
    known = numbers or {}
    out = []
    for item in as_list(reply.get(key)):
        if isinstance(item, dict):
            number = item.get("phoneNumber")
            if number:
                phone = known.get(number) if isinstance(number, str) else None
                out.append(
                    {"phone_number": phone or phones.from_upstream(number), "sms_id": str(item.get("smsId", ""))}
                )
    return out


def upstream_invalid_numbers(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The numbers AllMySMS refused: a text of numbers joined by a separator in every public example
    ("" when none), a list in XML replies."""
    value = reply.get("invalidNumbers")
    items = _NUMBER_SEPARATORS.split(value) if isinstance(value, str) else as_list(value)
    return [
        {"input": str(n).strip(), "reason": "refused by AllMySMS"} for n in items if n is not None and str(n).strip()
    ]


def sent_chunk(
    reply: dict[str, Any], word: str, scheduled_asked: bool, numbers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What one sendSms reply says, in our terms; the raw reply (its 2,000 smsIds as AllMySMS wrote
    them) can then be let go before the next chunk is sent. ``word`` is the reply's success word; 113
    (some numbers refused) says "sent" for a scheduled send too, so the request tells which it was.
    ``numbers``: see sent_messages."""
    sent = sent_messages(reply, numbers=numbers)
    scheduled = word == "scheduled" or (scheduled_asked and status_of(reply) == 113)
    return {
        "status": "scheduled" if scheduled else "sent",
        "campaign_id": str(reply.get("campaignId", "")),
        "sms_ids": sent,
        "invalid_numbers": upstream_invalid_numbers(reply),
        "recipients": integer(reply.get("nbContacts"), len(sent)),
        "sms_parts": integer(reply.get("nbSms")),
        "credits_used": integer(reply.get("creditsUsed")),
        "credits_left": integer(reply.get("credits")),
        "status_text": str(reply.get("statusText", "")),
    }


def sms_result(request: SmsRequest, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The send result from every chunk's ``sent_chunk``."""
    campaigns = [c["campaign_id"] for c in chunks]
    # What AllMySMS did, not what was asked: a 101 is scheduled even without a time, and a send it
    # answered 100 went out now.
    status = "scheduled" if all(c["status"] == "scheduled" for c in chunks) else "sent"
    scheduled = request.send_at if status == "scheduled" else None
    return {
        "id": campaigns[0],
        "campaign_id": campaigns[0],
        "campaign_ids": campaigns,
        "status": status,
        "status_text": chunks[-1]["status_text"],
        "recipients": sum(c["recipients"] for c in chunks),
        "sms_ids": [m for c in chunks for m in c["sms_ids"]],
        "invalid_numbers": [n.as_json() for n in request.invalid] + [n for c in chunks for n in c["invalid_numbers"]],
        "sms_parts": sum(c["sms_parts"] for c in chunks),
        "credits_used": sum(c["credits_used"] for c in chunks),
        "credits_left": chunks[-1]["credits_left"],
        "scheduled_at": scheduled.utc_text if scheduled else None,
        "scheduled_at_local": scheduled.local_text if scheduled else None,
        "text": _analysis(request),
        "parts_max": request.parts_max,
    }


def estimate_result(
    request: SmsRequest, feeds_digest: str, replies: list[dict[str, Any]], by_country: list[dict[str, Any]]
) -> dict[str, Any]:
    """simulateCampaign's figures are the totals; ``by_country`` (see prices.by_country) shows where they go."""
    invalid = [n.as_json() for n in request.invalid] + [n for r in replies for n in upstream_invalid_numbers(r)]
    return {
        "id": "est-" + feeds_digest[:16],
        "recipients": sum(integer(r.get("nbContacts")) for r in replies),
        "sms_parts": sum(integer(r.get("nbSms")) for r in replies),
        "credits": sum(integer(r.get("nbCredits")) for r in replies),
        "invalid_numbers": invalid,
        "text": _analysis(request),
        "parts_max": request.parts_max,
        "by_country": by_country,
    }


def digest(*feeds: str) -> str:
    h = hashlib.sha256()
    for feed in feeds:
        h.update(feed.encode("utf-8"))
    return h.hexdigest()


def voice_result(request: VoiceRequest, word: str, reply: dict[str, Any]) -> dict[str, Any]:
    campaign = str(reply.get("campaignId", ""))
    return {
        "id": campaign,
        "campaign_id": campaign,
        "status": word,
        "recipients": len(as_list(reply.get("smsIds"))) or len(request.recipients),
        "message_ids": sent_messages(reply),
        "invalid_numbers": [n.as_json() for n in request.invalid] + upstream_invalid_numbers(reply),
        # The REST API counts money, not credits: 0.19 and 2.81 (euros), never to be rounded away.
        "cost": money(reply.get("cost")),
        "balance": money(reply.get("balance")),
        "scheduled_at": request.send_at.utc_text if request.send_at and word == "scheduled" else None,
        "scheduled_at_local": request.send_at.local_text if request.send_at and word == "scheduled" else None,
    }


def money(value: Any) -> float | None:
    """An amount AllMySMS wrote as a number or as text ("0.19", "0,19"); None when absent or unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = float(value.replace(",", ".").strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return round(amount, 6) if amount == amount and abs(amount) != float("inf") else None


def account_result(login: str, reply: dict[str, Any], credits_per_sms_fr: int) -> dict[str, Any]:
    credits = integer(reply.get("credits"))
    return {
        "id": login,
        "login": login,
        "status": str(reply.get("status", "")),
        "credits": credits,
        "sms_left_france": credits // credits_per_sms_fr,
        "first_name": _text_or_none(reply.get("firstName")),
        "last_name": _text_or_none(reply.get("lastName")),
        "company": _text_or_none(reply.get("society")),
        "email": _text_or_none(reply.get("email")),
    }


def _text_or_none(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _analysis(request: SmsRequest) -> dict[str, Any]:
    t = request.text
    return {
        "encoding": t.encoding,
        "characters": t.characters,
        "units": t.units,
        "parts": t.parts,
        "unit_limit": t.unit_limit,
        "remaining": t.remaining,
    }


# --- Replies of the read methods: receipts, replies, contact lists, prices -------------------------------
# None of these replies carries a status; every figure may come as text or as a number.


def acks(reply: dict[str, Any], zone: str = "Europe/Paris") -> list[dict[str, Any]]:
    """getAcks: the receipts of a campaign's SMS, in AllMySMS's order (see ``ack`` for each one)."""
    return [_ack(item, zone) for item in as_list(reply.get("acks")) if isinstance(item, dict)]


def ack(reply: dict[str, Any], zone: str = "Europe/Paris") -> dict[str, Any] | None:
    """getAckBySmsId: the one receipt the reply holds flat, or None when it holds none (no number, no status).

    A receipt is ``{phone_number (E.164), status_code, status, comment, received_at (UTC)}``; its code is
    spelled ``statut`` by one public client and ``status`` by another, and both are read."""
    if reply.get("phoneNumber") in (None, "") and _receipt_code(reply) is None:
        return None
    return _ack(reply, zone)


def _ack(item: dict[str, Any], zone: str) -> dict[str, Any]:
    code = _receipt_code(item)
    return {
        "phone_number": _phone_or_none(item.get("phoneNumber")),
        "status_code": code,
        "status": "unknown" if code is None else RECEIPT_STATUSES.get(code, "unknown"),
        "comment": _text_or_none(item.get("comment")),
        "received_at": upstream_time(item.get("receptionDate"), zone),
    }


def _receipt_code(item: dict[str, Any]) -> int | None:
    value = item.get("statut", item.get("status"))
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def pulls(reply: dict[str, Any], zone: str = "Europe/Paris") -> list[dict[str, Any]]:
    """getPulls and getPull: the replies to SMS, each ``{reply_id, sms_id, campaign_id, phone_number (E.164),
    message, received_at (UTC)}``. The public examples carry no smsId, so ``sms_id`` is None unless one
    comes."""
    found = []
    for item in as_list(reply.get("mos")):
        if not isinstance(item, dict):
            continue
        message = item.get("message")
        found.append(
            {
                "reply_id": _text_or_none(item.get("id")),
                "sms_id": _text_or_none(item.get("smsId")),
                "campaign_id": _text_or_none(item.get("campaignId")),
                "phone_number": _phone_or_none(item.get("phoneNumber")),
                "message": message if isinstance(message, str) else _text_or_none(message),
                "received_at": upstream_time(item.get("receptionDate"), zone),
            }
        )
    return found


def contact_lists(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """getLists: each list as ``{name, contacts (int), locked (bool), created_on ('YYYY-MM-DD' or None)}``."""
    found = []
    for item in as_list(reply.get("lists")):
        if isinstance(item, dict):
            found.append(
                {
                    "name": str(item.get("listName", "")),
                    "contacts": integer(item.get("contacts")),
                    "locked": integer(item.get("locked")) == 1,
                    "created_on": _text_or_none(item.get("creationDate")),
                }
            )
    return found


def list_change(reply: dict[str, Any]) -> dict[str, Any]:
    """createList with populateData or deleteData: what AllMySMS did with the contacts it was given."""
    return {
        "status_text": str(reply.get("statusText", "")),
        "succeeded": integer(reply.get("success")),
        "ignored": integer(reply.get("ignored")),
        "duplicated": integer(reply.get("duplicated")),
    }


def credits_per_sms(reply: dict[str, Any]) -> int | None:
    """getCreditsByCountryIsoCode: the credits one SMS costs to the country, or None when the reply holds no
    figure (a country AllMySMS does not price, say)."""
    value = reply.get("nbCredits")
    if isinstance(value, bool):
        return None
    credits = integer(value, -1)
    return credits if credits >= 0 else None


def upstream_time(value: object, zone: str = "Europe/Paris") -> str | None:
    """An AllMySMS time (``YYYY-MM-DD HH:MM:SS`` in ``zone``'s local time) as UTC text, or None when it is not
    one. During the autumn hour that happens twice, the first one is meant."""
    found = _UPSTREAM_TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in found.groups())
        local = datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone), fold=0)
    except ValueError:
        return None
    return local.astimezone(UTC).strftime(_UTC_FORMAT)


def _phone_or_none(value: object) -> str | None:
    return (phones.from_upstream(value) or None) if value is not None else None

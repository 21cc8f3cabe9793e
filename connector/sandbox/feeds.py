"""Reading the `smsData`, `mmsData` and `emailData` feeds, JSON or XML, into one plain dict; malformed input
raises ApiError.

Both formats become {"MESSAGE": str, "TPOA": str, ..., "SMS": [{"MOBILEPHONE": str, ...}, ...]} (the
recipients under "MMS" in an mmsData feed, none in an emailData one) so validation (in campaigns.py) never
needs to know which format the client used.
"""

import json
import xml.etree.ElementTree as ElementTree

import defusedxml
import defusedxml.ElementTree

from . import statuses
from .statuses import ApiError, invalid_feed

ROOT_TAG = "DATA"
RECIPIENT_TAG = "SMS"


def parse_feed(sms_data, recipient_tag=RECIPIENT_TAG):
    """The DATA dict of a feed value; its first non-space character picks the format. In XML, the elements
    named `recipient_tag` are the recipients (None: the feed has none)."""
    if sms_data is None or not sms_data.strip():
        raise ApiError(statuses.EMPTY_FEED)
    first = sms_data.lstrip()[0]
    if first == "{":
        return _parse_json(sms_data)
    if first == "<":
        return _parse_xml(sms_data, recipient_tag)
    raise invalid_feed("it is neither JSON nor XML")


def _parse_json(text):
    try:
        document = json.loads(text)
    # RecursionError: deeply nested arrays must be a client error, not a crash.
    except (ValueError, RecursionError):
        raise invalid_feed("the JSON cannot be parsed") from None
    if not isinstance(document, dict) or not isinstance(document.get(ROOT_TAG), dict):
        raise invalid_feed(f"no {ROOT_TAG} object")
    return document[ROOT_TAG]


def _parse_xml(text, recipient_tag):
    try:
        # defusedxml refuses entity declarations and external references: an entity bomb or an
        # attempt to read local files ends here as a feed error.
        root = defusedxml.ElementTree.fromstring(text)
    except (ElementTree.ParseError, defusedxml.DefusedXmlException, ValueError, RecursionError):
        raise invalid_feed("the XML cannot be parsed or uses forbidden entities") from None
    if root.tag != ROOT_TAG:
        raise invalid_feed(f"the XML root is not <{ROOT_TAG}>")
    data = {}
    recipients = []
    for child in root:
        if child.tag == recipient_tag:
            recipients.append({field.tag: _text(field) for field in child})
        else:
            data[child.tag] = _text(child)
    if recipients:
        data[recipient_tag] = recipients
    return data


def _text(element):
    # itertext joins adjacent CDATA sections, which is how a message containing "]]>" must be sent.
    return "".join(element.itertext())

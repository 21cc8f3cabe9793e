"""Rendering a reply dict as the body the client asked for: JSON, or the same tree as XML.

The real API's XML root element is not documented; the sandbox uses <response>. List items get
a singular element name from `_ITEM_TAGS` so the XML stays readable.
"""

import json
import re
from xml.etree import ElementTree

XML_ROOT = "response"
JSON_MIMETYPE = "application/json"
XML_MIMETYPE = "application/xml"

_ITEM_TAGS = {
    "invalidNumbers": "phoneNumber",
    "smsIds": "sms",
    "acks": "ack",
    "mos": "mo",
    "blacklist": "entry",
    "lists": "list",
}
# Characters XML 1.0 cannot carry at all (control characters, lone surrogates): dropped rather
# than letting a stored reply text break the whole document.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def wants_json(returnformat):
    """True when the `returnformat` parameter asks for JSON; anything else means XML."""
    return isinstance(returnformat, str) and returnformat.strip().lower() == "json"


def render(payload, as_json):
    """Return (body bytes, mimetype) for a reply dict."""
    if as_json:
        return to_json(payload), JSON_MIMETYPE
    return to_xml(payload), XML_MIMETYPE


def to_json(payload):
    # Plain json.dumps keeps key order (status first) and is faster than Flask's provider on
    # 100,000 SMS ids.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def to_xml(payload):
    root = ElementTree.Element(XML_ROOT)
    _fill(root, payload)
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True)


def _fill(element, value):
    if isinstance(value, dict):
        for key, child in value.items():
            _fill(ElementTree.SubElement(element, key), child)
    elif isinstance(value, (list, tuple)):
        item_tag = _ITEM_TAGS.get(element.tag, "item")
        for child in value:
            _fill(ElementTree.SubElement(element, item_tag), child)
    elif value is not None:
        element.text = _NOT_XML.sub("", str(value))

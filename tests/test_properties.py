"""Property-based tests (hypothesis): feeds round-trip for any text, part counts agree with a reference
reading of GSM 03.38 written here, phone numbers normalise the same whatever way they are written."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import phonenumbers
from defusedxml import ElementTree as SafeET
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connector.errors import InvalidInput
from connector.sending import feeds, messages, phones, segments

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
RULES = messages.Rules()
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any text, with what tends to break feeds on purpose: XML specials, CDATA ends, line breaks, emoji,
# right-to-left scripts, GSM extension characters.
tricky = st.sampled_from(
    [
        "]]>",
        "]]",
        "]",
        "<",
        ">",
        "&",
        '"',
        "'",
        "\r",
        "\n",
        "\r\n",
        "€",
        "{",
        "^",
        "👋🏽",
        "שלום",
        "مرحبا",
        "\u200f",
        "#param_1#",
        "&amp;",
        "<![CDATA[",
        "\t",
    ]
)
texts = st.lists(st.one_of(tricky, st.text(min_size=1, max_size=20)), min_size=1, max_size=12).map("".join)
senders = st.one_of(st.just(""), st.from_regex(r"[A-Za-z][A-Za-z0-9]{2,10}", fullmatch=True))
params = st.lists(st.one_of(tricky, st.text(max_size=30)), min_size=1, max_size=3)


def request_for(message: str, sender: str, values: list[list[str]]) -> messages.SmsRequest:
    # Each recipient's values go into placeholders: as many as the most values anyone has.
    placeholders = "".join(f" #param_{n + 1}#" for n in range(max(len(v) for v in values)))
    payload = {
        "message": message[:600] + placeholders,
        "recipients": [{"phone_number": f"+3361111{i:04d}", "params": v} for i, v in enumerate(values)],
    }
    if sender:
        payload["sender"] = sender
    try:
        return messages.sms_request(payload, RULES, NOW)
    except InvalidInput:
        assume(False)  # refused with a clear error (characters SMS cannot carry): not a feed to check


@PROFILE
@given(texts, senders, st.lists(params, min_size=1, max_size=3))
def test_a_json_feed_gives_back_exactly_the_message_sender_and_params(message, sender, values):
    request = request_for(message, sender, values)
    data = json.loads(feeds.sms_data(request, 0, len(request.recipients), "json"))["DATA"]
    assert data["MESSAGE"] == request.message
    assert data.get("TPOA", "") == (request.sender or "")
    for sms, recipient in zip(data["SMS"], request.recipients):
        assert [sms[f"PARAM_{i + 1}"] for i in range(len(recipient.params))] == list(recipient.params)


@PROFILE
@given(texts, senders, st.lists(params, min_size=1, max_size=3))
def test_an_xml_feed_is_well_formed_and_gives_back_exactly_the_message_sender_and_params(message, sender, values):
    request = request_for(message, sender, values)
    root = SafeET.fromstring(feeds.sms_data(request, 0, len(request.recipients), "xml"))
    assert root.findtext("MESSAGE") == request.message
    assert (root.findtext("TPOA") or "") == (request.sender or "")
    for sms, recipient in zip(root.findall("SMS"), request.recipients):
        assert [sms.findtext(f"PARAM_{i + 1}") or "" for i in range(len(recipient.params))] == list(recipient.params)
        assert sms.findtext("MOBILEPHONE") == phones.upstream(recipient.e164)


# --- Segments against a reference written from GSM 03.38 / 3GPP TS 23.038 ---------------------------

REFERENCE_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
REFERENCE_EXTENSION = set("\f^{}\\[~]|€")


def reference(text: str) -> tuple[str, int, int]:
    """Encoding, units and parts, counted the slow obvious way: each character's units, then parts
    filled one character at a time, a two-unit character never split across parts."""
    gsm = all(c in REFERENCE_BASIC or c in REFERENCE_EXTENSION for c in text)
    if gsm:
        sizes = [2 if c in REFERENCE_EXTENSION else 1 for c in text]
        single, per_part = 160, 153
    else:
        sizes = [len(c.encode("utf-16-le")) // 2 for c in text]
        single, per_part = 70, 67
    units = sum(sizes)
    if units <= single:
        return ("GSM-7" if gsm else "UCS-2"), units, 1
    parts, fill = 1, 0
    for size in sizes:
        if fill + size > per_part:
            parts, fill = parts + 1, 0
        fill += size
    return ("GSM-7" if gsm else "UCS-2"), units, parts


gsm_texts = st.text(alphabet=st.sampled_from(sorted(REFERENCE_BASIC | REFERENCE_EXTENSION)), max_size=700)
any_texts = st.one_of(
    gsm_texts,
    st.text(max_size=400),
    st.lists(st.sampled_from(["a", "€", "👋", "é", "{", "ж"]), max_size=400).map("".join),
)


@settings(max_examples=1000, deadline=None)
@given(any_texts)
def test_the_segment_count_agrees_with_the_reference(text):
    analysis = segments.analyse(text)
    assert (analysis.encoding, analysis.units, analysis.parts) == reference(text)


# --- Phone numbers -----------------------------------------------------------------------------------

# French mobile numbers in use (the phonenumbers metadata decides which ranges are).
mobile_digits = st.from_regex(r"6[0-9]{8}|7[3-9][0-9]{7}", fullmatch=True).filter(
    lambda d: phonenumbers.is_valid_number(phonenumbers.parse("+33" + d))
)
writings = st.sampled_from(
    [
        lambda d: "0" + d,
        lambda d: "+33" + d,
        lambda d: "0033" + d,
        lambda d: "33" + d,
        lambda d: "+33 " + " ".join([d[0], d[1:3], d[3:5], d[5:7], d[7:9]]),
        lambda d: "0" + ".".join([d[0], d[1:3], d[3:5], d[5:7], d[7:9]]),
        lambda d: "(+33) " + d[0] + "-" + d[1:],
    ]
)


@settings(max_examples=500, deadline=None)
@given(mobile_digits, writings, writings)
def test_a_french_mobile_number_normalises_the_same_whatever_way_it_is_written(digits, first, second):
    one, reason_one = phones.parse(first(digits), "FR")
    two, reason_two = phones.parse(second(digits), "FR")
    assert (reason_one, reason_two) == (None, None)
    assert one == two == "+33" + digits
    assert phones.from_upstream(phones.upstream(one)) == one

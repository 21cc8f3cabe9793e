"""Tests for connector.sending.feeds: smsData feeds (golden files), replies read safely, results shaped by schema.

The golden files under tests/golden/ were written from sms_data's output and checked by hand against
the feed format AllMySMS documents (DATA > MESSAGE, TPOA, DYNAMIC, DATE, SMS > MOBILEPHONE, PARAM_n;
numbers as 336…; MESSAGE in CDATA). A change to them must be checked the same way.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from defusedxml import ElementTree as SafeET

from connector.description import manifest
from connector.description.validation import check
from connector.errors import InvalidInput
from connector.sending import feeds, messages

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
RULES = messages.Rules()

PERSONALISED = {
    "message": "Bonjour #param_1#, votre RDV est le #param_2# à 10h.",
    "sender": "MyShop",
    "campaign_name": "Rappels décembre",
    "recipients": [
        {"phone_number": "06 11 11 11 11", "params": ["Aïcha", "1er déc."]},
        {"phone_number": "+33 6 22 22 22 22", "params": ["Bob", 12.0]},
        {"phone_number": "0033633333333", "params": ["Chloé & Zoé", "<3 \"ok\" 'oui'"]},
    ],
    "send_at": "2030-12-01 09:30",
    "add_stop_mention": True,
    "flash": True,
    "client_reference": "order-42",
}
AWKWARD_MESSAGE = "Code ]]> -20% sur <b>tout</b> & \"vite\" 'ici' ]]]]>>"


@pytest.fixture(scope="module")
def catalog():
    return manifest.load().catalog


def _personalised():
    return messages.sms_request(PERSONALISED, RULES, NOW, schedule=True)


def _plain(message="Hi", recipients=("0611111111", "0622222222"), **fields):
    return messages.sms_request({"message": message, "recipients": list(recipients), **fields}, RULES, NOW)


def _golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def _assert_valid(catalog, name: str, document: dict):
    problems = check(catalog.validator(name), document, catalog.resolved(name))
    assert problems == [], [f.as_json() for f in problems]


# --- smsData: golden files ------------------------------------------------------------------


def test_the_personalised_json_feed_matches_its_golden_file_byte_for_byte():
    assert feeds.sms_data(_personalised(), 0, 3, "json").encode("utf-8") == _golden("feed_personalised.json")


def test_the_personalised_xml_feed_matches_its_golden_file_byte_for_byte():
    assert feeds.sms_data(_personalised(), 0, 3, "xml").encode("utf-8") == _golden("feed_personalised.xml")


def test_a_message_with_cdata_terminators_matches_its_golden_xml_file_byte_for_byte():
    request = _plain(AWKWARD_MESSAGE)
    assert feeds.sms_data(request, 0, 2, "xml").encode("utf-8") == _golden("feed_cdata.xml")


def test_the_golden_json_feed_says_what_allmysms_expects():
    data = json.loads(_golden("feed_personalised.json"))["DATA"]
    assert data["MESSAGE"] == PERSONALISED["message"] + "\nSTOP au 36180"
    assert (data["TPOA"], data["DYNAMIC"], data["DATE"]) == ("MyShop", "2", "2030-12-01 09:30:00")
    assert data["SMS"] == [
        {"MOBILEPHONE": "33611111111", "PARAM_1": "Aïcha", "PARAM_2": "1er déc."},
        {"MOBILEPHONE": "33622222222", "PARAM_1": "Bob", "PARAM_2": "12"},
        {"MOBILEPHONE": "33633333333", "PARAM_1": "Chloé & Zoé", "PARAM_2": "<3 \"ok\" 'oui'"},
    ]


def test_the_golden_xml_feed_carries_the_same_tree_as_the_json_one():
    root = SafeET.fromstring(_golden("feed_personalised.xml"))
    data = json.loads(_golden("feed_personalised.json"))["DATA"]
    assert root.tag == "DATA"
    head = {child.tag: child.text for child in root if child.tag != "SMS"}
    assert head == {k: v for k, v in data.items() if k != "SMS"}
    assert [{c.tag: c.text for c in sms} for sms in root.findall("SMS")] == data["SMS"]


# --- smsData: JSON ----------------------------------------------------------------------------


def test_a_plain_json_feed_has_only_the_message_and_the_numbers():
    feed = json.loads(feeds.sms_data(_plain(), 0, 10, "json"))
    assert feed == {"DATA": {"MESSAGE": "Hi", "SMS": [{"MOBILEPHONE": "33611111111"}, {"MOBILEPHONE": "33622222222"}]}}


def test_the_json_feed_keeps_non_ascii_characters_as_they_are():
    feed = feeds.sms_data(_plain("Été ☀ \U0001f600"), 0, 1, "json")
    assert "Été ☀ \U0001f600" in feed
    assert json.loads(feed)["DATA"]["MESSAGE"] == "Été ☀ \U0001f600"


def test_an_unknown_feed_format_is_a_programming_error():
    with pytest.raises(ValueError, match="csv"):
        feeds.sms_data(_plain(), 0, 1, "csv")


# --- smsData: XML -----------------------------------------------------------------------------


def test_xml_round_trips_a_message_with_cdata_terminators_and_markup_characters():
    request = _plain(AWKWARD_MESSAGE, ("0611111111", "0622222222"))
    root = SafeET.fromstring(feeds.sms_data(request, 0, 2, "xml"))
    assert root.find("MESSAGE").text == AWKWARD_MESSAGE
    assert [e.text for e in root.iter("MOBILEPHONE")] == ["33611111111", "33622222222"]


def test_xml_round_trips_params_with_markup_characters():
    params = ["]]> <&\"'", "a & b <c>", "Zoé \U0001f600"]
    request = messages.sms_request(
        {
            "message": "#param_1# / #param_2# / #param_3# ]]>",
            "recipients": [{"phone_number": "0611111111", "params": params}],
        },
        RULES,
        NOW,
    )
    root = SafeET.fromstring(feeds.sms_data(request, 0, 1, "xml"))
    sms = root.find("SMS")
    assert [sms.find(f"PARAM_{i}").text for i in (1, 2, 3)] == params
    assert root.find("MESSAGE").text == "#param_1# / #param_2# / #param_3# ]]>"
    assert root.find("DYNAMIC").text == "3"


def test_xml_puts_the_message_in_cdata_without_a_stray_bracket():
    raw = feeds.sms_data(_plain("Hello <world> & co"), 0, 1, "xml")
    assert "<MESSAGE><![CDATA[Hello <world> & co]]></MESSAGE>" in raw


def test_xml_splits_a_cdata_terminator_across_two_cdata_sections():
    raw = feeds.sms_data(_plain("a]]>b"), 0, 1, "xml")
    assert "<MESSAGE><![CDATA[a]]]]><![CDATA[>b]]></MESSAGE>" in raw
    assert raw.count("<![CDATA[") == 2
    assert SafeET.fromstring(raw).find("MESSAGE").text == "a]]>b"


@pytest.mark.parametrize("message", ["[x]", "]", "x]", "x]]", "]]]", "[", "<![CDATA[x]]>", "a ]]> b ]]> c"])
def test_xml_round_trips_messages_made_of_cdata_brackets(message):
    raw = feeds.sms_data(_plain(message, ("0611111111",)), 0, 1, "xml")
    assert raw.startswith("<DATA><MESSAGE><![CDATA[")
    assert SafeET.fromstring(raw).find("MESSAGE").text == message


def test_the_cdata_helper_splits_every_terminator_and_keeps_carriage_returns_out_of_the_sections():
    assert feeds.cdata("a]]>b]]>") == "<![CDATA[a]]]]><![CDATA[>b]]]]><![CDATA[>]]>"
    assert feeds.cdata("a\r\nb") == "<![CDATA[a]]>&#13;<![CDATA[\nb]]>"
    assert feeds.cdata("plain") == "<![CDATA[plain]]>"


def test_xml_escapes_markup_in_the_other_fields():
    request = _plain("Hi", ("0611111111",), campaign_name="A & B <test>")
    raw = feeds.sms_data(request, 0, 1, "xml")
    assert "<CAMPAIGN_NAME>A &amp; B &lt;test&gt;</CAMPAIGN_NAME>" in raw
    assert SafeET.fromstring(raw).find("CAMPAIGN_NAME").text == "A & B <test>"


def test_xml_round_trips_a_message_with_a_carriage_return():
    message = "\rLine one\r\nLine two ]]>\rend\r"
    raw = feeds.sms_data(_plain(message, ("0611111111",)), 0, 1, "xml")
    assert "\r" not in raw
    assert SafeET.fromstring(raw).find("MESSAGE").text == message


def test_xml_round_trips_a_param_with_a_carriage_return():
    request = messages.sms_request(
        {"message": "x #param_1#", "recipients": [{"phone_number": "0611111111", "params": ["a\r\nb"]}]}, RULES, NOW
    )
    raw = feeds.sms_data(request, 0, 1, "xml")
    assert "<PARAM_1>a&#13;\nb</PARAM_1>" in raw
    assert SafeET.fromstring(raw).find("SMS/PARAM_1").text == "a\r\nb"


# --- smsData: chunks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "stop", "numbers"),
    [
        (0, 1, ["33611111111"]),
        (1, 3, ["33622222222", "33633333333"]),
        (2, 100, ["33633333333"]),
    ],
)
def test_a_json_chunk_covers_only_its_slice_of_recipients(start, stop, numbers):
    data = json.loads(feeds.sms_data(_personalised(), start, stop, "json"))["DATA"]
    assert [sms["MOBILEPHONE"] for sms in data["SMS"]] == numbers
    assert data["MESSAGE"].startswith("Bonjour #param_1#")
    assert data["DYNAMIC"] == "2"


def test_an_xml_chunk_covers_only_its_slice_of_recipients_with_their_own_params():
    root = SafeET.fromstring(feeds.sms_data(_personalised(), 1, 2, "xml"))
    assert [(s.find("MOBILEPHONE").text, s.find("PARAM_1").text) for s in root.findall("SMS")] == [
        ("33622222222", "Bob")
    ]
    assert root.find("MESSAGE") is not None and root.find("DATE").text == "2030-12-01 09:30:00"


def test_chunks_together_cover_every_recipient_once():
    request = _plain("Hi", [f"06{i:08d}" for i in range(7)])
    seen = []
    for start in range(0, 7, 3):
        seen += [s["MOBILEPHONE"] for s in json.loads(feeds.sms_data(request, start, start + 3, "json"))["DATA"]["SMS"]]
    assert seen == [f"336{i:08d}" for i in range(7)]


# --- voice_body -------------------------------------------------------------------------------


def test_a_voice_body_from_an_audio_file_is_a_voicemail_drop():
    request = messages.voice_request(
        {
            "recipients": ["0611111111"],
            "audio_url": "https://example.com/a.mp3",
            "sender": "01 23 45 67 89",
            "campaign_name": "Relance",
            "send_at": "2030-12-01 09:30",
        },
        RULES,
        NOW,
    )
    assert feeds.voice_body(request, request.recipients) == {
        "to": ["33611111111"],
        "type": "directdeposit",
        "url": "https://example.com/a.mp3",
        "from": "0123456789",
        "campaignName": "Relance",
        "date": "2030-12-01 09:30:00",
    }


def test_a_voice_caller_number_must_be_a_french_landline():
    for sender, problem in (
        ("06 11 11 11 11", "mobile"),
        ("+44 20 7946 0958", "not a French number"),
        ("0800 123 456", "not a landline"),
    ):
        with pytest.raises(InvalidInput) as caught:
            messages.voice_request({"recipients": ["0611111111"], "text": "Bonjour", "sender": sender}, RULES, NOW)
        assert [f.path for f in caught.value.fields] == ["sender"] and problem in caught.value.message


def test_a_voice_body_from_a_text_is_text_to_speech_and_can_be_a_simulation():
    request = messages.voice_request({"recipients": ["0611111111"], "text": "Bonjour"}, RULES, NOW)
    assert feeds.voice_body(request, request.recipients, simulate=True) == {
        "to": ["33611111111"],
        "type": "tts",
        "text": "Bonjour",
        "simulate": 1,
    }


# --- read_reply -------------------------------------------------------------------------------


def test_a_json_reply_is_read_as_a_dict():
    assert feeds.read_reply(b'  \n{"status": 100, "statusText": "ok"}', "application/json") == {
        "status": 100,
        "statusText": "ok",
    }


def test_numbers_written_as_text_are_coerced_by_integer():
    reply = feeds.read_reply(b'{"status": "100", "nbSms": "3", "credits": "99970.0", "creditsUsed": 45}')
    assert [feeds.integer(reply[k]) for k in ("status", "nbSms", "credits", "creditsUsed")] == [100, 3, 99970, 45]


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [("12", 0, 12), ("12.0", 0, 12), (12.7, 0, 12), (None, 0, 0), ("", 5, 5), ("abc", 0, 0), ({}, 3, 3)],
)
def test_integer_falls_back_to_its_default_for_what_is_not_a_number(value, default, expected):
    assert feeds.integer(value, default) == expected


def test_an_xml_reply_is_read_into_dicts_and_lists():
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><allmysms><status>100</status><statusText>Sent</statusText>'
        b"<smsIds><smsId><phoneNumber>33611111111</phoneNumber><smsId>a1</smsId></smsId>"
        b"<smsId><phoneNumber>33622222222</phoneNumber><smsId>b2</smsId></smsId></smsIds></allmysms>"
    )
    reply = feeds.read_reply(body, "text/xml")
    assert reply == {
        "status": "100",
        "statusText": "Sent",
        "smsIds": [{"phoneNumber": "33611111111", "smsId": "a1"}, {"phoneNumber": "33622222222", "smsId": "b2"}],
    }
    assert feeds.sent_messages(reply) == [
        {"phone_number": "+33611111111", "sms_id": "a1"},
        {"phone_number": "+33622222222", "sms_id": "b2"},
    ]


def test_repeated_xml_elements_among_others_become_a_list():
    assert feeds.read_reply(b"<r><b>1</b><c>3</c><b>2</b></r>") == {"b": ["1", "2"], "c": "3"}


def test_an_xml_reply_with_a_single_sms_id_gives_that_sms_id():
    body = (
        b"<allmysms><status>100</status><smsIds><smsId><phoneNumber>33611111111</phoneNumber>"
        b"<smsId>a1</smsId></smsId></smsIds></allmysms>"
    )
    assert feeds.sent_messages(feeds.read_reply(body)) == [{"phone_number": "+33611111111", "sms_id": "a1"}]


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><head><title>502</title></head><body><p>Bad gateway<br></p></body></html>",
        b"<html><body><p>Maintenance<br></p></body></html>",
        b'{"status": 100, "smsIds": [',
        b'{"status": 100',
        b"[]",
        b'[{"status": 100}]',
        b"",
        b"   \n",
        b"Error",
        b"null",
        b'"100"',
        b"100",
        b"<status>100",
        b"\x00\x01\x02",
    ],
)
def test_a_reply_that_is_not_a_json_object_or_readable_xml_is_unreadable(body):
    with pytest.raises(feeds.Unreadable) as caught:
        feeds.read_reply(body, "text/html")
    assert str(caught.value)  # what the logs get: the kind of garbage


def test_a_well_formed_html_page_is_not_taken_for_a_reply():
    with pytest.raises(feeds.Unreadable):
        feeds.read_reply(b"<html><body>502 Bad Gateway</body></html>", "text/html")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<reply><status>100</status><statusText>&lol9;</statusText></reply>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE reply [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<reply><status>100</status><statusText>&secret;</statusText></reply>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE reply SYSTEM "http://127.0.0.1:9/evil.dtd">
<reply><status>100</status></reply>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE reply [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<reply><status>100</status></reply>"""


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity"],
)
def test_xml_with_entities_or_a_dtd_raises_instead_of_being_expanded(body):
    with pytest.raises(feeds.Unreadable) as caught:
        feeds.read_reply(body, "text/xml")
    assert "XML" in str(caught.value)


def test_an_undefined_entity_is_unreadable():
    with pytest.raises(feeds.Unreadable):
        feeds.read_reply(b"<reply><status>&nope;</status></reply>")


# --- replies into results ---------------------------------------------------------------------


def test_as_list_reads_every_shape_a_list_comes_in():
    assert feeds.as_list(None) == []
    assert feeds.as_list("") == []
    assert feeds.as_list([1, 2]) == [1, 2]
    assert feeds.as_list({"smsId": [1, 2]}) == [1, 2]
    assert feeds.as_list("33611111111") == ["33611111111"]


def test_sent_messages_reads_numbers_and_ids_given_as_numbers():
    reply = {"smsIds": [{"phoneNumber": 33611111111, "smsId": 77}, "junk"]}
    assert feeds.sent_messages(reply) == [{"phone_number": "+33611111111", "sms_id": "77"}]


SEND_REPLY = {
    "status": 100,
    "statusText": "Your messages have been sent",
    "invalidNumbers": "",
    "campaignId": 5012874,
    "credits": "99970",
    "creditsUsed": "30",
    "nbContacts": "2",
    "nbSms": "2",
    "smsIds": [{"phoneNumber": "33611111111", "smsId": "a1"}, {"phoneNumber": 33622222222, "smsId": "b2"}],
}


def test_sms_result_reads_a_reply_with_numbers_as_text_and_matches_its_schema(catalog):
    request = _plain("Hi", ("0611111111", "0622222222", "0612"), invalid_numbers="skip")
    result = feeds.sms_result(request, [feeds.sent_chunk(SEND_REPLY, "sent", False)])
    _assert_valid(catalog, "actions/send_sms.output.json", result)
    assert result == {
        "id": "5012874",
        "campaign_id": "5012874",
        "campaign_ids": ["5012874"],
        "status": "sent",
        "status_text": "Your messages have been sent",
        "recipients": 2,
        "sms_ids": [{"phone_number": "+33611111111", "sms_id": "a1"}, {"phone_number": "+33622222222", "sms_id": "b2"}],
        "invalid_numbers": [{"input": "0612", "reason": "too short to be a phone number"}],
        "sms_parts": 2,
        "credits_used": 30,
        "credits_left": 99970,
        "scheduled_at": None,
        "scheduled_at_local": None,
        "text": {"encoding": "GSM-7", "characters": 2, "units": 2, "parts": 1, "unit_limit": 160, "remaining": 158},
        "parts_max": 1,
    }


def test_sms_result_adds_up_every_chunk_and_keeps_the_last_credit_balance(catalog):
    request = _personalised()
    first = {
        "status": 101,
        "campaignId": "11",
        "credits": 970,
        "creditsUsed": 30,
        "nbContacts": 2,
        "nbSms": 2,
        "statusText": "Scheduled",
        "smsIds": [{"phoneNumber": "33611111111", "smsId": "a"}, {"phoneNumber": "33622222222", "smsId": "b"}],
    }
    second = {
        "status": "101",
        "campaignId": "12",
        "credits": "955",
        "creditsUsed": "15",
        "nbContacts": "1",
        "nbSms": "1",
        "statusText": "Scheduled later",
        "invalidNumbers": ["33699999999"],
        "smsIds": [{"phoneNumber": "33633333333", "smsId": "c"}],
    }
    result = feeds.sms_result(
        request, [feeds.sent_chunk(first, "scheduled", True), feeds.sent_chunk(second, "scheduled", True)]
    )
    _assert_valid(catalog, "actions/send_sms.output.json", result)
    assert result["id"] == result["campaign_id"] == "11"
    assert result["campaign_ids"] == ["11", "12"]
    assert result["status"] == "scheduled"
    assert result["status_text"] == "Scheduled later"
    totals = (result["recipients"], result["sms_parts"], result["credits_used"], result["credits_left"])
    assert totals == (3, 3, 45, 955)
    assert [m["sms_id"] for m in result["sms_ids"]] == ["a", "b", "c"]
    assert result["invalid_numbers"] == [{"input": "33699999999", "reason": "refused by AllMySMS"}]
    assert (result["scheduled_at"], result["scheduled_at_local"]) == ("2030-12-01T08:30:00Z", "2030-12-01 09:30:00")
    assert result["parts_max"] == request.parts_max


def test_sms_result_counts_the_sent_messages_when_the_reply_has_no_contact_count():
    reply = {k: v for k, v in SEND_REPLY.items() if k != "nbContacts"}
    assert feeds.sms_result(_plain(), [feeds.sent_chunk(reply, "sent", False)])["recipients"] == 2


@pytest.mark.parametrize(
    ("invalid", "expected"),
    [
        ("", []),
        ("33600000000", ["33600000000"]),
        ("33600000000,33600000001", ["33600000000", "33600000001"]),
        ("33600000000, 33600000001;33600000002|33600000003 33600000004", [f"3360000000{i}" for i in range(5)]),
        (["33600000000", "33600000001"], ["33600000000", "33600000001"]),
        ({"phoneNumber": ["33600000000", "33600000001"]}, ["33600000000", "33600000001"]),
    ],
)
def test_the_numbers_allmysms_refused_are_read_one_by_one_from_its_text(invalid, expected):
    chunk = feeds.sent_chunk(SEND_REPLY | {"status": 113, "invalidNumbers": invalid}, "sent", False)
    assert [n["input"] for n in chunk["invalid_numbers"]] == expected


def test_a_101_answer_is_scheduled_even_when_no_time_was_asked():
    result = feeds.sms_result(_plain(), [feeds.sent_chunk(SEND_REPLY | {"status": 101}, "scheduled", False)])
    assert result["status"] == "scheduled" and result["scheduled_at"] is None


def test_a_113_answer_to_a_scheduled_send_stays_scheduled():
    request = _personalised()
    result = feeds.sms_result(request, [feeds.sent_chunk(SEND_REPLY | {"status": 113}, "sent", True)])
    assert result["status"] == "scheduled" and result["scheduled_at"] == "2030-12-01T08:30:00Z"


def test_a_send_allmysms_sent_at_once_is_sent_even_when_a_time_was_asked():
    request = _personalised()
    result = feeds.sms_result(request, [feeds.sent_chunk(SEND_REPLY, "sent", True)])
    assert result["status"] == "sent" and result["scheduled_at"] is None


def test_estimate_result_matches_its_schema_and_is_named_after_the_feeds(catalog):
    request = _plain("Hi", ("0611111111", "0622222222", "0612"), invalid_numbers="skip")
    feed = feeds.sms_data(request, 0, 10, "json")
    breakdown = [{"country": "FR", "recipients": 2, "sms_parts": 2, "credits_per_sms": 15, "credits": 30, "note": None}]
    result = feeds.estimate_result(
        request, feeds.digest(feed), [{"status": 100, "nbCredits": "30", "nbContacts": 2, "nbSms": "2"}], breakdown
    )
    _assert_valid(catalog, "actions/estimate_sms.output.json", result)
    assert result["id"] == "est-" + feeds.digest(feed)[:16]
    assert (result["recipients"], result["sms_parts"], result["credits"]) == (2, 2, 30)
    assert result["invalid_numbers"] == [{"input": "0612", "reason": "too short to be a phone number"}]


def test_the_digest_depends_on_every_feed_and_their_order():
    assert feeds.digest("a", "b") == feeds.digest("a", "b")
    assert feeds.digest("a", "b") != feeds.digest("b", "a")
    assert feeds.digest("a") != feeds.digest("a", "b")


def test_voice_result_matches_its_schema(catalog):
    request = messages.voice_request(
        {
            "recipients": ["0611111111", "0612"],
            "audio_url": "https://e.com/a.mp3",
            "invalid_numbers": "skip",
            "send_at": "2030-12-01 09:30",
        },
        RULES,
        NOW,
    )
    result = feeds.voice_result(
        request,
        "scheduled",
        {
            "code": 101,
            "campaignId": 7003311,
            "smsIds": [{"phoneNumber": "33611111111", "smsId": "v9"}],
            "cost": 0.19,
            "balance": "2.81",
            "invalidNumbers": "33699999999",
        },
    )
    _assert_valid(catalog, "actions/send_voice.output.json", result)
    assert result == {
        "id": "7003311",
        "campaign_id": "7003311",
        "status": "scheduled",
        "recipients": 1,
        "message_ids": [{"phone_number": "+33611111111", "sms_id": "v9"}],
        "invalid_numbers": [
            {"input": "0612", "reason": "too short to be a phone number"},
            {"input": "33699999999", "reason": "refused by AllMySMS"},
        ],
        # Money, as the REST API answers it: 0.19 is not rounded down to 0 credits.
        "cost": 0.19,
        "balance": 2.81,
        "scheduled_at": "2030-12-01T08:30:00Z",
        "scheduled_at_local": "2030-12-01 09:30:00",
    }


def test_voice_result_without_a_cost_or_balance_leaves_them_unknown(catalog):
    request = messages.voice_request({"recipients": ["0611111111", "0622222222"], "text": "Bonjour"}, RULES, NOW)
    result = feeds.voice_result(request, "sent", {"code": 100, "campaignId": "1", "balance": "n/a"})
    _assert_valid(catalog, "actions/send_voice.output.json", result)
    assert result["cost"] is None and result["balance"] is None
    assert result["recipients"] == 2


def test_account_result_matches_its_schema_and_counts_whole_french_sms(catalog):
    result = feeds.account_result(
        "demo",
        {
            "status": "Active Account",
            "credits": "99970",
            "firstName": "Demo",
            "lastName": "",
            "society": None,
            "email": "demo@example.com",
        },
        15,
    )
    _assert_valid(catalog, "actions/get_account.output.json", result)
    assert result == {
        "id": "demo",
        "login": "demo",
        "status": "Active Account",
        "credits": 99970,
        "sms_left_france": 6664,
        "first_name": "Demo",
        "last_name": None,
        "company": None,
        "email": "demo@example.com",
    }


def test_account_result_of_an_xml_reply_matches_its_schema(catalog):
    reply = feeds.read_reply(
        b"<info><status>Active Account</status><credits>30</credits><firstName/><society>ACME</society></info>"
    )
    result = feeds.account_result("demo", reply, 15)
    _assert_valid(catalog, "actions/get_account.output.json", result)
    assert (result["credits"], result["sms_left_france"], result["first_name"], result["company"]) == (
        30,
        2,
        None,
        "ACME",
    )

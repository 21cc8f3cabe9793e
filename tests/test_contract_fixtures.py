"""The contract fixtures themselves: each names its source, parses, and together they cover the API."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from defusedxml import ElementTree

from tests.contract import fixtures

REPLIES = fixtures.replies()
CALLBACKS = fixtures.callbacks()
ALL = REPLIES + CALLBACKS

# Methods of ALLMYSMS.md's table (and the REST calls) that a public source shows a reply for.
REQUIRED_METHODS = {
    "sendSms",
    "simulateCampaign",
    "getInfo",
    "deleteCampaign",
    "getAcks",
    "getAckBySmsId",
    "getPulls",
    "getBlacklist",
    "getCreditsByCountryIsoCode",
    "getPull",
    "sendMms",
    "createList",
    "getLists",
    "voice/send/bulk",
    "sms/send",
}


def _ids(items):
    return [f.name for f in items]


def _charset(content_type: str | None) -> str | None:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset":
            return value.strip().strip('"')
    return None


def _decode_callback(fixture) -> dict:
    """Flatten a callback to field -> value the way a lenient reader would."""
    if fixture.http_method == "GET":
        return dict(urllib.parse.parse_qsl(fixture.query_string()))
    body = fixture.body()
    media = (fixture.content_type or "").split(";")[0].strip()
    if media == "application/json":
        return json.loads(body)
    if media in ("application/xml", "text/xml"):
        root = ElementTree.fromstring(body)
        return {child.tag: child.text for child in root}
    text = body.decode("ascii", errors="strict") if body.isascii() else body.decode("latin-1")
    encoding = _charset(fixture.content_type) or "utf-8"
    try:
        return dict(urllib.parse.parse_qsl(text, encoding=encoding, errors="strict"))
    except UnicodeDecodeError:
        return dict(urllib.parse.parse_qsl(text, encoding="latin-1"))


def test_there_are_reply_and_callback_fixtures():
    assert REPLIES and CALLBACKS


@pytest.mark.parametrize("fixture", ALL, ids=_ids(ALL))
def test_every_fixture_names_a_source_with_repository_path_and_evidence(fixture):
    for key in ("repository", "path", "evidence"):
        assert isinstance(fixture.source.get(key), str) and fixture.source[key].strip(), key
    assert "/" in fixture.source["repository"]


@pytest.mark.parametrize("fixture", REPLIES, ids=_ids(REPLIES))
def test_every_reply_says_which_api_method_and_http_status_it_answers(fixture):
    assert fixture.api in ("http", "rest")
    assert fixture.method
    assert isinstance(fixture.http_status, int) and 100 <= fixture.http_status <= 599
    assert fixture.has_json_reply != (fixture.reply_text is not None), "exactly one of reply / reply_text"


@pytest.mark.parametrize("fixture", REPLIES, ids=_ids(REPLIES))
def test_every_reply_body_parses_as_json_or_xml(fixture):
    body = fixture.body()
    if "xml" in (fixture.content_type or ""):
        assert ElementTree.fromstring(body) is not None
    else:
        assert json.loads(body) == fixture.reply


def test_the_replies_cover_every_method_a_public_source_shows():
    assert REQUIRED_METHODS <= {f.method for f in REPLIES}


@pytest.mark.parametrize("fixture", REPLIES, ids=_ids(REPLIES))
def test_invalid_numbers_is_never_a_list(fixture):
    if fixture.has_json_reply and isinstance(fixture.reply, dict) and "invalidNumbers" in fixture.reply:
        assert isinstance(fixture.reply["invalidNumbers"], str)


def test_status_less_replies_really_have_no_status_key():
    for name in (
        "getBlacklist.two_entries",
        "getAcks.statut",
        "getAckBySmsId.one",
        "getPulls.two",
        "getCreditsByCountryIsoCode.fr",
        "getPull.two",
        "getLists.two",
    ):
        assert "status" not in fixtures.reply(name).reply, name


def test_both_spellings_of_the_ack_status_are_kept():
    assert "statut" in fixtures.reply("getAcks.statut").reply["acks"][0]
    assert "status" in fixtures.reply("getAcks.status").reply["acks"][0]


def test_rest_money_fields_are_decimals():
    sent = fixtures.reply("rest_sms.sent")
    assert sent.http_status == 201
    assert isinstance(sent.reply["cost"], float) and isinstance(sent.reply["balance"], float)


@pytest.mark.parametrize("fixture", CALLBACKS, ids=_ids(CALLBACKS))
def test_every_callback_states_what_a_reader_must_get_out_of_it(fixture):
    assert fixture.kind in ("delivery_receipt", "reply")
    assert fixture.http_method in ("GET", "POST")
    assert isinstance(fixture.expect, dict) and fixture.expect.get("sms_id")
    carriers = [fixture.fields is not None, fixture.body_text is not None, fixture.body_latin1 is not None]
    assert carriers.count(True) == 1, "exactly one of fields / body_text / body_latin1"


@pytest.mark.parametrize("fixture", CALLBACKS, ids=_ids(CALLBACKS))
def test_every_callback_decodes_to_the_ids_and_text_it_expects(fixture):
    flat = _decode_callback(fixture)
    assert flat["smsId"] == fixture.expect["sms_id"]
    if "campaign_id" in fixture.expect:
        assert flat["campaignId"] == fixture.expect["campaign_id"]
    if "status_code" in fixture.expect:
        assert int(flat.get("status", flat.get("code"))) == fixture.expect["status_code"]
    if "status_text" in fixture.expect:
        assert flat.get("statusText", flat.get("description")) == fixture.expect["status_text"]
    if "message" in fixture.expect:
        assert flat["message"] == fixture.expect["message"]
    if "phone_number_e164" in fixture.expect:
        assert "+" + flat["phoneNumber"] == fixture.expect["phone_number_e164"]


def test_the_lenient_callback_variants_the_doc_requires_are_present():
    names = {f.name for f in CALLBACKS}
    for required in (
        "delivery_receipt.date_t",
        "delivery_receipt.date_millis",
        "delivery_receipt.code_description",
        "delivery_receipt.xml",
        "delivery_receipt.latin1_form",
        "reply.latin1_form",
        "delivery_receipt.get_query",
    ):
        assert required in names


def test_latin1_bodies_are_not_utf8_on_the_wire():
    assert b"%E9" in fixtures.callback("delivery_receipt.latin1_form").body()
    raw = fixtures.callback("reply.latin1_form").body()
    assert b"\xe9" in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_a_fixture_is_found_by_its_file_stem():
    assert fixtures.reply("getBlacklist.two_entries").method == "getBlacklist"
    assert fixtures.callback("delivery_receipt.form").kind == "delivery_receipt"
    assert [f.name for f in fixtures.replies("voice/send/bulk")] == ["voice.sent"]
    with pytest.raises(KeyError):
        fixtures.reply("no.such_fixture")

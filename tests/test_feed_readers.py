"""The readers of AllMySMS's read replies (receipts, replies, contact lists, prices) on every recorded reply, and
the mmsData and emailData feeds as JSON and XML."""

from __future__ import annotations

import base64
import json

import pytest
from defusedxml import ElementTree

from connector.sending import feeds
from tests.contract import fixtures


def _recorded(*methods):
    return [f for method in methods for f in fixtures.replies(method)]


ACKS = _recorded("getAcks")
PULLS = _recorded("getPulls", "getPull")


@pytest.mark.parametrize("fixture", ACKS, ids=[f.name for f in ACKS])
def test_every_recorded_campaign_report_reads_into_typed_receipts(fixture):
    read = feeds.acks(fixture.reply)
    assert len(read) == len(fixture.reply["acks"])
    for receipt in read:
        assert receipt["phone_number"].startswith("+33")
        assert isinstance(receipt["status_code"], int) and receipt["status"] in feeds.RECEIPT_STATUSES.values()
        assert receipt["comment"] and receipt["received_at"].endswith("Z")


def test_both_spellings_of_the_receipt_status_read_the_same():
    statut = feeds.acks(fixtures.reply("getAcks.statut").reply)[0]
    status = feeds.acks(fixtures.reply("getAcks.status").reply)[0]
    assert statut == status
    assert status == {
        "phone_number": "+33612345678",
        "status_code": 1,
        "status": "delivered",
        "comment": "Delivered",
        # French local time in winter is UTC+1.
        "received_at": "2014-02-19T10:40:35Z",
    }


def test_the_recorded_receipt_of_one_sms_reads_flat():
    assert feeds.ack(fixtures.reply("getAckBySmsId.one").reply)["status"] == "delivered"


def test_a_reply_without_a_receipt_reads_as_none():
    assert feeds.ack({}) is None


def test_a_receipt_code_given_as_a_number_or_unknown_is_read_safely():
    read = feeds.acks({"acks": [{"phoneNumber": 33612345678, "statut": 4}, {"phoneNumber": "x", "status": "9"}]})
    assert [(r["phone_number"], r["status"]) for r in read] == [("+33612345678", "rejected"), (None, "unknown")]
    assert read[0]["received_at"] is None


@pytest.mark.parametrize("fixture", PULLS, ids=[f.name for f in PULLS])
def test_every_recorded_list_of_replies_reads_into_typed_replies(fixture):
    read = feeds.pulls(fixture.reply)
    assert [r["reply_id"] for r in read] == ["32154", "32157"]
    assert read[0] == {
        "reply_id": "32154",
        "sms_id": None,
        "campaign_id": "ap_28423xxxxx",
        "phone_number": "+33612345678",
        "message": "Réponse 1",
        "received_at": "2014-02-14T14:09:05Z",
    }


def test_reply_ids_and_numbers_written_as_integers_are_coerced():
    read = feeds.pulls({"mos": [{"id": 7, "phoneNumber": 33612345678, "message": "Oui", "campaignId": 12}]})
    assert (read[0]["reply_id"], read[0]["phone_number"], read[0]["campaign_id"]) == ("7", "+33612345678", "12")


def test_the_recorded_contact_lists_read_with_counts_as_numbers():
    assert feeds.contact_lists(fixtures.reply("getLists.two").reply) == [
        {"name": "base name", "contacts": 120, "locked": True, "created_on": "2015-01-25"},
        {"name": "base name", "contacts": 2, "locked": False, "created_on": "2015-02-05"},
    ]


@pytest.mark.parametrize("name", ["createList.populate", "createList.delete_contacts"])
def test_the_recorded_list_changes_read_their_counts(name):
    assert feeds.list_change(fixtures.reply(name).reply) == {
        "status_text": "list your base successfully populated",
        "succeeded": 1,
        "ignored": 3,
        "duplicated": 2,
    }


@pytest.mark.parametrize("value, credits", [("15", 15), (20, 20), ("", None), (None, None), ("n/a", None)])
def test_the_price_of_an_sms_to_a_country_is_an_int_or_none(value, credits):
    assert feeds.credits_per_sms({"isoCode": "XX", "nbCredits": value}) == credits


def test_the_recorded_price_for_france_is_15_credits():
    assert feeds.credits_per_sms(fixtures.reply("getCreditsByCountryIsoCode.fr").reply) == 15


@pytest.mark.parametrize(
    "text, utc",
    [
        ("2026-07-01 12:00:00", "2026-07-01T10:00:00Z"),
        ("2026-07-01T12:00:00.250", "2026-07-01T10:00:00Z"),
        # The hour that happens twice when the clocks go back: the first one.
        ("2026-10-25 02:30:00", "2026-10-25T00:30:00Z"),
        ("2026-02-30 12:00:00", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_upstream_times_are_french_local_time_read_into_utc(text, utc):
    assert feeds.upstream_time(text) == utc


# --- mmsData and emailData ---------------------------------------------------------------------------


def test_an_image_mms_feed_has_the_keys_the_public_client_writes():
    feed = json.loads(
        feeds.mms_data(
            ["+33612345678", "+32470123456"],
            "json",
            message="Bonjour",
            kind="image",
            media_url="https://example.com/a.jpg",
            campaign_name="Soldes",
            send_at_local="2026-12-01 09:30:00",
            client_reference="ref-1",
        )
    )
    assert feed == {
        "DATA": {
            "MESSAGE": "Bonjour",
            "CAMPAIGN_NAME": "Soldes",
            "DATE": "2026-12-01 09:30:00",
            "MSGCLASS": 1,
            "IMAGE": "https://example.com/a.jpg",
            "CLIMSGID": "ref-1",
            "MMS": [{"MOBILEPHONE": "33612345678"}, {"MOBILEPHONE": "32470123456"}],
        }
    }


@pytest.mark.parametrize("kind, tag, msgclass", [("video", "VIDEO", "2"), ("sound", "SOUND", "3")])
def test_an_mms_feed_in_xml_is_the_same_tree_with_the_message_in_cdata(kind, tag, msgclass):
    text = feeds.mms_data(["+33612345678"], "xml", message="a ]]> b\r", kind=kind, media_url="https://e.com/m")
    root = ElementTree.fromstring(text)
    assert root.tag == "DATA" and root.findtext("MESSAGE") == "a ]]> b\r"
    assert root.findtext("MSGCLASS") == msgclass and root.findtext(tag) == "https://e.com/m"
    assert [m.findtext("MOBILEPHONE") for m in root.findall("MMS")] == ["33612345678"]


@pytest.mark.parametrize("kind, url", [("text", "https://e.com/a.jpg"), ("image", None), ("gif", "https://e.com")])
def test_an_mms_feed_refuses_a_kind_without_its_media_or_unknown(kind, url):
    with pytest.raises(ValueError):
        feeds.mms_data(["+33612345678"], "json", kind=kind, media_url=url)


def test_an_email_feed_sends_the_html_base64_encoded_and_leaves_out_what_is_not_given():
    feed = json.loads(
        feeds.email_data("json", sender="shop@example.com", to="jo@example.com", subject="Reçu", html="<p>Été</p>")
    )
    assert feed == {
        "DATA": {
            "FROM": "shop@example.com",
            "TO": "jo@example.com",
            "SUBJECT": "Reçu",
            "HTML": base64.b64encode("<p>Été</p>".encode()).decode(),
        }
    }


def test_an_email_feed_in_xml_escapes_its_text():
    text = feeds.email_data(
        "xml",
        sender="a@example.com",
        to="b@example.com",
        subject="Tom & <Jerry>",
        html="<b>x</b>",
        text="plain",
        alias="Shop",
        reply_to="c@example.com",
        campaign_name="C",
        send_at_local="2026-12-01 09:30:00",
    )
    root = ElementTree.fromstring(text)
    assert root.findtext("SUBJECT") == "Tom & <Jerry>" and root.findtext("MAILTEXT") == "plain"
    assert base64.b64decode(root.findtext("HTML")) == b"<b>x</b>"
    assert [c.tag for c in root] == [
        "FROM",
        "TO",
        "SUBJECT",
        "DATE",
        "HTML",
        "ALIAS",
        "MAILTEXT",
        "CAMPAIGN_NAME",
        "REPLY_TO",
    ]


@pytest.mark.parametrize("build", [lambda: feeds.mms_data([], "csv"), lambda: feeds.email_data("csv", **_MAIL)])
def test_an_unknown_feed_format_is_refused(build):
    with pytest.raises(ValueError):
        build()


_MAIL = {"sender": "a@example.com", "to": "b@example.com", "subject": "S", "html": "h"}

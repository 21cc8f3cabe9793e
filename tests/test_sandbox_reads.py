"""The sandbox's MMS, e-mail, replies by campaign, contact lists and prices per country, over real HTTP."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from connector.sandbox import SandboxState, create_sandbox_app
from connector.sandbox.phones import MMS_CREDITS
from tests.conftest import Clock, LoopbackServer, wait_for

ACCOUNTS = {"alice": {"api_key": "alice-key", "credits": 1000}, "bob": {"api_key": "bob-key", "credits": 1000}}
FRENCH = "33612345678"


class Sandbox:
    def __init__(self):
        self.clock = Clock()
        self.state = SandboxState(ACCOUNTS, clock=self.clock)
        self.server = LoopbackServer(create_sandbox_app(self.state))

    def call(self, method, login="alice", **params):
        form = {"login": login, "apiKey": f"{login}-key", "returnformat": "json", **params}
        response = requests.post(f"{self.server.url}/http/9.0/{method}/", data=form, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def feed(self, method, field, login="alice", **data):
        return self.call(method, login, **{field: json.dumps({"DATA": data})})


@pytest.fixture
def sandbox():
    running = Sandbox()
    yield running
    running.server.stop()
    running.state.close()


def _mms(**data):
    return {"MESSAGE": "Bonjour", "MSGCLASS": 1, "IMAGE": "https://example.com/a.jpg"} | data


# MMS


def test_an_image_mms_is_sent_like_an_sms_and_costs_the_mms_price(sandbox):
    reply = sandbox.feed("sendMms", "mmsData", **_mms(MMS=[{"MOBILEPHONE": "0612345678"}, {"MOBILEPHONE": "1"}]))
    assert (reply["status"], reply["invalidNumbers"], reply["creditsUsed"]) == (113, "1", str(MMS_CREDITS))
    assert reply["smsIds"][0]["phoneNumber"] == FRENCH
    assert sandbox.state.campaign(reply["campaignId"]).extra == {
        "msg_class": 1,
        "media_url": "https://example.com/a.jpg",
    }


def test_an_mms_gets_a_delivery_receipt(sandbox):
    reply = sandbox.feed("sendMms", "mmsData", **_mms(MMS=[{"MOBILEPHONE": FRENCH}]))
    sandbox.clock.advance(seconds=5)
    sms_id = reply["smsIds"][0]["smsId"]
    wait_for(lambda: sandbox.state.sms_ack("alice", sms_id), what="the MMS receipt")
    acks = sandbox.call("getAckBySmsId", smsId=sms_id)
    assert acks["phoneNumber"] == FRENCH and acks["statut"] in {"1", "2", "5"}


def test_an_mms_in_xml_is_read_like_an_sms_feed(sandbox):
    feed = (
        "<DATA><MESSAGE><![CDATA[Hi]]></MESSAGE><MSGCLASS>2</MSGCLASS><VIDEO>https://example.com/v.mp4</VIDEO>"
        f"<MMS><MOBILEPHONE>{FRENCH}</MOBILEPHONE></MMS></DATA>"
    )
    assert sandbox.call("sendMms", mmsData=feed)["status"] == 100


@pytest.mark.parametrize(
    "data, status",
    [
        (_mms(MSGCLASS=7, MMS=[{"MOBILEPHONE": FRENCH}]), 106),
        (_mms(IMAGE="", MMS=[{"MOBILEPHONE": FRENCH}]), 106),
        ({"MESSAGE": " ", "MSGCLASS": 0, "MMS": [{"MOBILEPHONE": FRENCH}]}, 110),
        (_mms(MMS=[]), 107),
        (_mms(MMS=[{"NUMBER": FRENCH}]), 109),
        (_mms(MMS=[{"MOBILEPHONE": "12"}]), 114),
        (_mms(DATE="2000-01-01 10:00:00", MMS=[{"MOBILEPHONE": FRENCH}]), 115),
    ],
)
def test_an_mms_feed_that_cannot_be_sent_answers_its_status(sandbox, data, status):
    assert sandbox.feed("sendMms", "mmsData", **data)["status"] == status
    assert sandbox.state.credits("alice") == 1000


# E-mail


def _mail(**data):
    html = base64.b64encode(b"<p>Bonjour</p>").decode()
    return {"FROM": "shop@example.com", "TO": "jo@example.com", "SUBJECT": "Bonjour", "HTML": html} | data


def test_an_email_is_sent_with_a_campaign_id(sandbox):
    reply = sandbox.feed("sendEmail", "emailData", **_mail())
    assert reply["status"] == 100 and set(reply) == {"status", "statusText", "campaignId"}
    assert sandbox.state.campaign(reply["campaignId"]).extra == {"to": "jo@example.com"}


def test_an_email_with_a_future_date_is_scheduled(sandbox):
    assert sandbox.feed("sendEmail", "emailData", **_mail(DATE="2099-01-01 10:00:00"))["status"] == 101


@pytest.mark.parametrize("change", [{"FROM": ""}, {"TO": "nobody"}, {"SUBJECT": " "}, {"HTML": "<p>not base64"}])
def test_an_email_missing_a_field_or_with_html_not_in_base64_answers_106(sandbox, change):
    assert sandbox.feed("sendEmail", "emailData", **_mail(**change))["status"] == 106


# Replies by campaign


def test_get_pull_answers_a_campaigns_replies_every_time_while_get_pulls_hands_them_out_once(sandbox):
    sent = sandbox.feed("sendSms", "smsData", MESSAGE="Venez ?", SMS=[{"MOBILEPHONE": FRENCH}])
    other = sandbox.feed("sendSms", "smsData", MESSAGE="Et vous ?", SMS=[{"MOBILEPHONE": FRENCH}])
    sandbox.state.add_reply("alice", FRENCH, "Oui", sms_id=sent["smsIds"][0]["smsId"])
    sandbox.state.add_reply("alice", FRENCH, "Non", sms_id=other["smsIds"][0]["smsId"])
    assert [m["message"] for m in sandbox.call("getPulls")["mos"]] == ["Oui", "Non"]
    assert sandbox.call("getPulls")["mos"] == []
    for _ in range(2):
        replies = sandbox.call("getPull", campId=sent["campaignId"])["mos"]
        assert [(m["message"], m["campaignId"]) for m in replies] == [("Oui", sent["campaignId"])]
        assert set(replies[0]) == {"phoneNumber", "id", "campaignId", "message", "receptionDate"}


def test_get_pull_of_a_campaign_of_another_account_answers_119(sandbox):
    sent = sandbox.feed("sendSms", "smsData", MESSAGE="Hi", SMS=[{"MOBILEPHONE": FRENCH}])
    assert sandbox.call("getPull", login="bob", campId=sent["campaignId"])["status"] == 119


# Contact lists


def _create(sandbox, name="clients", login="alice"):
    return sandbox.feed("createList", "listData", login, LISTNAME=name, LOCKED="1", STRUCTURE=[{"FIELDNAME": "Nom"}])


def test_a_list_is_created_filled_emptied_and_listed_per_account(sandbox):
    assert _create(sandbox) == {"status": "1", "statusText": "database successfully populated"}
    contacts = [
        {"MOBILEPHONE": "0612345678", "Nom": "Michel"},
        {"MOBILEPHONE": "+33612345678"},
        {"MOBILEPHONE": "33612345679"},
        {"MOBILEPHONE": "nope"},
        "not a contact",
    ]
    filled = sandbox.feed("createList", "populateData", LISTNAME="clients", CONTACTS=contacts)
    assert (filled["status"], filled["success"], filled["ignored"], filled["duplicated"]) == ("1", 2, 2, 1)
    emptied = sandbox.feed("createList", "deleteData", LISTNAME="clients", CONTACTS=[{"MOBILEPHONE": FRENCH}, {}])
    assert (emptied["success"], emptied["ignored"], emptied["duplicated"]) == (1, 1, 0)
    assert sandbox.state.contact_lists.numbers("alice", "clients") == ("33612345679",)
    assert sandbox.call("getLists") == {
        "lists": [{"listName": "clients", "contacts": "1", "locked": "1", "creationDate": sandbox.clock.paris()[:10]}]
    }
    assert sandbox.call("getLists", login="bob") == {"lists": []}


def test_a_list_created_twice_answers_106_and_filling_an_unknown_list_119(sandbox):
    _create(sandbox)
    assert _create(sandbox)["status"] == 106
    reply = sandbox.feed(
        "createList", "populateData", login="bob", LISTNAME="clients", CONTACTS=[{"MOBILEPHONE": FRENCH}]
    )
    assert (reply["status"], reply["statusText"]) == (119, "List not found")


@pytest.mark.parametrize(
    "field, data",
    [
        ("listData", {"LOCKED": "0"}),
        ("listData", {"LISTNAME": "x", "STRUCTURE": [{"FILTER": 0}]}),
        ("populateData", {"LISTNAME": "clients", "CONTACTS": []}),
    ],
)
def test_a_list_feed_without_its_name_fields_or_contacts_answers_106(sandbox, field, data):
    _create(sandbox)
    assert sandbox.feed("createList", field, **data)["status"] == 106


# Prices per country


@pytest.mark.parametrize("code, credits", [("FR", "15"), ("us", "10"), ("RE", "25"), ("BE", "20"), ("JP", "20")])
def test_the_price_of_an_sms_differs_by_country(sandbox, code, credits):
    assert sandbox.call("getCreditsByCountryIsoCode", countryIsoCode=code)["nbCredits"] == credits


@pytest.mark.parametrize("number, credits", [("+12025550143", "10"), ("+262692123456", "25"), ("+32470123456", "20")])
def test_a_send_debits_the_price_of_its_country(sandbox, number, credits):
    assert sandbox.feed("sendSms", "smsData", MESSAGE="Hi", SMS=[{"MOBILEPHONE": number}])["creditsUsed"] == credits

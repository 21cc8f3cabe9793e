"""The AllMySMS client's calls for receipts, replies, prices, MMS, e-mail and contact lists: each posts what
the public clients post, and each answer goes through the one reply table."""

from __future__ import annotations

import pytest

from connector.errors import AuthenticationFailed, InvalidInput, OutcomeUnknown, UpstreamFailed
from connector.sending import feeds
from connector.sending.upstream import AllMySMS, Credentials
from tests.conftest import Scripted
from tests.contract import fixtures

CREDENTIALS = Credentials("demo", "demo-api-key")


@pytest.fixture
def client(scripted):
    return AllMySMS(scripted.url, connect_retries=0)


def _answer(scripted, name):
    fixture = fixtures.reply(name)
    scripted.script(Scripted(status=fixture.http_status, body=fixture.body()))
    return fixture.reply


# (client call, the method in the URL, the form fields it adds, the recorded answer)
CALLS = [
    (lambda c: c.get_acks(CREDENTIALS, "ap_1"), "getAcks", {"campId": "ap_1"}, "getAcks.statut"),
    (lambda c: c.ack_by_sms_id(CREDENTIALS, "s-1"), "getAckBySmsId", {"smsId": "s-1"}, "getAckBySmsId.one"),
    (lambda c: c.pull(CREDENTIALS, "ap_1"), "getPull", {"campId": "ap_1"}, "getPull.two"),
    (lambda c: c.pulls(CREDENTIALS, 50), "getPulls", {"limit": "50"}, "getPulls.two"),
    (
        lambda c: c.credits_by_country(CREDENTIALS, "BE"),
        "getCreditsByCountryIsoCode",
        {"countryIsoCode": "BE"},
        "getCreditsByCountryIsoCode.fr",
    ),
    (lambda c: c.lists(CREDENTIALS), "getLists", {}, "getLists.two"),
    (lambda c: c.create_list(CREDENTIALS, "{}"), "createList", {"listData": "{}"}, "createList.ok"),
    (lambda c: c.populate_list(CREDENTIALS, "{}"), "createList", {"populateData": "{}"}, "createList.populate"),
    (
        lambda c: c.delete_contacts(CREDENTIALS, "{}"),
        "createList",
        {"deleteData": "{}"},
        "createList.delete_contacts",
    ),
]


@pytest.mark.parametrize("call, method, fields, recorded", CALLS, ids=[c[3] for c in CALLS])
def test_each_read_posts_its_fields_to_its_method_and_returns_the_recorded_answer(
    scripted, client, call, method, fields, recorded
):
    expected = _answer(scripted, recorded)
    assert call(client) == expected
    asked = scripted.requests[-1]
    assert asked["path"] == f"/http/9.0/{method}/"
    assert asked["form"] == {"login": "demo", "apiKey": "demo-api-key", "returnformat": "json", **fields}


def test_an_mms_send_answered_as_recorded_is_sent(scripted, client):
    _answer(scripted, "sendMms.sent")
    feed = feeds.mms_data(["+33612345678"], "json", kind="image", media_url="https://example.com/a.jpg")
    word, reply = client.send_mms(CREDENTIALS, feed)
    assert word == "sent" and feeds.sent_chunk(reply, word, False)["sms_ids"][0]["phone_number"] == "+33612345678"
    assert scripted.requests[-1]["path"] == "/http/9.0/sendMms/"
    assert scripted.requests[-1]["form"]["mmsData"] == feed


def test_an_email_send_answered_100_is_sent_and_posts_email_data(scripted, client):
    scripted.script(Scripted(body={"status": 100, "statusText": "ok"}))
    feed = feeds.email_data("json", sender="a@example.com", to="b@example.com", subject="S", html="<p>x</p>")
    word, _ = client.send_email(CREDENTIALS, feed)
    assert word == "sent"
    assert scripted.requests[-1]["path"] == "/http/9.0/sendEmail/"
    assert scripted.requests[-1]["form"]["emailData"] == feed


def test_an_email_send_answered_without_a_status_may_have_gone_out(scripted, client):
    # What sendEmail answers is in no public source: an answer without a status must not pass for a success.
    scripted.script(Scripted(body={"result": "done"}))
    with pytest.raises(UpstreamFailed) as raised:
        client.send_email(CREDENTIALS, "{}")
    assert raised.value.code == "upstream_no_status"


def test_an_mms_send_whose_answer_is_lost_is_not_retried_and_may_have_gone_out(scripted):
    slow = AllMySMS(scripted.url, connect_retries=0, read_timeout=0.2)
    scripted.script(Scripted(body={"status": 100}, delay=1.0))
    with pytest.raises(OutcomeUnknown):
        slow.send_mms(CREDENTIALS, "{}")
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("status", ["0", 2, "KO"])
def test_a_contact_list_call_answered_with_anything_but_status_one_is_not_a_success(scripted, client, status):
    scripted.script(Scripted(body={"status": status, "statusText": "list not found"}))
    with pytest.raises((InvalidInput, UpstreamFailed)):
        client.populate_list(CREDENTIALS, "{}")


def test_a_read_refused_for_credentials_says_so(scripted, client):
    _answer(scripted, "sendSms.status_102_bad_credentials")
    with pytest.raises(AuthenticationFailed) as raised:
        client.get_acks(CREDENTIALS, "ap_1")
    assert raised.value.code == "invalid_credentials"

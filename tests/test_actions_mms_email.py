"""Send MMS and Send E-mail end to end: a real connector server calling the sandbox (or a scripted AllMySMS)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from connector.errors import InvalidInput
from connector.sending import emails, messages
from tests.conftest import Scripted

PICTURE = {"recipients": ["06 11 11 11 11"], "kind": "picture", "media_url": "https://example.com/offer.jpg"}
EMAIL = {"from_email": "news@myshop.com", "to": "alice@example.com", "subject": "Shipped", "html": "<p>Hi</p>"}


def _field_paths(response) -> list[str]:
    return [f["path"] for f in response.json()["error"]["fields"]]


# Send MMS.


def test_a_picture_mms_reaches_allmysms_with_its_class_and_url(api, sandbox):
    response = api.action("send_mms", {**PICTURE, "message": "New in store", "campaign_name": "Launch"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "sent" and body["kind"] == "picture" and body["recipients"] == 1
    assert body["sms_ids"][0]["phone_number"] == "+33611111111"
    assert body["credits_left"] == 100000 - body["credits_used"]
    campaign = sandbox.state.campaign(body["campaign_id"])
    assert campaign.kind == "mms" and campaign.numbers == ("33611111111",)
    assert campaign.extra == {"msg_class": 1, "media_url": "https://example.com/offer.jpg"}
    assert campaign.message == "New in store" and campaign.name == "Launch"


def test_the_mms_feed_carries_the_keys_of_the_public_client(through, scripted):
    scripted.default.body = json.loads(open("tests/contract/replies/sendMms.sent.json").read())["reply"]
    api = through()
    response = api.action(
        "send_mms", {**PICTURE, "kind": "video", "media_url": "https://example.com/clip.mp4", "client_reference": "o-1"}
    )
    assert response.status_code == 200, response.text
    assert scripted.requests[-1]["path"] == "/http/9.0/sendMms/"
    feed = json.loads(scripted.requests[-1]["form"]["mmsData"])["DATA"]
    assert feed == {
        "MESSAGE": "",
        "MSGCLASS": 2,
        "VIDEO": "https://example.com/clip.mp4",
        "CLIMSGID": "o-1",
        "MMS": [{"MOBILEPHONE": "33611111111"}],
    }
    # The recorded reply's figures, read as a send's.
    body = response.json()
    assert body["credits_used"] == 15 and body["credits_left"] == 340 and body["campaign_id"] == "xxxxxxxxxxx"


def test_a_text_mms_can_be_scheduled_and_says_when_in_utc_and_paris_time(api, sandbox):
    response = api.action(
        "send_mms", {"recipients": "0611111111", "kind": "text", "message": "Hi", "send_at": "2030-12-01 09:30"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "scheduled"
    assert body["scheduled_at"] == "2030-12-01T08:30:00Z" and body["scheduled_at_local"] == "2030-12-01 09:30:00"
    assert sandbox.state.campaign(body["campaign_id"]).extra["msg_class"] == 0


MMS_BAD_INPUTS = [
    ("no kind", {"recipients": ["0611111111"], "media_url": "https://example.com/a.jpg"}, "kind"),
    ("picture without url", {"recipients": ["0611111111"], "kind": "picture"}, "media_url"),
    (
        "text with url",
        {"recipients": ["0611111111"], "kind": "text", "message": "Hi", "media_url": "https://e.com/a"},
        "media_url",
    ),
    ("text without message", {"recipients": ["0611111111"], "kind": "text"}, "message"),
    ("file url", {**PICTURE, "media_url": "file:///etc/passwd"}, "media_url"),
    ("data url", {**PICTURE, "media_url": "data:image/png;base64,AAAA"}, "media_url"),
    ("javascript url", {**PICTURE, "media_url": "javascript:alert(1)"}, "media_url"),
    ("private address", {**PICTURE, "media_url": "http://192.168.1.10/a.jpg"}, "media_url"),
    ("loopback name", {**PICTURE, "media_url": "https://localhost/a.jpg"}, "media_url"),
    ("login in url", {**PICTURE, "media_url": "https://me:secret@example.com/a.jpg"}, "media_url"),
    ("bad number", {**PICTURE, "recipients": ["061111"]}, "recipients[0]"),
    ("personalised", {**PICTURE, "recipients": [{"phone_number": "0611111111", "params": ["x"]}]}, "recipients"),
    ("past time", {**PICTURE, "send_at": "2020-01-01 09:00"}, "send_at"),
    ("a sender mmsData has no place for", {**PICTURE, "sender": "MyShop"}, "sender"),
]


@pytest.mark.parametrize("name, body, path", MMS_BAD_INPUTS, ids=[b[0] for b in MMS_BAD_INPUTS])
def test_bad_mms_input_is_refused_naming_the_field_and_nothing_is_sent(api, sandbox, name, body, path):
    response = api.action("send_mms", body)
    assert response.status_code == 422, response.text
    assert path in _field_paths(response)
    assert all(f["message"] for f in response.json()["error"]["fields"])
    assert sandbox.state.campaigns("demo") == []


@pytest.mark.parametrize(
    "url",
    ["https://example.com/a.jpg", "http://cdn.example.org:8080/v/clip.mp4?x=1", "https://93.184.216.34/a.png"],
)
def test_a_public_media_url_is_accepted(url):
    assert messages.media_url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/a.jpg", "https://intranet/a.jpg", "http://10.0.0.1/a", "https://[::1]/a", "https://a.local/x"],
)
def test_a_media_url_allmysms_could_not_download_is_refused_saying_why(url):
    assert messages.media_url_problem(url)


def test_a_key_sends_an_mms_once(api, sandbox):
    first = api.action("send_mms", PICTURE, headers={"Idempotency-Key": "mms-1"})
    second = api.action("send_mms", PICTURE, headers={"Idempotency-Key": "mms-1"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() and second.headers["Idempotent-Replayed"] == "true"
    assert len(sandbox.state.campaigns("demo")) == 1


# Send E-mail.


def test_an_email_goes_to_each_address_with_its_html_in_base64(api, sandbox):
    body = {
        **EMAIL,
        "to": "alice@example.com; bob@example.org\nALICE@example.com",
        "from_name": "My Shop",
        "reply_to": "support@myshop.com",
    }
    response = api.action("send_email", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "sent" and result["recipients"] == 2
    assert result["to"] == ["alice@example.com", "bob@example.org"]
    assert result["status_text"] == "Your e-mail has been sent"
    campaigns = [sandbox.state.campaign(c) for c in result["campaign_ids"]]
    assert [c.kind for c in campaigns] == ["email", "email"]
    assert [c.extra["to"] for c in campaigns] == ["alice@example.com", "bob@example.org"]


def test_the_email_feed_carries_every_field_given(through, scripted):
    scripted.default.body = {"status": 101, "statusText": "scheduled", "campaignId": "9"}
    api = through()
    body = {
        **EMAIL,
        "from_name": "My Shop",
        "text": "Hi",
        "reply_to": "help@myshop.com",
        "send_at": "2030-12-01T08:30:00Z",
    }
    response = api.action("send_email", {**body, "campaign_name": "Orders"})
    assert response.status_code == 200, response.text
    assert scripted.requests[-1]["path"] == "/http/9.0/sendEmail/"
    feed = json.loads(scripted.requests[-1]["form"]["emailData"])["DATA"]
    assert feed["FROM"] == "news@myshop.com" and feed["TO"] == "alice@example.com" and feed["ALIAS"] == "My Shop"
    assert base64.b64decode(feed["HTML"]).decode() == "<p>Hi</p>" and feed["MAILTEXT"] == "Hi"
    assert feed["REPLY_TO"] == "help@myshop.com" and feed["DATE"] == "2030-12-01 09:30:00"
    assert feed["CAMPAIGN_NAME"] == "Orders" and feed["SUBJECT"] == "Shipped"
    assert response.json()["status"] == "scheduled" and response.json()["scheduled_at"] == "2030-12-01T08:30:00Z"


def test_an_email_answered_without_a_status_is_reported_as_maybe_sent(through, scripted):
    scripted.default.body = {"campaignId": "9"}
    response = through().action("send_email", EMAIL)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["disposition"] == "check_before_retry" and "without a status" in error["message"]


def test_a_later_address_refused_reports_exactly_which_went_out(through, scripted):
    scripted.script(Scripted(body={"status": 100, "statusText": "ok", "campaignId": "1"}))
    scripted.default.body = {"status": 103, "statusText": "no credit"}
    response = through().action("send_email", {**EMAIL, "to": ["a@example.com", "b@example.com", "c@example.com"]})
    assert response.status_code == 402, response.text
    error = response.json()["error"]
    assert error["partially_sent"] == {"campaign_ids": ["1"], "recipients": 1}
    assert "1 of 3 recipients" in error["message"] and error["disposition"] == "check_before_retry"


EMAIL_BAD_INPUTS = [
    ("from not an address", {**EMAIL, "from_email": "news"}, "from_email"),
    ("from with a name", {**EMAIL, "from_email": "Shop <news@myshop.com>"}, "from_email"),
    ("to item not an address", {**EMAIL, "to": ["alice@example.com", "bob@"]}, "to[1]"),
    ("to text with a bad address", {**EMAIL, "to": "alice@example.com, bob@@example.org"}, "to"),
    ("reply-to not an address", {**EMAIL, "reply_to": "support"}, "reply_to"),
    ("subject on two lines", {**EMAIL, "subject": "Hi\nBcc: x@example.com"}, "subject"),
    ("blank html", {**EMAIL, "html": "   "}, "html"),
    ("past time", {**EMAIL, "send_at": "2020-01-01 09:00"}, "send_at"),
    ("too many addresses", {**EMAIL, "to": ", ".join(f"u{i}@example.com" for i in range(101))}, "to"),
    ("missing subject", {k: v for k, v in EMAIL.items() if k != "subject"}, "subject"),
]


@pytest.mark.parametrize("name, body, path", EMAIL_BAD_INPUTS, ids=[b[0] for b in EMAIL_BAD_INPUTS])
def test_bad_email_input_is_refused_naming_the_field_and_nothing_is_sent(api, sandbox, name, body, path):
    response = api.action("send_email", body)
    assert response.status_code == 422, response.text
    assert path in _field_paths(response)
    assert sandbox.state.campaigns("demo") == []


@pytest.mark.parametrize(
    "address", ["ann@example.com", "ann.o'neil+tag@mail.example.co.uk", "x@xn--bcher-kva.example", "a_b-c@ex-ample.fr"]
)
def test_addresses_of_the_documented_rule_are_accepted(address):
    assert emails.address_problem(address) is None


@pytest.mark.parametrize(
    "address",
    [
        "ann",
        "ann@",
        "@example.com",
        "ann@example",
        "ann..b@example.com",
        ".ann@example.com",
        "ann@-example.com",
        "ann@example.c",
        "anné@example.com",
        "ann@[127.0.0.1]",
        '"ann"@example.com',
        "a" * 65 + "@example.com",
    ],
)
def test_addresses_outside_the_documented_rule_are_refused_saying_why(address):
    assert emails.address_problem(address)


def test_an_email_scheduled_in_the_past_by_the_clock_of_the_day_is_refused():
    rules = messages.Rules()
    now = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput) as caught:
        emails.email_request({**EMAIL, "send_at": (now - timedelta(minutes=1)).isoformat()}, rules, now)
    assert [f.path for f in caught.value.fields] == ["send_at"]


def test_with_the_xml_feed_format_an_mms_and_an_email_reach_allmysms_intact(sandbox, serve):
    from connector import create_app
    from tests.conftest import connector_settings

    api = serve(create_app(connector_settings(sandbox.url, ALLMYSMS_FEED_FORMAT="xml")))
    message = 'a]]>b <tag> & "quotes"'
    mms = api.action("send_mms", {**PICTURE, "message": message})
    assert mms.status_code == 200, mms.text
    campaign = sandbox.state.campaign(mms.json()["campaign_id"])
    assert campaign.message == message and campaign.extra["msg_class"] == 1
    email = api.action("send_email", {**EMAIL, "subject": message, "html": "<p>a]]>b</p>"})
    assert email.status_code == 200, email.text
    assert sandbox.state.campaign(email.json()["campaign_id"]).message == message


def test_a_large_mms_send_is_split_into_campaigns_and_reported_as_one_result(sandbox, serve):
    from connector import create_app
    from tests.conftest import connector_settings

    api = serve(create_app(connector_settings(sandbox.url, ALLMYSMS_RECIPIENTS_PER_FEED=2)))
    numbers = [f"06{i:08d}" for i in range(10000000, 10000005)]
    response = api.action("send_mms", {**PICTURE, "recipients": numbers})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["campaign_ids"]) == 3 and body["recipients"] == 5 and len(body["sms_ids"]) == 5


def test_a_later_mms_campaign_refused_reports_exactly_what_went_out(sandbox, serve):
    from connector import create_app
    from tests.conftest import connector_settings

    sandbox.state.set_credits("demo", 50 * 2)
    api = serve(create_app(connector_settings(sandbox.url, ALLMYSMS_RECIPIENTS_PER_FEED=2)))
    numbers = [f"06{i:08d}" for i in range(10000000, 10000004)]
    response = api.action("send_mms", {**PICTURE, "recipients": numbers})
    assert response.status_code == 402, response.text
    error = response.json()["error"]
    assert error["partially_sent"]["recipients"] == 2 and "2 of 4 recipients" in error["message"]

"""Every action end to end: a real connector server calling the real sandbox server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests

from connector.description.manifest import load

MANIFEST = load()


def test_the_connection_test_returns_the_account_and_a_label(api):
    response = api.get("/v1/me")
    assert response.status_code == 200
    body = response.json()
    assert body["login"] == "demo" and body["credits"] == 100000
    assert body["label"] == "demo (100000 credits)"


def test_a_plain_send_returns_one_sms_id_per_recipient_in_e164(api, sandbox):
    response = api.action(
        "send_sms", {"message": "Your parcel arrives today.", "recipients": ["06 11 11 11 11", "+33 6 22 22 22 22"]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "sent" and body["recipients"] == 2
    assert [m["phone_number"] for m in body["sms_ids"]] == ["+33611111111", "+33622222222"]
    assert body["credits_used"] == 30 and body["credits_left"] == 100000 - 30
    assert body["text"]["encoding"] == "GSM-7" and body["parts_max"] == 1
    campaign = sandbox.state.campaign(body["campaign_id"])
    assert [r.phone_number for r in campaign.recipients] == ["33611111111", "33622222222"]


def test_a_pasted_list_of_numbers_is_split_on_commas_semicolons_and_new_lines(api):
    response = api.action("send_sms", {"message": "Hi", "recipients": "0611111111, 0622222222;0633333333\n0644444444"})
    assert response.status_code == 200, response.text
    assert response.json()["recipients"] == 4


def test_a_personalised_send_puts_each_recipients_values_in_the_feed(scripted, serve):
    from connector import create_app
    from tests.conftest import connector_settings

    scripted.default.body = {"status": 100, "campaignId": "1", "smsIds": [], "credits": "10", "nbSms": "2"}
    api = serve(create_app(connector_settings(scripted.url)))
    response = api.action(
        "send_sms",
        {
            "message": "Hello #param_1#, see you at #param_2#.",
            "recipients": [
                {"phone_number": "0611111111", "params": ["Alice", "10:00"]},
                {"phone_number": "0622222222", "params": ["Bob", 11]},
            ],
        },
    )
    assert response.status_code == 200, response.text
    feed = json.loads(scripted.requests[-1]["form"]["smsData"])["DATA"]
    assert feed["DYNAMIC"] == "2"
    assert feed["SMS"] == [
        {"MOBILEPHONE": "33611111111", "PARAM_1": "Alice", "PARAM_2": "10:00"},
        {"MOBILEPHONE": "33622222222", "PARAM_1": "Bob", "PARAM_2": "11"},
    ]


def test_a_unicode_message_is_counted_in_ucs2_parts(api):
    response = api.action("send_sms", {"message": "Привет 👋 " * 10, "recipients": ["0611111111"]})
    assert response.status_code == 200, response.text
    text = response.json()["text"]
    assert text["encoding"] == "UCS-2" and text["parts"] == 2


def test_a_message_with_cdata_terminator_goes_through_the_xml_feed_intact(sandbox, serve):
    from connector import create_app
    from tests.conftest import connector_settings

    api = serve(create_app(connector_settings(sandbox.url, ALLMYSMS_FEED_FORMAT="xml")))
    message = 'a]]>b <tag> & "quotes" [brackets]'
    response = api.action("send_sms", {"message": message, "recipients": ["0611111111"]})
    assert response.status_code == 200, response.text
    assert sandbox.state.campaign(response.json()["campaign_id"]).message == message


def test_a_large_send_is_split_into_campaigns_and_reported_as_one_result(sandbox, serve):
    from connector import create_app
    from tests.conftest import connector_settings

    api = serve(create_app(connector_settings(sandbox.url, ALLMYSMS_RECIPIENTS_PER_FEED=3)))
    numbers = [f"06{i:08d}" for i in range(10000000, 10000007)]
    response = api.action("send_sms", {"message": "Hi", "recipients": numbers})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["campaign_ids"]) == 3 and body["campaign_id"] == body["campaign_ids"][0]
    assert body["recipients"] == 7 and len(body["sms_ids"]) == 7
    assert body["credits_used"] == 7 * 15


def test_a_later_chunk_refused_reports_exactly_what_went_out(sandbox, serve):
    from connector import create_app
    from tests.conftest import connector_settings

    sandbox.state.set_credits("demo", 15 * 3)
    api = serve(create_app(connector_settings(sandbox.url, ALLMYSMS_RECIPIENTS_PER_FEED=3)))
    numbers = [f"06{i:08d}" for i in range(10000000, 10000006)]
    response = api.action("send_sms", {"message": "Hi", "recipients": numbers})
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["partially_sent"]["recipients"] == 3
    assert error["disposition"] == "check_before_retry"
    assert "3 of 6 recipients" in error["message"]


def test_schedule_reads_a_naive_time_in_paris_and_reports_utc(api, sandbox):
    local = (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=3)).replace(
        hour=9, minute=30, second=0, microsecond=0, tzinfo=None
    )
    response = api.action(
        "schedule_sms",
        {"message": "Reminder", "recipients": ["0611111111"], "send_at": local.strftime("%Y-%m-%d %H:%M")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "scheduled"
    assert body["scheduled_at_local"] == local.strftime("%Y-%m-%d %H:%M:%S")
    expected_utc = local.replace(tzinfo=ZoneInfo("Europe/Paris")).astimezone(UTC)
    assert body["scheduled_at"] == expected_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_schedule_converts_an_offset_time_to_paris_for_allmysms(api, sandbox):
    when = (datetime.now(UTC) + timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
    response = api.action(
        "schedule_sms",
        {"message": "Reminder", "recipients": ["0611111111"], "send_at": when.strftime("%Y-%m-%dT%H:%M:%S+00:00")},
    )
    assert response.status_code == 200, response.text
    campaign = sandbox.state.campaign(response.json()["campaign_id"])
    assert campaign.scheduled_date == when.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize(
    "send_at, expected",
    [
        ("2020-01-01 10:00", "in the past"),
        ("tomorrow at ten", "not a date and time"),
        ("2030-03-31 02:30", "does not exist"),
    ],
)
def test_schedule_refuses_bad_times_before_anything_is_sent(api, sandbox, send_at, expected):
    response = api.action("schedule_sms", {"message": "Hi", "recipients": ["0611111111"], "send_at": send_at})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["path"] == "send_at"
    assert expected in response.json()["error"]["fields"][0]["message"]
    assert sandbox.state.campaigns("demo") == []


def test_cancel_refunds_a_scheduled_send(api, sandbox):
    when = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    scheduled = api.action("schedule_sms", {"message": "Hi", "recipients": ["0611111111"], "send_at": when}).json()
    assert sandbox.state.credits("demo") == 100000 - 15
    response = api.action("cancel_scheduled", {"campaign_id": scheduled["campaign_id"]})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": scheduled["campaign_id"],
        "campaign_ids": [scheduled["campaign_id"]],
        "status": "cancelled",
    }
    assert sandbox.state.credits("demo") == 100000


def test_cancel_of_an_unknown_campaign_shows_allmysms_words(api):
    response = api.action("cancel_scheduled", {"campaign_id": "999999"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "refused_by_allmysms"
    assert "AllMySMS says" in response.json()["error"]["message"]


def test_estimate_sends_nothing_and_debits_nothing(api, sandbox):
    response = api.action("estimate_sms", {"message": "x" * 200, "recipients": ["0611111111", "0622222222"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sms_parts"] == 4 and body["credits"] == 60 and body["recipients"] == 2
    assert body["text"]["parts"] == 2
    assert sandbox.state.credits("demo") == 100000 and sandbox.state.campaigns("demo") == []


def test_an_estimate_id_is_stable_for_the_same_input(api):
    body = {"message": "Hi", "recipients": ["0611111111"]}
    assert api.action("estimate_sms", body).json()["id"] == api.action("estimate_sms", body).json()["id"]


def test_a_voice_message_from_an_audio_url(api, sandbox):
    response = api.action(
        "send_voice",
        {"recipients": ["0611111111"], "audio_url": "https://example.com/m.mp3", "sender": "01 23 45 67 89"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "sent" and body["message_ids"][0]["phone_number"] == "+33611111111"
    # Money, as AllMySMS's REST API answers it: the sandbox prices a voice message at 0.19 euros.
    assert body["cost"] == 0.19 and body["balance"] == round(sandbox.state.credits("demo") * 0.0063, 2)
    assert sandbox.state.campaigns("demo")[-1].sender == "0123456789"


def test_a_voice_message_read_from_text_can_be_scheduled(api):
    when = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = api.action("send_voice", {"recipients": "0611111111", "text": "Bonjour", "send_at": when})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "scheduled" and response.json()["scheduled_at"] == when


def test_get_account_returns_credits_and_sms_left(api):
    response = api.action("get_account", {})
    assert response.status_code == 200
    assert response.json()["sms_left_france"] == 100000 // 15


def test_get_account_accepts_an_empty_body(api):
    response = api.session.post(api.url + "/v1/actions/get_account", timeout=10)
    assert response.status_code == 200 and response.json()["login"] == "demo"


# Authentication.


def test_no_credentials_get_401_with_a_basic_challenge(api):
    response = requests.post(api.url + "/v1/actions/get_account", json={}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_credentials"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "header, code",
    [
        ("Bearer abc", "unsupported_authentication"),
        ("Basic !!!notbase64", "malformed_credentials"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "missing_credentials"),
        ("Basic " + base64.b64encode(b"demo:").decode(), "missing_credentials"),
    ],
)
def test_garbled_credentials_get_401_saying_what_is_wrong(api, header, code):
    response = requests.get(api.url + "/v1/me", headers={"Authorization": header}, timeout=10)
    assert response.status_code == 401 and response.json()["error"]["code"] == code


def test_credentials_allmysms_rejects_get_401(api):
    api.session.auth = ("demo", "wrong-key")
    response = api.get("/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert response.json()["error"]["disposition"] == "fix_credentials"


# Credit.


def test_an_account_without_credit_gets_402(api):
    api.session.auth = ("broke", "broke-api-key")
    response = api.action("send_sms", {"message": "Hi", "recipients": ["0611111111"]})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "no_credit"


def test_not_enough_credit_gets_402_with_needed_and_available(api):
    api.session.auth = ("low", "low-api-key")
    response = api.action("send_sms", {"message": "Hi", "recipients": ["0611111111", "0622222222"]})
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credit"
    assert error["credits_needed"] == 30 and error["credits_available"] == 20


# Bad input: each gets the documented error, never a 500.

BAD_INPUTS = [
    ("empty body", None, 422, "message"),
    ("wrong types", {"message": 12, "recipients": "0611111111"}, 422, "message"),
    ("no recipients", {"message": "Hi", "recipients": []}, 422, "recipients"),
    ("blank recipients text", {"message": "Hi", "recipients": " ,; "}, 422, "recipients"),
    ("message over 640", {"message": "x" * 641, "recipients": ["0611111111"]}, 422, "message"),
    ("sender too long", {"message": "Hi", "recipients": ["0611111111"], "sender": "ABCDEFGHIJKL"}, 422, "sender"),
    ("sender with punctuation", {"message": "Hi", "recipients": ["0611111111"], "sender": "My-Shop"}, 422, "sender"),
    ("placeholder in capitals", {"message": "Hi #PARAM_1#", "recipients": ["0611111111"]}, 422, "message"),
    ("unknown field", {"message": "Hi", "recipients": ["0611111111"], "send_at": "2030-01-01"}, 422, "send_at"),
    ("control character", {"message": "Hi\x00", "recipients": ["0611111111"]}, 422, "message"),
    ("missing param", {"message": "Hi #param_1#", "recipients": ["0611111111"]}, 422, "recipients[0].params"),
]


@pytest.mark.parametrize("name, body, status, path", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_the_field(api, sandbox, name, body, status, path):
    response = (
        api.session.post(api.url + "/v1/actions/send_sms", json=body, timeout=10)
        if body is not None
        else api.session.post(api.url + "/v1/actions/send_sms", timeout=10)
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert path in [f["path"] for f in error["fields"]]
    assert all(f["message"] for f in error["fields"])
    assert sandbox.state.campaigns("demo") == []


@pytest.mark.parametrize(
    "raw, content_type, expected",
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"\xff\xfe{}", "application/json", "UTF-8"),
        (b'{"message": "a", "message": "b"}', "application/json", "appears twice"),
        (b"[1, 2]", "application/json", "JSON object"),
        (b'{"message": NaN}', "application/json", "NaN"),
        (b"[" * 100000 + b"]" * 100000, "application/json", "nested too deeply"),
        (b'{"message": ' + b"9" * 5000 + b"}", "application/json", "too large"),
        (b"message=hi", "application/x-www-form-urlencoded", "must be JSON"),
    ],
)
def test_unreadable_bodies_get_a_4xx_that_says_why(api, raw, content_type, expected):
    response = api.session.post(
        api.url + "/v1/actions/send_sms", data=raw, headers={"Content-Type": content_type}, timeout=10
    )
    assert response.status_code in (400, 415), response.text
    assert expected in response.json()["error"]["message"]


def test_ten_thousand_recipients_with_some_invalid_are_refused_with_each_listed(api, sandbox):
    numbers = [f"06{i:08d}" for i in range(20000000, 20010000)]
    for i in range(0, 10000, 500):
        numbers[i] = f"not-a-number-{i}"
    response = api.action("send_sms", {"message": "Hi", "recipients": numbers})
    assert response.status_code == 422
    error = response.json()["error"]
    assert [f["path"] for f in error["fields"]] == [f"recipients[{i}]" for i in range(0, 10000, 500)]
    assert sandbox.state.campaigns("demo") == []


def test_ten_thousand_recipients_with_skip_send_to_the_valid_ones(api, sandbox):
    sandbox.state.set_credits("demo", 10**7)
    numbers = [f"06{i:08d}" for i in range(20000000, 20010000)]
    numbers[7] = "12"
    response = api.action("send_sms", {"message": "Hi", "recipients": numbers, "invalid_numbers": "skip"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["recipients"] == 9999
    assert body["invalid_numbers"] == [{"input": "12", "reason": "too short to be a phone number"}]


def test_an_oversized_body_gets_413(sandbox, serve):
    from connector import create_app
    from tests.conftest import connector_settings

    api = serve(create_app(connector_settings(sandbox.url, CONNECTOR_MAX_BODY_BYTES=2048)))
    response = api.action("send_sms", {"message": "x" * 4000, "recipients": ["0611111111"]})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_unknown_routes_and_methods_answer_json(api):
    assert api.get("/v1/actions/send_sms").status_code == 405
    missing = api.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_every_response_carries_a_request_id(api):
    response = api.get("/v1/me", headers={"X-Request-Id": "trace-12345678"})
    assert response.headers["X-Request-Id"] == "trace-12345678"
    assert len(api.get("/v1/nothing").json()["error"]["request_id"]) >= 8


@pytest.mark.parametrize("action", MANIFEST.actions, ids=lambda a: a.key)
def test_every_action_has_a_route(api, action):
    response = api.action(action.key, {"__probe__": True})
    assert response.status_code == 422
    assert any(f["path"] == "__probe__" for f in response.json()["error"]["fields"])


@pytest.mark.parametrize("sender", ["My Shop", "AB", "X"])
def test_a_sender_that_public_clients_allow_goes_out_as_given(api, sandbox, sender):
    # One public client allows spaces and another 1 or 2 characters: neither is refused before AllMySMS.
    response = api.action("send_sms", {"message": "Hi", "recipients": ["0611111111"], "sender": sender})
    assert response.status_code == 200, response.text
    assert sandbox.state.campaigns("demo")[-1].sender == sender

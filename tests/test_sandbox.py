"""Tests of the built-in AllMySMS sandbox, called over real HTTP on 127.0.0.1."""

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import defusedxml.ElementTree
import pytest
import requests

from connector.sandbox import (
    DEMO_ACCOUNTS,
    SandboxState,
    create_sandbox_app,
    make_sandbox_server,
)
from connector.sandbox.campaigns import parse_schedule
from connector.sandbox.phones import normalise_number
from connector.sandbox.statuses import ApiError
from tests.conftest import Clock

ACCOUNTS = {
    "alice": {"api_key": "alice-key", "credits": 100000},
    "bob": {"api_key": "bob-key", "credits": 100000},
    "broke": {"api_key": "broke-key", "credits": 0},
    "low": {"api_key": "low-key", "credits": 20},
}
KEYS = {login: spec["api_key"] for login, spec in ACCOUNTS.items()}
FRENCH = "33612345678"
PAST_DATE = "2000-01-01 10:00:00"


@dataclass
class Sandbox:
    url: str
    state: SandboxState
    clock: Clock

    def call(self, method, login="alice", returnformat="json", **params):
        """POST a feed method and return the decoded JSON reply, checking HTTP 200."""
        form = {"login": login, "apiKey": KEYS.get(login, "nope"), "returnformat": returnformat}
        form.update(params)
        response = requests.post(f"{self.url}/http/9.0/{method}/", data=form, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def send(self, method="sendSms", login="alice", **data):
        data.setdefault("MESSAGE", "Hello")
        data.setdefault("SMS", [{"MOBILEPHONE": FRENCH}])
        return self.call(method, login, smsData=json.dumps({"DATA": data}))

    def voice(self, body, auth=("alice", "alice-key")):
        return requests.post(f"{self.url}/voice/send/bulk", json=body, auth=auth, timeout=30)


@pytest.fixture
def sandbox():
    clock = Clock()
    state = SandboxState(ACCOUNTS, clock=clock)
    app = create_sandbox_app(state)
    server = make_sandbox_server(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield Sandbox(f"http://127.0.0.1:{server.server_port}", state, clock)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        # Stops the receipt thread, which re-reads this frozen clock while receipts wait.
        state.close()


# The factory


def test_the_factory_builds_an_app_on_the_demo_accounts():
    app = create_sandbox_app()
    state = app.extensions["allmysms_sandbox"]
    assert state.credits("demo") == 100000
    assert state.credits("broke") == 0
    assert state.credits("low") == 20
    assert state.authenticate("demo", DEMO_ACCOUNTS["demo"]["api_key"])


def test_the_factory_accepts_custom_accounts_but_not_together_with_a_state():
    app = create_sandbox_app(accounts={"me": {"api_key": "k", "credits": 7}})
    assert app.extensions["allmysms_sandbox"].credits("me") == 7
    with pytest.raises(TypeError):
        create_sandbox_app(SandboxState(), accounts={"me": {"api_key": "k", "credits": 7}})


def test_an_account_with_negative_credits_is_refused_at_start():
    with pytest.raises(ValueError):
        SandboxState({"me": {"api_key": "k", "credits": -1}})


# sendSms: success


def test_a_send_to_one_french_number_answers_100_and_debits_15_credits(sandbox):
    reply = sandbox.send(SMS=[{"MOBILEPHONE": "0612345678"}], CLIMSGID="ref-1", TPOA="Shop")
    assert reply["status"] == 100
    assert reply["statusText"] == "Your messages have been sent"
    assert reply["invalidNumbers"] == ""  # one text, as every public example shows it
    assert reply["creditsUsed"] == "15"
    assert reply["smsIds"][0]["phoneNumber"] == FRENCH
    assert sandbox.state.credits("alice") == 100000 - 15
    campaign = sandbox.state.campaign(reply["campaignId"])
    assert campaign.status == "sent"
    assert campaign.client_msg_id == "ref-1"
    assert campaign.sender == "Shop"
    assert [r.sms_id for r in campaign.recipients] == [reply["smsIds"][0]["smsId"]]


def test_counts_in_json_replies_arrive_as_strings(sandbox):
    reply = sandbox.send(SMS=[{"MOBILEPHONE": FRENCH}, {"MOBILEPHONE": "33698765432"}])
    assert reply["credits"] == str(100000 - 30)
    assert reply["nbContacts"] == "2"
    assert reply["nbSms"] == "2"


def test_campaign_and_sms_ids_are_unique(sandbox):
    first = sandbox.send(SMS=[{"MOBILEPHONE": FRENCH}, {"MOBILEPHONE": FRENCH}])
    second = sandbox.send()
    sms_ids = [s["smsId"] for s in first["smsIds"] + second["smsIds"]]
    assert len(set(sms_ids)) == 3
    assert first["campaignId"] != second["campaignId"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("0612345678", "33612345678"),
        ("33612345678", "33612345678"),
        ("+33612345678", "33612345678"),
        ("0033612345678", "33612345678"),
        (" 0612345678 ", "33612345678"),
        ("+4915112345678", "4915112345678"),
        ("004915112345678", "4915112345678"),
    ],
)
def test_accepted_number_formats_are_normalised_to_international_without_plus(raw, expected):
    assert normalise_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "hello",
        "061234567",
        "06123456789",
        "330612345678",
        "3361234567",
        "+0612345678",
        "06 12 34 56 78",
        "+٣٣٦١٢٣٤٥٦٧٨",
        "1234567",
        None,
        33612345678.0,
    ],
)
def test_malformed_numbers_are_refused(raw):
    assert normalise_number(raw) is None


def test_a_send_with_a_future_date_is_scheduled_with_status_101(sandbox):
    reply = sandbox.send(DATE=sandbox.clock.paris(days=1))
    assert reply["status"] == 101
    assert reply["statusText"] == "Your messages have been scheduled"
    campaign = sandbox.state.campaign(reply["campaignId"])
    assert campaign.status == "scheduled"
    assert campaign.scheduled_date == sandbox.clock.paris(days=1)


def test_mixed_valid_and_invalid_numbers_answer_113_and_still_send_the_valid_ones(sandbox):
    reply = sandbox.send(SMS=[{"MOBILEPHONE": FRENCH}, {"MOBILEPHONE": "12"}, {"MOBILEPHONE": "x"}])
    assert reply["status"] == 113
    assert reply["invalidNumbers"] == "12,x"
    assert reply["nbContacts"] == "1"
    assert [s["phoneNumber"] for s in reply["smsIds"]] == [FRENCH]
    assert sandbox.state.campaign(reply["campaignId"]).numbers == (FRENCH,)
    assert sandbox.state.credits("alice") == 100000 - 15


def test_foreign_numbers_cost_20_credits_per_part(sandbox):
    reply = sandbox.send(SMS=[{"MOBILEPHONE": "+4915112345678"}])
    assert reply["creditsUsed"] == "20"


def test_a_long_message_is_priced_per_153_character_part(sandbox):
    reply = sandbox.send(MESSAGE="a" * 161)
    assert reply["nbSms"] == "2"
    assert reply["creditsUsed"] == "30"


def test_a_character_outside_gsm_switches_to_70_character_parts(sandbox):
    assert sandbox.send(MESSAGE="ê" * 70)["nbSms"] == "1"
    assert sandbox.send(MESSAGE="ê" * 71)["nbSms"] == "2"


def test_personalised_messages_are_priced_on_each_recipients_own_text(sandbox):
    reply = sandbox.send(
        MESSAGE="Hi #param_1#, see #PARAM_2#",
        DYNAMIC="2",
        SMS=[
            {"MOBILEPHONE": FRENCH, "PARAM_1": "Al", "PARAM_2": "you"},
            {"MOBILEPHONE": "33698765432", "PARAM_1": "x" * 200, "PARAM_2": 3},
        ],
    )
    assert reply["status"] == 100
    assert reply["nbSms"] == "3"
    assert reply["creditsUsed"] == "45"


def test_the_xml_feed_keeps_a_message_split_in_two_cdata_sections_around_the_end_marker(sandbox):
    feed = (
        "<?xml version='1.0' encoding='UTF-8'?><DATA>"
        "<MESSAGE><![CDATA[Code: a]]]]><![CDATA[>b & <c>]]></MESSAGE><TPOA>Shop</TPOA>"
        "<SMS><MOBILEPHONE>0612345678</MOBILEPHONE></SMS>"
        "<SMS><MOBILEPHONE>33698765432</MOBILEPHONE></SMS></DATA>"
    )
    reply = sandbox.call("sendSms", smsData=feed)
    assert reply["status"] == 100
    assert reply["nbContacts"] == "2"
    assert sandbox.state.campaign(reply["campaignId"]).message == "Code: a]]>b & <c>"


def test_an_xml_feed_carries_personalisation_parameters(sandbox):
    feed = (
        "<DATA><MESSAGE><![CDATA[Hi #param_1#]]></MESSAGE><DYNAMIC>1</DYNAMIC>"
        f"<SMS><MOBILEPHONE>{FRENCH}</MOBILEPHONE><PARAM_1>{'y' * 200}</PARAM_1></SMS></DATA>"
    )
    assert sandbox.call("simulateCampaign", smsData=feed)["nbSms"] == 2


# sendSms: refusals, in the documented order


@pytest.mark.parametrize("login, api_key", [("alice", "wrong"), ("nobody", "alice-key"), ("", "")])
def test_a_wrong_login_or_api_key_answers_102(sandbox, login, api_key):
    form = {"login": login, "apiKey": api_key, "returnformat": "json", "smsData": "{}"}
    reply = requests.post(f"{sandbox.url}/http/9.0/sendSms/", data=form, timeout=5).json()
    assert reply["status"] == 102


def test_missing_credentials_answer_102(sandbox):
    url = f"{sandbox.url}/http/9.0/getInfo/"
    response = requests.post(url, data={"returnformat": "json"}, timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == 102


def test_an_account_without_credit_answers_103(sandbox):
    assert sandbox.send(login="broke")["status"] == 103


def test_an_account_short_of_credit_answers_104_with_needed_and_available(sandbox):
    reply = sandbox.send(login="low", SMS=[{"MOBILEPHONE": FRENCH}, {"MOBILEPHONE": FRENCH}])
    assert reply["status"] == 104
    assert reply["statusText"] == "Not enough credits: 30 needed, 20 available"
    assert sandbox.state.credits("low") == 20
    assert sandbox.state.campaigns("low") == []


@pytest.mark.parametrize("sms_data", [None, "", "   \n"])
def test_a_missing_or_empty_feed_answers_105(sandbox, sms_data):
    params = {} if sms_data is None else {"smsData": sms_data}
    assert sandbox.call("sendSms", **params)["status"] == 105


@pytest.mark.parametrize(
    "sms_data",
    [
        "{not json",
        "<DATA><MESSAGE>unclosed</DATA>",
        "plain text",
        '{"NOTDATA": {}}',
        '{"DATA": "text"}',
        "[1, 2]",
        "{" * 1 + '"DATA":' + "[" * 100000 + "]" * 100000 + "}",
        "<OTHER><MESSAGE>x</MESSAGE></OTHER>",
        '{"DATA": {"MESSAGE": 12, "SMS": [{"MOBILEPHONE": "0612345678"}]}}',
        '{"DATA": {"MESSAGE": "x", "SMS": "0612345678"}}',
        '{"DATA": {"MESSAGE": "x", "SMS": ["0612345678"]}}',
        '{"DATA": {"MESSAGE": "x", "DYNAMIC": "two", "SMS": [{"MOBILEPHONE": "0612345678"}]}}',
    ],
)
def test_an_unparsable_or_malformed_feed_answers_106(sandbox, sms_data):
    reply = sandbox.call("sendSms", smsData=sms_data)
    assert reply["status"] == 106
    assert sandbox.state.campaigns() == []


def test_an_xml_entity_bomb_answers_106_instead_of_expanding(sandbox):
    bomb = '<?xml version="1.0"?><!DOCTYPE DATA [<!ENTITY a "aaaaaaaaaa">'
    for level in "bcdefghij":
        previous = chr(ord(level) - 1)
        bomb += f'<!ENTITY {level} "{("&" + previous + ";") * 10}">'
    bomb += "]><DATA><MESSAGE>&j;</MESSAGE><SMS><MOBILEPHONE>0612345678</MOBILEPHONE></SMS></DATA>"
    assert sandbox.call("sendSms", smsData=bomb)["status"] == 106
    assert sandbox.call("getInfo")["status"] == "Active Account"


def test_even_a_harmless_xml_entity_declaration_is_refused_with_106(sandbox):
    feed = (
        '<?xml version="1.0"?><!DOCTYPE DATA [<!ENTITY shop "Shop">]>'
        "<DATA><MESSAGE>&shop;</MESSAGE><SMS><MOBILEPHONE>0612345678</MOBILEPHONE></SMS></DATA>"
    )
    assert sandbox.call("sendSms", smsData=feed)["status"] == 106


def test_an_xml_external_entity_answers_106_without_reading_the_file(sandbox):
    feed = (
        '<?xml version="1.0"?><!DOCTYPE DATA [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<DATA><MESSAGE>&x;</MESSAGE><SMS><MOBILEPHONE>0612345678</MOBILEPHONE></SMS></DATA>"
    )
    reply = sandbox.call("sendSms", smsData=feed)
    assert reply["status"] == 106
    assert "root:" not in json.dumps(reply)


@pytest.mark.parametrize("data", [{"SMS": []}, {"SMS": None}, {"SMS": ""}])
def test_a_feed_without_recipients_answers_107(sandbox, data):
    data["MESSAGE"] = "Hello"
    reply = sandbox.call("sendSms", smsData=json.dumps({"DATA": data}))
    assert reply["status"] == 107


def test_a_feed_without_any_sms_element_answers_107(sandbox):
    assert sandbox.call("sendSms", smsData="<DATA><MESSAGE>Hi</MESSAGE></DATA>")["status"] == 107


@pytest.mark.parametrize("message", ["", "   ", None])
def test_an_empty_message_answers_110(sandbox, message):
    assert sandbox.send(MESSAGE=message)["status"] == 110


def test_a_message_of_641_characters_answers_111_while_640_pass(sandbox):
    assert sandbox.send(MESSAGE="a" * 640)["status"] == 100
    assert sandbox.send(MESSAGE="a" * 641)["status"] == 111


def test_a_feed_with_only_invalid_numbers_answers_114(sandbox):
    reply = sandbox.send(SMS=[{"MOBILEPHONE": "12"}, {"MOBILEPHONE": "hello"}])
    assert reply["status"] == 114
    assert sandbox.state.credits("alice") == 100000


@pytest.mark.parametrize(
    "date",
    [
        "tomorrow",
        "2099-13-01 10:00:00",
        "2099-02-30 10:00:00",
        "2099-01-01T10:00:00",
        "2099-1-1 10:00:00",
    ],
)
def test_a_garbage_date_answers_115(sandbox, date):
    assert sandbox.send(DATE=date)["status"] == 115


def test_a_date_in_the_past_answers_115(sandbox):
    assert sandbox.send(DATE=PAST_DATE)["status"] == 115
    assert sandbox.send(DATE=sandbox.clock.paris(seconds=-1))["status"] == 115


def test_a_date_skipped_by_the_spring_clock_change_is_invalid():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ApiError) as refused:
        parse_schedule("2030-03-31 02:30:00", now)
    assert refused.value.status == 115
    assert parse_schedule("2030-03-31 03:30:00", now).utcoffset() == timedelta(hours=2)


def test_a_link_longer_than_80_characters_answers_117_while_80_pass(sandbox):
    link = "https://example.com/" + "a" * 60
    assert len(link) == 80
    assert sandbox.send(MESSAGE=f"Go {link} now")["status"] == 100
    assert sandbox.send(MESSAGE=f"Go {link}b now")["status"] == 117


def test_a_long_link_coming_from_a_parameter_answers_117(sandbox):
    reply = sandbox.send(
        MESSAGE="Go #param_1#",
        DYNAMIC=1,
        SMS=[{"MOBILEPHONE": FRENCH, "PARAM_1": "http://x.fr/" + "a" * 80}],
    )
    assert reply["status"] == 117


def test_checks_run_in_the_documented_order(sandbox):
    # Empty message (110) wins over a bad date (115), which wins over no recipients (107).
    assert sandbox.send(MESSAGE="", DATE="garbage", SMS=[])["status"] == 110
    assert sandbox.send(DATE="garbage", SMS=[])["status"] == 115
    # Invalid numbers (114) are reported before credit (103).
    assert sandbox.send(login="broke", SMS=[{"MOBILEPHONE": "1"}])["status"] == 114


# Reply format


def test_the_reply_is_xml_when_returnformat_is_absent(sandbox):
    form = {
        "login": "alice",
        "apiKey": "alice-key",
        "smsData": json.dumps({"DATA": {"MESSAGE": "Hi", "SMS": [{"MOBILEPHONE": FRENCH}, {"MOBILEPHONE": "x"}]}}),
    }
    response = requests.post(f"{sandbox.url}/http/9.0/sendSms/", data=form, timeout=5)
    assert response.headers["Content-Type"].startswith("application/xml")
    root = defusedxml.ElementTree.fromstring(response.content)
    assert root.tag == "response"
    assert root.findtext("status") == "113"
    assert root.findtext("credits") == str(100000 - 15)
    assert root.findtext("smsIds/sms/phoneNumber") == FRENCH
    assert root.findtext("invalidNumbers") == "x"


def test_an_error_reply_is_xml_too_when_returnformat_is_not_json(sandbox):
    response = requests.get(
        f"{sandbox.url}/http/9.0/getInfo",
        params={"login": "alice", "apiKey": "bad", "returnformat": "xml"},
        timeout=5,
    )
    root = defusedxml.ElementTree.fromstring(response.content)
    assert root.findtext("status") == "102"


def test_methods_answer_with_or_without_trailing_slash_and_by_get(sandbox):
    params = {"login": "alice", "apiKey": "alice-key", "returnformat": "json"}
    for path in ("/http/9.0/getInfo/", "/http/9.0/getInfo"):
        assert requests.post(sandbox.url + path, data=params, timeout=5).json()["status"] == "Active Account"
        assert requests.get(sandbox.url + path, params=params, timeout=5).json()["status"] == "Active Account"


def test_an_unknown_method_answers_http_404(sandbox):
    url = f"{sandbox.url}/http/9.0/sendFax/"
    response = requests.post(url, data={"login": "alice"}, timeout=5)
    assert response.status_code == 404
    assert response.json() == {"status": 404, "statusText": "Unknown method"}


# simulateCampaign


def test_simulate_campaign_reports_the_cost_without_debiting_or_storing(sandbox):
    numbers = [FRENCH, "+4915112345678", "bad"]
    reply = sandbox.send("simulateCampaign", SMS=[{"MOBILEPHONE": n} for n in numbers])
    assert reply["status"] == 100
    assert reply["nbCredits"] == 35
    assert reply["nbContacts"] == 2
    assert reply["nbSms"] == 2
    assert reply["invalidNumbers"] == "bad"
    assert sandbox.state.credits("alice") == 100000
    assert sandbox.state.campaigns() == []


def test_sending_debits_credits_while_simulating_the_same_feed_does_not(sandbox):
    sandbox.send("simulateCampaign")
    assert sandbox.state.credits("alice") == 100000
    sandbox.send("sendSms")
    assert sandbox.state.credits("alice") == 100000 - 15


def test_simulate_campaign_answers_100_even_when_the_account_could_not_pay(sandbox):
    reply = sandbox.send("simulateCampaign", login="broke")
    assert reply["status"] == 100
    assert reply["nbCredits"] == 15


def test_simulate_campaign_validates_the_feed_like_a_send(sandbox):
    assert sandbox.send("simulateCampaign", MESSAGE="")["status"] == 110
    assert sandbox.send("simulateCampaign", DATE=PAST_DATE)["status"] == 115


# Other feed methods


def test_get_info_describes_the_account(sandbox):
    reply = sandbox.call("getInfo")
    assert reply == {
        "status": "Active Account",
        "credits": "100000",
        "firstName": "Demo",
        "lastName": "User",
        "society": "AllMySMS Sandbox",
        "email": "alice@example.com",
        "apiKey": "alice-key",  # echoed back, as the public example of getInfo shows
    }


def test_delete_campaign_cancels_a_scheduled_campaign_and_refunds_it(sandbox):
    sent = sandbox.send(DATE=sandbox.clock.paris(hours=2), SMS=[{"MOBILEPHONE": FRENCH}] * 3)
    assert sandbox.state.credits("alice") == 100000 - 45
    reply = sandbox.call("deleteCampaign", campId=sent["campaignId"])
    assert reply == {"status": "OK"}  # a word, as public clients show it
    assert sandbox.state.credits("alice") == 100000
    assert sandbox.state.campaign(sent["campaignId"]).status == "cancelled"


def test_delete_campaign_answers_119_for_a_campaign_already_sent(sandbox):
    sent = sandbox.send()
    reply = sandbox.call("deleteCampaign", campId=sent["campaignId"])
    assert reply["status"] == 119
    assert sandbox.state.credits("alice") == 100000 - 15


def test_delete_campaign_answers_119_once_the_scheduled_date_has_passed(sandbox):
    sent = sandbox.send(DATE=sandbox.clock.paris(minutes=5))
    sandbox.clock.advance(minutes=6)
    assert sandbox.call("deleteCampaign", campId=sent["campaignId"])["status"] == 119
    assert sandbox.state.campaign(sent["campaignId"]).status == "sent"


def test_delete_campaign_answers_119_for_an_unknown_or_foreign_or_cancelled_campaign(sandbox):
    scheduled = sandbox.send(DATE=sandbox.clock.paris(days=1))["campaignId"]
    assert sandbox.call("deleteCampaign", campId="no-such-campaign")["status"] == 119
    assert sandbox.call("deleteCampaign")["status"] == 119
    assert sandbox.call("deleteCampaign", login="bob", campId=scheduled)["status"] == 119
    assert sandbox.call("deleteCampaign", campId=scheduled)["status"] == "OK"
    assert sandbox.call("deleteCampaign", campId=scheduled)["status"] == 119
    assert sandbox.state.credits("alice") == 100000


def test_get_acks_lists_the_receipts_recorded_for_the_campaign(sandbox):
    sent = sandbox.send(SMS=[{"MOBILEPHONE": FRENCH}, {"MOBILEPHONE": "33698765432"}])
    # The data alone, with no status: only errors carry one.
    assert sandbox.call("getAcks", campId=sent["campaignId"]) == {"acks": [], "cliMsgId": ""}
    sms_id = sent["smsIds"][1]["smsId"]
    sandbox.state.record_ack(sms_id, 1, "Delivered", "2026-01-02 10:00:00")
    reply = sandbox.call("getAcks", campId=sent["campaignId"])
    assert reply["acks"] == [
        {
            "phoneNumber": "33698765432",
            "statut": "1",
            "comment": "Delivered",
            "receptionDate": "2026-01-02 10:00:00",
        }
    ]
    assert sandbox.call("getAcks", login="bob", campId=sent["campaignId"])["status"] == 119


def test_get_ack_by_sms_id_returns_one_receipt_or_119(sandbox):
    sms_id = sandbox.send()["smsIds"][0]["smsId"]
    assert sandbox.call("getAckBySmsId", smsId=sms_id)["status"] == 119
    sandbox.state.record_ack(sms_id, 2, "Not delivered")
    reply = sandbox.call("getAckBySmsId", smsId=sms_id)
    assert "status" not in reply
    assert reply["statut"] == "2"
    assert reply["phoneNumber"] == FRENCH
    assert sandbox.call("getAckBySmsId", login="bob", smsId=sms_id)["status"] == 119
    assert sandbox.call("getAckBySmsId", smsId=sms_id + "9")["status"] == 119


def test_recording_an_ack_for_an_unknown_sms_fails_loudly(sandbox):
    with pytest.raises(KeyError):
        sandbox.state.record_ack("nope-1", 1)


def test_get_pulls_returns_each_reply_once_and_respects_the_limit(sandbox):
    campaign = sandbox.send()
    for text in ("one", "two", "three"):
        sandbox.state.add_reply("alice", "0612345678", text, sms_id=campaign["smsIds"][0]["smsId"])
    sandbox.state.add_reply("bob", FRENCH, "not for alice")
    first = sandbox.call("getPulls", limit="2")
    assert [mo["message"] for mo in first["mos"]] == ["one", "two"]
    assert first["mos"][0]["campaignId"] == campaign["campaignId"]
    assert first["mos"][0]["phoneNumber"] == FRENCH
    assert set(first["mos"][0]) == {"phoneNumber", "id", "campaignId", "message", "receptionDate"}
    assert [mo["message"] for mo in sandbox.call("getPulls")["mos"]] == ["three"]
    assert sandbox.call("getPulls")["mos"] == []


@pytest.mark.parametrize("limit", ["0", "-1", "ten", "9" * 40])
def test_get_pulls_with_a_bad_limit_answers_106(sandbox, limit):
    assert sandbox.call("getPulls", limit=limit)["status"] == 106


def test_get_blacklist_lists_the_accounts_stop_entries(sandbox):
    assert sandbox.call("getBlacklist")["blacklist"] == []
    sandbox.state.add_blacklist("alice", "+33612345678", "stop", "2026-01-02 10:00:00")
    reply = sandbox.call("getBlacklist")
    assert "status" not in reply
    assert reply["blacklist"] == [{"phoneNumber": FRENCH, "comment": "stop", "receptionDate": "2026-01-02 10:00:00"}]
    assert sandbox.call("getBlacklist", login="bob")["blacklist"] == []


@pytest.mark.parametrize("code, iso_code, credits", [("FR", "FR", 15), ("fr", "FR", 15), ("de", "DE", 20)])
def test_credits_by_country_are_15_for_france_and_20_elsewhere(sandbox, code, iso_code, credits):
    reply = sandbox.call("getCreditsByCountryIsoCode", countryIsoCode=code)
    assert (reply["isoCode"], reply["nbCredits"]) == (iso_code, str(credits))


@pytest.mark.parametrize("code", ["", "FRA", "1A", "é"])
def test_credits_by_country_answers_106_for_a_garbage_code(sandbox, code):
    assert sandbox.call("getCreditsByCountryIsoCode", countryIsoCode=code)["status"] == 106


# Voice (REST)

AUDIO = "https://cdn.example.com/messages/hello.mp3"


def test_a_voice_drop_answers_201_and_costs_30_credits_per_recipient(sandbox):
    response = sandbox.voice(
        {
            "to": ["0612345678", "33698765432", "bad"],
            "type": "directdeposit",
            "url": AUDIO,
            "from": "0140000000",
            "campaignName": "Spring",
        }
    )
    assert response.status_code == 201
    reply = response.json()
    assert reply["code"] == 100
    # Money, not credits: 30 credits a message at 0.0063 euros each.
    assert reply["cost"] == 0.38
    assert reply["balance"] == round((100000 - 60) * 0.0063, 2)
    assert reply["invalidNumbers"] == "bad"
    assert [s["phoneNumber"] for s in reply["smsIds"]] == [FRENCH, "33698765432"]
    campaign = sandbox.state.campaign(reply["campaignId"])
    stored = (campaign.kind, campaign.message, campaign.sender, campaign.name)
    assert stored == ("voice", AUDIO, "0140000000", "Spring")


def test_a_dated_tts_voice_message_answers_101_and_can_be_deleted_with_a_refund(sandbox):
    date = sandbox.clock.paris(days=1)
    response = sandbox.voice({"to": [FRENCH], "type": "tts", "text": "Bonjour", "date": date})
    assert response.status_code == 201
    assert response.json()["code"] == 101
    assert sandbox.state.credits("alice") == 100000 - 30
    reply = sandbox.call("deleteCampaign", campId=response.json()["campaignId"])
    assert reply["status"] == "OK"
    assert sandbox.state.credits("alice") == 100000


def test_a_simulated_voice_send_answers_200_without_debit_or_campaign(sandbox):
    body = {"to": [FRENCH, FRENCH], "type": "tts", "text": "Hi", "simulate": 1}
    response = sandbox.voice(body)
    assert response.status_code == 200
    assert response.json()["code"] == 100
    assert response.json()["cost"] == 0.38
    assert response.json()["balance"] == 630.0
    assert sandbox.state.credits("alice") == 100000
    assert sandbox.state.campaigns() == []


@pytest.mark.parametrize("auth", [None, ("alice", "wrong"), ("nobody", "alice-key")])
def test_a_voice_send_with_bad_credentials_answers_401_with_code_102(sandbox, auth):
    response = sandbox.voice({"to": [FRENCH], "type": "tts", "text": "Hi"}, auth=auth)
    assert response.status_code == 401
    assert response.json()["code"] == 102


@pytest.mark.parametrize(
    "body, field",
    [
        ([FRENCH], "body"),
        ({"type": "tts", "text": "Hi"}, "to"),
        ({"to": [], "type": "tts", "text": "Hi"}, "to"),
        ({"to": FRENCH, "type": "tts", "text": "Hi"}, "to"),
        ({"to": [FRENCH], "type": "sms", "text": "Hi"}, "type"),
        ({"to": [FRENCH], "type": "directdeposit"}, "url"),
        ({"to": [FRENCH], "type": "directdeposit", "url": "file:///etc/a.mp3"}, "url"),
        ({"to": [FRENCH], "type": "tts", "text": "  "}, "text"),
        ({"to": [FRENCH], "type": "tts", "text": "Hi", "simulate": "yes"}, "simulate"),
        ({"to": [FRENCH], "type": "tts", "text": "Hi", "simulate": 2}, "simulate"),
        ({"to": [FRENCH], "type": "tts", "text": "Hi", "from": "nope"}, "from"),
        ({"to": [FRENCH], "type": "tts", "text": "Hi", "from": "0612345678"}, "from"),
        ({"to": [FRENCH], "type": "tts", "text": "Hi", "from": "33123456789"}, "from"),
        ({"to": [FRENCH], "type": "tts", "text": "Hi", "date": 5}, "date"),
    ],
)
def test_an_invalid_voice_body_answers_400_naming_the_field(sandbox, body, field):
    response = sandbox.voice(body)
    assert response.status_code == 400
    assert response.json()["code"] == 106
    assert f"'{field}'" in response.json()["description"]


def test_a_voice_body_that_is_not_json_answers_400_with_code_106(sandbox):
    url = f"{sandbox.url}/voice/send/bulk"
    response = requests.post(url, data=b"\xff{", auth=("alice", "alice-key"), timeout=5)
    assert response.status_code == 400
    assert response.json()["code"] == 106


def test_a_voice_send_without_enough_credit_answers_402(sandbox):
    body = {"to": [FRENCH], "type": "tts", "text": "Hi"}
    broke = sandbox.voice(body, auth=("broke", "broke-key"))
    low = sandbox.voice(body, auth=("low", "low-key"))
    assert (broke.status_code, broke.json()["code"]) == (402, 103)
    assert (low.status_code, low.json()["code"]) == (402, 104)
    assert "30 needed, 20 available" in low.json()["description"]


def test_a_voice_send_without_a_valid_number_answers_400_with_code_114(sandbox):
    response = sandbox.voice({"to": ["12", "x"], "type": "tts", "text": "Hi"})
    assert (response.status_code, response.json()["code"]) == (400, 114)


def test_a_voice_send_dated_in_the_past_answers_400_with_code_115(sandbox):
    response = sandbox.voice({"to": [FRENCH], "type": "tts", "text": "Hi", "date": PAST_DATE})
    assert (response.status_code, response.json()["code"]) == (400, 115)


# Robustness


@pytest.mark.parametrize(
    "params",
    [
        {"smsData": "\x00\x01"},
        {"smsData": "<"},
        {"smsData": "{}"},
        {"smsData": '{"DATA": {"MESSAGE": ["x"], "SMS": [{}]}}'},
        {"smsData": '{"DATA": {"MESSAGE": "x", "DATE": 5, "SMS": [{"MOBILEPHONE": {"a": 1}}]}}'},
        {"smsData": '{"DATA": {"MESSAGE": "{0} {x} #param_1#", "DYNAMIC": 1, "SMS": [{"MOBILEPHONE": "0612345678"}]}}'},
        {"smsData": "<DATA><SMS/><MESSAGE>x</MESSAGE></DATA>"},
        {"smsData": "1e999999"},
    ],
)
def test_garbage_never_makes_the_sandbox_answer_500(sandbox, params):
    for method in ("sendSms", "simulateCampaign"):
        reply = sandbox.call(method, **params)
        assert isinstance(reply["status"], int)
    for method in ("getAcks", "getAckBySmsId", "deleteCampaign"):
        unknown = "x-99999999999999"
        assert sandbox.call(method, campId=unknown, smsId=unknown)["status"] == 119


def test_control_characters_in_a_stored_reply_still_give_well_formed_xml(sandbox):
    sandbox.state.add_reply("alice", FRENCH, "bell \x07 here")
    url = f"{sandbox.url}/http/9.0/getPulls/"
    response = requests.post(url, data={"login": "alice", "apiKey": "alice-key"}, timeout=5)
    root = defusedxml.ElementTree.fromstring(response.content)
    assert root.findtext("mos/mo/message") == "bell  here"


def test_concurrent_sends_never_spend_more_credits_than_the_account_holds(sandbox):
    sandbox.state.set_credits("bob", 150)
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: sandbox.send(login="bob")["status"], range(20)))
    assert replies.count(100) == 10
    assert replies.count(104) + replies.count(103) == 10
    assert sandbox.state.credits("bob") == 0


def test_a_100000_recipient_feed_is_accepted_in_one_call(sandbox):
    sandbox.state.set_credits("alice", 2_000_000)
    recipients = [{"MOBILEPHONE": f"06{i:08d}"} for i in range(100000)]
    reply = sandbox.send(SMS=recipients)
    assert reply["status"] == 100
    assert reply["nbContacts"] == "100000"
    assert len(reply["smsIds"]) == 100000
    assert reply["credits"] == str(2_000_000 - 1_500_000)
    assert len({s["smsId"] for s in reply["smsIds"]}) == 100000


def test_logs_carry_neither_api_keys_nor_phone_numbers_nor_message_text(sandbox, caplog):
    caplog.set_level(logging.DEBUG, logger="connector")
    numbers = [{"MOBILEPHONE": "0612345678"}, {"MOBILEPHONE": "0699"}]
    sandbox.send(MESSAGE="secret text", SMS=numbers)
    sandbox.voice({"to": [FRENCH], "type": "tts", "text": "secret text"})
    assert "sendSms answered 113" in caplog.text
    for secret in ("alice-key", "12345678", "0699", "secret text"):
        assert secret not in caplog.text


def test_the_access_log_cuts_query_strings_out_so_get_requests_leak_no_key(sandbox, caplog):
    caplog.set_level(logging.INFO, logger="werkzeug")
    params = {"login": "alice", "apiKey": "alice-key", "returnformat": "json"}
    assert requests.get(f"{sandbox.url}/http/9.0/getInfo/", params=params, timeout=5).ok
    assert "GET /http/9.0/getInfo/?[redacted]" in caplog.text
    assert "alice-key" not in caplog.text


def test_make_sandbox_server_serves_the_demo_accounts():
    server = make_sandbox_server(create_sandbox_app())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        params = {"login": "demo", "apiKey": "demo-api-key", "returnformat": "json"}
        url = f"http://127.0.0.1:{server.server_port}/http/9.0/getInfo/"
        assert requests.post(url, data=params, timeout=5).json()["credits"] == "100000"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


# --- every documented status an input can provoke ------------------------------------------------


@pytest.mark.parametrize(
    "data, status",
    [
        ({"CLIENT": "alice"}, 108),  # the client code must be the account's, in capitals
        ({"SMS": [{"PARAM_1": "x"}]}, 109),  # an SMS entry without its MOBILEPHONE tag
        ({"MESSAGE": "Hi #param_1#", "DYNAMIC": "1", "SMS": [{"MOBILEPHONE": FRENCH}]}, 112),  # PARAM_1 missing
        ({"MASTERACCOUNT": "nobody"}, 118),
        ({"TPOA": "Shop-Online"}, 106),
        ({"TPOA": "1Shop"}, 106),
        ({"TPOA": "ShopOnline12"}, 106),
    ],
    ids=[
        "108 client code",
        "109 no phone tag",
        "112 no param tag",
        "118 master account",
        "106 sender punctuation",
        "106 sender digit first",
        "106 sender too long",
    ],
)
def test_each_documented_refusal_is_answered_to_the_input_that_provokes_it(sandbox, data, status):
    reply = sandbox.send(**data)
    assert reply["status"] == status, reply
    assert reply["statusText"]
    assert sandbox.state.campaigns("alice") == []


@pytest.mark.parametrize("data", [{"CLIENT": "ALICE"}, {"MASTERACCOUNT": "bob"}, {"TPOA": "My Shop"}, {"TPOA": "AB"}])
def test_a_right_client_code_master_account_or_sender_is_sent(sandbox, data):
    assert sandbox.send(**data)["status"] == 100


def test_a_placeholder_in_capitals_is_sent_as_written(sandbox):
    # Only #param_1# in lower case is documented: 149 characters as written are one SMS; with the
    # value put in, 199 would be two.
    reply = sandbox.send(
        MESSAGE="x" * 140 + "#PARAM_1#", DYNAMIC="1", SMS=[{"MOBILEPHONE": FRENCH, "PARAM_1": "y" * 59}]
    )
    assert reply["status"] == 100 and reply["nbSms"] == "1"
    reply = sandbox.send(
        MESSAGE="x" * 140 + "#param_1#", DYNAMIC="1", SMS=[{"MOBILEPHONE": FRENCH, "PARAM_1": "y" * 59}]
    )
    assert reply["nbSms"] == "2"


def test_a_voice_drop_takes_an_audio_url_without_a_file_extension_and_simulate_as_an_integer(sandbox):
    body = {
        "to": [FRENCH],
        "type": "directdeposit",
        "url": "https://cdn.example.com/audio?id=42",
        "from": "0912345678",
        "simulate": 0,
    }
    response = sandbox.voice(body)
    assert response.status_code == 201, response.text
    assert response.json()["invalidNumbers"] == ""
    assert sandbox.state.campaigns("alice")[-1].sender == "0912345678"

"""The connector and the built-in sandbox against AllMySMS replies as public sources show them.

tests/contract/ holds each reply with the source it was recorded from. The connector must read every
one of them as AllMySMS meant it (a success, or the refusal it carries), and the sandbox must answer in
the same shapes, so that a test passing on the sandbox says something about the real API.
"""

from __future__ import annotations

import json

import pytest
import requests

from connector.sandbox import SandboxState, create_sandbox_app
from connector.sending import feeds, outcomes
from tests.conftest import DEMO, LoopbackServer, Scripted
from tests.contract import fixtures

# The methods the connector calls, by the method in the URL, as the fixtures name them (populateList and
# deleteContacts go through createList, and read its replies the same way).
CALLED = {**{m.feed_name: m for m in outcomes.METHODS.values()}, "voice/send/bulk": outcomes.SEND_VOICE}
# Called, but no public source shows what they answer.
UNRECORDED = {"sendEmail"}
REPLIES = [f for f in fixtures.replies() if f.method in CALLED]


def _reply(fixture) -> dict:
    return feeds.read_reply(fixture.body(), fixture.content_type or "")


@pytest.mark.parametrize("fixture", REPLIES, ids=[f.name for f in REPLIES])
def test_every_recorded_reply_of_a_method_we_call_is_read_as_allmysms_meant_it(fixture):
    reply = _reply(fixture)
    ending = outcomes.classify(fixture.http_status, reply, CALLED[fixture.method])
    refusal = outcomes.status_of(reply) in outcomes.STATUSES
    assert ending == ("refused" if refusal else "success"), fixture.source


def test_the_recorded_replies_cover_every_method_of_the_table():
    assert {f.method for f in REPLIES} == set(CALLED) - UNRECORDED


# --- the actions, on an upstream answering exactly what the sources show --------------------------


def _play(scripted, *names):
    for name in names:
        fixture = fixtures.reply(name)
        scripted.script(
            Scripted(
                status=fixture.http_status,
                body=fixture.body(),
                headers={"Content-Type": fixture.content_type or "application/json"},
            )
        )


def test_a_send_answered_as_recorded_gives_its_campaign_messages_and_credits(scripted, through):
    _play(scripted, "getInfo.active", "sendSms.sent")
    response = through().action(
        "send_sms", {"message": "Bonjour", "recipients": ["0612345678"]}, headers={"Idempotency-Key": "contract-send"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["campaign_id"], body["credits_left"], body["credits_used"]) == (
        "sent",
        "xxxxxxxxxxx",
        340,
        15,
    )
    assert body["sms_ids"] == [{"phone_number": "+33612345678", "sms_id": "330792bd-8e0b-11e5-bf51-0025907cd72e"}]
    assert body["invalid_numbers"] == []


def test_a_send_answered_101_is_reported_scheduled(scripted, through):
    _play(scripted, "sendSms.scheduled")
    response = through().action("send_sms", {"message": "Bonjour", "recipients": ["0612345678"]})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "scheduled"


def test_a_cancel_answered_ok_in_words_is_cancelled(scripted, through):
    _play(scripted, "deleteCampaign.ok")
    response = through().action("cancel_scheduled", {"campaign_id": "5012875"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert scripted.requests[-1]["form"]["campId"] == "5012875"


def test_the_account_answered_as_recorded_never_shows_the_api_key_it_echoes(scripted, through):
    _play(scripted, "getInfo.active")
    response = through().action("get_account", {})
    assert response.status_code == 200, response.text
    assert response.json()["credits"] == 1847 and response.json()["company"] == "allmysms.com"
    assert "vikmakey" not in response.text


def test_an_estimate_answered_as_recorded_gives_its_figures(scripted, through):
    _play(scripted, "simulateCampaign.ok")
    response = through().action("estimate_sms", {"message": "Bonjour", "recipients": ["0612345678"]})
    assert response.status_code == 200, response.text
    assert (response.json()["credits"], response.json()["sms_parts"]) == (45, 3)


def test_a_voice_send_answered_as_recorded_keeps_its_cost_and_balance_in_money(scripted, through):
    _play(scripted, "voice.sent")
    response = through().action(
        "send_voice",
        {
            "recipients": ["0612345678", "0612345679"],
            "audio_url": "https://mon-app.netlify.app/api/audio/abc123",
            "sender": "0123456789",
        },
    )
    assert response.status_code == 200, response.text
    assert (response.json()["cost"], response.json()["balance"]) == (0.38, 2.43)
    assert scripted.requests[-1]["json"]["from"] == "0123456789"


def test_the_opt_out_list_answered_without_a_status_is_polled_with_one_event_per_entry(scripted, through):
    _play(scripted, "getInfo.active", "getBlacklist.two_entries")
    response = through().get("/v1/triggers/opt_out_received/events")
    assert response.status_code == 200, response.text
    events = response.json()
    assert [e["data"]["phone_number"] for e in events] == ["+33612345679", "+33612345678"]
    assert len({e["id"] for e in events}) == 2


@pytest.mark.parametrize(
    "name, code",
    [
        ("sendSms.status_102_bad_credentials", "invalid_credentials"),
        ("sendSms.status_103_no_credit", "no_credit"),
        ("sendSms.status_104_not_enough_credit", "insufficient_credit"),
        ("sendSms.status_114_no_valid_number", "no_valid_number"),
    ],
)
def test_a_recorded_refusal_reaches_the_caller_with_its_code(scripted, through, name, code):
    _play(scripted, name)
    response = through().action("send_sms", {"message": "Bonjour", "recipients": ["0612345678"]})
    assert response.json()["error"]["code"] == code


# --- the sandbox answers in the recorded shapes -----------------------------------------------------


def _shape(value):
    """What a reply looks like without its values: keys, nesting and JSON types."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}[type(value)]


def _fits(answer, recorded, where="reply"):
    """Problems of ``answer`` against one recorded shape: a key missing or of another type."""
    if isinstance(recorded, dict):
        if not isinstance(answer, dict):
            return [f"{where} is not an object"]
        problems = [f"{where}.{key} is missing" for key in recorded if key not in answer]
        return problems + [
            p for key in recorded if key in answer for p in _fits(answer[key], recorded[key], f"{where}.{key}")
        ]
    if isinstance(recorded, list):
        if not isinstance(answer, list):
            return [f"{where} is not a list"]
        return _fits(answer[0], recorded[0], f"{where}[0]") if recorded and answer else []
    if recorded == "number" and answer in ("integer", "number"):
        return []
    return [] if answer == recorded else [f"{where} is {answer}, recorded as {recorded}"]


def _keys(shape, where="reply") -> set[str]:
    if isinstance(shape, dict):
        return {f"{where}.{k}" for k in shape} | {p for k, v in shape.items() for p in _keys(v, f"{where}.{k}")}
    if isinstance(shape, list) and shape:
        return _keys(shape[0], f"{where}[0]")
    return set()


@pytest.fixture(scope="module")
def live_sandbox():
    state = SandboxState()
    server = LoopbackServer(create_sandbox_app(state))
    yield server.url, state
    server.stop()
    state.close()


def _feed(url, method, **params):
    form = {"login": DEMO[0], "apiKey": DEMO[1], "returnformat": "json", **params}
    return requests.post(f"{url}/http/9.0/{method}/", data=form, timeout=10).json()


def _sms_data(**data):
    return json.dumps({"DATA": {"MESSAGE": "Bonjour", "SMS": [{"MOBILEPHONE": "33612345678"}], **data}})


def _data(**data):
    return json.dumps({"DATA": data})


def _sandbox_answers(url, state):
    """The sandbox's answer to an input like each recorded reply's, by fixture name."""
    sent = _feed(url, "sendSms", smsData=_sms_data(CLIMSGID="ref-1"))
    sms_id = sent["smsIds"][0]["smsId"]
    state.record_ack(sms_id, 1, "Delivered")
    state.add_blacklist("demo", "33612345678", "stop")
    state.add_blacklist("demo", "33612345679", "manual unsubscribe")
    state.add_reply("demo", "33612345678", "Réponse 1", sms_id=sms_id)
    scheduled = _feed(url, "sendSms", smsData=_sms_data(DATE="2099-01-01 10:00:00"))
    mms = _feed(
        url,
        "sendMms",
        mmsData=_data(MSGCLASS=1, IMAGE="https://example.com/a.jpg", MMS=[{"MOBILEPHONE": "0612345678"}]),
    )
    created = _feed(url, "createList", listData=_data(LISTNAME="clients", LOCKED="0", STRUCTURE=[{"FIELDNAME": "Nom"}]))
    contacts = [{"MOBILEPHONE": "33612345678", "Nom": "Michel"}, {"MOBILEPHONE": "1"}]
    populated = _feed(url, "createList", populateData=_data(LISTNAME="clients", CONTACTS=contacts))
    deleted = _feed(url, "createList", deleteData=_data(LISTNAME="clients", CONTACTS=contacts[:1]))
    voice = requests.post(
        f"{url}/voice/send/bulk",
        auth=DEMO,
        timeout=10,
        json={"to": ["33612345678"], "from": "0123456789", "type": "directdeposit", "url": "https://example.com/a"},
    )
    return {
        "sendSms.sent": sent,
        "sendSms.scheduled": scheduled,
        "simulateCampaign.ok": _feed(url, "simulateCampaign", smsData=_sms_data()),
        "getInfo.active": _feed(url, "getInfo"),
        "deleteCampaign.ok": _feed(url, "deleteCampaign", campId=scheduled["campaignId"]),
        "getAcks.statut": _feed(url, "getAcks", campId=sent["campaignId"]),
        "getAckBySmsId.one": _feed(url, "getAckBySmsId", smsId=sms_id),
        "getPulls.two": _feed(url, "getPulls"),
        "getPull.two": _feed(url, "getPull", campId=sent["campaignId"]),
        "sendMms.sent": mms,
        "createList.ok": created,
        "createList.populate": populated,
        "createList.delete_contacts": deleted,
        "getLists.two": _feed(url, "getLists"),
        "getBlacklist.two_entries": _feed(url, "getBlacklist"),
        "getCreditsByCountryIsoCode.fr": _feed(url, "getCreditsByCountryIsoCode", countryIsoCode="FR"),
        "sendSms.status_102_bad_credentials": _feed(url, "sendSms", apiKey="wrong", smsData=_sms_data()),
        "sendSms.status_114_no_valid_number": _feed(url, "sendSms", smsData=_sms_data(SMS=[{"MOBILEPHONE": "1"}])),
        "sendSms.status_115_invalid_date": _feed(url, "sendSms", smsData=_sms_data(DATE="2000-01-01 10:00:00")),
        "voice.sent": voice.json(),
    }


def test_the_sandbox_answers_every_recorded_shape_with_the_same_keys_and_types(live_sandbox):
    answers = _sandbox_answers(*live_sandbox)
    problems = []
    for name, answer in answers.items():
        fixture = fixtures.reply(name)
        problems += [f"{name}: {p}" for p in _fits(_shape(answer), _shape(fixture.reply))]
        # Nothing the sources never show for this method: its recorded replies together say what exists.
        known = set().union(*(_keys(_shape(f.reply)) for f in fixtures.replies(fixture.method) if f.has_json_reply))
        problems += [
            f"{name}: {key} is in no recorded reply of {fixture.method}"
            for key in sorted(_keys(_shape(answer)) - known)
        ]
    assert problems == []


# Every documented status, and the input that makes the sandbox answer it (the "low" account has 20 credits,
# "broke" none; DEMO is the default account).
_PROVOKED = {
    102: ("demo", {"apiKey": "wrong"}, {}),
    103: ("broke", {}, {}),
    104: ("low", {}, {"SMS": [{"MOBILEPHONE": "33612345678"}, {"MOBILEPHONE": "33612345679"}]}),
    105: ("demo", {"smsData": ""}, None),
    106: ("demo", {"smsData": "neither json nor xml"}, None),
    107: ("demo", {}, {"SMS": []}),
    108: ("demo", {}, {"CLIENT": "wrong"}),
    109: ("demo", {}, {"SMS": [{"PARAM_1": "x"}]}),
    110: ("demo", {}, {"MESSAGE": " "}),
    111: ("demo", {}, {"MESSAGE": "x" * 641}),
    112: ("demo", {}, {"MESSAGE": "#param_1#", "DYNAMIC": "1"}),
    113: ("demo", {}, {"SMS": [{"MOBILEPHONE": "33612345678"}, {"MOBILEPHONE": "12"}]}),
    114: ("demo", {}, {"SMS": [{"MOBILEPHONE": "12"}]}),
    115: ("demo", {}, {"DATE": "2000-01-01 10:00:00"}),
    117: ("demo", {}, {"MESSAGE": "https://example.com/" + "a" * 80}),
    118: ("demo", {}, {"MASTERACCOUNT": "nobody"}),
}


def test_the_inputs_reach_every_status_the_connector_reads_as_a_refusal_and_113():
    assert set(_PROVOKED) == set(outcomes.STATUSES) | {113}


@pytest.mark.parametrize("status", sorted(_PROVOKED))
def test_the_sandbox_answers_each_documented_status_to_the_input_that_provokes_it(live_sandbox, status):
    url, _ = live_sandbox
    login, params, data = _PROVOKED[status]
    keys = {"demo": "demo-api-key", "broke": "broke-api-key", "low": "low-api-key"}
    form = {"login": login, "apiKey": keys[login], "returnformat": "json"}
    if data is not None:
        form["smsData"] = _sms_data(**data)
    form.update(params)
    reply = requests.post(f"{url}/http/9.0/sendSms/", data=form, timeout=10).json()
    assert reply["status"] == status, reply
    assert isinstance(reply["statusText"], str) and reply["statusText"]

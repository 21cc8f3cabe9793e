"""The sandbox pushing receipts and replies to a callback URL, over real HTTP on 127.0.0.1.

The sandbox runs as a real server and a small recording server plays the connector's callback
URL. Waits poll the recorder against a deadline; time-dependent cases move an injected clock.
"""

import json
import logging
import re
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.etree import ElementTree

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connector.sandbox import SandboxState, create_sandbox_app, make_sandbox_server
from connector.sandbox.campaigns import PARIS, plan_sms
from connector.sandbox.dispatcher import Dispatcher
from connector.sandbox.receipts import OutcomePicker
from tests.conftest import Clock, wait_for

ACCOUNTS = {
    "alice": {"api_key": "alice-key", "credits": 10_000_000},
    "bob": {"api_key": "bob-key", "credits": 100000},
}
KEYS = {login: spec["api_key"] for login, spec in ACCOUNTS.items()}
FRENCH = "33612345678"
OTHER = "33698765432"
TOKEN = "tok-3f9a1c"
FAST_RETRIES = (0.01, 0.01)
RECEIPT_FIELDS = {"smsId", "campaignId", "phoneNumber", "receptionDate", "status", "statusText"}
REPLY_FIELDS = {"smsMoId", "smsId", "campaignId", "phoneNumber", "receptionDate", "message"}
DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


class Receiver:
    """A recording stand-in for the connector's callback URL, on 127.0.0.1.

    It answers 200 unless statuses were scripted with `fail_with`; a scripted 3xx points to
    /elsewhere, so a followed redirect would show up in `requests`.
    """

    def __init__(self):
        self.requests = []
        self._script = deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()

    def hook(self, login="alice"):
        """The callback URL of an account: a path and a token in the query string."""
        return f"{self.url}/hooks/{login}?token={TOKEN}"

    def fail_with(self, *statuses):
        with self._lock:
            self._script.extend(statuses)

    def payloads(self, replies_only=False):
        """The fields of every push received so far (whatever the encoding), oldest first."""
        with self._lock:
            found = [_fields(r) for r in self.requests]
        return [p for p in found if "smsMoId" in p] if replies_only else found

    def wait_for(self, count, replies_only=False):
        """The payloads once there are at least `count` of them."""
        return wait_for(lambda: len(found := self.payloads(replies_only)) >= count and found)

    def stop(self):
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        record = {
            "method": request.method,
            "path": request.path,
            "content_type": request.mimetype,
            "body": request.get_data(cache=True),
            "query": request.args.to_dict(),
            "form": request.form.to_dict(),
            "json": request.get_json(silent=True),
        }
        with self._lock:
            self.requests.append(record)
            status = self._script.popleft() if self._script else 200
            self._in_flight -= 1
        headers = {"Location": "/elsewhere"} if 300 <= status < 400 else {}
        return Response("", status=status, headers=headers)(environ, start_response)


def _fields(record):
    if record["json"] is not None:
        return record["json"]
    if record["content_type"] == "application/xml":
        return {child.tag: child.text or "" for child in ElementTree.fromstring(record["body"])}
    if record["method"] == "GET":
        return {k: v for k, v in record["query"].items() if k != "token"}
    return record["form"]


@dataclass
class Sandbox:
    url: str
    state: SandboxState

    def call(self, method, login="alice", **params):
        form = {"login": login, "apiKey": KEYS[login], "returnformat": "json", **params}
        response = requests.post(f"{self.url}/http/9.0/{method}/", data=form, timeout=10)
        assert response.status_code == 200
        return response.json()

    def send(self, login="alice", numbers=(FRENCH,), **data):
        data.setdefault("MESSAGE", "Hello")
        data["SMS"] = [{"MOBILEPHONE": number} for number in numbers]
        return self.call("sendSms", login, smsData=json.dumps({"DATA": data}))

    def set_callback(self, url, callback_format=None, login="alice", auth=None):
        body = {"url": url} if callback_format is None else {"url": url, "format": callback_format}
        return requests.post(
            f"{self.url}/sandbox/accounts/{login}/callback",
            json=body,
            auth=auth or (login, KEYS[login]),
            timeout=10,
        )

    def reply(self, login="alice", as_form=False, **body):
        key = "data" if as_form else "json"
        return requests.post(f"{self.url}/sandbox/replies", auth=(login, KEYS[login]), timeout=10, **{key: body})

    def acks(self, campaign_id, login="alice"):
        return self.call("getAcks", login, campId=campaign_id)["acks"]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def start_sandbox():
    """Start a sandbox server on its own state; short delays and retries unless overridden."""
    started = []

    def start(clock=None, **options):
        options.setdefault("receipt_delay", 0.05)
        options.setdefault("push_retry_delays", FAST_RETRIES)
        state = SandboxState(ACCOUNTS, clock=clock, **options)
        server = make_sandbox_server(create_sandbox_app(state))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        thread.start()
        started.append((server, thread, state))
        return Sandbox(f"http://127.0.0.1:{server.server_port}", state)

    yield start
    for server, thread, state in started:
        server.shutdown()
        thread.join()
        server.server_close()
        state.close()


# Receipts


@pytest.mark.parametrize(
    "callback_format, method, content_type",
    [
        ("form", "POST", "application/x-www-form-urlencoded"),
        ("json", "POST", "application/json"),
        ("get", "GET", ""),
        ("xml", "POST", "application/xml"),
    ],
)
def test_each_sent_sms_gets_one_receipt_pushed_with_every_field(
    start_sandbox, receiver, callback_format, method, content_type
):
    sandbox = start_sandbox(outcomes={1: 1})
    assert sandbox.set_callback(receiver.hook(), callback_format).status_code == 200
    sent = sandbox.send(numbers=("0612345678", "+33698765432"), CLIMSGID="order-7")
    pushed = receiver.wait_for(2)
    assert len(pushed) == 2
    assert {r["method"] for r in receiver.requests} == {method}
    assert {r["content_type"] for r in receiver.requests} == {content_type}
    assert {r["path"] for r in receiver.requests} == {"/hooks/alice"}
    assert {r["query"].get("token") for r in receiver.requests} == {TOKEN}
    sent_ids = {s["smsId"]: s["phoneNumber"] for s in sent["smsIds"]}
    assert {p["smsId"]: p["phoneNumber"] for p in pushed} == sent_ids
    status = 1 if callback_format == "json" else "1"
    paris_now = datetime.now(PARIS).replace(tzinfo=None)
    for fields in pushed:
        assert set(fields) == RECEIPT_FIELDS | {"CLIMSGID"}
        assert fields["campaignId"] == sent["campaignId"]
        assert (fields["status"], fields["statusText"]) == (status, "Delivered")
        assert fields["CLIMSGID"] == "order-7"
        assert DATE.fullmatch(fields["receptionDate"])
        reported = datetime.strptime(fields["receptionDate"], "%Y-%m-%d %H:%M:%S")
        assert abs(reported - paris_now) < timedelta(seconds=30)


def test_a_campaign_without_client_reference_pushes_no_climsgid(start_sandbox, receiver):
    sandbox = start_sandbox(outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "json")
    sandbox.send()
    assert set(receiver.wait_for(1)[0]) == RECEIPT_FIELDS


def test_numbers_ending_in_99_98_and_97_get_their_demo_outcomes(start_sandbox, receiver):
    sandbox = start_sandbox(outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "json")
    numbers = ("33600000099", "33600000098", "33600000097", "33600000096")
    sandbox.send(numbers=numbers)
    pushed = {p["phoneNumber"]: (p["status"], p["statusText"]) for p in receiver.wait_for(4)}
    assert pushed == {
        "33600000099": (5, "Unknown number"),
        "33600000098": (2, "Not delivered"),
        "33600000097": (4, "Rejected"),
        "33600000096": (1, "Delivered"),
    }


def test_forced_outcomes_can_be_a_mapping_of_numbers(start_sandbox, receiver):
    sandbox = start_sandbox(outcomes={1: 1}, forced_outcomes={"0612345678": 4})
    sandbox.set_callback(receiver.hook(), "json")
    sandbox.send(numbers=(FRENCH, OTHER, "33600000099"))
    pushed = {p["phoneNumber"]: p["status"] for p in receiver.wait_for(3)}
    # The mapping replaces the demo rule, so ...99 is drawn from the mix like any other number.
    assert pushed == {FRENCH: 4, OTHER: 1, "33600000099": 1}


def test_forced_outcomes_can_be_a_function_and_fall_back_on_the_mix():
    picker = OutcomePicker({2: 1}, lambda number: 5 if number.endswith("1") else None)
    assert picker.draw("33600000001") == 5
    assert picker.draw("33600000002") == 2


def test_a_forced_outcome_outside_1_to_5_is_refused():
    with pytest.raises(ValueError):
        OutcomePicker(forced={FRENCH: 6})
    with pytest.raises(ValueError):
        OutcomePicker({1: 0})
    with pytest.raises(ValueError):
        OutcomePicker(forced=lambda number: 9).draw(FRENCH)


def test_outcome_draws_follow_the_mix_and_repeat_for_the_same_seed():
    numbers = [f"336{i:08d}" for i in range(3000) if not f"{i:08d}".endswith(("97", "98", "99"))]
    first = [OutcomePicker(seed=7).draw(n) for n in numbers[:5]]
    picker, again = OutcomePicker(seed=7), OutcomePicker(seed=7)
    draws = [picker.draw(n) for n in numbers]
    assert draws == [again.draw(n) for n in numbers]
    assert draws[:5] == first
    assert set(draws) == {1, 2, 5}
    assert 0.85 < draws.count(1) / len(draws) < 0.95


def test_get_acks_and_get_ack_by_sms_id_return_the_pushed_receipts(start_sandbox, receiver):
    sandbox = start_sandbox(forced_outcomes={OTHER: 2}, outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "form")
    sent = sandbox.send(numbers=(FRENCH, OTHER), CLIMSGID="ref-9")
    pushed = {p["smsId"]: p for p in receiver.wait_for(2)}
    acks = sandbox.acks(sent["campaignId"])
    assert [ack["phoneNumber"] for ack in acks] == [FRENCH, OTHER]
    for ack, sms in zip(acks, sent["smsIds"]):
        fields = pushed[sms["smsId"]]
        assert str(ack["statut"]) == fields["status"]
        assert ack["comment"] == fields["statusText"]
        assert ack["receptionDate"] == fields["receptionDate"]
    # The client reference is named once, beside the acks, as public clients show getAcks.
    assert sandbox.call("getAcks", campId=sent["campaignId"])["cliMsgId"] == "ref-9"
    one = sandbox.call("getAckBySmsId", smsId=sent["smsIds"][1]["smsId"])
    assert (one["statut"], one["comment"]) == ("2", "Not delivered")


def test_a_scheduled_campaign_gets_its_receipts_only_once_its_date_has_passed(start_sandbox, receiver):
    clock = Clock()
    sandbox = start_sandbox(clock, receipt_delay=0.5, outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "json")
    date = clock.paris(minutes=10)
    scheduled = sandbox.send(DATE=date)
    clock.advance(minutes=5)
    # An immediate send due after this move shows the dispatcher has looked at the clock.
    now = sandbox.send(numbers=(OTHER,))
    clock.advance(seconds=1)
    assert [p["campaignId"] for p in receiver.wait_for(1)] == [now["campaignId"]]
    assert sandbox.acks(scheduled["campaignId"]) == []
    clock.advance(minutes=5)
    pushed = receiver.wait_for(2)
    assert pushed[1]["campaignId"] == scheduled["campaignId"]
    # Due 0.5 s after the date, which the second-precision date does not show.
    assert pushed[1]["receptionDate"] == date
    assert len(sandbox.acks(scheduled["campaignId"])) == 1


def test_a_cancelled_scheduled_campaign_gets_no_receipts(start_sandbox, receiver):
    clock = Clock()
    sandbox = start_sandbox(clock, outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "json")
    cancelled = sandbox.send(DATE=clock.paris(minutes=10))
    kept = sandbox.send(DATE=clock.paris(minutes=10), numbers=(OTHER,))
    assert sandbox.call("deleteCampaign", campId=cancelled["campaignId"])["status"] == "OK"
    clock.advance(minutes=11)
    assert [p["campaignId"] for p in receiver.wait_for(1)] == [kept["campaignId"]]
    assert sandbox.acks(cancelled["campaignId"]) == []
    assert len(receiver.requests) == 1


def test_a_pending_receipt_comes_first_when_asked_then_the_final_one(start_sandbox, receiver):
    clock = Clock()
    sandbox = start_sandbox(clock, receipt_delay=1, outcomes={1: 1}, pending_share=1.0)
    sandbox.set_callback(receiver.hook(), "json")
    sent = sandbox.send()
    clock.advance(seconds=1)
    first = receiver.wait_for(1)
    assert (first[0]["status"], first[0]["statusText"]) == (3, "Pending")
    assert sandbox.acks(sent["campaignId"])[0]["statut"] == "3"
    clock.advance(seconds=1)
    second = receiver.wait_for(2)[1]
    assert (second["status"], second["smsId"]) == (1, first[0]["smsId"])
    assert sandbox.acks(sent["campaignId"])[0]["statut"] == "1"


def test_voice_campaigns_get_no_receipts(start_sandbox, receiver):
    sandbox = start_sandbox(outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "json")
    voice = requests.post(
        f"{sandbox.url}/voice/send/bulk",
        json={"to": [FRENCH], "type": "tts", "text": "Bonjour"},
        auth=("alice", "alice-key"),
        timeout=10,
    ).json()
    sms = sandbox.send(numbers=(OTHER,))
    assert [p["campaignId"] for p in receiver.wait_for(1)] == [sms["campaignId"]]
    assert sandbox.acks(voice["campaignId"]) == []
    assert len(receiver.requests) == 1


# Callback settings


def test_the_callback_endpoint_sets_reads_and_removes_the_url_and_format(start_sandbox):
    sandbox = start_sandbox()
    endpoint = f"{sandbox.url}/sandbox/accounts/alice/callback"
    auth = ("alice", "alice-key")
    assert requests.get(endpoint, auth=auth, timeout=10).json() == {"url": None, "format": "form"}
    url = "https://hooks.example/a?t=1"
    as_form = requests.post(endpoint, data={"url": url}, auth=auth, timeout=10)
    assert as_form.json() == {"url": url, "format": "form"}
    as_json = sandbox.set_callback("http://127.0.0.1:9/b", "get")
    assert as_json.json() == {"url": "http://127.0.0.1:9/b", "format": "get"}
    assert requests.get(endpoint, auth=auth, timeout=10).json()["format"] == "get"
    removed = sandbox.set_callback(None)
    assert removed.json() == {"url": None, "format": "get"}
    assert sandbox.state.callback_settings("alice") == {"url": None, "format": "get"}
    assert sandbox.state.callback_settings("bob") == {"url": None, "format": "form"}


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://hooks.example/a"},
        {"url": "hooks.example/a"},
        {"url": "https://"},
        {"url": 5},
        {"url": "https://hooks.example/a", "format": "yaml"},
        {"format": "json"},
    ],
)
def test_the_callback_endpoint_refuses_a_bad_url_or_format_with_400(start_sandbox, body):
    sandbox = start_sandbox()
    endpoint = f"{sandbox.url}/sandbox/accounts/alice/callback"
    response = requests.post(endpoint, json=body, auth=("alice", "alice-key"), timeout=10)
    assert response.status_code == 400
    assert response.json()["code"] == 400
    assert sandbox.state.callback_settings("alice") == {"url": None, "format": "form"}


def test_the_callback_endpoint_wants_the_accounts_own_credentials(start_sandbox):
    sandbox = start_sandbox()
    wrong_key = sandbox.set_callback("https://hooks.example/a", auth=("alice", "nope"))
    assert wrong_key.status_code == 401
    assert wrong_key.json()["code"] == 102
    assert wrong_key.headers["WWW-Authenticate"].startswith("Basic")
    no_auth = requests.get(f"{sandbox.url}/sandbox/accounts/alice/callback", timeout=10)
    assert no_auth.status_code == 401
    other_account = sandbox.set_callback("https://hooks.example/a", auth=("bob", "bob-key"))
    assert other_account.status_code == 403
    assert sandbox.state.callback_settings("alice")["url"] is None


# Replies


def test_a_simulated_reply_is_pushed_and_returned_once_by_get_pulls(start_sandbox, receiver):
    sandbox = start_sandbox(outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "form")
    sent = sandbox.send()
    sms_id = sent["smsIds"][0]["smsId"]
    response = sandbox.reply(phone_number="0612345678", message="Oui, merci !", sms_id=sms_id)
    assert response.status_code == 201
    record = response.json()
    assert set(record) == REPLY_FIELDS
    assert (record["smsId"], record["campaignId"]) == (sms_id, sent["campaignId"])
    assert (record["phoneNumber"], record["message"]) == (FRENCH, "Oui, merci !")
    assert DATE.fullmatch(record["receptionDate"])
    assert receiver.wait_for(1, replies_only=True) == [record]
    pulls = sandbox.call("getPulls")["mos"]
    assert [(mo["id"], mo["message"]) for mo in pulls] == [(record["smsMoId"], "Oui, merci !")]
    assert sandbox.call("getPulls")["mos"] == []


def test_a_reply_pushed_as_xml_is_one_mo_element_whose_text_survives_markup_and_line_ends(start_sandbox, receiver):
    sandbox = start_sandbox(outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "xml")
    sandbox.send()
    message = "Oui <b> & ]]> à demain\r\nmerci"
    assert sandbox.reply(phone_number="0612345678", message=message).status_code == 201
    (pushed,) = [r for r in receiver.wait_for(2) if "smsMoId" in r]
    (request,) = [r for r in receiver.requests if b"<mo>" in r["body"]]
    assert request["body"].startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert ElementTree.fromstring(request["body"]).tag == "mo"
    assert set(pushed) == REPLY_FIELDS and pushed["message"] == message


def test_a_stop_reply_puts_the_number_on_the_stop_list_as_the_short_code_does(start_sandbox, receiver):
    sandbox = start_sandbox(outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "form")
    sandbox.send()
    assert sandbox.call("getBlacklist")["blacklist"] == []
    assert sandbox.reply(phone_number="0612345678", message="Oui").status_code == 201
    assert sandbox.call("getBlacklist")["blacklist"] == []
    assert sandbox.reply(phone_number="0612345678", message=" stop svp").status_code == 201
    [entry] = sandbox.call("getBlacklist")["blacklist"]
    assert (entry["phoneNumber"], entry["comment"]) == (FRENCH, "stop")


def test_a_reply_without_sms_id_answers_the_latest_sms_sent_to_that_number(start_sandbox, receiver):
    sandbox = start_sandbox()
    sandbox.set_callback(receiver.hook(), "json")
    sandbox.send(numbers=(FRENCH, OTHER))
    latest = sandbox.send(numbers=(OTHER, FRENCH, OTHER))
    sandbox.send(login="bob", numbers=(FRENCH,))
    record = sandbox.reply(as_form=True, phone_number="+33612345678", message="Stop?").json()
    assert record["smsId"] == latest["smsIds"][1]["smsId"]
    assert record["campaignId"] == latest["campaignId"]
    stranger = sandbox.reply(phone_number="0600000001", message="Who is this?").json()
    assert (stranger["smsId"], stranger["campaignId"]) == ("", "")
    replies = receiver.wait_for(2, replies_only=True)
    assert {p["smsMoId"] for p in replies} == {record["smsMoId"], stranger["smsMoId"]}
    assert record["smsMoId"] != stranger["smsMoId"]


def test_a_reply_to_an_sms_not_sent_to_that_number_by_that_account_answers_404(start_sandbox):
    sandbox = start_sandbox()
    sms_id = sandbox.send(login="bob")["smsIds"][0]["smsId"]
    assert sandbox.reply(phone_number=FRENCH, message="Hi", sms_id=sms_id).status_code == 404
    mine = sandbox.send()["smsIds"][0]["smsId"]
    assert sandbox.reply(phone_number=OTHER, message="Hi", sms_id=mine).status_code == 404
    assert sandbox.reply(phone_number=FRENCH, message="Hi", sms_id="nope-1").status_code == 404
    assert sandbox.call("getPulls")["mos"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"message": "Hi"},
        {"phone_number": "12", "message": "Hi"},
        {"phone_number": FRENCH},
        {"phone_number": FRENCH, "message": "  "},
        {"phone_number": FRENCH, "message": 3},
    ],
)
def test_a_reply_without_a_valid_number_or_message_answers_400(start_sandbox, body):
    sandbox = start_sandbox()
    response = sandbox.reply(**body)
    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_a_reply_needs_the_accounts_credentials(start_sandbox):
    sandbox = start_sandbox()
    body = {"phone_number": FRENCH, "message": "Hi"}
    url = f"{sandbox.url}/sandbox/replies"
    response = requests.post(url, json=body, auth=("alice", "x"), timeout=10)
    assert (response.status_code, response.json()["code"]) == (401, 102)


# Delivery of pushes


def test_a_receiver_that_fails_twice_gets_the_push_on_the_third_try(start_sandbox, receiver):
    sandbox = start_sandbox(outcomes={1: 1})
    receiver.fail_with(500, 503)
    sandbox.set_callback(receiver.hook(), "json")
    sandbox.send()
    pushed = receiver.wait_for(3)
    assert pushed[0] == pushed[1] == pushed[2]
    wait_for(lambda: sandbox.state.pushes_delivered == 1)
    assert sandbox.state.push_failures == 0


def test_a_push_that_keeps_failing_is_dropped_after_the_last_retry_and_counted(start_sandbox, receiver):
    sandbox = start_sandbox()
    receiver.fail_with(500, 500, 500, 500)
    sandbox.set_callback(receiver.hook(), "json")
    sandbox.send()
    wait_for(lambda: sandbox.state.push_failures == 1)
    # One attempt and the two retries of FAST_RETRIES; after giving up nothing is retried.
    assert len(receiver.requests) == 3
    assert sandbox.state.pushes_delivered == 0


def test_a_redirect_is_not_followed_and_counts_as_a_failure(start_sandbox, receiver):
    sandbox = start_sandbox(push_retry_delays=())
    receiver.fail_with(302)
    sandbox.set_callback(receiver.hook(), "form")
    sandbox.send()
    wait_for(lambda: sandbox.state.push_failures == 1)
    assert [r["path"] for r in receiver.requests] == ["/hooks/alice"]


def test_an_unreachable_callback_url_is_dropped_and_counted(start_sandbox):
    sandbox = start_sandbox(push_retry_delays=(0.01,))
    with make_server("127.0.0.1", 0, lambda *_: []) as closed:
        port = closed.server_port
    sandbox.set_callback(f"http://127.0.0.1:{port}/gone", "json")
    sandbox.send()
    wait_for(lambda: sandbox.state.push_failures == 1)
    assert sandbox.state.pushes_delivered == 0


def test_without_a_callback_url_nothing_is_pushed_and_nothing_fails(start_sandbox, receiver):
    sandbox = start_sandbox()
    sandbox.set_callback(receiver.hook("bob"), "json", login="bob")
    silent = sandbox.send(numbers=(FRENCH, OTHER))
    sandbox.reply(phone_number=FRENCH, message="Hello?")
    canary = sandbox.send(login="bob")
    assert [p["campaignId"] for p in receiver.wait_for(1)] == [canary["campaignId"]]
    assert len(wait_for(lambda: sandbox.acks(silent["campaignId"]))) == 2
    assert len(receiver.requests) == 1
    assert sandbox.state.push_failures == 0


def test_pushes_use_at_most_the_configured_number_of_workers(start_sandbox, receiver):
    sandbox = start_sandbox(push_workers=3, outcomes={1: 1})
    sandbox.set_callback(receiver.hook(), "form")
    sent = sandbox.send(numbers=[f"3361000{i:04d}" for i in range(150)])
    pushed = receiver.wait_for(150)
    assert {p["smsId"] for p in pushed} == {s["smsId"] for s in sent["smsIds"]}
    assert 1 <= receiver.max_in_flight <= 3


def test_a_100000_recipient_campaign_gets_its_receipts_without_a_thread_per_sms():
    clock = Clock()
    with SandboxState(ACCOUNTS, clock=clock) as state:
        feed = {"MESSAGE": "Hi", "SMS": [{"MOBILEPHONE": f"06{i:08d}"} for i in range(100000)]}
        campaign, _ = state.launch("alice", plan_sms(feed, clock()))
        threads_before = threading.active_count()
        clock.advance(seconds=1)
        acks, _ = wait_for(
            lambda: (
                state.campaign_acks("alice", campaign.id) if state.sms_ack("alice", campaign.sms_id(99999)) else None
            )
        )
        assert len(acks) == 100000
        assert threading.active_count() <= threads_before + 1
        assert {ack["statut"] for ack in acks} == {"1", "2", "4", "5"}


def test_pushes_log_no_number_message_key_or_callback_token(start_sandbox, receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="connector")
    sandbox = start_sandbox(push_retry_delays=(0.01,))
    receiver.fail_with(500, 500, 500)
    sandbox.set_callback(receiver.hook(), "get")
    sandbox.send(MESSAGE="secret words")
    sandbox.reply(phone_number=FRENCH, message="secret answer")
    wait_for(lambda: sandbox.state.push_failures >= 1)
    # Only the sandbox's own records: the receiver's access log is the test's, not the sandbox's.
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("connector"))
    assert "push attempt 1 failed (HTTP 500)" in text
    for secret in (TOKEN, "12345678", "secret words", "secret answer", "alice-key", "/hooks/"):
        assert secret not in text


# The dispatcher and closing


def test_the_dispatcher_runs_jobs_in_clock_order_on_one_thread_that_then_ends():
    clock = Clock()
    dispatcher = Dispatcher(clock, recheck=0.01)
    ran = []
    for seconds in (3, 1, 2):
        dispatcher.at(
            clock() + timedelta(seconds=seconds), lambda s=seconds: ran.append((s, threading.current_thread().name))
        )
    clock.advance(seconds=2)
    wait_for(lambda: len(ran) == 2)
    assert [s for s, _ in ran] == [1, 2]
    clock.advance(seconds=1)
    wait_for(lambda: len(ran) == 3)
    assert [s for s, _ in ran] == [1, 2, 3]
    assert len({name for _, name in ran}) == 1
    wait_for(lambda: not dispatcher.running)
    dispatcher.stop()


def test_a_stopped_dispatcher_drops_its_jobs_and_stopping_twice_is_harmless():
    clock = Clock()
    dispatcher = Dispatcher(clock, recheck=0.01)
    ran = []
    assert dispatcher.at(clock() + timedelta(seconds=1), lambda: ran.append(1))
    assert dispatcher.running
    dispatcher.stop()
    dispatcher.stop()
    assert not dispatcher.running
    assert dispatcher.pending == 0
    assert dispatcher.after(0, lambda: ran.append(2)) is False
    assert ran == []


def test_closing_the_state_twice_is_harmless_and_sends_still_answer(start_sandbox):
    sandbox = start_sandbox()
    sandbox.state.close()
    sandbox.state.close()
    assert sandbox.send()["status"] == 100

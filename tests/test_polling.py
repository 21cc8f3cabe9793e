"""Receipts and replies read from AllMySMS when platforms poll their triggers: no inbound URL needed, one
event per receipt or reply whichever way it came, nothing lost when the database fails after getPulls."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import exc as sa_exc
from standardwebhooks.webhooks import Webhook

from connector import create_app
from connector.events import callbacks, polling
from connector.sandbox.receipts import receipt_fields, reply_fields
from connector.sending import feeds
from connector.storage.campaigns import RECEIPTS, Campaign
from tests.conftest import connector_settings, wait_for
from tests.test_triggers import FAST, inbound, running_worker, subscribe

#: AllMySMS read at every poll: the tests poll until the sandbox has made its receipts.
EVERY_POLL = {"CONNECTOR_POLL_INTERVAL_SECONDS": 0, "ALLMYSMS_SANDBOX": True, **FAST}


@pytest.fixture
def polled(backend, sandbox, serve):
    """The connector (with a delivery worker) on the sandbox, reading AllMySMS at every poll, on SQLite and on
    PostgreSQL."""
    app = create_app(connector_settings(sandbox.url, **EVERY_POLL))
    worker = running_worker(app)
    api = serve(app)
    api.app = app
    yield api
    worker.stop()


def _poll(api, trigger: str) -> list[dict]:
    response = api.get(f"/v1/triggers/{trigger}/events")
    assert response.status_code == 200, response.text
    return response.json()


def _reply(api, number="06 11 11 11 11", message="Oui merci") -> dict:
    answer = api.session.post(
        f"{api.url}/v1/sandbox/replies", json={"phone_number": number, "message": message}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


# The same event, whichever way it came.


def test_a_receipt_pushed_and_the_same_receipt_read_by_getacks_get_one_id():
    pushed = receipt_fields("sms-1", "camp-1", "33611111111", "2026-12-01 09:30:03", 1)
    acks = feeds.acks({"acks": [{"phoneNumber": "33611111111", "statut": "1", "comment": "Delivered",
                                 "receptionDate": "2026-12-01 09:30:03"}]})  # fmt: skip
    records, settled = polling.receipt_records(Campaign("camp-1", 0.0, {"+33611111111": "sms-1"}), acks)
    by_push = callbacks.normalise(pushed, account="demo")
    by_poll = callbacks.normalise(records[0], account="demo")
    assert by_poll.id == by_push.id and by_poll.data == by_push.data and settled


def test_a_reply_pushed_and_the_same_reply_read_by_getpulls_get_one_id():
    mo = {"id": "mo-9", "campaignId": "camp-1", "phoneNumber": "33611111111", "message": "Oui",
          "receptionDate": "2026-12-01 09:31:00"}  # fmt: skip
    by_push = callbacks.normalise(reply_fields(mo, "sms-1"), account="demo")
    records = polling.reply_records(feeds.pulls({"mos": [mo]}), {"camp-1": {"+33611111111": "sms-1"}})
    by_poll = callbacks.normalise(records[0], account="demo")
    assert by_poll.id == by_push.id and by_poll.data == by_push.data


def test_a_pending_receipt_leaves_its_campaign_to_be_read_again():
    acks = feeds.acks({"acks": [{"phoneNumber": "33611111111", "statut": "3", "receptionDate": "2026-12-01 09:30:03"}]})
    records, settled = polling.receipt_records(Campaign("camp-1", 0.0, {"+33611111111": "sms-1"}), acks)
    assert len(records) == 1 and not settled


# End to end, through the API, on the sandbox.


def test_an_account_without_an_inbound_url_gets_its_receipts_by_polling(polled, sandbox):
    assert sandbox.state.callback_settings("demo")["url"] is None  # never set in the customer area
    sent = polled.action("send_sms", {"message": "Hi", "recipients": ["0611111111", "0622222299"]}).json()
    found = wait_for(lambda: len(got := _poll(polled, "delivery_receipt")) == 2 and got, what="both receipts")
    by_number = {e["data"]["phone_number"]: e["data"] for e in found}
    assert by_number["+33611111111"]["status"] == "delivered"
    assert by_number["+33622222299"]["status"] == "unknown_number"
    assert {e["data"]["sms_id"] for e in found} == {m["sms_id"] for m in sent["sms_ids"]}
    assert _poll(polled, "delivery_receipt") == found  # read again: the same events, not new ones


def test_an_mms_receipt_comes_by_polling_too(polled):
    sent = polled.action("send_mms", {"recipients": ["0611111111"], "kind": "text", "message": "Hi"})
    assert sent.status_code == 200, sent.text
    found = wait_for(lambda: _poll(polled, "delivery_receipt"), what="the MMS receipt")
    assert [e["data"]["sms_id"] for e in found] == [sent.json()["sms_ids"][0]["sms_id"]]


def test_a_reply_is_polled_exactly_once_as_one_event_across_polls(polled, sandbox):
    assert sandbox.state.callback_settings("demo")["url"] is None  # getPulls is the only way it comes
    sent = polled.action("send_sms", {"message": "Hi", "recipients": ["0611111111"]}).json()
    _reply(polled)
    polls = [_poll(polled, "reply_received") for _ in range(3)]
    assert [len(found) for found in polls] == [1, 1, 1]
    assert len({found[0]["id"] for found in polls}) == 1
    data = polls[0][0]["data"]
    assert data["message"] == "Oui merci" and data["sms_id"] == sent["sms_ids"][0]["sms_id"]


def test_receipts_and_replies_pushed_and_polled_are_one_event_each_delivered_once(polled, sandbox, subscriber):
    sandbox.state.set_callback_url("demo", inbound(polled))
    receipts = subscribe(polled, subscriber.target("/receipts"))
    subscribe(polled, subscriber.target("/replies"), trigger="reply_received")
    polled.action("send_sms", {"message": "Hi", "recipients": ["0611111111"]})
    wait_for(lambda: len(subscriber.deliveries("/receipts")) == 1, what="the pushed receipt")
    pushed = Webhook(receipts["secret"]).verify(
        subscriber.deliveries("/receipts")[0]["body"], subscriber.deliveries("/receipts")[0]["headers"]
    )
    assert [e["id"] for e in _poll(polled, "delivery_receipt")] == [pushed["id"]]
    _reply(polled)
    wait_for(lambda: len(subscriber.deliveries("/replies")) == 1, what="the pushed reply")
    reply = json.loads(subscriber.deliveries("/replies")[0]["body"])
    assert [e["id"] for e in _poll(polled, "reply_received")] == [reply["id"]]
    # Whichever came first, the other one is the same event: nothing more is delivered.
    assert _poll(polled, "delivery_receipt")[0]["id"] == pushed["id"]
    assert len(subscriber.deliveries("/receipts")) == 1 and len(subscriber.deliveries("/replies")) == 1


def test_polled_events_reach_rest_hook_subscribers(polled, subscriber):
    subscribe(polled, subscriber.target("/replies"), trigger="reply_received")
    polled.action("send_sms", {"message": "Hi", "recipients": ["0611111111"]})
    _reply(polled)
    [event] = _poll(polled, "reply_received")
    delivered = wait_for(lambda: subscriber.deliveries("/replies"), what="the polled reply delivered")
    assert [json.loads(d["body"])["id"] for d in delivered] == [event["id"]]


def test_replies_getpulls_handed_out_are_journalled_when_the_database_fails_and_stored_once_it_answers(
    polled, monkeypatch
):
    services = polled.app.extensions["connector"]
    polled.action("send_sms", {"message": "Hi", "recipients": ["0611111111"]})
    _reply(polled)
    add = services.store.events.add

    def failing(*args, **kwargs):
        raise sa_exc.OperationalError("INSERT", {}, Exception("the database went away"))

    monkeypatch.setattr(services.store.events, "add", failing)
    # AllMySMS has handed the reply out: it is in the journal now, and the poll is asked to come back.
    answer = polled.get("/v1/triggers/reply_received/events")
    assert answer.status_code == 503 and "Retry-After" in answer.headers, answer.text
    assert services.journal.depth()["entries"] == 1
    monkeypatch.setattr(services.store.events, "add", add)
    services.replayer.wake()
    wait_for(lambda: services.journal.depth()["entries"] == 0, what="the journal replayed")
    [event] = _poll(polled, "reply_received")
    assert event["data"]["message"] == "Oui merci"
    assert [e["id"] for e in _poll(polled, "reply_received")] == [event["id"]]


def test_replies_getpulls_handed_out_as_postgresql_goes_away_are_stored_once_it_is_back(
    postgres_through_proxy, sandbox, serve, monkeypatch
):
    _, proxy = postgres_through_proxy
    app = create_app(connector_settings(sandbox.url, **EVERY_POLL))
    services = app.extensions["connector"]
    services.store.outage.quiet = 0.2  # the log's wait for a quiet moment, short here
    api = serve(app)
    api.action("send_sms", {"message": "Hi", "recipients": ["0611111111"]})
    _reply(api)
    pulls = services.upstream.pulls

    def then_cut(*args):
        reply = pulls(*args)
        proxy.cut()  # AllMySMS has handed the reply out; the database goes away before it is stored
        return reply

    monkeypatch.setattr(services.upstream, "pulls", then_cut)
    assert api.get("/v1/triggers/reply_received/events").status_code == 503
    assert services.journal.depth()["entries"] == 1
    monkeypatch.setattr(services.upstream, "pulls", pulls)
    proxy.restore()
    wait_for(lambda: services.journal.depth()["entries"] == 0, timeout=30, what="the journal replayed")
    [event] = _poll(api, "reply_received")
    assert event["data"]["message"] == "Oui merci"


# At most one read of AllMySMS an interval per account.


def test_allmysms_is_read_at_most_once_an_interval_per_account_however_often_platforms_poll(
    backend, sandbox, serve, monkeypatch
):
    app = create_app(connector_settings(sandbox.url, CONNECTOR_POLL_INTERVAL_SECONDS=60, **FAST))
    api = serve(app)
    upstream = app.extensions["connector"].upstream
    calls: list[str] = []
    for name in ("get_acks", "pulls"):
        real = getattr(upstream, name)
        monkeypatch.setattr(upstream, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    api.action("send_sms", {"message": "Hi", "recipients": ["0611111111"]})
    for _ in range(3):
        _poll(api, "delivery_receipt")
        _poll(api, "reply_received")
    assert sorted(calls) == ["get_acks", "pulls"]


def test_a_read_is_claimed_by_one_caller_an_interval(polled):
    store = polled.app.extensions["connector"].store
    account_id = store.accounts.ensure("someone", "h" * 64)
    claims = [store.campaigns.claim_read(account_id, RECEIPTS, at, 60) for at in (1000.0, 1030.0, 1059.0, 1060.0)]
    assert claims == [True, False, False, True]
    assert store.campaigns.claim_read(account_id, "replies", 1061.0, 60)  # each source on its own


def test_only_recent_unsettled_campaigns_are_read_newest_first_and_at_most_the_limit(polled):
    store = polled.app.extensions["connector"].store.campaigns
    account_id = polled.app.extensions["connector"].store.accounts.ensure("someone", "h" * 64)
    for n in range(5):
        store.record(account_id, [(f"c{n}", {"+33611111111": f"s{n}"})], 1000.0 + n)
    store.read(account_id, "c3", 2000.0, settled=True)
    due = store.due(account_id, since=1001.0, limit=2)
    assert [c.campaign_id for c in due] == ["c4", "c2"] and due[0].messages == {"+33611111111": "s4"}


def test_campaigns_older_than_the_window_are_forgotten(polled):
    store = polled.app.extensions["connector"].store.campaigns
    account_id = polled.app.extensions["connector"].store.accounts.ensure("someone", "h" * 64)
    store.record(account_id, [("old", {}), ("new", {})], 1000.0)
    store.record(account_id, [("newer", {})], 2000.0)
    assert store.forget(account_id, 1500.0) == 2
    assert [c.campaign_id for c in store.due(account_id, since=0.0, limit=10)] == ["newer"]

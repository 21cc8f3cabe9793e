"""Triggers end to end on loopback: inbound callbacks → store → worker → signed deliveries to subscribers."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from connector import create_app
from connector.events import signing
from connector.storage.tables import deliveries, subscriptions
from connector.web.accounts import secret_key
from tests.conftest import Api, Scripted, connector_settings, wait_for

# Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.usefixtures("backend")

FAST = {
    "CONNECTOR_ALLOWED_TARGETS": "127.0.0.1",
    "CONNECTOR_RETRY_SCHEDULE": "0,0.2,0.2,0.2",
    "CONNECTOR_LEASE_SECONDS": 2,
}


@pytest.fixture
def wired(sandbox, serve):
    """The connector (with a delivery worker) in front of the sandbox; returns the demo Api."""
    app = create_app(connector_settings(sandbox.url, **FAST))
    worker = running_worker(app)
    api = serve(app)
    api.app = app
    yield api
    worker.stop()


def running_worker(app, start: bool = True):
    """The app's delivery worker, polling often, started unless asked not to: the caller stops it."""
    worker = app.extensions["connector"].delivery_worker()
    worker.poll_interval = 0.01
    if start:
        worker.start()
    return worker


def receipt(sms_id="s-1", status="1", **extra) -> dict:
    return {
        "smsId": sms_id,
        "campaignId": "c-1",
        "phoneNumber": "33611111111",
        "status": status,
        "statusText": "Delivered",
        "receptionDate": "2026-12-01 09:30:03",
        **extra,
    }


def subscribe(api: Api, target: str, trigger="delivery_receipt") -> dict:
    response = api.session.post(
        f"{api.url}/v1/triggers/{trigger}/subscriptions", json={"target_url": target}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json() | {"location": response.headers["Location"]}


def inbound(api: Api) -> str:
    return api.get("/v1/me").json()["inbound_url"]


def test_me_gives_each_account_its_own_unguessable_inbound_url(wired):
    first = inbound(wired)
    assert first == inbound(wired)
    token = first.rsplit("/", 1)[1]
    assert len(token) >= 22 and first.startswith(wired.url + "/v1/inbound/allmysms/")
    other = Api(wired.url, auth=("low", "low-api-key"))
    assert inbound(other) != first


def test_subscribe_answers_201_with_location_and_a_signing_secret(wired, subscriber):
    sub = subscribe(wired, subscriber.target())
    assert sub["id"].startswith("sub_") and sub["secret"].startswith("whsec_")
    assert sub["event"] == "sms.delivery_receipt" and sub["target_url"] == subscriber.target()
    assert sub["location"].endswith(f"/v1/triggers/delivery_receipt/subscriptions/{sub['id']}")
    listed = wired.get("/v1/triggers/delivery_receipt/subscriptions").json()
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]


def test_unsubscribing_is_idempotent_and_works_on_the_location(wired, subscriber):
    sub = subscribe(wired, subscriber.target())
    assert wired.session.delete(sub["location"], timeout=10).status_code == 204
    assert wired.session.delete(sub["location"], timeout=10).status_code == 404
    assert wired.get("/v1/triggers/delivery_receipt/subscriptions").json() == []


def test_a_receipt_reaches_the_subscriber_signed_as_standard_webhooks_require(wired, subscriber):
    sub = subscribe(wired, subscriber.target())
    answer = requests.post(inbound(wired), data=receipt(), timeout=10)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    delivered = wait_for(subscriber.deliveries, what="the receipt delivery")[0]
    event = Webhook(sub["secret"]).verify(delivered["body"], delivered["headers"])
    assert event["type"] == "sms.delivery_receipt" and event["id"].startswith("evt_")
    assert event["data"]["status"] == "delivered" and event["data"]["phone_number"] == "+33611111111"
    assert event["data"]["received_at"] == "2026-12-01T08:30:03Z"
    assert delivered["headers"]["Content-Type"] == "application/json"


def test_the_same_callback_twice_is_one_event_delivered_once(wired, subscriber):
    subscribe(wired, subscriber.target())
    first = requests.post(inbound(wired), data=receipt(), timeout=10).json()
    second = requests.get(inbound(wired), params=receipt(), timeout=10).json()
    assert (first["accepted"], second["accepted"], second["duplicates"]) == (1, 0, 1)
    wait_for(subscriber.deliveries, what="the delivery")
    events = wired.get("/v1/triggers/delivery_receipt/events").json()
    assert len(events) == 1
    wait_for(
        lambda: (
            wired.get(
                f"/v1/triggers/delivery_receipt/subscriptions/"
                f"{wired.get('/v1/triggers/delivery_receipt/subscriptions').json()[0]['id']}"
                "/deliveries"
            ).json()[0]["status"]
            == "succeeded"
        ),
        what="success recorded",
    )
    assert len(subscriber.deliveries()) == 1


def test_a_json_batch_is_split_into_events_and_replies_go_to_reply_subscribers(wired, subscriber):
    subscribe(wired, subscriber.target("/receipts"))
    subscribe(wired, subscriber.target("/replies"), trigger="reply_received")
    batch = [
        receipt("s-1"),
        receipt("s-2", status="2"),
        {
            "smsMoId": "mo-1",
            "smsId": "s-1",
            "phoneNumber": "33611111111",
            "message": "Yes!",
            "receptionDate": "2026-12-01 09:41:09",
        },
    ]
    assert requests.post(inbound(wired), json=batch, timeout=10).json()["accepted"] == 3
    wait_for(
        lambda: len(subscriber.deliveries("/receipts")) == 2 and subscriber.deliveries("/replies"),
        what="three deliveries",
    )
    reply = json.loads(subscriber.deliveries("/replies")[0]["body"])
    assert reply["type"] == "sms.reply_received" and reply["data"]["message"] == "Yes!"


def test_a_bad_callback_gets_400_and_is_kept_for_inspection(wired):
    url = inbound(wired)
    answer = requests.post(url, data={"campaignId": "c-1"}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "callback_rejected"
    garbage = requests.post(url, data=b"\x00\x01 not json", headers={"Content-Type": "application/json"}, timeout=10)
    assert garbage.status_code == 400
    rejected = wired.get("/v1/inbound/rejected").json()
    assert len(rejected) == 2 and all(r["reason"] for r in rejected)


def test_an_oversized_callback_gets_413_and_is_logged(sandbox, serve):
    app = create_app(connector_settings(sandbox.url, CONNECTOR_MAX_CALLBACK_BYTES=2048))
    api = serve(app)
    answer = requests.post(inbound(api), data={"message": "x" * 5000}, timeout=10)
    assert answer.status_code == 413
    assert api.get("/v1/inbound/rejected").json()[0]["reason"] == "larger than the callback size limit"


def test_an_unknown_token_gets_404(wired):
    answer = requests.post(wired.url + "/v1/inbound/allmysms/not-a-real-token", data=receipt(), timeout=10)
    assert answer.status_code == 404


def test_a_failing_subscriber_gets_the_event_again_with_the_same_webhook_id(wired, subscriber):
    sub = subscribe(wired, subscriber.target())
    subscriber.script("/hook", Scripted(status=500), Scripted(status=502))
    requests.post(inbound(wired), data=receipt(), timeout=10)
    wait_for(subscriber.deliveries, what="the third attempt to succeed")
    ids = {r["headers"]["Webhook-Id"] for r in subscriber.received}
    assert len(subscriber.received) == 3 and len(ids) == 1
    log = wait_for(
        lambda: [
            d
            for d in wired.get(f"/v1/triggers/delivery_receipt/subscriptions/{sub['id']}/deliveries").json()
            if d["status"] == "succeeded"
        ],
        what="the delivery log",
    )
    assert [a["status_code"] for a in log[0]["attempts"]] == [500, 502, 200]


def test_410_gone_removes_the_subscription(wired, subscriber):
    sub = subscribe(wired, subscriber.target())
    subscriber.script("/hook", Scripted(status=410))
    requests.post(inbound(wired), data=receipt(), timeout=10)
    wait_for(
        lambda: wired.get("/v1/triggers/delivery_receipt/subscriptions").json() == [],
        what="the subscription to be removed",
    )
    assert wired.session.get(sub["location"], timeout=10).status_code == 404


def test_429_waits_for_retry_after(wired, subscriber):
    subscribe(wired, subscriber.target())
    subscriber.script("/hook", Scripted(status=429, headers={"Retry-After": "1"}))
    requests.post(inbound(wired), data=receipt(), timeout=10)
    wait_for(subscriber.deliveries, what="the retried delivery")
    first, second = subscriber.received[0], subscriber.received[1]
    gap = int(second["headers"]["Webhook-Timestamp"]) - int(first["headers"]["Webhook-Timestamp"])
    assert first["status"] == 429 and gap >= 1


def test_a_redirect_is_not_followed(wired, subscriber):
    subscribe(wired, subscriber.target())
    subscriber.script("/hook", Scripted(status=302, headers={"Location": subscriber.target("/elsewhere")}))
    requests.post(inbound(wired), data=receipt(), timeout=10)
    wait_for(subscriber.deliveries, what="the retry after the redirect")
    assert [r["path"] for r in subscriber.received] == ["/hook", "/hook"]


def test_private_targets_are_refused_unless_allowed(sandbox, serve, subscriber):
    api = serve(create_app(connector_settings(sandbox.url)))
    answer = api.session.post(
        f"{api.url}/v1/triggers/delivery_receipt/subscriptions", json={"target_url": subscriber.target()}, timeout=10
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["fields"][0]["path"] == "target_url"
    for target in ("https://169.254.169.254/latest", "file:///etc/passwd", "https://localhost/x"):
        answer = api.session.post(
            f"{api.url}/v1/triggers/delivery_receipt/subscriptions", json={"target_url": target}, timeout=10
        )
        assert answer.status_code == 422, target


def test_polling_lists_events_newest_first_and_a_sample_only_when_asked(wired):
    assert wired.get("/v1/triggers/delivery_receipt/events").json() == []
    sample = wired.get("/v1/triggers/delivery_receipt/events?sample=1").json()
    assert len(sample) == 1 and sample[0]["type"] == "sms.delivery_receipt"
    for n in range(3):
        requests.post(inbound(wired), data=receipt(f"s-{n}"), timeout=10)
    listed = wired.get("/v1/triggers/delivery_receipt/events?limit=2&sample=1").json()
    assert [e["data"]["sms_id"] for e in listed] == ["s-2", "s-1"]
    assert len({e["id"] for e in listed}) == 2
    assert wired.get("/v1/triggers/delivery_receipt/events?limit=0").status_code == 422


def test_replay_delivers_an_event_again(wired, subscriber):
    subscribe(wired, subscriber.target())
    requests.post(inbound(wired), data=receipt(), timeout=10)
    wait_for(subscriber.deliveries, what="the first delivery")
    event_id = wired.get("/v1/triggers/delivery_receipt/events").json()[0]["id"]
    wait_for(
        lambda: wired.get("/v1/triggers/delivery_receipt/subscriptions").json()[0]["last_status_code"] == 200,
        what="the success to be recorded",
    )
    replay = wired.session.post(f"{wired.url}/v1/events/{event_id}/replay", timeout=10)
    assert replay.status_code == 202 and replay.json()["subscriptions"] == 1
    wait_for(lambda: len(subscriber.deliveries()) == 2, what="the replayed delivery")
    assert json.loads(subscriber.deliveries()[1]["body"])["id"] == event_id


def test_replay_of_failed_deliveries_of_a_subscription(sandbox, serve, subscriber):
    app = create_app(
        connector_settings(sandbox.url, CONNECTOR_ALLOWED_TARGETS="127.0.0.1", CONNECTOR_RETRY_SCHEDULE="0")
    )
    worker = running_worker(app)
    try:
        api = serve(app)
        sub = subscribe(api, subscriber.target())
        subscriber.script("/hook", Scripted(status=500))
        requests.post(inbound(api), data=receipt(), timeout=10)
        log_url = f"/v1/triggers/delivery_receipt/subscriptions/{sub['id']}/deliveries"
        wait_for(
            lambda: [d for d in api.get(log_url).json() if d["status"] == "failed"],
            what="the delivery to fail for good",
        )
        answer = api.session.post(
            f"{api.url}/v1/triggers/delivery_receipt/subscriptions/{sub['id']}/replay",
            json={"since": "2000-01-01T00:00:00Z"},
            timeout=10,
        )
        assert answer.status_code == 202 and answer.json()["replayed"] == 1
        wait_for(subscriber.deliveries, what="the replayed delivery")
    finally:
        worker.stop()


def test_an_account_never_sees_or_touches_another_accounts_hooks_and_events(wired, subscriber):
    sub = subscribe(wired, subscriber.target())
    requests.post(inbound(wired), data=receipt(), timeout=10)
    event_id = wired.get("/v1/triggers/delivery_receipt/events").json()[0]["id"]
    other = Api(wired.url, auth=("low", "low-api-key"))
    base = "/v1/triggers/delivery_receipt/subscriptions"
    assert other.get(base).json() == []
    assert other.get(f"{base}/{sub['id']}").status_code == 404
    assert other.get(f"{base}/{sub['id']}/deliveries").status_code == 404
    assert other.session.delete(f"{wired.url}{base}/{sub['id']}", timeout=10).status_code == 404
    assert other.session.post(f"{wired.url}{base}/{sub['id']}/replay", json={}, timeout=10).status_code == 404
    assert other.session.post(f"{wired.url}/v1/events/{event_id}/replay", timeout=10).status_code == 404
    assert other.get("/v1/triggers/delivery_receipt/events").json() == []
    assert wired.get(base).json()[0]["id"] == sub["id"]


def test_trigger_routes_need_credentials_allmysms_accepts(wired):
    bad = Api(wired.url, auth=("demo", "wrong"))
    assert bad.get("/v1/triggers/delivery_receipt/events").status_code == 401
    assert requests.get(wired.url + "/v1/triggers/delivery_receipt/subscriptions", timeout=10).status_code == 401


def test_a_sent_sms_comes_back_as_a_receipt_and_a_simulated_reply_as_a_reply(sandbox, serve, subscriber):
    app = create_app(connector_settings(sandbox.url, ALLMYSMS_SANDBOX=True, **FAST))
    worker = running_worker(app)
    try:
        api = serve(app)
        sandbox.state.set_callback_url("demo", inbound(api))  # what the customer does in the customer area
        receipts = subscribe(api, subscriber.target("/receipts"))
        subscribe(api, subscriber.target("/replies"), trigger="reply_received")
        sent = api.action("send_sms", {"message": "Hi", "recipients": ["0611111111", "0622222299"]}).json()
        wait_for(lambda: len(subscriber.deliveries("/receipts")) == 2, what="both receipts")
        events = [
            Webhook(receipts["secret"]).verify(d["body"], d["headers"]) for d in subscriber.deliveries("/receipts")
        ]
        by_number = {e["data"]["phone_number"]: e["data"] for e in events}
        assert by_number["+33611111111"]["status"] == "delivered"
        assert by_number["+33622222299"]["status"] == "unknown_number"
        assert {e["data"]["sms_id"] for e in events} == {m["sms_id"] for m in sent["sms_ids"]}
        assert {e["data"]["campaign_id"] for e in events} == {sent["campaign_id"]}
        answer = api.session.post(
            f"{api.url}/v1/sandbox/replies", json={"phone_number": "06 11 11 11 11", "message": "Oui merci"}, timeout=10
        )
        assert answer.status_code == 201, answer.text
        reply = json.loads(wait_for(lambda: subscriber.deliveries("/replies"), what="the reply")[0]["body"])
        assert (
            reply["data"]["message"] == "Oui merci" and reply["data"]["sms_id"] == by_number["+33611111111"]["sms_id"]
        )
    finally:
        worker.stop()


def test_replies_cannot_be_simulated_against_a_real_allmysms(wired):
    answer = wired.session.post(
        f"{wired.url}/v1/sandbox/replies", json={"phone_number": "0611111111", "message": "x"}, timeout=10
    )
    assert answer.status_code == 404


def test_opt_outs_are_listed_newest_first_with_stable_ids(wired, sandbox):
    sandbox.state.add_blacklist("demo", "33611111111", "stop", "2026-12-01 09:00:00")
    sandbox.state.add_blacklist("demo", "33622222222", "manual unsubscribe", "2026-12-02 10:00:00")
    first = wired.get("/v1/triggers/opt_out_received/events").json()
    assert [e["data"]["phone_number"] for e in first] == ["+33622222222", "+33611111111"]
    assert first[1]["data"] == {
        "phone_number": "+33611111111",
        "reason": "stop",
        "received_at": "2026-12-01T08:00:00Z",
        "unreadable_fields": [],
    }
    assert [e["id"] for e in wired.get("/v1/triggers/opt_out_received/events").json()] == [e["id"] for e in first]


def test_credits_low_fires_once_per_crossing(wired, sandbox):
    url = "/v1/triggers/credits_low/events?threshold=50000"
    assert wired.get(url).json() == []
    sandbox.state.set_credits("demo", 40000)
    crossed = wired.get(url).json()
    assert len(crossed) == 1 and crossed[0]["data"]["credits"] == 40000 and crossed[0]["data"]["crossing"] == 1
    sandbox.state.set_credits("demo", 30000)
    assert wired.get(url).json() == crossed  # still below: the same single item
    sandbox.state.set_credits("demo", 60000)
    assert wired.get(url).json() == crossed  # above again: re-armed, nothing new
    sandbox.state.set_credits("demo", 10)
    again = wired.get(url).json()
    assert [e["data"]["crossing"] for e in again] == [2, 1] and again[1] == crossed[0]
    assert wired.get("/v1/triggers/credits_low/events?threshold=1").json() == []


def test_credits_low_needs_a_valid_threshold(wired):
    for query in ("", "?threshold=0", "?threshold=lots"):
        answer = wired.get("/v1/triggers/credits_low/events" + query)
        assert answer.status_code == 422 and answer.json()["error"]["fields"][0]["path"] == "threshold"


def test_the_same_callback_at_once_in_many_threads_is_one_event(wired):
    from concurrent.futures import ThreadPoolExecutor

    url = inbound(wired)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: requests.post(url, data=receipt("same"), timeout=30), range(32)))
    assert [a.status_code for a in answers] == [200] * 32
    assert sum(a.json()["accepted"] for a in answers) == 1
    assert len(wired.get("/v1/triggers/delivery_receipt/events").json()) == 1


def test_a_subscription_shows_since_when_it_fails_and_is_disabled_when_that_lasts(sandbox, serve, subscriber):
    app = create_app(
        connector_settings(
            sandbox.url,
            CONNECTOR_ALLOWED_TARGETS="127.0.0.1",
            CONNECTOR_RETRY_SCHEDULE="0,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
            CONNECTOR_DISABLE_AFTER_HOURS=0.0002,
        )
    )  # 0.72 s
    worker = running_worker(app)
    try:
        api = serve(app)
        failing = subscribe(api, subscriber.target("/failing"))
        healthy = subscribe(api, subscriber.target("/healthy"))
        subscriber.script("/failing", *[Scripted(status=500)] * 20)
        subscriber.script("/healthy", Scripted(status=500))  # fails once, then succeeds
        requests.post(inbound(api), data=receipt(), timeout=10)
        mine = f"{api.url}/v1/triggers/delivery_receipt/subscriptions"
        shown = wait_for(
            lambda: {s["id"]: s for s in api.session.get(mine, timeout=10).json() if s["status"] == "disabled"}.get(
                failing["id"]
            ),
            what="the failing one disabled",
        )
        assert shown["failing_since"] is not None and shown["last_status_code"] == 500
        assert "failed" in shown["status_reason"]
        well = api.session.get(f"{mine}/{healthy['id']}", timeout=10).json()
        assert well["status"] == "active" and well["failing_since"] is None and well["last_status_code"] == 200
        before = len(subscriber.received)
        requests.post(inbound(api), data=receipt("s-2"), timeout=10)
        wait_for(lambda: len(subscriber.deliveries("/healthy")) == 2, what="the healthy one to get the next event")
        assert not [r for r in subscriber.received[before:] if r["path"] == "/failing"]
    finally:
        worker.stop()


def test_a_slow_subscriber_does_not_hold_back_a_fast_one(sandbox, serve, subscriber):
    app = create_app(
        connector_settings(sandbox.url, CONNECTOR_ALLOWED_TARGETS="127.0.0.1", CONNECTOR_DELIVERY_CONCURRENCY=8)
    )
    worker = running_worker(app, start=False)
    api = serve(app)
    subscribe(api, subscriber.target("/slow"))
    subscribe(api, subscriber.target("/fast"))
    subscriber.script("/slow", *[Scripted(status=204, delay=3)] * 12)
    url = inbound(api)
    for n in range(12):
        requests.post(url, data=receipt(f"s-{n}"), timeout=10)
    worker.start()
    try:
        # Eight slots in all, two at most for one subscription: the slow one holds two of them while
        # the fast one gets the other six. Sharing the eight freely, the slow one would hold them all
        # after a few rounds, and the fast one would wait 3 s for each free slot.
        wait_for(lambda: len(subscriber.deliveries("/fast")) == 12, timeout=2.5, what="all 12 at the fast one")
        assert [r["path"] for r in subscriber.received][:12] == ["/fast"] * 12  # all before any slow one ends
        assert subscriber.deliveries("/slow") == []
    finally:
        worker.stop(grace=0)  # the slow deliveries are not waited for


def test_unsubscribing_while_a_delivery_is_out_neither_fails_nor_stalls_the_worker(wired, subscriber, caplog):
    """The delivery and its log go with the subscription; the worker's outcome for it has nothing left to
    record, and the worker goes on delivering to the others."""
    from sqlalchemy import select

    from connector.storage.tables import deliveries

    slow = subscribe(wired, subscriber.target("/slow"))
    subscribe(wired, subscriber.target("/fast"))
    subscriber.script("/slow", Scripted(status=204, delay=1.0))
    url = inbound(wired)
    requests.post(url, data=receipt("s-1"), timeout=10).raise_for_status()
    store = wired.app.extensions["connector"].store

    def out_to_slow():
        with store.engine.connect() as db:
            return db.execute(
                select(deliveries.c.seq).where(
                    deliveries.c.subscription_id == slow["id"], deliveries.c.lease.is_not(None)
                )
            ).first()

    wait_for(out_to_slow, what="the slow delivery under way")
    assert wired.session.delete(slow["location"], timeout=10).status_code == 204
    requests.post(url, data=receipt("s-2"), timeout=10).raise_for_status()
    wait_for(lambda: len(subscriber.deliveries("/fast")) == 2, what="both events at the other subscriber")
    # The slow one's answer comes after its subscription was deleted: recorded nowhere, and no failure.
    wait_for(lambda: subscriber.deliveries("/slow"), timeout=5, what="the slow delivery's answer")
    requests.post(url, data=receipt("s-3"), timeout=10).raise_for_status()
    wait_for(lambda: len(subscriber.deliveries("/fast")) == 3, what="the next event after that")
    assert [
        r.getMessage() for r in caplog.records if r.name == "connector.events.delivery" and r.levelname == "ERROR"
    ] == []


def stored(api: Api, event_id: str) -> dict:
    """The event as the connector keeps it, raw record included."""
    services = api.app.extensions["connector"]
    account_id, _ = services.accounts.by_token(inbound(api).rsplit("/", 1)[1])
    return services.store.events.get(account_id, event_id)


def delivered_events(subscriber, path="/hook", count=1) -> list[dict]:
    wait_for(lambda: len(subscriber.deliveries(path)) >= count, what=f"{count} deliveries at {path}")
    return [json.loads(d["body"]) for d in subscriber.deliveries(path)]


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded; charset=ISO-8859-1", "application/x-www-form-urlencoded"]
)
def test_a_latin_1_form_callback_reaches_the_subscriber_with_its_accents(wired, subscriber, content_type):
    subscribe(wired, subscriber.target(), trigger="reply_received")
    reply = {
        "smsMoId": "mo-1",
        "phoneNumber": "33611111111",
        "message": "Très bien, à demain",
        "receptionDate": "2026-12-01 09:41:09",
    }
    body = "&".join(f"{k}={quote(v, encoding='latin-1')}" for k, v in reply.items())
    answer = requests.post(inbound(wired), data=body.encode(), headers={"Content-Type": content_type}, timeout=10)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    (event,) = delivered_events(subscriber)
    assert event["data"]["message"] == "Très bien, à demain" and event["data"]["unreadable_fields"] == []


def test_an_xml_batch_callback_is_stored_and_each_record_forwarded(wired, subscriber):
    subscribe(wired, subscriber.target("/receipts"))
    subscribe(wired, subscriber.target("/replies"), trigger="reply_received")
    body = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><acks>'
        "<ack><smsId>s-1</smsId><phoneNumber>33611111111</phoneNumber><status>1</status>"
        "<receptionDate>2026-12-01 09:30:03</receptionDate></ack>"
        "<ack><smsId>s-2</smsId><phoneNumber>33622222222</phoneNumber><status>5</status></ack>"
        "<mo><smsMoId>mo-1</smsMoId><phoneNumber>33611111111</phoneNumber>"
        "<message><![CDATA[Oui, à demain]]></message></mo></acks>"
    ).encode("latin-1")
    answer = requests.post(inbound(wired), data=body, headers={"Content-Type": "text/xml"}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    receipts = delivered_events(subscriber, "/receipts", 2)
    assert {e["data"]["sms_id"]: e["data"]["status"] for e in receipts} == {"s-1": "delivered", "s-2": "unknown_number"}
    (reply,) = delivered_events(subscriber, "/replies")
    assert reply["data"]["message"] == "Oui, à demain"
    assert len(wired.get("/v1/triggers/delivery_receipt/events").json()) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"<ack><smsId>s-1</smsId>",
        b'<!DOCTYPE ack [<!ENTITY x SYSTEM "file:///etc/passwd">]><ack><smsId>&x;</smsId></ack>',
    ],
)
def test_malformed_or_entity_declaring_xml_gets_400_and_is_kept_for_inspection(wired, body):
    answer = requests.post(inbound(wired), data=body, headers={"Content-Type": "application/xml"}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "callback_rejected"
    (rejected,) = wired.get("/v1/inbound/rejected").json()
    assert rejected["reason"] in (
        "the body is not valid XML",
        "the XML body declares a DTD or entities, which are not accepted",
    )
    assert wired.get("/v1/triggers/delivery_receipt/events").json() == []


def test_a_callback_with_fields_that_cannot_be_read_is_stored_flagged_and_forwarded(wired, subscriber):
    subscribe(wired, subscriber.target())
    fields = {
        "smsId": "s-1",
        "phoneNumber": "33 6 xx",
        "code": "DELIVRD",
        "description": "Remis",
        "receptionDate": "19/02/2014 11:40:35",
    }
    answer = requests.post(inbound(wired), data=fields, timeout=10)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    (event,) = delivered_events(subscriber)
    assert event["data"]["unreadable_fields"] == ["code", "phoneNumber", "receptionDate"]
    assert (event["data"]["phone_number"], event["data"]["status"], event["data"]["status_text"]) == (
        "33 6 xx",
        "unknown",
        "Remis",
    )
    assert stored(wired, event["id"])["raw"] == {
        "phoneNumber": "33 6 xx",
        "code": "DELIVRD",
        "receptionDate": "19/02/2014 11:40:35",
    }
    assert wired.get("/v1/inbound/rejected").json() == []


def test_a_receipt_with_an_iso_date_then_the_documented_one_is_one_event_delivered_once(wired, subscriber):
    subscribe(wired, subscriber.target())
    iso = {**receipt(), "receptionDate": "2026-12-01T09:30:03.000"}
    first = requests.post(inbound(wired), json=iso, timeout=10).json()
    second = requests.get(inbound(wired), params=receipt(), timeout=10).json()
    assert (first["accepted"], second["accepted"], second["duplicates"]) == (1, 0, 1)
    (event,) = delivered_events(subscriber)
    assert event["data"]["received_at"] == "2026-12-01T08:30:03Z" and event["data"]["unreadable_fields"] == []
    assert len(wired.get("/v1/triggers/delivery_receipt/events").json()) == 1


def test_the_sandbox_pushing_xml_brings_receipts_and_replies_to_subscribers(sandbox, serve, subscriber):
    app = create_app(connector_settings(sandbox.url, ALLMYSMS_SANDBOX=True, **FAST))
    worker = running_worker(app)
    try:
        api = serve(app)
        sandbox.state.set_callback_url("demo", inbound(api), "xml")
        subscribe(api, subscriber.target("/receipts"))
        subscribe(api, subscriber.target("/replies"), trigger="reply_received")
        sent = api.action("send_sms", {"message": "Hi", "recipients": ["0611111111", "0622222299"]}).json()
        receipts = delivered_events(subscriber, "/receipts", 2)
        assert {e["data"]["phone_number"]: e["data"]["status"] for e in receipts} == {
            "+33611111111": "delivered",
            "+33622222299": "unknown_number",
        }
        assert {e["data"]["sms_id"] for e in receipts} == {m["sms_id"] for m in sent["sms_ids"]}
        answer = api.session.post(
            f"{api.url}/v1/sandbox/replies",
            json={"phone_number": "0611111111", "message": "Oui <merci> & à demain"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        (reply,) = delivered_events(subscriber, "/replies")
        assert reply["data"]["message"] == "Oui <merci> & à demain" and reply["data"]["unreadable_fields"] == []
        assert api.get("/v1/inbound/rejected").json() == []
    finally:
        worker.stop()


def test_opt_outs_of_one_number_in_one_second_each_get_their_own_id_at_every_poll(wired, sandbox):
    for comment in ("stop", "Refused", "stop"):
        sandbox.state.add_blacklist("demo", "33611111111", comment, "2026-12-01 09:00:00")
    sandbox.state.add_blacklist("demo", "33622222222", "stop", "2026-12-01 09:00:00")
    first = wired.get("/v1/triggers/opt_out_received/events").json()
    assert sorted((e["data"]["phone_number"], e["data"]["reason"]) for e in first) == [
        ("+33611111111", "Refused"),
        ("+33611111111", "stop"),
        ("+33611111111", "stop"),
        ("+33622222222", "stop"),
    ]
    assert len({e["id"] for e in first}) == 4
    assert [e["id"] for e in wired.get("/v1/triggers/opt_out_received/events").json()] == [e["id"] for e in first]


# --- Limits against abuse (security issue 13, findings 3, 6 and 10) --------------------------------------


def subscriptions_url(api: Api, trigger="delivery_receipt") -> str:
    return f"{api.url}/v1/triggers/{trigger}/subscriptions"


def test_one_subscription_over_the_cap_gets_409_saying_the_cap_and_how_to_make_room(sandbox, serve, subscriber):
    api = serve(
        create_app(
            connector_settings(sandbox.url, CONNECTOR_ALLOWED_TARGETS="127.0.0.1", CONNECTOR_MAX_SUBSCRIPTIONS=2)
        )
    )
    first = subscribe(api, subscriber.target("/1"))
    subscribe(api, subscriber.target("/2"))
    refused = api.session.post(subscriptions_url(api), json={"target_url": subscriber.target("/3")}, timeout=10)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "too_many_subscriptions" and error["limit"] == 2
    assert "2 subscriptions" in error["message"] and "DELETE" in error["message"]
    assert len(api.get("/v1/triggers/delivery_receipt/subscriptions").json()) == 2
    # Another trigger has its own count; and deleting one makes room on this one.
    subscribe(api, subscriber.target("/3"), trigger="reply_received")
    assert api.session.delete(first["location"], timeout=10).status_code == 204
    subscribe(api, subscriber.target("/3"))


def test_the_same_target_subscribed_again_is_the_subscription_already_there_and_gets_each_event_once(wired, subscriber):
    first = subscribe(wired, subscriber.target())
    again = wired.session.post(subscriptions_url(wired), json={"target_url": subscriber.target()}, timeout=10)
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["secret"]) == (first["id"], first["secret"])
    assert again.headers["Location"] == first["location"]
    assert [s["id"] for s in wired.get("/v1/triggers/delivery_receipt/subscriptions").json()] == [first["id"]]
    requests.post(inbound(wired), data=receipt(), timeout=10).raise_for_status()
    wait_for(
        lambda: (
            wired.get(f"/v1/triggers/delivery_receipt/subscriptions/{first['id']}/deliveries").json()
            and wired.get(f"/v1/triggers/delivery_receipt/subscriptions/{first['id']}/deliveries").json()[0]["status"]
            == "succeeded"
        ),
        what="the delivery",
    )
    assert len(subscriber.deliveries()) == 1


def test_subscribing_again_to_a_disabled_subscription_turns_it_back_on(wired, subscriber):
    from connector.storage.tables import DISABLED

    sub = subscribe(wired, subscriber.target())
    wired.app.extensions["connector"].store.subscriptions.set_status(sub["id"], DISABLED, "Every delivery failed.")
    again = wired.session.post(subscriptions_url(wired), json={"target_url": subscriber.target()}, timeout=10)
    assert again.status_code == 200 and again.json()["status"] == "active" and "status_reason" not in again.json()
    requests.post(inbound(wired), data=receipt(), timeout=10).raise_for_status()
    wait_for(subscriber.deliveries, what="a delivery to the subscription turned back on")


BAD_JSON = {
    "nested too deeply": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "a key twice": ('{"target_url": "https://a.example/", "target_url": "https://b.example/"}', "appears twice"),
    "NaN": ('{"target_url": "https://a.example/", "n": NaN}', "NaN"),
}


@pytest.mark.parametrize("body, said", list(BAD_JSON.values()), ids=list(BAD_JSON))
def test_a_subscription_or_replay_body_that_is_not_strict_json_is_a_clear_400(wired, subscriber, body, said):
    sub = subscribe(wired, subscriber.target())
    for url in (
        subscriptions_url(wired),
        f"{subscriptions_url(wired)}/{sub['id']}/replay",
        f"{wired.url}/v1/events/evt_x/replay",
    ):
        answer = wired.session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["error"]["code"] == "malformed_request" and said in answer.json()["error"]["message"]
    assert len(wired.get("/v1/triggers/delivery_receipt/subscriptions").json()) == 1


@pytest.mark.parametrize("escaped", ["\\u0000", "\\ud800", "\\u0007", "\\u007f"])
def test_a_target_url_with_a_nul_control_character_or_half_surrogate_is_a_clear_422(wired, escaped):
    body = '{"target_url": "http://127.0.0.1' + escaped + '.example/hook"}'
    answer = wired.session.post(
        subscriptions_url(wired), data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["fields"][0]["path"] == "target_url" and "position 17" in error["message"]
    assert wired.get("/v1/triggers/delivery_receipt/subscriptions").json() == []


def test_a_replay_of_failed_deliveries_makes_at_most_the_limit_due_and_says_more_are_left(sandbox, serve, subscriber):
    app = create_app(
        connector_settings(
            sandbox.url, CONNECTOR_ALLOWED_TARGETS="127.0.0.1", CONNECTOR_RETRY_SCHEDULE="0", CONNECTOR_REPLAY_LIMIT=2
        )
    )
    worker = running_worker(app)
    try:
        api = serve(app)
        sub = subscribe(api, subscriber.target())
        subscriber.script("/hook", *[Scripted(status=500)] * 3)
        for n in range(3):
            requests.post(inbound(api), data=receipt(f"s-{n}"), timeout=10).raise_for_status()
        log_url = f"/v1/triggers/delivery_receipt/subscriptions/{sub['id']}/deliveries"
        wait_for(
            lambda: [d["status"] for d in api.get(log_url).json()] == ["failed"] * 3,
            what="three deliveries to fail for good",
        )
        replay = f"{subscriptions_url(api)}/{sub['id']}/replay"
        first = api.session.post(replay, timeout=10).json()
        assert (first["replayed"], first["more"]) == (2, True)
        wait_for(lambda: len(subscriber.deliveries()) == 2, what="the two replayed")
        # The oldest went first; the newest waited, failed still, for the next call.
        sent = sorted(json.loads(d["body"])["data"]["sms_id"] for d in subscriber.deliveries())
        assert sent == ["s-0", "s-1"]
        assert [d["status"] for d in api.get(log_url).json()][0] == "failed"
        second = api.session.post(replay, timeout=10).json()
        assert (second["replayed"], second["more"]) == (1, False)
        wait_for(lambda: len(subscriber.deliveries()) == 3, what="the last one replayed")
    finally:
        worker.stop()


def test_replays_over_the_limit_a_minute_get_429_with_retry_after_and_replay_nothing(sandbox, serve, subscriber):
    app = create_app(
        connector_settings(sandbox.url, CONNECTOR_ALLOWED_TARGETS="127.0.0.1", CONNECTOR_REPLAYS_PER_MINUTE=4)
    )  # bursts of one
    api = serve(app)
    subscribe(api, subscriber.target())
    requests.post(inbound(api), data=receipt(), timeout=10).raise_for_status()
    event_id = api.get("/v1/triggers/delivery_receipt/events").json()[0]["id"]
    store = app.extensions["connector"].store
    assert api.session.post(f"{api.url}/v1/events/{event_id}/replay", timeout=10).status_code == 202
    with store.engine.connect() as db:
        before = db.execute(select(deliveries.c.id, deliveries.c.next_attempt_at)).all()
    refused = api.session.post(f"{api.url}/v1/events/{event_id}/replay", timeout=10)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited" and "4 a minute" in refused.json()["error"]["message"]
    with store.engine.connect() as db:
        assert db.execute(select(deliveries.c.id, deliveries.c.next_attempt_at)).all() == before


def test_signing_secrets_are_derived_not_stored_and_a_stored_one_keeps_signing(wired, subscriber):
    derived = subscribe(wired, subscriber.target("/derived"))
    legacy = subscribe(wired, subscriber.target("/legacy"))
    store = wired.app.extensions["connector"].store
    with store.engine.begin() as db:
        kept = dict(db.execute(select(subscriptions.c.id, subscriptions.c.secret)).all())
        assert kept == {derived["id"]: "", legacy["id"]: ""}
        # A subscription made before secrets were derived has its own in the table: it keeps signing with it.
        db.execute(update(subscriptions).where(subscriptions.c.id == legacy["id"]).values(secret=OLD_SECRET))
    assert wired.get(f"/v1/triggers/delivery_receipt/subscriptions/{derived['id']}").json().get("secret") is None
    requests.post(inbound(wired), data=receipt(), timeout=10).raise_for_status()
    wait_for(lambda: subscriber.deliveries("/derived") and subscriber.deliveries("/legacy"), what="both deliveries")
    for path, secret in (("/derived", derived["secret"]), ("/legacy", OLD_SECRET)):
        delivered = subscriber.deliveries(path)[0]
        assert Webhook(secret).verify(delivered["body"], delivered["headers"])["type"] == "sms.delivery_receipt"
    # The same secret is derived by every process that has the secret key, and by no other.
    assert (
        signing.derived_secret(secret_key(None, wired.app.config["CONNECTOR_DATA_DIR"]), derived["id"])
        == derived["secret"]
    )


OLD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

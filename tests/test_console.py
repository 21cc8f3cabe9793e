"""The operator console: who gets in, what each page shows of real traffic, and what its forms change."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import stat
import time

import pytest
import requests

from connector import OPERATOR_BLUEPRINTS, create_app
from connector.description.manifest import load
from connector.exports import openapi
from tests.conftest import Api, Scripted, connector_settings, wait_for

TOKEN = "operator-token-for-the-tests-0123"
FAST = {
    "CONNECTOR_ALLOWED_TARGETS": "127.0.0.1",
    "CONNECTOR_RETRY_SCHEDULE": "0,0.2,0.2,0.2",
    "CONNECTOR_LEASE_SECONDS": 2,
}
PAGES = ["/console", "/console/accounts", "/console/subscriptions", "/console/events", "/console/sandbox"]
# The tests that read what the store keeps run on SQLite and on PostgreSQL.
on_each_backend = pytest.mark.usefixtures("backend")


class Operator:
    """The console as an operator's browser uses it: Flask's test client keeps the session cookie."""

    def __init__(self, app):
        self.client = app.test_client()
        self.logged_in = False

    def csrf(self) -> str:
        page = self.client.get("/console" if self.logged_in else "/console/login").get_data(as_text=True)
        return re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    def log_in(self, token: str = TOKEN):
        answer = self.client.post("/console/login", data={"csrf": self.csrf(), "token": token})
        self.logged_in = answer.status_code == 303
        return answer

    def page(self, path: str) -> str:
        answer = self.client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        return answer.get_data(as_text=True)

    def post(self, path: str, **form):
        return self.client.post(path, data={"csrf": self.csrf(), **form})


def settings(sandbox, **overrides) -> dict:
    return connector_settings(
        sandbox.url, **{"ALLMYSMS_SANDBOX": True, "CONNECTOR_OPERATOR_TOKEN": TOKEN, **FAST, **overrides}
    )


@pytest.fixture
def wired(sandbox, serve):
    """The connector on the sandbox with a delivery worker, served for real; ``.operator`` is logged in."""
    app = create_app(settings(sandbox))
    worker = app.extensions["connector"].delivery_worker()
    worker.poll_interval = 0.01
    worker.start()
    api = serve(app)
    api.app = app
    api.operator = Operator(app)
    assert api.operator.log_in().status_code == 303
    yield api
    worker.stop()


def inbound(api: Api) -> str:
    return api.get("/v1/me").json()["inbound_url"]


def subscribe(api: Api, target: str, trigger: str = "delivery_receipt") -> dict:
    answer = api.session.post(f"{api.url}/v1/triggers/{trigger}/subscriptions", json={"target_url": target}, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()


def receipt(sms_id="s-1", phone="33611111111", campaign="c-1", status="1", **extra) -> dict:
    return {
        "smsId": sms_id,
        "campaignId": campaign,
        "phoneNumber": phone,
        "status": status,
        "statusText": "Delivered",
        "receptionDate": "2026-12-01 09:30:03",
        **extra,
    }


def callback(api: Api, **fields) -> None:
    answer = requests.post(inbound(api), data=receipt(**fields), timeout=10)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text


def event_ids(html: str) -> list[str]:
    return re.findall(r'href="/console/events/(evt_[^"]+)"', html)


# --- Who gets in ------------------------------------------------------------------------------------


def test_every_page_sends_a_visitor_who_has_not_logged_in_to_the_login_form(sandbox):
    client = create_app(settings(sandbox)).test_client()
    for path in PAGES + ["/console/events/evt_x"]:
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["Location"] == f"/console/login?next={path}", path
    answer = client.post("/console/subscriptions/sub_x/disable", data={})
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/console/login")
    assert "Operator token" in client.get("/console/login").get_data(as_text=True)


def test_logging_in_leads_back_to_the_page_asked_for_but_never_to_another_site(sandbox):
    for asked, landing in (
        ("/console/events?type=sms.reply_received", "/console/events?type=sms.reply_received"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
    ):
        operator = Operator(create_app(settings(sandbox)))
        answer = operator.client.post("/console/login", data={"csrf": operator.csrf(), "token": TOKEN, "next": asked})
        assert answer.status_code == 303 and answer.headers["Location"] == landing


def test_a_next_page_with_control_characters_or_off_the_console_leads_to_the_overview_never_to_an_error(sandbox):
    for asked in (
        "/console\r\nSet-Cookie: x=1",
        "/console/events\n",
        "/console\x00",
        "/console/\u2028x",
        "/consoleevil",
        "/v1/me",
        "javascript:alert(1)",
    ):
        operator = Operator(create_app(settings(sandbox)))
        form = operator.client.get("/console/login", query_string={"next": asked})
        assert form.status_code == 200 and 'name="next" value="/console"' in form.get_data(as_text=True), repr(asked)
        answer = operator.client.post("/console/login", data={"csrf": operator.csrf(), "token": TOKEN, "next": asked})
        assert answer.status_code == 303 and answer.headers["Location"] == "/console", repr(asked)
        assert "Set-Cookie: x" not in str(answer.headers)


def test_a_wrong_token_is_refused_and_repeated_failures_from_one_address_are_held_off(sandbox):
    operator = Operator(create_app(settings(sandbox)))
    for _ in range(5):
        answer = operator.log_in("not-the-operator-token")
        assert answer.status_code == 401 and "not the operator token" in answer.get_data(as_text=True)
    held = operator.log_in(TOKEN)  # even the right token waits: the address is guessing
    assert held.status_code == 429 and held.headers["Retry-After"] == "1"
    assert "wait 1 s before the next try" in held.get_data(as_text=True)
    assert operator.client.get("/console").status_code == 303


def test_wrong_tokens_make_an_address_wait_longer_each_time_but_never_lock_it_out():
    from connector.console.access import FREE_FAILURES, MAX_WAIT, Throttle

    now = [1000.0]
    throttle = Throttle(clock=lambda: now[0])
    waits = []
    for _ in range(FREE_FAILURES + 8):
        waits.append(throttle.wait_for("203.0.113.7"))
        now[0] += waits[-1]  # the guesser waits exactly as long as it is told
        throttle.failed("203.0.113.7")
    assert waits == [0] * FREE_FAILURES + [1, 2, 4, 8, 16, 32, MAX_WAIT, MAX_WAIT]
    assert throttle.wait_for("198.51.100.1") == 0  # another address is not held off
    now[0] += MAX_WAIT
    assert throttle.wait_for("203.0.113.7") == 0  # the operator gets a try after a minute at most


def test_behind_a_trusted_proxy_a_guesser_is_held_off_by_its_own_address_not_the_proxys(sandbox):
    app = create_app(settings(sandbox, CONNECTOR_TRUSTED_PROXIES="10.0.0.0/8"))
    guesser, operator, spoofer = Operator(app), Operator(app), Operator(app)
    proxy = {"REMOTE_ADDR": "10.1.2.3"}
    for _ in range(6):
        guesser.client.post(
            "/console/login",
            data={"csrf": guesser.csrf(), "token": "wrong-token"},
            environ_base=proxy,
            headers={"X-Forwarded-For": "198.51.100.9"},
        )
    held = guesser.client.post(
        "/console/login",
        data={"csrf": guesser.csrf(), "token": TOKEN},
        environ_base=proxy,
        headers={"X-Forwarded-For": "198.51.100.9"},
    )
    assert held.status_code == 429
    # What the client itself wrote left of the proxy's entry is not believed: the guesser cannot pose as another.
    dodge = guesser.client.post(
        "/console/login",
        data={"csrf": guesser.csrf(), "token": TOKEN},
        environ_base=proxy,
        headers={"X-Forwarded-For": "192.0.2.1, 198.51.100.9"},
    )
    assert dodge.status_code == 429
    answer = operator.client.post(
        "/console/login",
        data={"csrf": operator.csrf(), "token": TOKEN},
        environ_base=proxy,
        headers={"X-Forwarded-For": "203.0.113.5"},
    )
    assert answer.status_code == 303 and operator.client.get("/console").status_code == 200
    # A peer that is not a trusted proxy is known by its own address, whatever X-Forwarded-For it sends.
    for _ in range(6):
        spoofer.client.post(
            "/console/login",
            data={"csrf": spoofer.csrf(), "token": "wrong-token"},
            environ_base={"REMOTE_ADDR": "192.0.2.50"},
            headers={"X-Forwarded-For": "203.0.113.5"},
        )
    assert (
        spoofer.client.post(
            "/console/login", data={"csrf": spoofer.csrf(), "token": TOKEN}, environ_base={"REMOTE_ADDR": "192.0.2.50"}
        ).status_code
        == 429
    )


def test_the_client_address_is_the_first_untrusted_hop_from_the_right():
    from connector.web.addresses import client_address, trusted_networks

    proxies = trusted_networks("10.0.0.0/8, 192.168.1.5,::1")
    assert client_address("10.0.0.1", "198.51.100.9", proxies) == "198.51.100.9"
    assert client_address("10.0.0.1", "6.6.6.6, 198.51.100.9, 192.168.1.5", proxies) == "198.51.100.9"
    assert client_address("::1", "10.9.9.9", proxies) == "10.9.9.9"  # all trusted: the last one told
    assert client_address("198.51.100.9", "10.0.0.1", proxies) == "198.51.100.9"
    assert client_address("10.0.0.1", None, proxies) == "10.0.0.1"
    assert client_address("10.0.0.1", "198.51.100.9", ()) == "10.0.0.1"  # nothing trusted by default


def test_a_trusted_proxies_setting_that_is_not_addresses_stops_the_start_with_the_setting_named(sandbox):
    from connector.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        create_app(settings(sandbox, CONNECTOR_TRUSTED_PROXIES="10.0.0.0/8,proxy.internal"))
    assert "CONNECTOR_TRUSTED_PROXIES: 'proxy.internal' is not an address or a network" in str(refused.value)


def test_a_form_without_its_csrf_token_is_refused_with_400_and_with_a_wrong_one_with_403(wired, subscriber):
    sub = subscribe(wired, subscriber.target())
    client = wired.operator.client
    path = f"/console/subscriptions/{sub['id']}/disable"
    assert client.post(path, data={}).status_code == 400
    assert client.post(path, data={"csrf": "forged-" + "x" * 30}).status_code == 403
    assert wired.get(f"/v1/triggers/delivery_receipt/subscriptions/{sub['id']}").json()["status"] == "active"
    stranger = Operator(wired.app)
    assert stranger.client.post("/console/login", data={"token": TOKEN}).status_code == 400  # no session yet
    stranger.csrf()
    assert (
        stranger.client.post("/console/login", data={"token": TOKEN, "csrf": "forged-" + "y" * 30}).status_code == 403
    )


def test_the_session_cookie_is_httponly_lax_kept_to_the_console_and_carries_no_secret(sandbox):
    operator = Operator(create_app(settings(sandbox)))
    cookie = operator.log_in().headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # served over http here: a Secure cookie would never come back
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    payload = json.loads(base64.urlsafe_b64decode(value.split(".")[0] + "=="))
    assert set(payload) <= {"operator", "sid", "csrf", "_permanent"} and TOKEN not in cookie
    secure = Operator(create_app(settings(sandbox, CONNECTOR_PUBLIC_URL="https://sms.example.com")))
    assert "Secure" in secure.log_in().headers["Set-Cookie"]


def test_logging_out_ends_the_session(wired):
    operator = wired.operator
    assert operator.post("/console/logout").status_code == 303
    assert operator.client.get("/console").status_code == 303


def test_logging_out_ends_every_copy_of_the_session_in_every_web_process_and_no_other_session(sandbox):
    # Two apps on one data directory: two web processes of one service, each with its own memory.
    first, second = create_app(settings(sandbox)), create_app(settings(sandbox))
    operator, colleague = Operator(first), Operator(first)
    operator.log_in()
    colleague.log_in()
    copied = operator.client.get_cookie("connector_console", path="/console").value
    thief = second.test_client()
    thief.set_cookie("connector_console", copied, path="/console")
    assert thief.get("/console").status_code == 200  # the copy works while the session lasts
    assert operator.post("/console/logout").status_code == 303
    answer = thief.get("/console")
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/console/login")
    assert colleague.client.get("/console").status_code == 200


def test_a_session_past_its_hours_is_over_even_if_its_cookie_comes_back(tmp_path):
    from connector.console.access import Sessions

    now = [1000.0]
    sessions = Sessions(str(tmp_path), lifetime=3600, clock=lambda: now[0])
    kept, ended = sessions.open(), sessions.open()
    sessions.end(ended)
    assert sessions.live(kept) and not sessions.live(ended) and not sessions.live(None)
    assert kept not in (tmp_path / "console-sessions").read_text()  # only digests are kept
    now[0] += 3601
    assert not sessions.live(kept)


def test_changing_the_operator_token_ends_every_session(sandbox):
    app = create_app(settings(sandbox))
    operator = Operator(app)
    operator.log_in()
    cookie = operator.client.get_cookie("connector_console", path="/console").value
    other = create_app(settings(sandbox, CONNECTOR_OPERATOR_TOKEN="another-operator-token-0123456"))
    client = other.test_client()
    client.set_cookie("connector_console", cookie, path="/console")
    assert client.get("/console").status_code == 303


def test_pages_forbid_framing_scripts_and_caching(wired):
    answer = wired.operator.client.get("/console")
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
    assert answer.headers["Cache-Control"] == "no-store" and answer.headers["X-Frame-Options"] == "DENY"


def test_without_a_token_and_off_the_sandbox_the_console_is_not_there(sandbox):
    app = create_app(connector_settings(sandbox.url))
    assert not [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/console")]
    client = app.test_client()
    for path in ("/console", "/console/login", "/console/static/console.css"):
        assert client.get(path).status_code == 404
    assert client.post("/console/login", data={"token": "x"}).status_code == 404


def test_on_the_sandbox_a_token_is_made_once_readable_by_its_owner_only(sandbox, tmp_path):
    app = create_app(settings(sandbox, CONNECTOR_OPERATOR_TOKEN=None))
    path = tmp_path / "var" / "operator-token"
    token = path.read_text().strip()
    assert len(token) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    create_app(settings(sandbox, CONNECTOR_OPERATOR_TOKEN=None))
    assert path.read_text().strip() == token
    assert Operator(app).log_in(token).status_code == 303


def test_serve_says_where_the_token_is_never_what_it_is(tmp_path, caplog):
    from connector import config
    from connector.ops.serving import _announce_console

    values = config.load({"CONNECTOR_DATA_DIR": str(tmp_path / "var"), "PORT": "8123"})
    with caplog.at_level(logging.WARNING):
        _announce_console(values)
        _announce_console({**values, "CONNECTOR_OPERATOR_TOKEN": TOKEN})
    first, second = [r.getMessage() for r in caplog.records]
    assert "http://127.0.0.1:8123/console" in first and str(tmp_path / "var" / "operator-token") in first
    assert "CONNECTOR_OPERATOR_TOKEN setting" in second and TOKEN not in second


def test_the_console_has_exactly_its_routes_and_none_is_in_the_api_description(sandbox):
    app = create_app(settings(sandbox))
    pages = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.partition(".")[0] == "console"}
    assert pages == {
        "/console",
        "/console/login",
        "/console/logout",
        "/console/accounts",
        "/console/subscriptions",
        "/console/subscriptions/<subscription_id>/disable",
        "/console/subscriptions/<subscription_id>/enable",
        "/console/events",
        "/console/events/<event_id>",
        "/console/events/<event_id>/replay",
        "/console/sandbox",
        "/console/static/<path:filename>",
    }
    assert "console" in OPERATOR_BLUEPRINTS  # what keeps them out of /openapi.json's route check
    assert not [path for path in openapi.document(load(), "https://x.example")["paths"] if "console" in path]


# --- What the pages show ----------------------------------------------------------------------------


@on_each_backend
def test_the_overview_counts_real_events_deliveries_and_subscriptions(wired, subscriber):
    subscribe(wired, subscriber.target())
    failing = subscribe(wired, subscriber.target("/failing"))
    subscriber.script("/failing", *[Scripted(status=500)] * 10)
    callback(wired)
    wait_for(
        lambda: subscriber.deliveries() and len(subscriber.deliveries("/failing", ok_only=False)) == 4,
        what="one success and four failures",
    )
    wait_for(lambda: "<b>1</b> failed" in wired.operator.page("/console"), what="the failure recorded")
    wired.operator.post(f"/console/subscriptions/{failing['id']}/disable")
    html = wired.operator.page("/console")
    assert "1 in all" in html and "<b>1</b> succeeded" in html and "<b>0</b> pending" in html
    assert "<b>1</b> active" in html and "<b>1</b> disabled" in html
    assert html.count('class="bar"') == 1 and html.count('class="bar zero"') == 23
    assert "Due now</dt><dd>0" in html and f"<code>{wired.app.config['ALLMYSMS_BASE_URL']}</code>" in html
    assert ">on</span>" in html


@on_each_backend
def test_accounts_are_listed_with_their_inbound_urls(wired):
    token = inbound(wired).rsplit("/", 1)[1]
    html = wired.operator.page("/console/accounts")
    # The test client asks as http://localhost: the URL is built on the address the console is seen at.
    assert "<td>demo</td>" in html and f"http://localhost/v1/inbound/allmysms/{token}" in html


@on_each_backend
def test_subscriptions_show_their_last_delivery_and_failure_streak_and_can_be_disabled_and_enabled(wired, subscriber):
    healthy = subscribe(wired, subscriber.target("/healthy"))
    failing = subscribe(wired, subscriber.target("/failing"))
    subscriber.script("/failing", *[Scripted(status=503)] * 20)
    callback(wired)
    store = wired.app.extensions["connector"].store
    wait_for(lambda: store.views.counts().get("failed") == 1, what="the failing delivery to give up")
    html = wired.operator.page("/console/subscriptions")
    row = html.split(f'<tr id="{failing["id"]}">')[1].split("</tr>")[0]
    assert subscriber.target("/failing") in row and ">503</span>" in row and "badge bad" in row
    healthy_row = html.split(f'<tr id="{healthy["id"]}">')[1].split("</tr>")[0]
    assert ">200</span>" in healthy_row and "—" in healthy_row  # never failed

    answer = wired.operator.post(f"/console/subscriptions/{failing['id']}/disable")
    assert answer.status_code == 303
    html = wired.operator.page("/console/subscriptions")
    assert ">disabled</span>" in html.split(f'<tr id="{failing["id"]}">')[1].split("</tr>")[0]
    callback(wired, sms_id="s-2")
    wait_for(lambda: len(subscriber.deliveries("/healthy")) == 2, what="the next event at the healthy one")
    assert len(subscriber.deliveries("/failing", ok_only=False)) == 4  # nothing more for the disabled one

    wired.operator.post(f"/console/subscriptions/{failing['id']}/enable")
    shown = wired.get(f"/v1/triggers/delivery_receipt/subscriptions/{failing['id']}").json()
    assert shown["status"] == "active" and shown["failing_since"] is None and "status_reason" not in shown
    assert wired.operator.post("/console/subscriptions/sub_nothere/enable").status_code == 404


@on_each_backend
def test_the_event_log_filters_by_type_phone_campaign_and_time(wired, sandbox):
    callback(wired, sms_id="s-1", phone="33611111111", campaign="c-1")
    callback(wired, sms_id="s-2", phone="33622222222", campaign="c-2")
    callback(wired, sms_id="s-3", phone="33622222222", campaign="c-1")
    sandbox.state.set_callback_url("demo", inbound(wired))
    sent = wired.action("send_sms", {"message": "Hi", "recipients": ["0633333333"]}).json()
    assert wired.session.post(
        f"{wired.url}/v1/sandbox/replies", json={"phone_number": "0633333333", "message": "Oui"}, timeout=10
    ).ok
    page = wired.operator.page
    wait_for(lambda: len(event_ids(page("/console/events"))) == 5, what="the reply and the sandbox receipt")
    assert len(event_ids(page("/console/events?type=sms.reply_received"))) == 1
    assert len(event_ids(page("/console/events?type=sms.delivery_receipt"))) == 4
    assert len(event_ids(page("/console/events?phone=06+22+22+22+22"))) == 2
    assert len(event_ids(page("/console/events?phone=%2B33622222222&campaign=c-1"))) == 1
    assert len(event_ids(page(f"/console/events?campaign={sent['campaign_id']}"))) == 2  # its receipt and reply
    assert len(event_ids(page("/console/events?campaign=c-%25"))) == 0  # a LIKE wildcard matches itself only
    now = time.time()
    later = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now + 120))
    earlier = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now - 120))
    assert len(event_ids(page(f"/console/events?since={later}"))) == 0
    assert len(event_ids(page(f"/console/events?since={earlier}&until={later}"))) == 5
    assert len(event_ids(page(f"/console/events?until={earlier}"))) == 0
    html = page("/console/events?since=yesterday&phone=12")
    assert "Since: not a date and time" in html and "Phone:" in html and not event_ids(html)


@on_each_backend
def test_an_event_shows_its_payload_and_each_delivery_attempt(wired, subscriber):
    subscribe(wired, subscriber.target())
    subscriber.script("/hook", Scripted(status=502))
    callback(wired, mccmnc="20801")
    wait_for(subscriber.deliveries, what="the retry to succeed")
    event_id = event_ids(wired.operator.page("/console/events"))[0]
    html = wait_for(
        lambda: (lambda h: h if ">succeeded</span>" in h else None)(wired.operator.page(f"/console/events/{event_id}")),
        what="the success recorded",
    )
    webhook_id = subscriber.deliveries()[0]["headers"]["Webhook-Id"]
    assert webhook_id in html and subscriber.target() in html
    assert ">502</span>" in html and ">200</span>" in html and html.count(" ms</td>") == 2
    assert "&#34;phone_number&#34;: &#34;+33611111111&#34;" in html or '"phone_number": "+33611111111"' in html
    assert "mccmnc" in html and "20801" in html  # what AllMySMS sent beyond the event's fields
    assert wired.operator.client.get("/console/events/evt_unknown").status_code == 404


@on_each_backend
def test_replay_delivers_again_with_the_same_webhook_id_and_reaches_subscriptions_made_since(wired, subscriber):
    subscribe(wired, subscriber.target())
    callback(wired)
    first = wait_for(subscriber.deliveries, what="the first delivery")[0]
    event_id = event_ids(wired.operator.page("/console/events"))[0]
    subscribe(wired, subscriber.target("/later"))  # made after the event: the replay reaches it too
    answer = wired.operator.post(f"/console/events/{event_id}/replay")
    assert answer.status_code == 303 and answer.headers["Location"] == f"/console/events/{event_id}"
    again = wait_for(lambda: subscriber.deliveries()[1:], what="the replayed delivery")[0]
    assert again["headers"]["Webhook-Id"] == first["headers"]["Webhook-Id"]
    wait_for(lambda: subscriber.deliveries("/later"), what="the new subscription's delivery")
    assert "Sent again to 2 active subscriptions." in wired.operator.page(f"/console/events/{event_id}")


# --- The sandbox page -------------------------------------------------------------------------------


@on_each_backend
def test_the_sandbox_page_sends_an_sms_and_plays_a_reply_through_the_service(wired, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    sandbox.state.set_callback_url("demo", inbound(wired))
    answer = wired.operator.post(
        "/console/sandbox", do="send", login="demo", recipients="06 44 44 44 44", message="Console test"
    )
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "Sent: campaign" in html
    campaign = re.search(r"campaign <code>([^<]+)</code>", html).group(1)
    store = wired.app.extensions["connector"].store
    wait_for(lambda: store.views.find_events(data_fields={"campaign_id": campaign}), what="the receipt of the test SMS")
    answer = wired.operator.post(
        "/console/sandbox", do="reply", login="demo", phone_number="0644444444", message="Bien reçu"
    )
    assert answer.status_code == 200 and "Reply played" in answer.get_data(as_text=True)
    reply = wait_for(lambda: store.views.find_events(event_type="sms.reply_received"), what="the reply event")[0]
    assert reply["data"]["message"] == "Bien reçu" and reply["data"]["campaign_id"] == campaign
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("0644444444", "33644444444", "44 44 44", "Console test", "Bien reçu", TOKEN):
        assert secret not in logged


def test_the_sandbox_page_shows_what_the_send_got_wrong(wired):
    answer = wired.operator.post("/console/sandbox", do="send", login="demo", recipients="12", message="x")
    assert answer.status_code == 422 and "recipients" in answer.get_data(as_text=True)
    broke = wired.operator.post("/console/sandbox", do="send", login="broke", recipients="0611111111", message="x")
    assert broke.status_code == 422 and "credit" in broke.get_data(as_text=True).lower()


def test_the_sandbox_page_is_not_there_when_the_service_uses_a_real_allmysms(sandbox):
    operator = Operator(create_app(settings(sandbox, ALLMYSMS_SANDBOX=False)))
    operator.log_in()
    assert operator.client.get("/console/sandbox").status_code == 404
    html = operator.page("/console")
    assert "/console/sandbox" not in html and ">off</span>" in html


# --- Charts -----------------------------------------------------------------------------------------


def test_bars_are_as_tall_as_their_share_of_the_busiest_hour_and_labels_are_escaped():
    from connector.console import charts

    svg = str(charts.bars([0, 5, 10], ["<a>", "b", "c"], "events", label_every=1))
    heights = [float(h) for h in re.findall(r'<rect class="bar[^"]*"[^>]* height="([0-9.]+)"', svg)]
    assert heights[0] == 1.0 and heights[2] == 2 * heights[1]  # an empty hour keeps a sliver
    assert "<a>" not in svg and "&lt;a&gt;: 0 events" in svg
    assert 'class="bar zero"' in str(charts.bars([0, 0], ["x", "y"], "events"))  # nothing at all: no division


def test_shares_split_one_bar_by_count_and_leave_out_zeros():
    from connector.console import charts

    svg = str(charts.shares([("succeeded", 3, "ok"), ("failed", 1, "bad"), ("pending", 0, "wait")]))
    assert 'class="ok" x="0.00" y="0" width="75.00"' in svg and 'class="bad" x="75.00" y="0" width="25.00"' in svg
    assert 'class="wait"' not in svg and "pending: 0" in svg
    assert 'class="ok"' not in str(charts.shares([("succeeded", 0, "ok")]))

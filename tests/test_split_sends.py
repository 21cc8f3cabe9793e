"""A send split into several campaigns, posted to AllMySMS several at a time (ALLMYSMS_CONCURRENT_FEEDS): the
result in the feeds' order, and a failure half-way reported exactly, whichever order the campaigns ended in."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qs

import pytest

from connector import create_app
from connector.errors import CreditExhausted, OutcomeUnknown, UpstreamUnavailable
from connector.sandbox import SandboxState, create_sandbox_app
from connector.sending import actions, messages
from connector.sending.upstream import Credentials
from tests.conftest import LoopbackServer, connector_settings

PER_FEED = 3
NUMBERS = [f"06{i:08d}" for i in range(10000000, 10000015)]  # five campaigns of three


def _first_number(environ: dict[str, Any]) -> str | None:
    """The first recipient of a sendSms feed posted as a form (AllMySMS's digits), or None for another call."""
    if "sendSms" not in environ.get("PATH_INFO", ""):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = _Body(body)
    feed = parse_qs(body.decode())["smsData"][0]
    return json.loads(feed)["DATA"]["SMS"][0]["MOBILEPHONE"]


class _Body:
    def __init__(self, data: bytes):
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._at + size
        chunk, self._at = self._data[self._at : end], min(end, len(self._data))
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def _upstream(number: str) -> str:
    return "33" + number[1:]


@pytest.fixture
def staged():
    """The real sandbox behind a gate: the second campaign finds the account empty (the sandbox itself answers
    402), and the first and third are held until it has been refused, so they end after it."""
    state = SandboxState()
    sandbox = create_sandbox_app(state)
    refused = threading.Event()
    failing, held = _upstream(NUMBERS[PER_FEED]), {_upstream(NUMBERS[0]), _upstream(NUMBERS[2 * PER_FEED])}
    seen: list[str] = []

    def gate(environ, start_response):
        first = _first_number(environ)
        if first is not None:
            seen.append(first)
        if first in held:
            assert refused.wait(10), "the refused campaign never came"
        if first != failing:
            return sandbox(environ, start_response)
        credits = state.credits("demo")
        state.set_credits("demo", 0)
        try:
            return list(sandbox(environ, start_response))
        finally:
            state.set_credits("demo", credits)
            refused.set()

    server = LoopbackServer(gate)
    yield server.url, state, seen
    server.stop()
    state.close()


def test_a_split_send_reports_its_campaigns_and_messages_in_the_order_of_the_input(sandbox, serve):
    api = serve(
        create_app(connector_settings(sandbox.url, ALLMYSMS_RECIPIENTS_PER_FEED=PER_FEED, ALLMYSMS_CONCURRENT_FEEDS=3))
    )
    response = api.action("send_sms", {"message": "Hi", "recipients": NUMBERS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [m["phone_number"] for m in body["sms_ids"]] == ["+33" + n[1:] for n in NUMBERS]
    assert len(body["campaign_ids"]) == 5 and body["campaign_id"] == body["campaign_ids"][0]
    for i, campaign in enumerate(body["campaign_ids"]):
        held = [r.phone_number for r in sandbox.state.campaign(campaign).recipients]
        assert held == [_upstream(n) for n in NUMBERS[i * PER_FEED : (i + 1) * PER_FEED]]
    assert body["recipients"] == 15 and body["credits_used"] == 15 * 15


def test_a_campaign_refused_while_others_are_out_reports_exactly_those_that_went_out(staged, serve):
    url, state, seen = staged
    api = serve(create_app(connector_settings(url, ALLMYSMS_RECIPIENTS_PER_FEED=PER_FEED, ALLMYSMS_CONCURRENT_FEEDS=3)))
    response = api.action("send_sms", {"message": "Hi", "recipients": NUMBERS})
    assert response.status_code == 402, response.text
    error = response.json()["error"]
    went_out = {c.id: NUMBERS.index("0" + c.recipients[0].phone_number[2:]) for c in state.campaigns("demo")}
    reported = error["partially_sent"]["campaign_ids"]
    # Exactly what AllMySMS holds, in the feeds' order: the first and third campaigns, which ended after the
    # second was refused, among them.
    assert sorted(reported) == sorted(went_out) and [went_out[c] for c in reported] == sorted(went_out.values())
    assert {0, 2 * PER_FEED} <= set(went_out.values()) and PER_FEED not in went_out.values()
    assert error["partially_sent"]["recipients"] == PER_FEED * len(went_out)
    assert error["disposition"] == "check_before_retry"
    assert f"{PER_FEED * len(went_out)} of 15 recipients" in error["message"]
    assert _upstream(NUMBERS[PER_FEED]) in seen


def test_a_campaign_refused_before_any_went_out_is_the_error_as_it_is(sandbox, serve):
    sandbox.state.set_credits("demo", 0)
    api = serve(
        create_app(connector_settings(sandbox.url, ALLMYSMS_RECIPIENTS_PER_FEED=PER_FEED, ALLMYSMS_CONCURRENT_FEEDS=3))
    )
    response = api.action("send_sms", {"message": "Hi", "recipients": NUMBERS})
    assert response.status_code == 402
    error = response.json()["error"]
    assert "partially_sent" not in error and error["disposition"] == "top_up_credit"
    assert sandbox.state.campaigns("demo") == []


# --- The loop itself, with a stand-in for AllMySMS: which feeds are started, what is told -------------------


class _Upstream:
    """Answers each feed as ``outcomes`` says: a reply, or an error to raise; a feed listed in ``hold`` waits for
    ``release`` first, which feed ``release_at`` (or any later one) sets when it starts."""

    def __init__(self, outcomes: dict[int, Any], hold: set[int] = frozenset(), release_at: int = 99):
        self.outcomes, self.hold, self.release_at = outcomes, hold, release_at
        self.release = threading.Event()
        self.started: list[int] = []
        self._lock = threading.Lock()

    def send_sms(self, credentials: Credentials, feed: str) -> tuple[str, dict[str, Any]]:
        index = int(json.loads(feed)["DATA"]["CAMPAIGN_NAME"])
        with self._lock:
            self.started.append(index)
        if index >= self.release_at:
            self.release.set()
        if index in self.hold:
            # When release_at is a feed that must not start, nothing can be polled for: this is how long the
            # loop is given to start it, were it to (it then ends the wait at once).
            self.release.wait(0.3)
        outcome = self.outcomes.get(index, "ok")
        if isinstance(outcome, Exception):
            raise outcome
        return "sent", {
            "status": 100,
            "campaignId": f"c{index}",
            "smsIds": [{"phoneNumber": "33611111111", "smsId": f"s{index}"}],
            "nbContacts": 1,
        }


def _context(upstream: _Upstream, told: list[str], at_once: int) -> actions.Context:
    return actions.Context(
        upstream=upstream,  # type: ignore[arg-type]
        credentials=Credentials("demo", "key"),
        rules=messages.Rules(),
        feed_format="json",
        recipients_per_feed=1,
        credits_per_sms_fr=15,
        concurrent_feeds=at_once,
        sent=lambda campaign, sms: told.append(campaign),
    )


def _feeds(count: int):
    for index in range(count):
        yield json.dumps({"DATA": {"CAMPAIGN_NAME": str(index)}}), {}


def test_once_a_feed_failed_no_other_is_started_and_those_out_are_reported():
    upstream = _Upstream({0: CreditExhausted("No credit left.")}, hold={1}, release_at=2)
    told: list[str] = []
    with pytest.raises(CreditExhausted) as raised:
        actions._sent(_context(upstream, told, 2), _feeds(6), upstream.send_sms, 6, False)
    assert sorted(upstream.started) == [0, 1]
    assert told == ["c1"]
    assert raised.value.extra["partially_sent"] == {"campaign_ids": ["c1"], "recipients": 1}
    assert raised.value.disposition == "check_before_retry"


def test_of_several_failures_the_one_that_may_have_sent_is_told():
    upstream = _Upstream({0: CreditExhausted("No credit left."), 1: OutcomeUnknown("No answer.")})
    with pytest.raises(OutcomeUnknown):
        actions._sent(_context(upstream, [], 2), _feeds(4), upstream.send_sms, 4, False)


def test_campaigns_are_told_once_each_and_kept_in_the_feeds_order():
    upstream = _Upstream({}, hold={0}, release_at=6)  # the first ends last, once the last has started
    told: list[str] = []
    chunks = actions._sent(_context(upstream, told, 3), _feeds(7), upstream.send_sms, 7, False)
    assert [c["campaign_id"] for c in chunks] == [f"c{i}" for i in range(7)]
    assert sorted(told) == sorted(f"c{i}" for i in range(7)) and len(told) == 7


def test_a_feed_that_cannot_be_built_stops_the_send_and_reports_what_went_out():
    upstream = _Upstream({})
    told: list[str] = []

    def fed():
        yield from _feeds(2)
        raise ValueError("unknown feed format")

    with pytest.raises(ValueError):
        actions._sent(_context(upstream, told, 3), fed(), upstream.send_sms, 3, False)
    assert sorted(told) == ["c0", "c1"]


def test_one_at_a_time_takes_no_thread():
    upstream = _Upstream({})
    seen: list[list[str]] = []
    send = upstream.send_sms

    def noting_threads(credentials, feed):
        seen.append([t.name for t in threading.enumerate() if t.name.startswith("feeds")])
        return send(credentials, feed)

    actions._sent(_context(upstream, [], 1), _feeds(3), noting_threads, 3, False)
    actions._sent(_context(upstream, [], 3), _feeds(1), noting_threads, 1, False)
    assert seen == [[]] * 4
    actions._sent(_context(upstream, [], 3), _feeds(2), noting_threads, 2, False)
    assert all(names for names in seen[4:])  # the threads of a send of several feeds at once, named so


class _Crowded(_Upstream):
    """AllMySMS's calls all in use the first time (or every time) feed ``busy`` is sent: refused before anything
    is sent, as upstream.AllMySMS refuses a call that finds no free one. Feed 0 is still out when it happens."""

    def __init__(self, busy: int, always: bool = False):
        super().__init__({})
        self.busy, self.always, self.refused = busy, always, threading.Event()

    def send_sms(self, credentials: Credentials, feed: str) -> tuple[str, dict[str, Any]]:
        index = int(json.loads(feed)["DATA"]["CAMPAIGN_NAME"])
        if index == 0 and self.busy != 0:
            assert self.refused.wait(10)
        if index == self.busy and (self.always or not self.refused.is_set()):
            with self._lock:
                self.started.append(index)
            self.refused.set()
            raise UpstreamUnavailable("All calls in use.", code="upstream_busy", status=503)
        return super().send_sms(credentials, feed)


def test_a_feed_refused_because_this_sends_own_calls_hold_them_all_is_sent_again():
    upstream = _Crowded(busy=1)
    told: list[str] = []
    chunks = actions._sent(_context(upstream, told, 3), _feeds(5), upstream.send_sms, 5, False)
    assert [c["campaign_id"] for c in chunks] == [f"c{i}" for i in range(5)]
    assert sorted(told) == [f"c{i}" for i in range(5)]
    assert sorted(upstream.started) == [0, 1, 1, 2, 3, 4]


def test_a_feed_refused_with_no_other_of_the_send_out_is_a_failure():
    upstream = _Crowded(busy=0, always=True)
    told: list[str] = []
    with pytest.raises(UpstreamUnavailable) as raised:
        actions._sent(_context(upstream, told, 2), _feeds(2), upstream.send_sms, 2, False)
    assert raised.value.extra["partially_sent"] == {"campaign_ids": ["c1"], "recipients": 1}
    assert told == ["c1"] and upstream.started.count(0) <= 2

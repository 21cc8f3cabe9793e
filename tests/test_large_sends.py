"""A large personalised send read, written and answered in the memory its body held: each stage lets the one
before go as it is built. Faster ways of writing what was written before give the same text."""

from __future__ import annotations

import dataclasses
import gc
import json
import random
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.errors import InvalidInput
from connector.sending import actions, feeds, messages, phones, segments
from connector.sending.messages import Recipient
from connector.sending.upstream import Credentials

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RULES = messages.Rules()


def personalised(count: int) -> dict[str, Any]:
    return {
        "message": "Hello #param_1#, your code is #param_2#.",
        "recipients": [{"phone_number": f"061{i:07d}", "params": [f"Client {i}", f"{i:06d}"]} for i in range(count)],
    }


class _Upstream:
    """Answers each smsData feed as AllMySMS does: one smsId per recipient."""

    def send_sms(self, credentials: Credentials, feed: str) -> tuple[str, dict[str, Any]]:
        rows = json.loads(feed)["DATA"]["SMS"]
        # Numbered by the feed's place in the send (its first number's, 2,000 a feed), not by arrival: feeds
        # sent at once arrive in any order, and results are compared across runs.
        campaign = str(int(rows[0]["MOBILEPHONE"][-7:]) // 2000 + 1)
        ids = [{"phoneNumber": row["MOBILEPHONE"], "smsId": f"{campaign}-{i}"} for i, row in enumerate(rows)]
        return "sent", {"status": 100, "campaignId": campaign, "nbContacts": len(rows), "smsIds": ids}


def _context(upstream: _Upstream, at_once: int = 1) -> actions.Context:
    return actions.Context(
        upstream=upstream,  # type: ignore[arg-type]
        credentials=Credentials("demo", "key"),
        rules=RULES,
        feed_format="json",
        recipients_per_feed=2000,
        credits_per_sms_fr=15,
        concurrent_feeds=at_once,
    )


def test_a_large_send_needs_no_more_memory_than_its_body_held():
    ctx = _context(_Upstream())
    text = json.dumps(personalised(20_000))
    actions.send_sms(ctx, personalised(3))  # imports and caches first
    gc.collect()
    tracemalloc.start()
    try:
        payload = json.loads(text)
        body_size = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        handed = [payload]
        del payload
        result = actions.send_sms(ctx, handed.pop())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result["recipients"] == 20_000 and len(result["sms_ids"]) == 20_000
    # Reading the body into a request, and the request into feeds and sms_ids, each reuse what the stage
    # before let go: before, the request came on top of the body (1.5 times its size).
    assert peak < 1.1 * body_size


def test_a_taken_payload_gives_the_same_request_and_is_emptied_as_it_is_read():
    kept, taken = personalised(50), personalised(50)
    assert messages.sms_request(taken, RULES, NOW, taken=True) == messages.sms_request(kept, RULES, NOW)
    assert taken["recipients"] == [None] * 50
    assert kept == personalised(50)


def test_a_taken_payload_still_reports_every_problem_with_its_place():
    def problems(taken: bool) -> list[tuple[str, str]]:
        payload = {"message": "Hi #param_1#", "recipients": [{"phone_number": "0612", "params": ["a"]}, "0611111111"]}
        with pytest.raises(InvalidInput) as raised:
            messages.sms_request(payload, RULES, NOW, taken=taken)
        return [(f.path, f.message) for f in raised.value.fields]

    assert problems(True) == problems(False)
    assert sorted(path for path, _ in problems(True)) == ["recipients[0]", "recipients[1].params"]


def test_the_sms_ids_share_the_requests_numbers_and_read_as_before():
    reply = {"smsIds": [{"phoneNumber": "33611111111", "smsId": "1"}, {"phoneNumber": "+33622222222", "smsId": 2}]}
    e164 = "".join(["+3361111", "1111"])  # a string of its own, as a request holds it
    sent = feeds.sent_messages(reply, numbers={phones.upstream(e164): e164})
    assert (
        sent
        == feeds.sent_messages(reply)
        == [
            {"phone_number": "+33611111111", "sms_id": "1"},
            {"phone_number": "+33622222222", "sms_id": "2"},
        ]
    )
    assert sent[0]["phone_number"] is e164


def test_a_send_at_once_gives_the_same_result_as_in_turn():
    results = []
    for at_once in (1, 3):
        result = actions.send_sms(_context(_Upstream(), at_once), personalised(7_000))
        results.append(result)
    assert results[0] == results[1]
    assert results[0]["campaign_ids"] == ["1", "2", "3", "4"]
    assert [m["phone_number"] for m in results[1]["sms_ids"]] == [f"+3361{i:07d}" for i in range(7_000)]


def _json_feed(request: messages.SmsRequest) -> str:
    """The smsData JSON as it was written before, one dict per recipient."""
    head = feeds._head(request)
    if request.dynamic:
        sms = [
            {"MOBILEPHONE": phones.upstream(r.e164), **{f"PARAM_{i + 1}": p for i, p in enumerate(r.params)}}
            for r in request.recipients
        ]
    else:
        sms = [{"MOBILEPHONE": phones.upstream(r.e164)} for r in request.recipients]
    return json.dumps({"DATA": {**head, "SMS": sms}}, ensure_ascii=False, separators=(",", ":"))


def test_the_json_feed_is_the_text_json_dumps_writes_whatever_the_values():
    rng = random.Random(3)
    characters = ["a", '"', "\\", "\n", "\r", "\t", "\x01", "é", "😀", "\u2028", "/", "<", "]]>", " ", "\x7f"]
    base = messages.sms_request(personalised(1), RULES, NOW)

    def text() -> str:
        return "".join(rng.choice(characters) for _ in range(rng.randrange(0, 6)))

    for _ in range(2000):
        dynamic = rng.randrange(0, 4)
        recipients = tuple(
            Recipient(f"+336{rng.randrange(10**8):08d}", tuple(text() for _ in range(rng.choice([dynamic] * 3 + [4]))))
            for _ in range(rng.randrange(0, 4))
        )
        request = dataclasses.replace(
            base, recipients=recipients, dynamic=dynamic, message=text(), sender=rng.choice(["", 'Shop"']),
            campaign_name=rng.choice(["", "c\u2028"]), flash=rng.random() < 0.5, client_reference=text(),
        )  # fmt: skip
        assert feeds.sms_data(request, 0, 10, "json") == _json_feed(request)


def test_the_longest_message_decides_the_parts_as_counting_each_did():
    rng = random.Random(5)
    values = ["", "a", "é", "€", "[", "😀", "x" * 40, "y" * 150, "Привет"]
    for _ in range(500):
        message = rng.choice(
            ["Hi #param_1#", "#param_2# and #param_1#", "#param_1##param_1# €", "€ #param_3#", "a" * 150]
        )
        used = [int(n) for n in messages._PLACEHOLDER.findall(message)]
        dynamic = max(used, default=0)
        recipients = [
            Recipient(
                "+33611111111", tuple("".join(rng.choices(values, k=rng.randrange(0, 4))) for _ in range(dynamic))
            )
            for _ in range(rng.choice([1, 2, 5, 9, 20]))
        ]
        counted = max(segments.analyse(messages.render(message, r.params)).parts for r in recipients)
        assert messages._parts_max(message, recipients) == counted, (message, recipients)

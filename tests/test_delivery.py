"""The delivery rules (pure) and the worker against real subscriber servers on loopback."""

from __future__ import annotations

import random

import pytest

from connector.delivery import Policy, next_step
from connector.retry import retry_after_seconds
from connector.store import FAILED, PENDING, SUCCEEDED

POLICY = Policy(schedule=(0, 5, 300, 1800), jitter=0.0, disable_after=3600)
RNG = random.Random(0)


def test_a_2xx_answer_succeeds():
    assert next_step(POLICY, 0, 204, None, 1000.0, None, RNG) == {"status": SUCCEEDED, "next_attempt_at": None}


def test_a_failure_is_retried_on_the_schedule():
    assert next_step(POLICY, 0, 500, None, 1000.0, 1000.0, RNG) == {"status": PENDING, "next_attempt_at": 1005.0}
    assert next_step(POLICY, 1, None, None, 1000.0, 1000.0, RNG)["next_attempt_at"] == 1300.0
    assert next_step(POLICY, 2, 404, None, 1000.0, 1000.0, RNG)["next_attempt_at"] == 2800.0


def test_after_the_last_attempt_the_delivery_fails_and_is_kept():
    assert next_step(POLICY, 3, 500, None, 1000.0, 1000.0, RNG) == {"status": FAILED, "next_attempt_at": None}


def test_410_gone_removes_the_subscription():
    assert next_step(POLICY, 0, 410, None, 1000.0, 1000.0, RNG)["subscription"] == "gone"


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_is_honoured_when_longer_than_the_schedule(code):
    assert next_step(POLICY, 0, code, 120, 1000.0, 1000.0, RNG)["next_attempt_at"] == 1120.0
    assert next_step(POLICY, 2, code, 120, 1000.0, 1000.0, RNG)["next_attempt_at"] == 2800.0


def test_retry_after_is_ignored_on_other_failures():
    assert next_step(POLICY, 0, 500, 999, 1000.0, 1000.0, RNG)["next_attempt_at"] == 1005.0


def test_a_subscription_failing_for_longer_than_allowed_is_disabled():
    step = next_step(POLICY, 1, 500, None, 10000.0, 10000.0 - 3600, RNG)
    assert step["subscription"] == "disable" and "1 hours" in step["reason"]
    assert "subscription" not in next_step(POLICY, 1, 500, None, 10000.0, 10000.0 - 3599, RNG)


def test_jitter_stays_within_its_bounds():
    policy = Policy(schedule=(0, 100), jitter=0.1)
    rng = random.Random(42)
    delays = [next_step(policy, 0, 500, None, 0.0, 0.0, rng)["next_attempt_at"] for _ in range(200)]
    assert min(delays) >= 90 and max(delays) <= 110 and len(set(delays)) > 100


@pytest.mark.parametrize("header, seconds", [
    ("120", 120.0),
    ("0", 0.0),
    ("-5", 0.0),
    ("Wed, 21 Oct 2026 07:28:00 GMT", 90.0),  # an HTTP date, 90 s after "now" below
    ("Wed, 21 Oct 2026 07:20:00 GMT", 0.0),  # already past
    ("soon", None),
    ("", None),
    (None, None),
])
def test_retry_after_is_read_as_seconds_or_as_an_http_date(header, seconds):
    now = 1792567590.0  # 2026-10-21 07:26:30 UTC
    assert retry_after_seconds(header, now) == seconds

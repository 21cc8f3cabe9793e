"""The per-account limit on actions: a token bucket, and 429 with Retry-After over it."""

from __future__ import annotations

from connector import create_app
from connector.sending.ratelimit import RateLimit
from tests.conftest import Api, connector_settings

SEND = {"message": "Hi", "recipients": ["+33611111111"]}


class Ticks:
    """Seconds that pass only when the test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_of_a_quarter_minute_then_one_action_per_refill():
    clock = Ticks()
    limit = RateLimit(per_minute=60, clock=clock)  # 1 a second, bursts of 15
    assert [limit.wait_for("demo", "key") for _ in range(15)] == [0] * 15
    assert limit.wait_for("demo", "key") == 1
    clock.advance(1.0)
    assert limit.wait_for("demo", "key") == 0


def test_each_caller_has_its_own_bucket_and_a_wrong_key_does_not_drain_the_accounts():
    limit = RateLimit(per_minute=4, clock=Ticks())  # bursts of 1
    assert limit.wait_for("demo", "wrong") == 0
    assert limit.wait_for("demo", "wrong") == 15
    assert limit.wait_for("demo", "right") == 0
    assert limit.wait_for("other", "right") == 0


def test_zero_means_no_limit():
    limit = RateLimit(per_minute=0, clock=Ticks())
    assert all(limit.wait_for("demo", "key") == 0 for _ in range(1000))


def test_over_the_limit_an_action_gets_429_with_retry_after_and_nothing_is_sent(sandbox, serve):
    app = create_app(connector_settings(sandbox.url, CONNECTOR_ACTIONS_PER_MINUTE=4))
    demo = serve(app)
    assert demo.action("send_sms", SEND).status_code == 200
    refused = demo.action("send_sms", SEND)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "15"
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["disposition"] == "retry_later"
    assert "Nothing was sent" in error["message"]
    assert len(sandbox.state.campaigns("demo")) == 1
    # Another account is not held back.
    assert Api(demo.url, auth=("low", "low-api-key")).action("get_account", {}).status_code == 200

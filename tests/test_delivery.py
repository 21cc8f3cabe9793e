"""The delivery rules (pure) and the worker against real subscriber servers on loopback."""

from __future__ import annotations

import random
import time

import pytest

from connector.events.policy import Policy, next_step
from connector.sending.retry import retry_after_seconds
from connector.storage.tables import FAILED, PENDING, SUCCEEDED

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


@pytest.mark.parametrize(
    "header, seconds",
    [
        ("120", 120.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("Wed, 21 Oct 2026 07:28:00 GMT", 90.0),  # an HTTP date, 90 s after "now" below
        ("Wed, 21 Oct 2026 07:20:00 GMT", 0.0),  # already past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_as_an_http_date(header, seconds):
    now = 1792567590.0  # 2026-10-21 07:26:30 UTC
    assert retry_after_seconds(header, now) == seconds


# --- The worker against real subscribers: limits that keep one account from flooding a host or the queue --

from sqlalchemy import select, update  # noqa: E402

from connector.events.delivery import Worker  # noqa: E402
from connector.events.pacing import HostBudget  # noqa: E402
from connector.events.targets import AllowList  # noqa: E402
from connector.storage.store import Store  # noqa: E402
from connector.storage.tables import attempts, deliveries, subscriptions  # noqa: E402
from tests.conftest import Scripted, wait_for  # noqa: E402

KEY = "k" * 64


class FrozenClock:
    """A monotonic clock that stands still until a test lets it run."""

    def __init__(self):
        self.now = 1000.0
        self._running_since: float | None = None

    def __call__(self):
        if self._running_since is None:
            return self.now
        return self.now + time.monotonic() - self._running_since

    def run(self):
        self._running_since = time.monotonic()


def test_a_host_budget_lets_a_burst_through_then_says_how_long_the_next_one_waits():
    clock = FrozenClock()
    budget = HostBudget(4, clock=clock)
    assert [budget.take("a.example") for _ in range(4)] == [0.0] * 4
    assert budget.take("a.example") == pytest.approx(0.25)
    assert budget.take("b.example") == 0.0  # each host has its own
    assert budget.spent() == {"a.example"}
    clock.now += 10
    assert budget.spent() == set() and budget.take("a.example") == 0.0


def test_deliveries_a_host_budget_sends_back_are_spaced_at_its_rate():
    clock = FrozenClock()
    budget = HostBudget(2, clock=clock)
    budget.take("a.example"), budget.take("a.example")
    turns = []
    for _ in range(3):
        turns.append(budget.give_back("a.example", budget.take("a.example")))
    assert turns == pytest.approx([0.5, 1.0, 1.5])
    assert budget.spent() == {"a.example"}  # what was given back is not counted against the host


def test_no_host_budget_means_no_limit():
    budget = HostBudget(0)
    assert all(budget.take("a.example") == 0.0 for _ in range(1000)) and budget.spent() == set()


@pytest.fixture
def store(backend):
    made = Store(backend, secret_key=KEY)
    yield made
    made.close()


def queue(store: Store, login: str, targets: list[str], events: int, received_at: float) -> list[str]:
    """``events`` receipts of a new account, fanned out to one subscription per target: the subscription ids."""
    account = store.accounts.ensure(login, login.ljust(64, "0"))
    subs = [
        store.subscriptions.add(account, "delivery_receipt", "sms.delivery_receipt", target, 1.0)[0]["id"]
        for target in targets
    ]
    store.events.add(
        account,
        [
            {
                "id": f"evt_{login}_{n}",
                "type": "sms.delivery_receipt",
                "timestamp": "2026-12-01T08:30:03Z",
                "data": {"sms_id": f"{login}-{n}"},
            }
            for n in range(events)
        ],
        received_at,
    )
    store.events.fan_out(received_at)
    return subs


def worker(store: Store, concurrency: int = 8, per_host: float = 0.0, limit_loopback: bool = False) -> Worker:
    made = Worker(
        store,
        policy=Policy(schedule=(0, 0.2), jitter=0.0, per_host=per_host),
        allowed=AllowList("127.0.0.1"),
        concurrency=concurrency,
        poll_interval=0.01,
        unlimited=AllowList("") if limit_loopback else None,
    )
    return made


def test_deliveries_over_a_hosts_budget_wait_their_turn_neither_dropped_nor_counted_as_failures(store, subscriber):
    # Twenty deliveries to one host through four subscriptions, a budget of five a second, and a clock that
    # stands still until the test moves it: five go at once, two wait in the worker (0.2 and 0.4 s), the
    # thirteen others wait in the database, untried (sent back by the worker, or not taken at all).
    queue(store, "flood", [subscriber.target(f"/{n}") for n in range(4)], events=5, received_at=time.time())
    running = worker(store, per_host=5, limit_loopback=True)
    clock = FrozenClock()
    running.pacing.budget = HostBudget(5, clock=clock)
    running.start()
    try:

        def waiting():
            with store.engine.connect() as db:
                return db.execute(
                    select(deliveries.c.seq).where(
                        deliveries.c.status == "pending", deliveries.c.attempts == 0, deliveries.c.lease.is_(None)
                    )
                ).all()

        def tried():
            with store.engine.connect() as db:
                return db.execute(select(attempts.c.seq)).all()

        # The thirteen waiting have no attempt: only the seven sent do.
        wait_for(
            lambda: len(subscriber.received) == 7 and len(waiting()) == 13 and len(tried()) == 7,
            what="7 sent and recorded, 13 waiting untried",
        )
        with store.engine.connect() as db:
            assert {row.status for row in db.execute(select(deliveries.c.status)).all()} <= {"pending", "succeeded"}
            assert (
                db.execute(
                    select(subscriptions.c.failing_since).where(subscriptions.c.failing_since.is_not(None))
                ).all()
                == []
            )
        clock.run()  # the host's budget refills, five a second
        wait_for(lambda: len(subscriber.received) == 20, what="all twenty delivered")
        with store.engine.connect() as db:
            wait_for(
                lambda: (
                    {
                        tuple(r)
                        for r in store.engine.connect()
                        .execute(select(deliveries.c.status, deliveries.c.attempts))
                        .all()
                    }
                    == {("succeeded", 1)}
                ),
                what="each delivered once, at its first attempt",
            )
    finally:
        running.stop()
    assert len({(r["path"], r["body"]) for r in subscriber.received}) == 20  # none twice


def test_hosts_of_the_allow_list_are_not_limited(store, subscriber):
    queue(store, "local", [subscriber.target(f"/{n}") for n in range(4)], events=5, received_at=time.time())
    running = worker(store, per_host=5)
    clock = FrozenClock()
    running.pacing.budget = HostBudget(5, clock=clock)  # would hold back all but seven, were 127.0.0.1 limited
    running.start()
    try:
        wait_for(lambda: len(subscriber.received) == 20, what="all twenty delivered")
    finally:
        running.stop()


def test_one_accounts_backlog_does_not_keep_another_accounts_new_event_waiting_behind_it(store, subscriber):
    # Account "flood" has 4 subscriptions x 15 events due long ago, each answered slowly; account "quiet" has
    # one event due now. Four slots: by age alone, quiet's delivery would be the 61st out.
    flood_targets = [subscriber.target(f"/flood/{n}") for n in range(4)]
    for target in flood_targets:
        subscriber.script(target.split(subscriber.url)[1], *[Scripted(status=204, delay=0.05)] * 15)
    now = time.time()  # events older than the retention (30 days) would be pruned at once
    queue(store, "flood", flood_targets, events=15, received_at=now - 60)
    queue(store, "quiet", [subscriber.target("/quiet")], events=1, received_at=now)
    running = worker(store, concurrency=4)
    running.start()
    try:
        wait_for(lambda: len(subscriber.received) == 61, timeout=30, what="every delivery")
    finally:
        running.stop()
    order = [r["path"] for r in subscriber.received]
    assert order.index("/quiet") < 15, order


def test_the_worker_survives_stored_targets_no_request_can_carry_and_delivers_the_others(store, subscriber, backend):
    bad = ["https://[::1/", "https://exa\tmple.com/", "https://exa\u200bmple.com/"]
    if backend.startswith("sqlite"):
        bad.append("https://exa\x00mple.com/")  # PostgreSQL refuses to store it at all
    subs = queue(
        store,
        "mixed",
        [f"https://ok{n}.example/" for n in range(len(bad))] + [subscriber.target()],
        events=2,
        received_at=time.time(),
    )
    with store.engine.begin() as db:
        for sub, url in zip(subs, bad):
            db.execute(update(subscriptions).where(subscriptions.c.id == sub).values(target_url=url))
    running = worker(store)
    running.start()
    try:
        wait_for(lambda: len(subscriber.deliveries()) == 2, what="the good subscription's two deliveries")
        with store.engine.connect() as db:
            wait_for(
                lambda: len(store.engine.connect().execute(select(attempts.c.seq)).all()) == 2 * len(subs),
                what="an attempt recorded for every delivery",
            )
    finally:
        running.stop()
    for sub in subs[: len(bad)]:
        log = store.history.log(sub, 10)
        assert len(log) == 2 and all(d["attempts"] and d["attempts"][0]["status_code"] is None for d in log)


def test_a_stopping_worker_gives_back_at_once_the_deliveries_it_holds_for_their_hosts_turn(
    store, subscriber, monkeypatch
):
    # One delivery a hundred seconds to the host: the first goes, the next two wait in the worker for their turn
    # (kept there, however long, here). Stopped with a long grace, the worker does not wait for them: they go
    # back to the queue, untried, free for any worker.
    monkeypatch.setattr("connector.events.delivery.MAX_HELD", 600.0)
    queue(store, "held", [subscriber.target("/held")], events=3, received_at=time.time())
    running = worker(store, per_host=0.01, limit_loopback=True)
    running.start()

    def states():
        with store.engine.connect() as db:
            return sorted(
                tuple(r)
                for r in db.execute(
                    select(deliveries.c.status, deliveries.c.attempts, deliveries.c.lease.is_not(None))
                ).all()
            )

    try:
        wait_for(
            lambda: states() == [("pending", 0, True), ("pending", 0, True), ("succeeded", 1, False)],
            what="one delivered, two held",
        )
    finally:
        running.stop(timeout=10, grace=60)
    assert not running._thread.is_alive()
    assert states() == [("pending", 0, False), ("pending", 0, False), ("succeeded", 1, False)]
    assert len(subscriber.received) == 1

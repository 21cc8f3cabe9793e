"""The outbox on each backend: what a worker's turn claims, and what finishing it records and moves on."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select, text

from connector.storage import outbox
from connector.storage.store import Store
from connector.storage.tables import FAILED, PENDING, SUCCEEDED, Due, attempts, deliveries, delivery_id, events

KEY = "k" * 64
LEASE = 30.0


@pytest.fixture
def store(backend):
    made = Store(backend, replayable=True, secret_key=KEY)
    yield made
    made.close()


@pytest.fixture
def pg_store(postgres):
    """For what only PostgreSQL does: SQLite has one writer at a time, and its plans differ."""
    made = Store(postgres, replayable=True, secret_key=KEY)
    yield made
    made.close()


def account_with(store: Store, login: str, subscriptions: int) -> tuple[int, list[str]]:
    account = store.accounts.ensure(login, login.ljust(64, "0"))
    subs = [
        store.subscriptions.add(
            account, "delivery_receipt", "sms.delivery_receipt", f"https://hooks.example.com/{login}/{k}", 1.0
        )[0]["id"]
        for k in range(subscriptions)
    ]
    return account, subs


def receive(store: Store, account: int, ids: list[str], at: float) -> None:
    store.events.add(
        account,
        [
            {"id": i, "type": "sms.delivery_receipt", "timestamp": "2026-12-01T08:30:03Z", "data": {"sms_id": i}}
            for i in ids
        ],
        at,
    )
    store.events.fan_out(at)


def outcome(due, at: float, code: int | None = 200, **more) -> dict:
    made = {
        "due": due,
        "attempted_at": at,
        "status_code": code,
        "latency_ms": 12,
        "error": None if code == 200 else f"HTTP {code}",
        "status": SUCCEEDED if code == 200 else PENDING,
        "next_attempt_at": None if code == 200 else at + 60,
    }
    made.update(more)
    return made


def rows(store: Store) -> dict[int, dict]:
    with store.engine.connect() as db:
        return {row.seq: dict(row._mapping) for row in db.execute(select(deliveries))}


def attempts_of(store: Store) -> list[tuple]:
    with store.engine.connect() as db:
        return sorted(db.execute(select(attempts.c.delivery_seq, attempts.c.status_code, attempts.c.error)).all())


def test_a_claim_takes_due_deliveries_by_due_time_then_by_number_up_to_its_limit(store):
    account, subs = account_with(store, "mine", 2)
    receive(store, account, ["evt_late"], 20.0)
    receive(store, account, ["evt_early"], 10.0)
    receive(store, account, ["evt_future"], 500.0)
    first = store.outbox.claim(3, now=100.0, lease_seconds=LEASE)
    assert [(d.event_id, d.subscription_id) for d in first] == [
        ("evt_early", subs[0]),
        ("evt_early", subs[1]),
        ("evt_late", subs[0]),
    ]
    assert [d.seq for d in first[:2]] == sorted(d.seq for d in first[:2])
    assert len({d.lease for d in first}) == 1 and first[0].due_at == 10.0 and first[0].account_id == account
    # Leased: the next claim takes what is left that is due, and the event not due yet stays.
    second = store.outbox.claim(10, now=101.0, lease_seconds=LEASE)
    assert [(d.event_id, d.subscription_id) for d in second] == [("evt_late", subs[1])]
    assert store.outbox.claim(10, now=102.0, lease_seconds=LEASE) == []


def test_a_turn_records_every_outcome_moves_each_delivery_on_and_claims_the_next(store):
    account, subs = account_with(store, "mine", 3)
    receive(store, account, [f"evt_{n}" for n in range(12)], 10.0)
    claimed = store.outbox.claim(7, now=11.0, lease_seconds=LEASE)
    results = [outcome(d, 11.5) for d in claimed[:5]]
    results.append(outcome(claimed[5], 11.5, 503))
    results.append(outcome(claimed[6], 11.5, None, error="connect failed: refusé", status=FAILED))
    more = store.outbox.finish_and_claim(results, 12.0, 4, LEASE)
    assert len(more) == 4 and not {d.seq for d in more} & {d.seq for d in claimed}
    after = rows(store)
    for d in claimed[:5]:
        assert after[d.seq]["status"] == SUCCEEDED and after[d.seq]["attempts"] == 1
        assert after[d.seq]["lease"] is None and after[d.seq]["lease_until"] is None
        assert after[d.seq]["updated_at"] == 12.0 and after[d.seq]["last_status_code"] == 200
    retried = after[claimed[5].seq]
    assert (retried["status"], retried["attempts"], retried["next_attempt_at"]) == (PENDING, 1, 71.5)
    assert (retried["last_status_code"], retried["last_error"], retried["lease"]) == (503, "HTTP 503", None)
    gave_up = after[claimed[6].seq]
    assert (gave_up["status"], gave_up["last_status_code"], gave_up["last_error"]) == (
        FAILED,
        None,
        "connect failed: refusé",
    )
    assert attempts_of(store) == sorted(
        [(d.seq, 200, None) for d in claimed[:5]]
        + [(claimed[5].seq, 503, "HTTP 503"), (claimed[6].seq, None, "connect failed: refusé")]
    )


def test_many_turns_of_every_size_record_every_outcome_once(store):
    # On PostgreSQL the statements are prepared after a few runs and may then be planned without their
    # values: the turns after that must record and move on exactly as the first ones did.
    account, subs = account_with(store, "mine", 4)
    receive(store, account, [f"evt_{n}" for n in range(40)], 10.0)
    now, out, done = 11.0, list[Due](), list[int]()
    for limit in (1, 7, 2, 30, 5, 3, 64, 1, 9, 40, 2, 64):
        out = store.outbox.finish_and_claim([outcome(d, now) for d in out], now, limit, LEASE)
        done += [d.seq for d in out]
        now += 1.0
    store.outbox.finish([outcome(d, now) for d in out], now)
    assert sorted(done) == sorted(rows(store)) and len(done) == 160
    assert {(r["status"], r["attempts"], r["lease"]) for r in rows(store).values()} == {(SUCCEEDED, 1, None)}
    assert sorted(seq for seq, _, _ in attempts_of(store)) == sorted(done)


def test_only_the_worker_holding_the_lease_moves_a_delivery_on_though_both_attempts_are_kept(store):
    account, _ = account_with(store, "mine", 1)
    receive(store, account, ["evt_1"], 10.0)
    [mine] = store.outbox.claim(1, now=11.0, lease_seconds=LEASE)
    # The first worker took too long: its lease ended and another worker took the delivery.
    [theirs] = store.outbox.claim(1, now=11.0 + LEASE + 1, lease_seconds=LEASE)
    assert theirs.seq == mine.seq and theirs.lease != mine.lease
    store.outbox.finish([outcome(mine, 50.0, 500)], 50.0)
    row = rows(store)[mine.seq]
    assert (row["status"], row["attempts"], row["lease"]) == (PENDING, 0, theirs.lease)
    store.outbox.finish([outcome(theirs, 51.0)], 51.0)
    row = rows(store)[mine.seq]
    assert (row["status"], row["attempts"], row["lease"]) == (SUCCEEDED, 1, None)
    assert attempts_of(store) == [(mine.seq, 200, None), (mine.seq, 500, "HTTP 500")]


def test_outcomes_of_deliveries_gone_while_they_were_out_are_dropped_and_the_others_recorded(store):
    account, (kept, dropped) = account_with(store, "mine", 2)
    receive(store, account, ["evt_1"], 10.0)
    claimed = store.outbox.claim(10, now=11.0, lease_seconds=LEASE)
    assert store.subscriptions.remove(account, dropped)
    store.outbox.finish_and_claim([outcome(d, 12.0) for d in claimed], 12.0, 10, LEASE)
    [(seq, row)] = rows(store).items()
    assert row["subscription_id"] == kept and row["status"] == SUCCEEDED
    assert attempts_of(store) == [(seq, 200, None)]
    [shown] = store.subscriptions.of_account(account)
    assert shown["last_attempt_at"] == 12.0 and shown["last_status_code"] == 200


def test_a_postponed_delivery_keeps_its_count_gets_no_attempt_and_is_due_again_later(store):
    account, _ = account_with(store, "mine", 2)
    receive(store, account, ["evt_1"], 10.0)
    held, tried = store.outbox.claim(10, now=11.0, lease_seconds=LEASE)
    store.outbox.finish_and_claim(
        [{"due": held, "postponed": True, "next_attempt_at": 20.0}, outcome(tried, 11.5)], 12.0, 0, LEASE
    )
    row = rows(store)[held.seq]
    assert (row["status"], row["attempts"], row["next_attempt_at"], row["lease"]) == (PENDING, 0, 20.0, None)
    assert attempts_of(store) == [(tried.seq, 200, None)]
    assert store.outbox.claim(10, now=19.0, lease_seconds=LEASE) == []
    assert [d.seq for d in store.outbox.claim(10, now=20.0, lease_seconds=LEASE)] == [held.seq]


def test_other_accounts_due_deliveries_are_claimed_before_a_busy_accounts_older_ones(store):
    busy, _ = account_with(store, "busy", 1)
    calm, _ = account_with(store, "calm", 1)
    receive(store, busy, [f"evt_busy_{n}" for n in range(5)], 10.0)
    receive(store, calm, ["evt_calm_1", "evt_calm_2"], 30.0)
    claimed = store.outbox.finish_and_claim([], 40.0, 3, LEASE, later_accounts={busy})
    assert [d.event_id for d in claimed] == ["evt_calm_1", "evt_calm_2", "evt_busy_0"]


def test_a_busy_accounts_deliveries_are_claimed_when_no_other_account_has_any(store):
    busy, _ = account_with(store, "busy", 2)
    account_with(store, "calm", 1)  # subscribed, nothing due
    receive(store, busy, ["evt_1", "evt_2"], 10.0)
    claimed = store.outbox.finish_and_claim([], 40.0, 3, LEASE, later_accounts={busy})
    assert [d.event_id for d in claimed] == ["evt_1", "evt_1", "evt_2"]
    full = claimed[0].subscription_id  # and a subscription with its share out is left for later
    receive(store, busy, ["evt_3"], 11.0)
    again = store.outbox.finish_and_claim([], 41.0, 3, LEASE, skip_subscriptions=[full], later_accounts={busy})
    assert [(d.event_id, d.subscription_id != full) for d in again] == [("evt_2", True), ("evt_3", True)]


def test_fanned_out_deliveries_are_made_in_the_events_order_with_ids_derived_from_event_and_subscription(store):
    account, subs = account_with(store, "mine", 3)
    receive(store, account, ["evt_a", "evt_b"], 10.0)
    made = sorted(rows(store).values(), key=lambda r: r["seq"])
    with store.engine.connect() as db:
        event_ids = dict(db.execute(select(events.c.seq, events.c.id)).all())
    assert [(event_ids[r["event_seq"]], r["subscription_id"]) for r in made] == [
        (e, s) for e in ("evt_a", "evt_b") for s in sorted(subs, key=subs.index)
    ]
    assert all(r["id"] == delivery_id(event_ids[r["event_seq"]], r["subscription_id"]) for r in made)
    assert {(r["status"], r["attempts"], r["next_attempt_at"], r["created_at"]) for r in made} == {
        (PENDING, 0, 10.0, 10.0)
    }


def test_deliveries_another_worker_holds_are_passed_over_not_waited_for(pg_store):
    store = pg_store
    account, _ = account_with(store, "mine", 1)
    receive(store, account, [f"evt_{n}" for n in range(5)], 10.0)
    with store.engine.connect() as db:
        first_two = db.execute(select(deliveries.c.seq).order_by(deliveries.c.seq).limit(2)).scalars().all()
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as other:  # another worker, in the middle of its turn
        other.execute("SELECT seq FROM deliveries WHERE seq = ANY(%s) FOR UPDATE", (first_two,))
        claimed = store.outbox.claim(10, now=11.0, lease_seconds=LEASE)
        assert len(claimed) == 3 and not {d.seq for d in claimed} & set(first_two)
    assert sorted(d.seq for d in store.outbox.claim(10, now=12.0, lease_seconds=LEASE)) == sorted(first_two)


def test_a_claim_reads_the_due_deliveries_in_index_order_instead_of_sorting_the_backlog(store):
    account, _ = account_with(store, "mine", 10)
    for start in range(0, 300, 100):
        receive(store, account, [f"evt_{n}" for n in range(start, start + 100)], 10.0 + start)
    statement = store.database.statements("claim", lambda: outbox._claim_statements(store.database))["lease"]
    with store.engine.begin() as db:
        compiled = statement.compile(dialect=db.dialect)
        values = compiled.construct_params({"b_now": 500.0, "b_limit": 64, "b_lease": "l", "b_until": 530.0})
        if store.sqlite:
            plan = " / ".join(
                row[3]
                for row in db.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + compiled.string, tuple(values[k] for k in compiled.positiontup or ())
                )
            )
            assert "deliveries_due_in_order" in plan and "TEMP B-TREE" not in plan, plan
        else:
            db.execute(text("ANALYZE deliveries, subscriptions, events"))
            plan = "\n".join(row[0] for row in db.exec_driver_sql("EXPLAIN " + compiled.string, values))
            chosen = plan.split("CTE taken")[0]
            assert "deliveries_due_in_order" in chosen and "Sort" not in chosen.split("CTE chosen")[1], plan


def test_a_claim_reads_in_due_order_even_where_the_statistics_say_the_queue_is_empty(pg_store):
    store = pg_store
    account, _ = account_with(store, "mine", 10)
    for start in range(0, 1000, 200):  # 10,000 due deliveries, never analysed
        receive(store, account, [f"evt_{n}" for n in range(start, start + 200)], 10.0)
    in_flight = store.outbox.claim(256, now=11.0, lease_seconds=LEASE)
    statement = store.database.statements("claim", lambda: outbox._claim_statements(store.database))["lease"]
    with store.engine.begin() as db:
        outbox.in_due_order(db)
        compiled = statement.compile(dialect=db.dialect)
        values = compiled.construct_params({"b_now": 12.0, "b_limit": 20, "b_lease": "l", "b_until": 50.0})
        explained = db.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + compiled.string, values)
        chosen = "\n".join(row[0] for row in explained).split("CTE taken")[0]
        db.rollback()
    assert "Index Scan using deliveries_due_in_order" in chosen and "Sort" not in chosen.split("CTE chosen")[1], chosen
    assert "rows=20 " in chosen.split("Index Scan using deliveries_due_in_order")[1].splitlines()[0], chosen
    claimed = store.outbox.claim(20, now=12.0, lease_seconds=LEASE)
    assert len(claimed) == 20 and not {d.seq for d in claimed} & {d.seq for d in in_flight}
    assert [d.seq for d in claimed] == sorted(d.seq for d in claimed) and claimed[0].seq > max(d.seq for d in in_flight)


def test_a_turn_notes_on_each_subscription_its_last_attempt_since_when_it_fails_and_whether_it_was_disabled(store):
    account, (steady, flaky, doomed) = account_with(store, "mine", 3)
    receive(store, account, ["evt_1", "evt_2"], 10.0)
    by_sub: dict[str, list] = {}
    for due in store.outbox.claim(10, now=11.0, lease_seconds=LEASE):
        by_sub.setdefault(due.subscription_id, []).append(due)
    store.outbox.finish_and_claim(
        [
            outcome(by_sub[steady][0], 12.0),
            outcome(by_sub[steady][1], 13.0),
            outcome(by_sub[flaky][0], 12.0, 500),
            outcome(by_sub[flaky][1], 14.0, 502),
            outcome(by_sub[doomed][0], 12.0, 500),
            outcome(by_sub[doomed][1], 13.0, 500, status=FAILED, subscription="disable", reason="failing for days"),
        ],
        15.0,
        0,
        LEASE,
    )
    shown = {s["id"]: s for s in store.subscriptions.of_account(account)}
    assert (shown[steady]["last_attempt_at"], shown[steady]["last_status_code"]) == (13.0, 200)
    assert (shown[steady]["failing_since"], shown[steady]["status"]) == (None, "active")
    assert (shown[flaky]["last_attempt_at"], shown[flaky]["last_status_code"]) == (14.0, 502)
    assert (shown[flaky]["failing_since"], shown[flaky]["status"]) == (12.0, "active")
    assert (shown[doomed]["status"], shown[doomed]["status_reason"], shown[doomed]["failing_since"]) == (
        "disabled",
        "failing for days",
        12.0,
    )
    # Still failing later: since the first failure; a success clears it.
    receive(store, account, ["evt_3"], 20.0)
    [later] = [d for d in store.outbox.claim(10, now=21.0, lease_seconds=LEASE) if d.subscription_id == flaky]
    store.outbox.finish([outcome(later, 22.0, 500)], 22.0)
    assert {s["id"]: s for s in store.subscriptions.of_account(account)}[flaky]["failing_since"] == 12.0
    again = next(d for d in store.outbox.claim(10, now=90.0, lease_seconds=LEASE) if d.subscription_id == flaky)
    store.outbox.finish([outcome(again, 91.0)], 91.0)
    shown = {s["id"]: s for s in store.subscriptions.of_account(account)}
    assert (shown[flaky]["failing_since"], shown[flaky]["last_status_code"]) == (None, 200)


def test_when_only_busy_accounts_have_subscriptions_the_claim_for_the_others_reads_no_delivery(pg_store):
    store = pg_store
    busy, _ = account_with(store, "busy", 2)
    receive(store, busy, [f"evt_{n}" for n in range(200)], 10.0)
    statement = store.database.statements("claim", lambda: outbox._claim_statements(store.database))["lease_others"]
    values = {"b_now": 50.0, "b_limit": 64, "b_lease": "l", "b_until": 80.0, "b_skip": [], "b_busy": [busy]}
    with store.engine.connect() as db:
        db.execute(text("ANALYZE deliveries, subscriptions, events"))
        expanded = statement.compile(dialect=db.dialect).construct_expanded_state(values)
        explained = db.exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF) {expanded.statement}", expanded.parameters)
        plan = "\n".join(row[0] for row in explained)
        db.rollback()
    choosing = plan.split("CTE taken")[0].splitlines()
    scans = [line for line in choosing if "Scan" in line and " on deliveries " in line]
    assert scans and all("never executed" in line for line in scans), plan
    assert store.outbox.finish_and_claim([], 50.0, 3, LEASE, later_accounts={busy})  # and they are still claimed

"""Callbacks committed together are inserted by one statement: each event still stored and queued once, and
each caller told which of its events were new, duplicates within the group included."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select

from connector.storage import database, outage
from connector.storage.store import Store
from connector.storage.tables import events, fanout
from tests.conftest import POSTGRES_URL, stored_receipt


def _opened(url: str):
    made = Store(url, secret_key="k" * 64)
    yield made
    made.close()


@pytest.fixture
def store(backend):
    yield from _opened(backend)


def receipt(event_id: str) -> dict:
    return stored_receipt(event_id, raw={"smsId": event_id})


def subscribed(store: Store, account: int) -> int:
    """The account with a subscription to receipts: its events are queued for the delivery workers."""
    store.subscriptions.add(
        account, "delivery_receipt", "sms.delivery_receipt", f"https://hooks.example.com/{account}", 1.0
    )
    return account


def _queued(store: Store) -> list[tuple[int, str]]:
    with store.engine.connect() as db:
        return db.execute(
            select(fanout.c.event_seq, events.c.id).join(events, events.c.seq == fanout.c.event_seq)
        ).all()


def test_a_group_of_callbacks_tells_each_caller_which_of_its_events_were_new(store):
    mine = subscribed(store, store.accounts.ensure("mine", "a" * 64))
    other = subscribed(store, store.accounts.ensure("other", "b" * 64))
    store.events.add(mine, [receipt("evt_old")], 1.0)
    # As the group writer hands them over when callbacks arrive at the same moment.
    answers = store.events._write(
        [
            (mine, [receipt("evt_a"), receipt("evt_old"), receipt("evt_a")], 2.0),  # one new, two duplicates
            (other, [receipt("evt_b")], 2.0),
            (mine, [receipt("evt_a"), receipt("evt_c")], 2.0),  # evt_a: taken by the first caller
        ]
    )
    assert answers == [[True, False, False], [True], [False, True]]
    queued = _queued(store)
    assert sorted(event_id for _, event_id in queued) == ["evt_a", "evt_b", "evt_c", "evt_old"]
    assert len({seq for seq, _ in queued}) == 4
    with store.engine.connect() as db:
        owners = dict(db.execute(select(events.c.id, events.c.account_id)).all())
    assert owners == {"evt_old": mine, "evt_a": mine, "evt_b": other, "evt_c": mine}


def test_a_group_of_only_duplicates_queues_nothing(store):
    mine = subscribed(store, store.accounts.ensure("mine", "a" * 64))
    store.events.add(mine, [receipt("evt_1"), receipt("evt_2")], 1.0)
    assert store.events._write([(mine, [receipt("evt_2")], 2.0), (mine, [receipt("evt_1")], 2.0)]) == [[False], [False]]
    assert len(_queued(store)) == 2


def test_events_nobody_subscribes_to_are_stored_and_not_queued(store):
    """An account whose platforms poll has no subscription: its events are kept, to be read, and the delivery
    workers are not given them (nor woken) for nothing; an account subscribed to replies only likewise."""
    polled = store.accounts.ensure("polled", "a" * 64)
    replies_only = store.accounts.ensure("replies", "b" * 64)
    store.subscriptions.add(replies_only, "reply", "sms.reply", "https://hooks.example.com/replies", 1.0)
    pushed = subscribed(store, store.accounts.ensure("pushed", "c" * 64))
    answers = store.events._write(
        [
            (polled, [receipt("evt_polled")], 2.0),
            (replies_only, [receipt("evt_replies")], 2.0),
            (pushed, [receipt("evt_pushed")], 2.0),
        ]
    )
    assert answers == [[True], [True], [True]]
    assert [event_id for _, event_id in _queued(store)] == ["evt_pushed"]
    assert [e["id"] for e in store.events.recent(polled, "sms.delivery_receipt", 10)] == ["evt_polled"]
    assert [e["id"] for e in store.events.recent(replies_only, "sms.delivery_receipt", 10)] == ["evt_replies"]


def test_a_group_larger_than_one_statement_takes_is_stored_and_queued_whole(store):
    """SQLite takes at most 32,766 parameters in one statement: a large group goes in several, still in
    one transaction."""
    mine = subscribed(store, store.accounts.ensure("mine", "a" * 64))
    answers = store.events._write([(mine, [receipt(f"evt_{n:05}") for n in range(2500)], 1.0)])
    assert answers == [[True] * 2500]
    queued = _queued(store)
    assert sorted(event_id for _, event_id in queued) == [f"evt_{n:05}" for n in range(2500)]
    assert len({seq for seq, _ in queued}) == 2500


@pytest.fixture
def pg_store(postgres):
    """PostgreSQL only: what its pooled connections do when the server ends them."""
    yield from _opened(postgres)


def _end_pooled_connection(store: Store) -> None:
    """What a database restart does to a pooled connection: the server ends it. Used one call at a time, the
    pool holds just the one."""
    with store.engine.connect() as db:
        pid = db.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_a_connection_the_server_ended_while_it_rested_is_replaced_before_it_is_lent(pg_store, monkeypatch):
    account = pg_store.accounts.ensure("mine", "a" * 64)
    pg_store.events.add(account, [receipt("evt_before")], 1.0)
    _end_pooled_connection(pg_store)
    monkeypatch.setattr(database, "IDLE_BEFORE_PING", 0.0)  # every connection has rested long enough
    assert pg_store.events.add(account, [receipt("evt_after")], 2.0) == [True]
    assert not pg_store.database.outage.down
    assert [e["id"] for e in pg_store.events.recent(account, "sms.delivery_receipt", 10)] == ["evt_after", "evt_before"]


def test_a_connection_ended_just_after_its_last_use_fails_one_write_as_the_database_away_then_is_gone(
    pg_store, monkeypatch
):
    """Not checked before it is lent (it has not rested): the write finds out, fails as the database being
    away (a callback then goes to the journal), and the pool lends a new connection for the next one."""
    account = pg_store.accounts.ensure("mine", "a" * 64)
    pg_store.events.add(account, [receipt("evt_before")], 1.0)
    monkeypatch.setattr(database, "IDLE_BEFORE_PING", 3600.0)
    _end_pooled_connection(pg_store)
    with pytest.raises(Exception) as failed:
        pg_store.events.add(account, [receipt("evt_lost")], 2.0)
    assert outage.unavailable(failed.value)
    assert pg_store.database.outage.down
    assert pg_store.events.add(account, [receipt("evt_again")], 3.0) == [True]
    assert [e["id"] for e in pg_store.events.recent(account, "sms.delivery_receipt", 10)] == ["evt_again", "evt_before"]

"""The store on each backend (a SQLite file, a PostgreSQL schema): events in, the fan-out queue, deliveries out."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from connector.storage.store import Store
from connector.storage.tables import DISABLED, deliveries, fanout
from tests.conftest import stored_receipt as receipt

KEY = "k" * 64


def delivered_to(store: Store) -> list[tuple[int, str]]:
    with store.engine.connect() as db:
        return sorted(db.execute(select(deliveries.c.event_seq, deliveries.c.subscription_id)).all())


def subscribe(store: Store, account: int, event_type: str = "sms.delivery_receipt") -> str:
    # Each its own target: the same target again is the same subscription.
    target = f"https://hooks.example.com/{secrets.token_hex(4)}"
    return store.subscriptions.add(account, "delivery_receipt", event_type, target, 1.0)[0]["id"]


def test_an_event_becomes_one_delivery_per_active_subscription_of_its_account_and_type(store):
    mine, other = store.accounts.ensure("mine", "a" * 64), store.accounts.ensure("other", "b" * 64)
    first, second = subscribe(store, mine), subscribe(store, mine)
    subscribe(store, mine, "sms.reply_received")
    subscribe(store, other)
    off = subscribe(store, mine)
    store.subscriptions.set_status(off, DISABLED, "test")
    assert store.events.add(mine, [receipt("evt_1")], 10.0) == [True]
    assert delivered_to(store) == []  # nothing but the event and its place in the queue, yet
    assert store.events.fan_out(11.0) == 1
    assert delivered_to(store) == sorted([(1, first), (1, second)])
    assert store.events.fan_out(12.0) == 0


def test_a_duplicate_event_is_stored_and_queued_once(store):
    account = store.accounts.ensure("mine", "a" * 64)
    subscribe(store, account)
    assert store.events.add(account, [receipt("evt_1"), receipt("evt_1")], 10.0) == [True, False]
    assert store.events.add(account, [receipt("evt_1")], 11.0) == [False]
    assert store.events.fan_out(12.0) == 1
    assert len(delivered_to(store)) == 1


def test_a_fan_out_a_database_crash_undid_makes_the_same_webhook_ids_when_redone(store):
    # Workers commit without waiting for the disk: a crash may undo a fan-out whose deliveries already went
    # out. Redone, it must give the receivers the ids they already have, or they would take them as new.
    account = store.accounts.ensure("mine", "a" * 64)
    first, second = subscribe(store, account), subscribe(store, account)
    store.events.add(account, [receipt("evt_1"), receipt("evt_2")], 10.0)
    store.events.fan_out(11.0)
    with store.engine.begin() as db:
        made = sorted(db.execute(select(deliveries.c.event_seq, deliveries.c.subscription_id, deliveries.c.id)).all())
        db.execute(deliveries.delete())  # the crash: the fan-out's transaction is gone, its queue places back
        db.execute(
            fanout.insert(),
            [
                {"event_seq": seq, "account_id": account, "event_type": "sms.delivery_receipt", "received_at": 10.0}
                for seq in sorted({row.event_seq for row in made})
            ],
        )
    store.events.fan_out(12.0)
    with store.engine.connect() as db:
        again = sorted(db.execute(select(deliveries.c.event_seq, deliveries.c.subscription_id, deliveries.c.id)).all())
    assert again == made and len({row.id for row in made}) == 4
    assert {row.subscription_id for row in made} == {first, second}


def test_a_replay_before_the_fan_out_still_gives_one_delivery_per_subscription(store):
    account = store.accounts.ensure("mine", "a" * 64)
    subscribe(store, account)
    store.events.add(account, [receipt("evt_1")], 10.0)
    assert store.history.replay(account, "evt_1", 11.0) == 1
    store.events.fan_out(12.0)
    assert len(delivered_to(store)) == 1


def test_claiming_fans_out_first_so_a_new_event_is_sent_in_the_same_turn(store):
    account = store.accounts.ensure("mine", "a" * 64)
    sub = subscribe(store, account)
    store.events.add(account, [receipt("evt_1")], 10.0)
    [due] = store.outbox.finish_and_claim([], 10.5, limit=10, lease_seconds=30)
    assert (due.event_id, due.subscription_id) == ("evt_1", sub)
    with store.engine.connect() as db:
        assert db.execute(select(fanout)).all() == []


def test_pruning_forgets_old_events_with_their_deliveries_and_queue_places(store):
    account = store.accounts.ensure("mine", "a" * 64)
    subscribe(store, account)
    store.events.add(account, [receipt("evt_old")], 10.0)
    store.events.fan_out(10.0)
    store.events.add(account, [receipt("evt_queued")], 20.0)
    store.events.add(account, [receipt("evt_new")], 100.0)
    assert store.events.prune(50.0) == 2
    assert [e["id"] for e in store.events.recent(account, "sms.delivery_receipt", 10)] == ["evt_new"]
    assert delivered_to(store) == []
    store.events.fan_out(101.0)
    assert len(delivered_to(store)) == 1


def test_the_same_callback_stored_by_two_processes_at_once_is_one_event(backend):
    """Two stores (each with its own connections, as two web processes have) race to store one callback:
    the unique event id lets exactly one of them have it, however the two transactions interleave."""
    import threading

    stores = [Store(backend, secret_key=KEY), Store(backend, secret_key=KEY)]
    account = stores[0].accounts.ensure("mine", "a" * 64)
    stores[0].subscriptions.add(account, "delivery_receipt", "sms.delivery_receipt", "https://hooks.example.com/", 1.0)
    for attempt in range(20):
        start, answers = threading.Barrier(2), []

        def store_it(store):
            start.wait()
            answers.append(store.events.add(account, [receipt(f"evt_race_{attempt}")], 10.0))

        threads = [threading.Thread(target=store_it, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(answers) == [[False], [True]]
    with stores[0].engine.connect() as db:
        assert len(db.execute(select(fanout.c.event_seq)).all()) == 20
    for store in stores:
        store.close()


def test_the_data_folder_and_the_sqlite_files_are_readable_by_their_owner_only(tmp_path):
    import os
    import stat

    from connector.storage.database import default_url

    folder = tmp_path / "fresh"
    made = Store(default_url(str(folder)), secret_key=KEY)
    account = made.accounts.ensure("mine", "a" * 64)
    made.events.add(account, [receipt("evt_1")], 10.0)  # a write: the -wal and -shm files exist now
    files = [folder / name for name in ("connector.db", "connector.db-wal", "connector.db-shm")]
    assert all(path.exists() for path in files)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == {path.name: 0o600 for path in files}
    made.close()
    # A database an earlier version left readable by all is narrowed when it is opened again.
    for path in files:
        if path.exists():
            os.chmod(path, 0o644)
    Store(default_url(str(folder)), secret_key=KEY).close()
    assert stat.S_IMODE((folder / "connector.db").stat().st_mode) == 0o600


def test_two_subscriptions_at_once_cannot_both_pass_the_limit(backend):
    """Two stores (two web processes) subscribe one account at the same moment, one place left: one wins."""
    import threading

    from connector.storage.subscriptions import SubscriptionLimit

    stores = [Store(backend, secret_key=KEY), Store(backend, secret_key=KEY)]
    account = stores[0].accounts.ensure("mine", "a" * 64)
    for attempt in range(10):
        start, outcomes = threading.Barrier(2), []

        def take(store, n):
            start.wait()
            try:
                store.subscriptions.add(
                    account, f"t{attempt}", "sms.delivery_receipt", f"https://h.example/{n}", 1.0, limit=1
                )
                outcomes.append("made")
            except SubscriptionLimit:
                outcomes.append("refused")

        threads = [threading.Thread(target=take, args=(store, n)) for n, store in enumerate(stores)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(outcomes) == ["made", "refused"]
    for store in stores:
        store.close()

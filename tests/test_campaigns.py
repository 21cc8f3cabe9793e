"""The campaigns sends made, kept for polling: written by a thread of their own once the send is answered,
without a disk flush of their own, never leaving a connection that later writes callbacks unflushed, and all
written before the process exits."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from connector.storage.store import Store

KEY = "k" * 64


def _synchronous_levels(store: Store) -> list[int]:
    """PRAGMA synchronous of every connection the pool holds (2 is FULL), all checked out at once."""
    pool = store.engine.pool
    held = [pool.connect() for _ in range(pool.checkedin())]
    try:
        levels = []
        for connection in held:
            cursor = connection.cursor()
            cursor.execute("PRAGMA synchronous")
            levels.append(cursor.fetchone()[0])
            cursor.close()
        return levels
    finally:
        for connection in held:
            connection.close()


def test_a_recorded_campaign_is_there_to_be_read(store):
    account = store.accounts.ensure("mine", "a" * 64)
    store.campaigns.record(account, [("camp-1", {"+33611111111": "sms-1"})], 100.0)
    store.campaigns.record(account, [("camp-1", {"+33611111111": "other"})], 101.0)  # kept once, as first kept
    [campaign] = store.campaigns.due(account, 0.0, 10)
    assert (campaign.campaign_id, campaign.sent_at, campaign.messages) == ("camp-1", 100.0, {"+33611111111": "sms-1"})


def test_after_recording_campaigns_every_pooled_sqlite_connection_flushes_its_commits_again(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'connector.db'}", secret_key=KEY)
    account = store.accounts.ensure("mine", "a" * 64)
    for n in range(3):
        store.campaigns.record(account, [(f"camp-{n}", {"+33611111111": f"sms-{n}"})], 100.0 + n)
    assert store.campaigns.flush()
    levels = _synchronous_levels(store)
    assert levels and set(levels) == {2}  # FULL: a callback written next is on disk before its 200
    store.close()


def test_a_campaign_is_committed_without_a_flush_of_its_own_and_its_connection_flushes_again(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'connector.db'}", secret_key=KEY)
    account = store.accounts.ensure("mine", "a" * 64)
    said: list[str] = []
    pool = store.engine.pool
    held = [pool.connect() for _ in range(pool.checkedin())]
    for connection in held:
        connection.dbapi_connection.set_trace_callback(said.append)
        connection.close()
    store.campaigns.record(account, [("camp-1", {"+33611111111": "sms-1"})], 100.0)
    assert store.campaigns.flush()
    steps = [s.split()[0].upper() if not s.startswith("PRAGMA") else s for s in said]
    assert steps == ["PRAGMA synchronous=NORMAL", "BEGIN", "INSERT", "COMMIT", "PRAGMA synchronous=FULL"]
    store.close()


def test_campaigns_recorded_just_before_the_process_exits_are_written_on_the_way_out(tmp_path):
    """A web process stopped (gunicorn's graceful stop, Ctrl-C) the moment after answering sends has written
    their campaigns before it ends, with nobody asking it to."""
    url = f"sqlite:///{tmp_path / 'connector.db'}"
    Store(url, secret_key=KEY).close()  # migrated here, so the child only writes
    child = textwrap.dedent(
        f"""
        import sys
        from connector.storage.store import Store
        store = Store({url!r}, secret_key={KEY!r})
        account = store.accounts.ensure("mine", "a" * 64)
        for n in range(50):
            store.campaigns.record(account, [(f"camp-{{n}}", {{"+33611111111": f"sms-{{n}}"}})], 100.0 + n)
        sys.exit(0)
        """
    )
    ended = subprocess.run([sys.executable, "-c", child], timeout=60, capture_output=True, text=True)
    assert ended.returncode == 0, ended.stderr
    store = Store(url, secret_key=KEY)
    account = store.accounts.ensure("mine", "a" * 64)
    assert {c.campaign_id for c in store.campaigns.due(account, 0.0, 100)} == {f"camp-{n}" for n in range(50)}
    store.close()


def test_a_send_does_not_wait_for_its_campaigns_to_be_written(tmp_path):
    """record() only hands the rows over: with the database's write gate held by somebody else, it returns at
    once, and the rows are written once the gate is free."""
    store = Store(f"sqlite:///{tmp_path / 'connector.db'}", secret_key=KEY)
    account = store.accounts.ensure("mine", "a" * 64)
    with store.database.writing():  # another writer's transaction, open while the send ends
        store.campaigns.record(account, [("camp-held", {"+33611111111": "sms-1"})], 100.0)
        assert not store.campaigns.flush(timeout=0.2)  # not written yet: the writer waits for the gate
    assert store.campaigns.flush()
    assert [c.campaign_id for c in store.campaigns.due(account, 0.0, 10)] == ["camp-held"]
    store.close()

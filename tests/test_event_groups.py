"""Callbacks committed together are inserted by one statement: each event still stored and queued once, and
each caller told which of its events were new, duplicates within the group included."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from connector.storage.store import Store
from connector.storage.tables import events, fanout


@pytest.fixture
def store(backend):
    made = Store(backend, secret_key="k" * 64)
    yield made
    made.close()


def receipt(event_id: str) -> dict:
    return {
        "id": event_id,
        "type": "sms.delivery_receipt",
        "timestamp": "2026-12-01T08:30:03Z",
        "data": {"sms_id": event_id},
        "raw": {"smsId": event_id},
    }


def _queued(store: Store) -> list[tuple[int, str]]:
    with store.engine.connect() as db:
        return db.execute(
            select(fanout.c.event_seq, events.c.id).join(events, events.c.seq == fanout.c.event_seq)
        ).all()


def test_a_group_of_callbacks_tells_each_caller_which_of_its_events_were_new(store):
    mine = store.accounts.ensure("mine", "a" * 64)
    other = store.accounts.ensure("other", "b" * 64)
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
    mine = store.accounts.ensure("mine", "a" * 64)
    store.events.add(mine, [receipt("evt_1"), receipt("evt_2")], 1.0)
    assert store.events._write([(mine, [receipt("evt_2")], 2.0), (mine, [receipt("evt_1")], 2.0)]) == [[False], [False]]
    assert len(_queued(store)) == 2

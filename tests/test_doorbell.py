"""The doorbell: workers at rest are woken by the work made due (on SQLite and PostgreSQL), not by polling."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
from conftest import Scripted, wait_for
from sqlalchemy import select

from connector.events.delivery import Worker
from connector.events.policy import Policy
from connector.events.targets import AllowList
from connector.storage.doorbell import Datagrams
from connector.storage.store import Store
from connector.storage.tables import ACTIVE, DISABLED, deliveries

KEY = "k" * 64
#: The worker's safety poll in these tests: what arrives well before it was woken, not polled for.
SAFETY_POLL = 30.0
WELL_BEFORE = SAFETY_POLL / 2


@pytest.fixture
def store(backend):
    made = Store(backend, secret_key=KEY)
    yield made
    made.close()


class Rings:
    """A listener of ``store``'s doorbell counting what it hears."""

    def __init__(self, store: Store):
        self.count = 0
        self._lock = threading.Lock()
        self.listener = store.database.doorbell.listener(self._heard).start()
        wait_for(lambda: self.listener.hearing and self.count, what="the listener to listen (its first ring)")

    def _heard(self):
        with self._lock:
            self.count += 1

    def after(self, action) -> None:
        """Do ``action`` and wait until a ring follows it."""
        before = self.count
        action()
        wait_for(lambda: self.count > before, what="a ring")

    def stop(self):
        self.listener.stop()


def _account_with_subscription(store: Store, target: str) -> tuple[int, str]:
    account = store.accounts.ensure("bell", "b" * 64)
    sub = store.subscriptions.add(account, "delivery_receipt", "sms.delivery_receipt", target, time.time())[0]
    return account, sub["id"]


def _receipt(store: Store, account: int, n: int) -> None:
    store.events.add(
        account,
        [
            {
                "id": f"evt_bell_{n}",
                "type": "sms.delivery_receipt",
                "timestamp": "2026-12-01T08:30:03Z",
                "data": {"sms_id": f"bell-{n}"},
            }
        ],
        time.time(),
    )


def _resting_worker(store: Store) -> Worker:
    return Worker(
        store,
        policy=Policy(schedule=(0, 0.3), jitter=0.0),
        allowed=AllowList("127.0.0.1"),
        concurrency=8,
        poll_interval=SAFETY_POLL,
    ).start()


def _statuses(store: Store) -> list[str]:
    with store.engine.connect() as db:
        return sorted(db.execute(select(deliveries.c.status)).scalars())


def test_a_worker_at_rest_is_woken_by_a_stored_event_well_before_its_safety_poll(store, subscriber):
    account, _ = _account_with_subscription(store, subscriber.target())
    worker = _resting_worker(store)
    try:
        wait_for(lambda: worker.listener is not None and worker.listener.hearing, what="the worker to listen")
        _receipt(store, account, 1)
        wait_for(lambda: _statuses(store) == ["succeeded"], timeout=WELL_BEFORE, what="the first delivery recorded")
        # Recorded: the worker's turns have found nothing more, and it rests until the safety poll.
        started = time.monotonic()
        _receipt(store, account, 2)
        wait_for(lambda: len(subscriber.deliveries()) == 2, timeout=WELL_BEFORE, what="the second, woken by its ring")
        assert time.monotonic() - started < WELL_BEFORE
    finally:
        worker.stop()


def test_a_retry_comes_when_it_is_due_not_at_the_safety_poll(store, subscriber):
    """Nothing rings for a retry: the worker at rest knows when the next one is due and sleeps until then."""
    subscriber.script("/hook", Scripted(status=500))
    account, _ = _account_with_subscription(store, subscriber.target())
    worker = _resting_worker(store)
    try:
        _receipt(store, account, 1)
        wait_for(lambda: len(subscriber.deliveries()) == 1, timeout=WELL_BEFORE, what="the retry (0.3 s later)")
        first, second = [r["at"] for r in subscriber.received]
        assert second - first >= 0.3
    finally:
        worker.stop()


def test_work_made_due_anywhere_rings(store, subscriber):
    """A new event, a replay, failed deliveries made due again, a subscription active again and deliveries given
    back by a stopping worker each ring, once committed."""
    account, sub = _account_with_subscription(store, subscriber.target())
    rings = Rings(store)
    try:
        rings.after(lambda: _receipt(store, account, 1))
        store.events.fan_out(time.time())
        rings.after(lambda: store.history.replay(account, "evt_bell_1", time.time()))
        with store.engine.begin() as db:
            db.execute(deliveries.update().values(status="failed"))
        rings.after(lambda: store.history.replay_failed(sub, 0.0, time.time(), 10))
        store.subscriptions.set_status(sub, DISABLED, "test")
        rings.after(lambda: store.subscriptions.set_status(sub, ACTIVE, None))
        [due] = store.outbox.claim(10, time.time(), 60.0)
        rings.after(lambda: store.outbox.give_back([due], time.time()))
    finally:
        rings.stop()


def test_a_ring_with_nobody_listening_is_harmless(store):
    account, _ = _account_with_subscription(store, "http://127.0.0.1:9/hook")
    _receipt(store, account, 1)
    store.events.fan_out(time.time())
    assert _statuses(store) == ["pending"]


def test_a_dead_listeners_name_is_forgotten_and_the_others_still_hear(tmp_path):
    made = Store(f"sqlite:///{tmp_path / 'connector.db'}", secret_key=KEY)
    bell = made.database.doorbell
    assert isinstance(bell, Datagrams)
    rings = Rings(made)
    try:
        # A worker killed without a word leaves its name; nothing listens on it any more.
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(bell.address("1-dead"))
        (bell.folder / "1-dead").touch()
        dead.close()
        account, _ = _account_with_subscription(made, "http://127.0.0.1:9/hook")
        rings.after(lambda: _receipt(made, account, 1))
        names = [p.name for p in bell.folder.iterdir()]
        assert "1-dead" not in names and len(names) == 1  # the live listener's
        rings.after(lambda: _receipt(made, account, 2))
    finally:
        rings.stop()
        made.close()
    assert list(bell.folder.iterdir()) == []  # a listener that stops takes its name away


def test_a_listener_loses_its_connection_with_the_database_and_listens_again_quietly(postgres_through_proxy, caplog):
    caplog.set_level(logging.INFO)
    proxied, proxy = postgres_through_proxy
    direct = Store(
        proxied.replace(f"127.0.0.1:{proxy.port}", f"{proxy.target[0]}:{proxy.target[1]}", 1), secret_key=KEY
    )
    made = Store(proxied, secret_key=KEY)
    rings = Rings(made)
    try:
        account, _ = _account_with_subscription(direct, "http://127.0.0.1:9/hook")
        rings.after(lambda: _receipt(direct, account, 1))
        proxy.cut()
        wait_for(lambda: not rings.listener.hearing, what="the listener to find its connection gone")
        _receipt(direct, account, 2)  # unheard: rung while nobody listened
        heard = rings.count
        proxy.restore()
        # Listening again, it rings for what it may have missed meanwhile.
        wait_for(lambda: rings.listener.hearing and rings.count > heard, timeout=30, what="listening again")
        rings.after(lambda: _receipt(direct, account, 3))
    finally:
        rings.stop()
        made.close()
        direct.close()
    assert [r for r in caplog.records if r.exc_info] == []
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) <= 1 and all("does not answer" in line for line in said), said

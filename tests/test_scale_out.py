"""Several delivery workers on one PostgreSQL: each delivery goes out once, and a worker killed mid-run
leaves nothing undelivered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from sqlalchemy import create_engine, func, select

from connector import create_app
from connector.storage.database import engine_url
from connector.storage.tables import attempts, deliveries
from tests.conftest import Scripted, Subscriber, connector_settings, wait_for

WORKERS, EVENTS = 4, 240


@pytest.fixture
def subscribers():
    made = [Subscriber(), Subscriber()]
    yield made
    for subscriber in made:
        subscriber.server.stop()


def start_worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "connector.ops.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_four_workers_one_killed_deliver_every_event_to_every_subscriber(postgres, sandbox, serve, subscribers):
    settings = {
        "CONNECTOR_ALLOWED_TARGETS": "127.0.0.1",
        "CONNECTOR_LEASE_SECONDS": 2,
        "CONNECTOR_DELIVERY_TIMEOUT": 1,
        "CONNECTOR_RETRY_SCHEDULE": "0,0.2,0.2,0.2",
        "CONNECTOR_DELIVERY_CONCURRENCY": 8,
    }
    app = create_app(connector_settings(sandbox.url, **settings))
    api = serve(app)
    api.app_store = app.extensions["connector"].store
    for subscriber in subscribers:
        # Each delivery takes a while, so that the killed worker surely has some in flight.
        subscriber.script("/hook", *[Scripted(status=200, delay=0.05) for _ in range(EVENTS * 2)])
        requests.post(
            f"{api.url}/v1/triggers/delivery_receipt/subscriptions",
            auth=api.session.auth,
            timeout=10,
            json={"target_url": subscriber.target()},
        ).raise_for_status()
    inbound = api.get("/v1/me").json()["inbound_url"]
    for n in range(EVENTS):
        requests.post(
            inbound,
            data={
                "smsId": f"s-{n}",
                "phoneNumber": "33611111111",
                "status": "1",
                "receptionDate": "2026-12-01 09:30:00",
            },
            timeout=10,
        ).raise_for_status()
    env = {**os.environ, **{k: str(v) for k, v in settings.items()}, "ALLMYSMS_BASE_URL": sandbox.url}
    workers = [start_worker(env) for _ in range(WORKERS)]
    try:
        wait_for(
            lambda: sum(len(s.received) for s in subscribers) >= EVENTS // 2,
            timeout=60,
            what="a quarter of the deliveries",
        )
        workers[0].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        workers[0].wait(10)
        everything = {f"s-{n}" for n in range(EVENTS)}
        for subscriber in subscribers:
            wait_for(
                lambda: {json.loads(r["body"])["data"]["sms_id"] for r in subscriber.received} == everything,
                timeout=120,
                what="every event at every subscriber",
            )
        # The killed worker's deliveries are sent again once their lease ends, and recorded.
        wait_for(
            lambda: api.app_store.views.counts() == {"succeeded": EVENTS * len(subscribers)},
            timeout=60,
            what="every delivery recorded as succeeded",
        )
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            worker.wait(20)

    received = [r for s in subscribers for r in s.received]
    times: dict[str, list[float]] = {}
    for r in received:
        times.setdefault(r["headers"]["Webhook-Id"], []).append(r["at"])
    assert len(times) == EVENTS * len(subscribers)
    # Every attempt is recorded once; every delivery sent was recorded, but for those the killed worker
    # had out: sent (before the kill), never recorded, and sent again once their lease ended.
    engine = create_engine(engine_url(postgres))
    with engine.connect() as db:
        logged = dict(
            db.execute(
                select(deliveries.c.id, func.count(attempts.c.seq))
                .join(attempts, attempts.c.delivery_seq == deliveries.c.seq, isouter=True)
                .group_by(deliveries.c.id)
            ).all()
        )
        counted = dict(db.execute(select(deliveries.c.id, deliveries.c.attempts)).all())
    engine.dispose()
    assert logged == counted, {
        k: (logged.get(k), counted.get(k)) for k in set(logged) | set(counted) if logged.get(k) != counted.get(k)
    }
    unrecorded = {webhook_id for webhook_id, at in times.items() if len(at) == logged[webhook_id] + 1}
    assert all(len(at) == logged[webhook_id] for webhook_id, at in times.items() if webhook_id not in unrecorded), {
        webhook_id: (len(at), logged[webhook_id])
        for webhook_id, at in times.items()
        if webhook_id not in unrecorded and len(at) != logged[webhook_id]
    }
    # Sent by the killed worker (its request may be read a moment after the kill on a busy machine), then
    # again by another once the lease had run out.
    lease = settings["CONNECTOR_DELIVERY_TIMEOUT"] + 5
    assert all(
        min(times[webhook_id]) < killed_at + 1 and max(times[webhook_id]) > killed_at + lease / 2
        for webhook_id in unrecorded
    ), {w: [round(t - killed_at, 2) for t in times[w]] for w in unrecorded}
    assert len(unrecorded) <= settings["CONNECTOR_DELIVERY_CONCURRENCY"], len(unrecorded)

"""Deploys and database outages, as real processes on loopback see them: SIGTERM to a web process or a delivery
worker fails no request and loses no delivery; a worker rides out a database that goes away, quietly."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager

import psutil
import pytest
import requests
from sqlalchemy import event, select

from connector import config
from connector.events.delivery import Worker
from connector.events.policy import Policy
from connector.events.targets import AllowList
from connector.services import open_store
from connector.storage.database import default_url
from connector.storage.outage import Backoff
from connector.storage.store import Store
from connector.storage.tables import attempts, deliveries, events, subscriptions
from tests.conftest import Scripted, wait_for
from tests.test_serve import clean_env, start, stop, written

KEY = "d" * 64


# A web process told to stop.


def _exchange(port: int, pieces: list[bytes], pause: float = 0.0, sent=lambda n: None) -> dict:
    """One request on a connection of its own, sent in ``pieces`` (``pause`` seconds apart, ``sent(n)`` called
    after piece n): refused (never connected), broken (connected, but no whole answer), or answered."""
    sock = socket.socket()
    sock.settimeout(60)
    started = time.monotonic()
    try:
        sock.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        sock.close()
        return {"result": "refused", "started": started}
    try:
        for n, piece in enumerate(pieces):
            if n:
                time.sleep(pause)  # a client uploading slowly is the behaviour under test
            sock.sendall(piece)
            sent(n)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError as exc:
        return {"result": "broken", "error": repr(exc), "started": started, "ended": time.monotonic()}
    finally:
        sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    whole = bool(lines[0]) and int(headers.get("content-length", -1)) == len(body)
    return {
        "result": "answered" if whole else "broken",
        "status": int(lines[0].split()[1]) if lines[0] else None,
        "body": body,
        "started": started,
        "ended": time.monotonic(),
    }


def _callback(path: str, sms_id: str) -> tuple[bytes, bytes]:
    """The head and body of a delivery receipt AllMySMS would push."""
    body = (f"smsId={sms_id}&phoneNumber=33611111111&status=1&receptionDate=2026-12-01+09%3A30%3A00").encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head, body


def _pieces(body: bytes, count: int) -> list[bytes]:
    size = -(-len(body) // count)
    return [body[i : i + size] for i in range(0, len(body), size)]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_to_serve_answers_every_request_it_accepted_then_refuses_connections_and_exits(tmp_path, scripted):
    """Callbacks come in from three clients, one more uploads its callbacks slowly, another asks /v1/me of an
    upstream that takes 2 s: SIGTERM to the master while a slow upload and a slow action are under way. Every
    connection that was made gets a whole answer, none 5xx; each client's next connection is refused, not left
    hanging; every process of the tree exits; and every callback answered 200 is in the database."""
    scripted.default = Scripted(body={"status": "Active Account", "credits": "1"}, delay=2.0)
    env = clean_env(
        tmp_path,
        ALLMYSMS_BASE_URL=scripted.url,
        CONNECTOR_WORKERS="2",
        CONNECTOR_THREADS="4",
        CONNECTOR_DELIVERY_PROCESSES="1",
        CONNECTOR_SHUTDOWN_GRACE="15",
    )
    url, log, process = start([sys.executable, "-m", "connector.ops.cli", "serve"], env, tmp_path)
    port = int(env["PORT"])
    try:
        me = requests.get(url + "/v1/me", auth=("demo", "demo-api-key"), timeout=30)
        assert me.status_code == 200, me.text
        path = "/" + me.json()["inbound_url"].split("/", 3)[3]
        tree = [process.pid] + [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
        assert len(tree) >= 4  # the master, two web processes, the delivery worker

        outcomes: list[dict] = []
        asking_since: list[float] = []  # when the action under way was sent, if one is
        stopped_at: list[float] = []
        auth = base64.b64encode(b"demo:demo-api-key").decode()

        def stop_midway(piece: int) -> None:
            # Sent by the slow client itself, its upload a quarter done, while an action has a second or more
            # to go: both are surely under way when the signal comes.
            if (
                piece == 0
                and not stopped_at
                and sum(o["kind"] == "fast" for o in outcomes) >= 20
                and asking_since
                and time.monotonic() - asking_since[0] < 0.8
            ):
                stopped_at.append(time.monotonic())
                process.send_signal(signal.SIGTERM)

        def client(kind: str, name: str):
            for n in range(100_000):
                sms_id = f"{name}-{n}"
                if kind == "action":
                    asking_since[:] = [time.monotonic()]
                    outcome = _exchange(
                        port,
                        [
                            f"GET /v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic "
                            f"{auth}\r\nConnection: close\r\n\r\n".encode()
                        ],
                    )
                    asking_since.clear()
                elif kind == "upload":
                    head, body = _callback(path, sms_id)
                    outcome = _exchange(port, [head, *_pieces(body, 4)], pause=0.4, sent=stop_midway)
                else:
                    outcome = _exchange(port, [b"".join(_callback(path, sms_id))])
                outcomes.append({**outcome, "kind": kind, "client": name, "sms_id": sms_id})
                if outcome["result"] != "answered":
                    return

        threads = [
            threading.Thread(target=client, args=(kind, f"{kind}{n}"), daemon=True)
            for kind, n in (("fast", 0), ("fast", 1), ("fast", 2), ("upload", 0), ("action", 0))
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: stopped_at, timeout=60, what="SIGTERM, sent midway through a slow upload")
        for thread in threads:
            thread.join(90)
        assert not any(thread.is_alive() for thread in threads)
        assert process.wait(60) == 0
        wait_for(lambda: all(_gone(pid) for pid in tree), timeout=30, what="every process of the tree to exit")
    finally:
        stop(process)

    broken = [o for o in outcomes if o["result"] == "broken"]
    assert broken == [], broken
    answered = [o for o in outcomes if o["result"] == "answered"]
    assert [o for o in answered if o["status"] != 200] == []
    # What was under way when the signal came was answered all the same.
    straddling = {o["kind"] for o in answered if o["started"] < stopped_at[0] < o["ended"]}
    assert {"upload", "action"} <= straddling, straddling
    # Each client ended on a refused connection: nothing was left waiting on a socket nobody reads.
    last = {o["client"]: o["result"] for o in outcomes}
    assert list(last.values()) == ["refused"] * 5, last
    assert "Traceback" not in written(log)

    store = Store(default_url(str(tmp_path / "var")))
    try:
        with store.engine.connect() as db:
            stored = {json.loads(data)["sms_id"] for data in db.execute(select(events.c.data)).scalars()}
    finally:
        store.close()
    assert stored == {o["sms_id"] for o in answered if o["kind"] in ("fast", "upload")}


# A delivery worker told to stop.


def _queue(store: Store, targets: list[str], count: int) -> None:
    """``count`` receipts of one account, fanned out to one subscription per target."""
    account = store.accounts.ensure("deploys", "0" * 64)
    for target in targets:
        store.subscriptions.add(account, "delivery_receipt", "sms.delivery_receipt", target, time.time())
    now, batch = time.time(), secrets.token_hex(4)
    store.events.add(
        account,
        [
            {
                "id": f"evt_{batch}_{n}",
                "type": "sms.delivery_receipt",
                "timestamp": "2026-12-01T08:30:03Z",
                "data": {"sms_id": f"s-{batch}-{n}"},
            }
            for n in range(count)
        ],
        now,
    )
    store.events.fan_out(now)


def _deliveries(store: Store) -> dict[str, dict]:
    """Each delivery's target path, status, attempts, lease, and attempts logged, by delivery id."""
    with store.engine.connect() as db:
        rows = db.execute(
            select(
                deliveries.c.id,
                deliveries.c.seq,
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.lease,
                deliveries.c.lease_until,
                subscriptions.c.target_url,
            ).join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
        ).all()
        logged = Counter(db.execute(select(attempts.c.delivery_seq)).scalars())
    return {
        r.id: {
            "path": "/" + r.target_url.split("/", 3)[3],
            "status": r.status,
            "attempts": r.attempts,
            "leased": r.lease is not None or r.lease_until is not None,
            "logged": logged[r.seq],
        }
        for r in rows
    }


def _start_worker(env: dict, log_path) -> subprocess.Popen:
    with log_path.open("a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "connector.ops.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )


@contextmanager
def _running(process: subprocess.Popen):
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.usefixtures("backend")
def test_sigterm_to_a_worker_records_what_finished_and_gives_back_the_rest_for_another_worker_at_once(
    subscriber, tmp_path
):
    """Three events to a fast subscriber and to one that answers after 5 s: SIGTERM with a grace of 1 s. The
    fast deliveries are recorded; the slow ones go back to the queue untried (their lease of 60 s given back),
    and a new worker delivers them at once, with the same webhook-id."""
    store = open_store(config.load())
    subscriber.script("/slow", *[Scripted(status=200, delay=5)] * 3)
    _queue(store, [subscriber.target("/fast"), subscriber.target("/slow")], 3)
    env = {
        **os.environ,
        "CONNECTOR_ALLOWED_TARGETS": "127.0.0.1",
        "CONNECTOR_SHUTDOWN_GRACE": "1",
        "CONNECTOR_LEASE_SECONDS": "60",
    }
    try:
        with _running(_start_worker(env, tmp_path / "worker.log")) as first:
            wait_for(
                lambda: (
                    not subscriber.scripts["/slow"]
                    and sum(d["status"] == "succeeded" for d in _deliveries(store).values()) == 3
                ),
                timeout=30,
                what="the fast deliveries made, the slow ones under way",
            )
            first.send_signal(signal.SIGTERM)
            assert first.wait(30) == 0
        after = _deliveries(store)
        assert sorted((d["path"], d["status"], d["attempts"], d["leased"], d["logged"]) for d in after.values()) == (
            [("/fast", "succeeded", 1, False, 1)] * 3 + [("/slow", "pending", 0, False, 0)] * 3
        )
        # Far sooner than the 60 s lease would have let them go.
        with _running(_start_worker(env, tmp_path / "worker.log")) as second:
            wait_for(
                lambda: all(d["status"] == "succeeded" for d in _deliveries(store).values()),
                timeout=30,
                what="the slow deliveries made by the second worker",
            )
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
        # The first worker's slow attempts were answered too, late: each delivery reached the slow subscriber
        # twice, with its own webhook-id both times, and the fast one once.
        wait_for(lambda: len(subscriber.deliveries("/slow")) == 6, timeout=30, what="the late answers")
        slow_ids = {i for i, d in after.items() if d["path"] == "/slow"}
        assert Counter(r["headers"]["Webhook-Id"] for r in subscriber.deliveries("/slow")) == {i: 2 for i in slow_ids}
        assert sorted(r["headers"]["Webhook-Id"] for r in subscriber.deliveries("/fast")) == sorted(
            i for i, d in after.items() if d["path"] == "/fast"
        )
        assert "Traceback" not in (tmp_path / "worker.log").read_text()
    finally:
        store.close()


# A database that goes away and comes back.


@pytest.fixture
def outage_prone(postgres_through_proxy):
    """(a store on the test's PostgreSQL schema, reached directly; the proxy its DATABASE_URL goes through)."""
    proxied, proxy = postgres_through_proxy
    host, port = proxy.target
    direct = Store(proxied.replace(f"127.0.0.1:{proxy.port}", f"{host}:{port}", 1), secret_key=KEY)
    try:
        yield direct, proxy
    finally:
        direct.close()


def _worker_through_proxy() -> Worker:
    return Worker(
        Store(os.environ["DATABASE_URL"], replayable=True, secret_key=KEY),
        policy=Policy(schedule=(0, 0.2), jitter=0.0),
        allowed=AllowList("127.0.0.1"),
        concurrency=8,
        poll_interval=0.01,
    )


def _failures(store: Store) -> list:
    """Grows by one each time a query of ``store`` fails: each of the worker's tries while the database is away."""
    failed: list = []
    event.listen(store.engine, "handle_error", lambda context: failed.append(context.original_exception))
    return failed


def _quiet(caplog) -> list[str]:
    """What was logged at WARNING or above; fails on any traceback, whatever its level."""
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_worker_rides_out_a_database_outage_quietly_and_records_every_outcome_once_it_is_back(
    outage_prone, subscriber, caplog
):
    """Three deliveries are out when the database goes away; their answers come during the outage, three more
    events arrive meanwhile, and the worker's turns fail for several seconds. Logged: the outage, once, and its
    end, once. Once it is back: every outcome recorded (one attempt each), every event delivered."""
    caplog.set_level(logging.INFO)
    direct, proxy = outage_prone
    subscriber.script("/hook", *[Scripted(status=200, delay=1.0)] * 3)
    _queue(direct, [subscriber.target("/hook")], 3)
    worker = _worker_through_proxy()
    failures = _failures(worker.store)
    worker.start()
    try:
        wait_for(lambda: not subscriber.scripts["/hook"], what="three deliveries under way")
        proxy.cut()
        _queue(direct, [], 3)
        wait_for(lambda: len(subscriber.received) == 3, what="their answers, during the outage")
        # Several turns of the worker fail: it tries again after growing waits (0.25, 0.5, 1, 2 s...).
        wait_for(lambda: len(failures) >= 5, timeout=30, what="five failed tries")
        assert [d["attempts"] for d in _deliveries(direct).values()] == [0] * 6
        proxy.restore()
        wait_for(
            lambda: (
                [(d["status"], d["attempts"], d["logged"]) for d in _deliveries(direct).values()]
                == [("succeeded", 1, 1)] * 6
            ),
            timeout=30,
            what="every delivery recorded once",
        )
        # The outage ends after a committed write and a quiet moment (outage.QUIET), at the worker's next turns.
        wait_for(lambda: not worker.store.outage.down, timeout=30, what="the worker to find the database back")
    finally:
        worker.stop()
        worker.store.close()
    with direct.engine.connect() as db:
        sms_ids = sorted(json.loads(data)["sms_id"] for data in db.execute(select(events.c.data)).scalars())
    assert sorted(json.loads(r["body"])["data"]["sms_id"] for r in subscriber.received) == sms_ids
    logged = _quiet(caplog)
    assert len(logged) == 2 and "does not answer" in logged[0] and "answers again" in logged[1], logged


def test_a_worker_stopped_during_an_outage_stops_at_once_and_says_what_it_could_not_record(
    outage_prone, subscriber, caplog
):
    """Stopped while waiting for the database (a long wait, here), the worker stops without waiting it out;
    its outcomes cannot be recorded: one line says so, and the deliveries stay leased, to be sent again once
    the lease ends."""
    caplog.set_level(logging.INFO)
    direct, proxy = outage_prone
    subscriber.script("/hook", *[Scripted(status=200, delay=1.0)] * 2)
    _queue(direct, [subscriber.target("/hook")], 2)
    worker = _worker_through_proxy()
    worker._backoff = Backoff(first=600, most=600)  # a wait that would outlast the test
    failures = _failures(worker.store)
    worker.start()
    try:
        wait_for(lambda: not subscriber.scripts["/hook"], what="two deliveries under way")
        proxy.cut()
        wait_for(lambda: len(subscriber.received) == 2, what="their answers, during the outage")
        wait_for(lambda: failures, what="a failed turn, then the long wait")
        worker.stop(timeout=20)
        assert not worker._thread.is_alive()
    finally:
        worker.stop(timeout=1)
        worker.store.close()
    assert [(d["status"], d["attempts"], d["leased"]) for d in _deliveries(direct).values()] == [
        ("pending", 0, True)
    ] * 2
    logged = _quiet(caplog)
    assert len(logged) == 2 and "does not answer" in logged[0], logged
    assert logged[1].startswith("stopping with 2 outcomes not recorded"), logged


def test_a_worker_started_while_the_database_is_away_waits_quietly_then_delivers(outage_prone, subscriber, tmp_path):
    """`connector worker` started during an outage neither crashes nor logs a traceback per try: one line, then
    it waits (and stops when told to, meanwhile); once the database answers, it delivers."""
    direct, proxy = outage_prone
    proxy.cut()
    env = {**os.environ, "CONNECTOR_ALLOWED_TARGETS": "127.0.0.1"}
    logs = [tmp_path / "waiting.log", tmp_path / "worker.log"]
    with _running(_start_worker(env, logs[0])) as waiting:
        wait_for(lambda: "does not answer" in logs[0].read_text(), timeout=30, what="the first worker's line")
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(30) == 0
    with _running(_start_worker(env, logs[1])) as worker:
        wait_for(lambda: "does not answer" in logs[1].read_text(), timeout=30, what="the second worker's line")
        # The outage goes on for a few seconds: the worker tries again meanwhile (0.25, 0.5, 1, 2 s...).
        time.sleep(3)
        assert worker.poll() is None
        _queue(direct, [subscriber.target("/hook")], 1)
        proxy.restore()
        wait_for(lambda: subscriber.deliveries("/hook"), timeout=30, what="the delivery, once the database answers")
        wait_for(lambda: "answers again" in logs[1].read_text(), timeout=30, what="the line saying it is back")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    for path, lines in zip(logs, (1, 2)):
        text = path.read_text()
        assert "Traceback" not in text and len([line for line in text.splitlines() if "answer" in line]) == lines, text

"""The local journal: callbacks the database could not take are kept on disk, answered 200, and stored in
order once it answers; keyed actions never send without their key's protection; an outage is logged once."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
import requests
from conftest import connector_settings, wait_for
from test_triggers import receipt

from connector import create_app
from connector.storage.journal import Entry, Journal, JournalUnavailable, _line
from connector.storage.store import Store

# The journal on its own.


def test_entries_are_replayed_in_the_order_written_and_each_file_removed_once_done(tmp_path):
    journal = Journal(tmp_path / "journal", max_bytes=1 << 20)
    for n in range(5):
        journal.append(Entry("callback", {"n": n}))
    assert journal.backlog and journal.depth() == {"files": 1, "bytes": journal.size(), "entries": 5}
    seen = []
    assert journal.replay(lambda batch: seen.extend(e.data["n"] for e in batch)) == 5
    assert seen == [0, 1, 2, 3, 4]
    assert journal.files() == [] and not journal.backlog
    journal.append(Entry("callback", {"n": 5}))  # a new file after a replay
    assert journal.replay(lambda batch: seen.extend(e.data["n"] for e in batch)) == 1 and seen[-1] == 5


def test_a_replay_that_fails_keeps_the_whole_file_for_the_next_try(tmp_path):
    journal = Journal(tmp_path / "journal", max_bytes=1 << 20)
    for n in range(3):
        journal.append(Entry("callback", {"n": n}))

    def failing(batch):
        raise RuntimeError("the database went away again")

    with pytest.raises(RuntimeError):
        journal.replay(failing)
    assert journal.depth()["entries"] == 3 and journal.backlog
    seen = []
    journal.replay(lambda batch: seen.extend(e.data["n"] for e in batch))
    assert seen == [0, 1, 2] and journal.files() == []


def test_a_line_cut_short_by_a_crash_is_skipped_and_the_others_replayed(tmp_path, caplog):
    folder = tmp_path / "journal"
    folder.mkdir()
    whole = _line(Entry("callback", {"n": 1}))
    torn = _line(Entry("callback", {"n": 2}))[:-7]
    (folder / "00000000000000000001-1-abcd.journal").write_bytes(whole + torn)
    seen = []
    Journal(folder, max_bytes=1 << 20).replay(lambda batch: seen.extend(e.data["n"] for e in batch))
    assert seen == [1]
    assert "1 unreadable line(s) skipped" in caplog.text


def test_the_journal_refuses_an_entry_past_its_size_and_keeps_what_it_has(tmp_path):
    journal = Journal(tmp_path / "journal", max_bytes=1 << 20)
    big = {"body": "x" * 400_000}
    journal.append(Entry("callback", big))
    journal.append(Entry("callback", big))
    with pytest.raises(JournalUnavailable, match="CONNECTOR_JOURNAL_MAX_BYTES"):
        journal.append(Entry("callback", big))
    assert journal.depth()["entries"] == 2


def test_a_file_another_live_process_writes_is_left_to_it_and_a_dead_ones_file_is_replayed(tmp_path):
    folder = tmp_path / "journal"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from connector.storage.journal import Entry, Journal
        journal = Journal(Path({str(folder)!r}), max_bytes=1 << 20)
        journal.append(Entry("callback", {{"from": "other"}}))
        print("written", flush=True)
        sys.stdin.readline()  # holds its file until told to end
    """)
    other = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "written"
        ours = Journal(folder, max_bytes=1 << 20)
        seen = []
        assert ours.replay(lambda batch: seen.extend(batch)) == 0 and len(ours.files()) == 1
        other.stdin.write("\n")
        other.stdin.flush()
        other.wait(10)
        assert ours.replay(lambda batch: seen.extend(e.data["from"] for e in batch)) == 1
        assert seen == ["other"] and ours.files() == []
    finally:
        other.kill()
        other.wait()


# The service through a database outage (PostgreSQL behind a proxy the test cuts).

FAST = {"CONNECTOR_ALLOWED_TARGETS": "127.0.0.1"}


@pytest.fixture
def outage(postgres_through_proxy, sandbox, serve):
    """The connector on a PostgreSQL the test can cut off: (its Api, its app, the proxy, DATABASE_URL)."""
    url, proxy = postgres_through_proxy
    app = create_app(connector_settings(sandbox.url, **FAST))
    app.extensions["connector"].store.outage.quiet = 0.2  # the log's wait for a quiet moment, short here
    return serve(app), app, proxy, url


def _events(url: str) -> list[str]:
    store = Store(url)
    try:
        with store.engine.connect() as db:
            from sqlalchemy import select

            from connector.storage.tables import events

            return [row.data for row in db.execute(select(events.c.data).order_by(events.c.seq))]
    finally:
        store.close()


def _sms_ids(url: str) -> list[str]:
    import json

    return [json.loads(data)["sms_id"] for data in _events(url)]


def test_callbacks_while_the_database_is_away_are_journalled_then_stored_once_in_order(outage, sandbox, caplog):
    api, app, proxy, url = outage
    inbound = api.get("/v1/me").json()["inbound_url"]
    assert requests.post(inbound, json=receipt("before"), timeout=10).json()["accepted"] == 1

    caplog.set_level(logging.INFO)
    proxy.cut()
    answers = [requests.post(inbound, json=receipt(f"during-{n}"), timeout=30) for n in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert all(a.json()["journalled"] for a in answers)
    # Sent again during the outage: journalled twice, stored once.
    assert requests.post(inbound, json=receipt("during-0"), timeout=30).status_code == 200
    ready = requests.get(api.url + "/readyz", timeout=30)
    assert ready.status_code == 503 and "does not answer" in ready.json()["error"]["message"]
    assert ready.json()["error"]["journal"]["entries"] == 7
    assert requests.get(api.url + "/healthz", timeout=10).status_code == 200
    assert app.extensions["connector"].journal.depth()["entries"] == 7

    proxy.restore()
    wait_for(
        lambda: app.extensions["connector"].journal.depth()["entries"] == 0,
        timeout=30,
        what="the journal to be replayed",
    )
    # A callback after the outage goes in after those journalled before it (sent again until it is stored
    # directly and the outage's end is logged, after a quiet moment: the same callback is one event).
    wait_for(
        lambda: (
            requests.post(inbound, json=receipt("after"), timeout=30).json().get("journalled") is None
            and "answers again" in caplog.text
        ),
        what="callbacks stored directly again, and the outage over",
    )
    assert _sms_ids(url) == ["before", *[f"during-{n}" for n in range(6)], "after"]
    ready = wait_for(
        lambda: (r := requests.get(api.url + "/readyz", timeout=10)).status_code == 200 and r, what="ready again"
    )
    assert ready.json()["journal"]["entries"] == 0

    about_db = [r for r in caplog.records if "database" in r.getMessage().lower() and r.name.startswith("connector")]
    assert [
        r.levelname for r in about_db if "does not answer" in r.getMessage() or "answers again" in r.getMessage()
    ] == ["ERROR", "WARNING"], [r.getMessage() for r in about_db]
    assert not any(r.exc_info for r in caplog.records), "no traceback for an outage"


def test_keyed_actions_are_refused_without_a_send_and_plain_ones_keep_working_while_the_database_is_away(
    outage, sandbox
):
    api, app, proxy, url = outage
    assert api.action("get_account").status_code == 200  # credentials known before the outage
    proxy.cut()
    body = {"recipients": [{"phone_number": "0611111111"}], "message": "Hello"}
    keyed = api.action("send_sms", body, headers={"Idempotency-Key": "outage-1"})
    assert keyed.status_code == 503, keyed.text
    assert keyed.json()["error"]["disposition"] == "retry_later" and keyed.headers["Retry-After"]
    assert sandbox.state.campaigns("demo") == [], "no send without the key's protection"
    plain = api.action("send_sms", body)
    assert plain.status_code == 200, plain.text
    assert len(sandbox.state.campaigns("demo")) == 1
    proxy.restore()
    wait_for(
        lambda: api.action("send_sms", body, headers={"Idempotency-Key": "outage-1"}).status_code == 200,
        timeout=30,
        what="the keyed send once the database answers",
    )
    again = api.action("send_sms", body, headers={"Idempotency-Key": "outage-1"})
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(sandbox.state.campaigns("demo")) == 2


def test_a_keyed_send_whose_outcome_cannot_be_written_is_answered_and_never_sent_twice(outage, sandbox):
    api, app, proxy, url = outage
    store = app.extensions["connector"].store
    body = {"recipients": [{"phone_number": "0611111111"}], "message": "Cut after the send"}
    original = store.keys.settle

    def settle_while_cut(*args, **kwargs):
        proxy.cut()  # the database goes away while AllMySMS sends
        return original(*args, **kwargs)

    store.keys.settle = settle_while_cut
    first = api.action("send_sms", body, headers={"Idempotency-Key": "cut-1"})
    assert first.status_code == 200, first.text  # the send's own answer, not an error a platform would retry
    store.keys.settle = original
    retried = api.action("send_sms", body, headers={"Idempotency-Key": "cut-1"})
    assert retried.status_code == 503  # the key's state cannot be read: refused, not sent
    proxy.restore()
    replayed = wait_for(
        lambda: (
            (r := api.action("send_sms", body, headers={"Idempotency-Key": "cut-1"})).headers.get("Idempotent-Replayed")
            and r
        ),
        timeout=30,
        what="the journalled outcome",
    )
    assert replayed.json() == first.json()
    assert len(sandbox.state.campaigns("demo")) == 1


def test_an_account_first_seen_while_the_database_is_away_gets_its_callbacks_once_it_answers(outage, sandbox):
    api, app, proxy, url = outage
    proxy.cut()  # before this process has ever seen the login
    sent = api.action("send_sms", {"recipients": [{"phone_number": "0611111111"}], "message": "First"})
    assert sent.status_code == 200, sent.text
    from connector.events.inbound import url as inbound_url
    from connector.web.accounts import inbound_token

    token = inbound_token(app.extensions["connector"].accounts.secret, "demo")
    answered = requests.post(inbound_url(api.url, token), json=receipt("first-receipt"), timeout=30)
    assert answered.status_code == 200 and answered.json()["journalled"]
    # Another token, unknown to the service, is journalled too (it cannot be told apart now) and dropped later.
    assert requests.post(inbound_url(api.url, "not-a-token"), json=receipt("stray"), timeout=30).status_code == 200
    proxy.restore()
    wait_for(lambda: app.extensions["connector"].journal.files() == [], timeout=30, what="the journal replayed")
    assert _sms_ids(url) == ["first-receipt"]


def test_an_unreadable_callback_is_refused_while_the_database_is_away_and_not_journalled(outage, sandbox):
    api, app, proxy, url = outage
    inbound = api.get("/v1/me").json()["inbound_url"]
    proxy.cut()
    refused = requests.post(inbound, data=b"<not json", headers={"Content-Type": "application/json"}, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "callback_rejected"
    assert app.extensions["connector"].journal.files() == []
    proxy.restore()


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """The data folder on a 4 MB filesystem of the test's own (tmpfs): (folder, fill, free)."""
    from conftest import require

    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(folder)], capture_output=True, text=True
    )
    require(
        None
        if mounted.returncode == 0
        else f"cannot mount a small tmpfs for the full-disk test: {mounted.stderr.strip() or mounted.returncode}"
    )
    monkeypatch.setenv("CONNECTOR_DATA_DIR", str(folder / "var"))
    filler = folder / "filler"

    def fill():
        with open(filler, "ab") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass

    try:
        yield folder, fill, lambda: filler.unlink(missing_ok=True)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_answers_503_keeps_what_was_stored_and_recovers_when_space_returns(small_disk, sandbox, serve):
    folder, fill, free = small_disk
    app = create_app(connector_settings(sandbox.url, **FAST))
    api = serve(app)
    inbound = api.get("/v1/me").json()["inbound_url"]
    assert requests.post(inbound, json=receipt("before"), timeout=10).status_code == 200
    fill()
    refused = [requests.post(inbound, json=receipt(f"full-{n}", statusText="x" * 20_000), timeout=30) for n in range(3)]
    assert {r.status_code for r in refused} == {503}, [r.text for r in refused]
    assert all(r.headers["Retry-After"] and r.json()["error"]["disposition"] == "retry_later" for r in refused)
    free()
    wait_for(
        lambda: requests.post(inbound, json=receipt("after"), timeout=30).status_code == 200,
        what="callbacks taken again once space returns",
    )
    url = app.extensions["connector"].store.url
    assert _sms_ids(url) == ["before", "after"]  # a callback answered 503 was not kept, nor half-kept
    store = Store(url)
    try:
        with store.engine.connect() as db:
            from sqlalchemy import text

            assert db.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    finally:
        store.close()


# The outage state each process keeps.


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends_with_its_length(caplog):
    from sqlalchemy.exc import IntegrityError, OperationalError

    from connector.storage.outage import Outage

    now = [100.0]
    lost = []
    outage = Outage(counted=lambda: lost.append(1), clock=lambda: now[0])
    down = OperationalError(
        "SELECT phone FROM t WHERE phone = '+33611111111'", {}, Exception("connection refused\nIs the server running?")
    )
    caplog.set_level(logging.INFO)
    assert outage.failed(down) and outage.failed(down) and outage.down
    assert not outage.failed(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert outage.why == "Exception: connection refused"
    now[0] = 109.0
    outage.failed(down, wrote=True)  # a write failed too: reads answering is not the end of it (a full disk)
    now[0] = 111.0
    outage.answered()
    outage.answered(wrote=True)  # nor is a write so soon after a failure: it may be one that still fits
    assert outage.down
    now[0] = 112.9
    outage.answered(wrote=True)
    outage.answered()
    assert not outage.down
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lost == [1]
    assert lines[0].startswith("The database does not answer (Exception: connection refused)")
    assert lines[1] == "The database answers again, after 12.9 s."
    assert "+33611111111" not in caplog.text, "the statement and its parameters stay out of the log"


def test_backoff_doubles_up_to_its_ceiling_with_jitter_and_starts_over_when_reset():
    import random

    from connector.storage.outage import Backoff

    backoff = Backoff(first=0.25, most=4.0, jitter=0.5, rng=random.Random(7))
    delays = [backoff.delay() for _ in range(8)]
    bases = [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert all(base * 0.5 <= d <= base * 1.5 for d, base in zip(delays, bases)), delays
    assert len(set(delays)) == len(delays), "spread, so processes do not come back in step"
    backoff.reset()
    assert backoff.delay() <= 0.25 * 1.5


def test_a_claim_whose_answer_was_lost_is_undone_so_that_the_retry_sends_once(outage, sandbox):
    # The database wrote the key's claim, then went away before saying so: the caller got 503 (nothing was
    # sent). Left there, the claim would make every retry wait on this live process for minutes.
    from sqlalchemy.exc import OperationalError

    api, app, proxy, url = outage
    store = app.extensions["connector"].store
    original = store.keys.claim

    def claimed_then_lost(*args, **kwargs):
        original(*args, **kwargs)
        raise OperationalError("INSERT INTO idempotency_keys", {}, Exception("server closed the connection"))

    store.keys.claim = claimed_then_lost
    body = {"recipients": [{"phone_number": "0611111111"}], "message": "Once"}
    lost = api.action("send_sms", body, headers={"Idempotency-Key": "lost-claim"})
    assert lost.status_code == 503 and lost.json()["error"]["disposition"] == "retry_later"
    store.keys.claim = original
    wait_for(lambda: app.extensions["connector"].journal.files() == [], what="the claim undone from the journal")
    retried = api.action("send_sms", body, headers={"Idempotency-Key": "lost-claim"})
    assert retried.status_code == 200, retried.text
    assert len(sandbox.state.campaigns("demo")) == 1

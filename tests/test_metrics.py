"""/metrics: what actions, AllMySMS, callbacks and deliveries did, and what waits in the database, read by
Prometheus; summed over the processes of `connector serve`."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from connector import create_app
from connector.observe import metrics
from connector.web.accounts import token_hash
from tests.conftest import DEMO, Scripted, connector_settings, wait_for
from tests.test_serve import clean_env, start, stop


def scrape(url: str, **kwargs) -> dict:
    """Every sample of a scrape: {(name, frozenset of labels): value}."""
    answer = requests.get(url + "/metrics", timeout=10, **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew(before: dict, after: dict, name: str, **labels) -> float:
    """How much a counter grew: counts are kept per process, and this one runs many tests."""
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def service(sandbox, serve, subscriber):
    """The connector as `connector serve` runs it, in this process: sandbox receipts pushed to the inbound URL,
    a delivery worker, and a subscriber for delivery receipts."""
    app = create_app(connector_settings(sandbox.url, ALLMYSMS_SANDBOX=True, CONNECTOR_ALLOWED_TARGETS="127.0.0.1"))
    api = serve(app)
    sandbox.state.set_callback_url("demo", api.get("/v1/me").json()["inbound_url"])
    answer = api.session.post(
        f"{api.url}/v1/triggers/delivery_receipt/subscriptions",
        timeout=10,
        json={"target_url": subscriber.target("/hook")},
    )
    assert answer.status_code == 201, answer.text
    worker = app.extensions["connector"].delivery_worker()
    worker.poll_interval = 0.01
    yield api, app, worker
    worker.stop()


def test_actions_upstream_requests_callbacks_and_deliveries_are_counted(service, subscriber):
    api, _, worker = service
    before = scrape(api.url)
    assert api.action("send_sms", {"message": "Hello", "recipients": ["0611111111"]}).status_code == 200
    assert api.action("send_sms", {"message": "", "recipients": ["0611111111"]}).status_code == 422
    assert api.action("get_account", {}, auth=("demo", "wrong-key")).status_code == 401
    inbound = api.get("/v1/me").json()["inbound_url"]
    assert requests.post(inbound, data=b"\xff", headers={"Content-Type": "text/plain"}, timeout=10).status_code == 400
    assert requests.post(inbound.rsplit("/", 1)[0] + "/" + "x" * 32, data={"smsId": "1"}, timeout=10).status_code == 404
    worker.start()
    wait_for(lambda: subscriber.deliveries("/hook"), what="the receipt's delivery")
    after = wait_for(
        lambda: (
            lambda s: (
                s
                if grew(before, s, "connector_delivery_attempts_total", outcome="succeeded", status_class="2xx")
                else None
            )
        )(scrape(api.url)),
        what="the delivery to be counted",
    )

    assert grew(before, after, "connector_actions_total", action="send_sms", outcome="ok") == 1
    assert grew(before, after, "connector_actions_total", action="send_sms", outcome="invalid_input") == 1
    assert grew(before, after, "connector_actions_total", action="get_account", outcome="invalid_credentials") == 1
    assert grew(before, after, "connector_action_duration_seconds_count", action="send_sms") == 2
    assert (
        grew(
            before,
            after,
            "connector_upstream_requests_total",
            method="sendSms",
            http_status="200",
            allmysms_status="100",
        )
        == 1
    )
    # The wrong key: AllMySMS answers getInfo with HTTP 200 and its status 102.
    assert (
        grew(
            before,
            after,
            "connector_upstream_requests_total",
            method="getInfo",
            http_status="200",
            allmysms_status="102",
        )
        == 1
    )
    assert grew(before, after, "connector_upstream_request_duration_seconds_count", method="sendSms") == 1
    assert grew(before, after, "connector_callbacks_received_total") >= 3  # the receipt, and the two refused
    assert grew(before, after, "connector_callbacks_rejected_total", reason="unreadable") == 1
    assert grew(before, after, "connector_callbacks_rejected_total", reason="unknown_token") == 1
    assert grew(before, after, "connector_callback_records_total", result="new") >= 1
    assert grew(before, after, "connector_delivery_attempts_total", outcome="succeeded", status_class="2xx") >= 1
    assert grew(before, after, "connector_delivery_lag_seconds_count") >= 1
    assert value(after, "connector_database_up") == 1
    assert value(after, "connector_deliveries", status="succeeded") >= 1
    assert value(after, "connector_subscriptions", status="active") == 1


def test_queue_depth_and_the_oldest_due_delivery_come_from_the_database(service, subscriber):
    api, app, worker = service
    store = app.extensions["connector"].store
    account_id = store.accounts.by_token_hash(token_hash(api.get("/v1/me").json()["inbound_url"].rsplit("/", 1)[1]))[0]
    due = time.time() - 30
    event = {"type": "sms.delivery_receipt", "timestamp": "2026-11-29T12:00:00Z", "data": {"sms_id": "1"}}
    store.events.add(account_id, [{**event, "id": "evt_queued_1"}, {**event, "id": "evt_queued_2"}], due)
    samples = scrape(api.url)
    assert value(samples, "connector_queue_depth", queue="fanout") == 2
    assert 29 <= value(samples, "connector_queue_oldest_seconds", queue="fanout") < 120
    store.events.fan_out(time.time())  # each queued event becomes a delivery, due since it was received
    samples = scrape(api.url)
    assert value(samples, "connector_queue_depth", queue="fanout") == 0
    assert value(samples, "connector_queue_depth", queue="deliveries") == 2
    assert value(samples, "connector_deliveries", status="pending") == 2
    assert 29 <= value(samples, "connector_queue_oldest_seconds", queue="deliveries") < 120
    worker.start()
    wait_for(lambda: len(subscriber.deliveries("/hook")) >= 2, what="the deliveries")
    samples = wait_for(
        lambda: (lambda s: s if value(s, "connector_queue_depth", queue="deliveries") == 0 else None)(scrape(api.url)),
        what="the queue to empty",
    )
    assert value(samples, "connector_queue_oldest_seconds", queue="deliveries") == 0
    assert value(samples, "connector_deliveries", status="succeeded") == 2


def test_upstream_failures_are_counted_by_http_status_or_none(through, scripted):
    api = through()
    before = scrape(api.url)
    scripted.script(Scripted(status=503, body=b"down"), Scripted(body={"status": 116, "statusText": "?"}))
    assert api.action("send_sms", {"message": "Hi", "recipients": ["0611111111"]}).status_code == 502
    assert api.action("send_sms", {"message": "Hi", "recipients": ["0611111111"]}).status_code == 502
    after = scrape(api.url)
    assert (
        grew(
            before,
            after,
            "connector_upstream_requests_total",
            method="sendSms",
            http_status="503",
            allmysms_status="none",
        )
        == 1
    )
    assert (
        grew(
            before,
            after,
            "connector_upstream_requests_total",
            method="sendSms",
            http_status="200",
            allmysms_status="116",
        )
        == 1
    )
    assert grew(before, after, "connector_actions_total", action="send_sms", outcome="unknown_allmysms_status") == 1


def test_metrics_carry_no_login_number_key_or_token(service, subscriber):
    api, _, worker = service
    worker.start()
    api.action("send_sms", {"message": "Secret text", "recipients": ["0611111111"]})
    wait_for(lambda: subscriber.deliveries("/hook"), what="the receipt's delivery")
    text = requests.get(api.url + "/metrics", timeout=10).text
    token = api.get("/v1/me").json()["inbound_url"].rsplit("/", 1)[1]
    for secret in (*DEMO, "0611111111", "33611111111", "Secret text", token, subscriber.url, "127.0.0.1"):
        assert secret not in text, secret


def test_a_metrics_token_is_asked_for_as_a_bearer_token_when_set(sandbox, serve):
    api = serve(create_app(connector_settings(sandbox.url, CONNECTOR_METRICS_TOKEN="t" * 24)))
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic " + "t" * 24}):
        refused = requests.get(api.url + "/metrics", headers=headers, timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert refused.json()["error"]["code"] == "invalid_metrics_token"
    assert (
        "connector_database_up 1.0"
        in requests.get(api.url + "/metrics", headers={"Authorization": "Bearer " + "t" * 24}, timeout=10).text
    )


def test_importing_the_package_leaves_the_choice_of_metrics_storage_to_serve_and_worker():
    """prometheus-client decides at import whether counts go to shared files: importing the package (as the
    `connector` command does, before it sets the directory) must not import it."""
    ran = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, connector, connector.ops.cli, connector.ops.serving; "
            "print('prometheus_client' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.stdout.strip() == "False", ran.stdout + ran.stderr


def test_the_metrics_directory_keeps_running_processes_files_and_drops_those_of_ended_ones(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.MULTIPROCESS_DIR, "")  # unset for prepare_directory, and restored after
    folder = Path(metrics.default_directory(str(tmp_path / "var")))
    folder.mkdir(parents=True)
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    for name in (f"counter_{os.getpid()}.db", f"counter_{ended}.db", f"histogram_{ended}.db"):
        (folder / name).write_bytes(b"")
    assert metrics.prepare_directory(str(tmp_path / "var")) == str(folder)
    assert os.environ[metrics.MULTIPROCESS_DIR] == str(folder)
    assert sorted(os.listdir(folder)) == [f"counter_{os.getpid()}.db"]
    if os.path.isdir(metrics.MEMORY):  # in memory where there is some: not on the data disk, which may fill up
        assert str(folder).startswith(metrics.MEMORY + os.sep)
    shutil.rmtree(folder)


def test_serve_sums_the_counts_of_its_web_and_delivery_processes(tmp_path, subscriber):
    """`connector serve` with two web workers and a delivery worker process: every scrape, whichever worker
    answers it, reports all the actions and the deliveries made in the other processes."""
    env = clean_env(
        tmp_path,
        CONNECTOR_WORKERS="2",
        CONNECTOR_THREADS="4",
        CONNECTOR_DELIVERY_PROCESSES="1",
        CONNECTOR_ALLOWED_TARGETS="127.0.0.1",
        CONNECTOR_ACTIONS_PER_MINUTE="0",
    )
    env.pop(metrics.MULTIPROCESS_DIR, None)
    url, log, process = start([sys.executable, "-m", "connector.ops.cli", "serve"], env, tmp_path)
    try:
        auth = DEMO
        assert (
            requests.post(
                f"{url}/v1/triggers/delivery_receipt/subscriptions",
                auth=auth,
                timeout=10,
                json={"target_url": subscriber.target("/hook")},
            ).status_code
            == 201
        )
        folder = Path(metrics.default_directory(str(tmp_path / "var")))

        def web_processes_counting() -> set:
            return {
                path.rsplit("_", 1)[1]
                for path in glob.glob(str(folder / "counter_*.db"))
                if b"connector_actions" in open(path, "rb").read()
            }

        def action(_):
            # A connection each: gunicorn's workers take turns accepting them.
            return requests.post(
                url + "/v1/actions/estimate_sms",
                auth=auth,
                timeout=10,
                json={"message": "Hi", "recipients": ["0611111111"]},
            ).status_code

        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while len(web_processes_counting()) < 2 and sent < 400:
                assert set(pool.map(action, range(16))) == {200}
                sent += 16
        assert len(web_processes_counting()) == 2, "one web worker answered every action"
        assert (
            requests.post(
                url + "/v1/actions/send_sms",
                auth=auth,
                timeout=10,
                json={"message": "Hi", "recipients": ["0611111111"]},
            ).status_code
            == 200
        )
        wait_for(lambda: subscriber.deliveries("/hook"), what="the receipt's delivery")
        counted = wait_for(
            lambda: (
                lambda s: (
                    s
                    if value(s, "connector_delivery_attempts_total", outcome="succeeded", status_class="2xx")
                    else None
                )
            )(scrape(url)),
            what="the delivery to be counted",
        )
        for _ in range(6):  # whichever web worker answers
            samples = scrape(url)
            assert value(samples, "connector_actions_total", action="estimate_sms", outcome="ok") == sent
            assert value(samples, "connector_actions_total", action="send_sms", outcome="ok") == 1
            assert value(samples, "connector_delivery_attempts_total", outcome="succeeded", status_class="2xx") >= 1
        assert (
            value(
                counted, "connector_upstream_requests_total", method="sendSms", http_status="200", allmysms_status="100"
            )
            == 1
        )
    finally:
        stop(process)

"""A delivery worker killed with SIGKILL mid-delivery loses nothing: another one finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from connector import create_app
from tests.conftest import Scripted, connector_settings, wait_for

# Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.usefixtures("backend")


def start_worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "connector.ops.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_killing_the_worker_mid_delivery_loses_no_event(sandbox, serve, subscriber, tmp_path):
    data_dir = str(tmp_path / "shared")
    settings = {
        "CONNECTOR_DATA_DIR": data_dir,
        "CONNECTOR_ALLOWED_TARGETS": "127.0.0.1",
        "CONNECTOR_DELIVERY_TIMEOUT": 1,
        "CONNECTOR_LEASE_SECONDS": 1,
        "CONNECTOR_RETRY_SCHEDULE": "0,0.1,0.1",
        "CONNECTOR_DELIVERY_CONCURRENCY": 4,
    }
    app = create_app(connector_settings(sandbox.url, **settings))
    api = serve(app)
    requests.post(
        f"{api.url}/v1/triggers/delivery_receipt/subscriptions",
        auth=api.session.auth,
        timeout=10,
        json={"target_url": subscriber.target()},
    ).raise_for_status()
    inbound = api.get("/v1/me").json()["inbound_url"]
    total = 12
    # Every delivery is slow, so the worker is surely in the middle of some when it is killed.
    subscriber.script("/hook", *[Scripted(status=200, delay=0.3) for _ in range(total * 3)])
    for n in range(total):
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
    first = start_worker(env)
    try:
        wait_for(lambda: len(subscriber.received) >= 2, what="the first deliveries")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        done_before = {json.loads(r["body"])["data"]["sms_id"] for r in subscriber.received}
        assert len(done_before) < total, "the worker finished before it could be killed"
        second = start_worker(env)
        try:
            wait_for(
                lambda: (
                    {json.loads(r["body"])["data"]["sms_id"] for r in subscriber.received}
                    == {f"s-{n}" for n in range(total)}
                ),
                timeout=60,
                what="every event after the restart",
            )
        finally:
            second.terminate()
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
    # A delivery that may be repeated after the crash keeps its webhook-id: receivers can tell.
    ids_by_event: dict[str, set] = {}
    for r in subscriber.received:
        ids_by_event.setdefault(json.loads(r["body"])["id"], set()).add(r["headers"]["Webhook-Id"])
    assert all(len(ids) == 1 for ids in ids_by_event.values())

"""`connector serve`, the README's first command: gunicorn, the app factory and the sandbox, for real."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent


def start(argv: list[str], env: dict, tmp_path, ready: str = "/v1/manifest"):
    """Start a server process in a session of its own; (url, log, process) once ``ready`` answers. Any
    failure to start stops the whole process tree (gunicorn's workers, the delivery workers) before failing."""
    # Appending: the server shares this file's offset; without O_APPEND its lines would be written over each
    # other. Read it with written(), through a file of its own: seeking this one would race the server's writes.
    log = (tmp_path / "serve.log").open("a+")
    process = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{env['PORT']}"
    started = False
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # A busy machine may accept the connection and answer late: any error means "not yet".
                requests.get(url + ready, timeout=5)
                started = True
                return url, log, process
            except requests.RequestException:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{argv} did not start:\n{written(log)}")
                time.sleep(0.05)  # polling for the port to open
    finally:
        if not started:
            stop(process)


def written(log) -> str:
    """Everything the server wrote to ``log`` so far, read at an offset of this call's own."""
    return Path(log.name).read_text()


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the whole group is gone already
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def clean_env(tmp_path, **settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALLMYSMS_", "CONNECTOR_"))}
    env.update(PORT=str(free_port()), CONNECTOR_DATA_DIR=str(tmp_path / "var"), **settings)
    return env


@pytest.fixture(params=["text", "json"])
def log_format(request):
    return request.param


@pytest.fixture
def served(tmp_path, log_format):
    env = clean_env(
        tmp_path,
        CONNECTOR_WORKERS="2",
        CONNECTOR_THREADS="4",
        CONNECTOR_ALLOWED_TARGETS="127.0.0.1",
        CONNECTOR_LOG_FORMAT=log_format,
        # Every line the service may write, those of each action included, goes through the masking here.
        CONNECTOR_LOG_LEVEL="DEBUG",
    )
    url, log, process = start([sys.executable, "-m", "connector.ops.cli", "serve"], env, tmp_path)
    yield url, log
    stop(process)


def test_gunicorn_runs_the_app_with_the_shipped_config(tmp_path, sandbox):
    """`gunicorn -c gunicorn.conf.py`: one worker per core (two at least), health answers, and the access
    log shows an inbound URL's token only as a fingerprint."""
    env = clean_env(tmp_path, ALLMYSMS_BASE_URL=sandbox.url)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    url, log, process = start(
        [gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), "connector:create_app()"], env, tmp_path, ready="/healthz"
    )
    try:
        assert requests.get(url + "/readyz", timeout=10).json()["status"] == "ok"
        token = "Zq" * 20
        assert requests.post(f"{url}/v1/inbound/allmysms/{token}", data={"smsId": "1"}, timeout=10).status_code == 404
    finally:
        stop(process)
    text = written(log)
    assert text.count("Booting worker") == max(2, os.cpu_count() or 1)
    assert "POST /v1/inbound/allmysms/" in text and token not in text


def logged(log, log_format: str) -> str:
    """Everything the service wrote so far. In JSON, each line must be one object with the time, level,
    logger and message, and each access line the request's method, path, status and request id."""
    text = written(log)
    if log_format == "json":
        for line in text.splitlines():
            entry = json.loads(line)  # a line that is not JSON fails here
            assert {"time", "level", "logger", "message"} <= set(entry), line
            if entry["logger"] == "gunicorn.access":
                assert {"method", "path", "status", "duration_ms"} <= set(entry["http"]), line
                assert len(entry["request_id"]) == 16, line
    return text


def test_serve_logs_neither_keys_nor_phone_numbers(served, log_format):
    url, log = served
    auth = ("demo", "demo-api-key")
    sent = requests.post(
        url + "/v1/actions/send_sms",
        auth=auth,
        timeout=10,
        json={"message": "Secret text", "recipients": ["0611111111"]},
    )
    requests.get(url + "/v1/me?apiKey=demo-api-key", auth=("demo", "wrong-key-123"), timeout=10)

    # The access line is written once the answer has gone.
    def with_the_send():
        text = logged(log, log_format)
        return text if "POST /v1/actions/send_sms" in text else None

    text = wait_for(with_the_send, what="the access log line of the send")
    if log_format == "json":
        # The access line and the application's own lines about a request carry the id its caller was given.
        about = [json.loads(line) for line in text.splitlines() if sent.headers["X-Request-Id"] in line]
        assert {entry["logger"] for entry in about} >= {"gunicorn.access", "connector.web.actions"}
    # The demo key is public and printed once, in the start-up banner; never again.
    assert text.count("demo-api-key") == 1 and "Sandbox mode" in text.split("demo-api-key")[0]
    for secret in ("wrong-key-123", "0611111111", "33611111111", "Secret text", "ZGVtbzpkZW1vLWFwaS1rZXk="):
        assert secret not in text


def test_serve_delivers_a_receipt_and_a_reply_to_a_subscriber_with_no_configuration(served, subscriber, log_format):
    from standardwebhooks.webhooks import Webhook

    from tests.conftest import wait_for

    url, _ = served
    auth = ("demo", "demo-api-key")
    hooks = {}
    for trigger in ("delivery_receipt", "reply_received"):
        answer = requests.post(
            f"{url}/v1/triggers/{trigger}/subscriptions",
            auth=auth,
            timeout=10,
            json={"target_url": subscriber.target(f"/{trigger}")},
        )
        assert answer.status_code == 201, answer.text
        hooks[trigger] = answer.json()["secret"]
    sent = requests.post(
        url + "/v1/actions/send_sms",
        auth=auth,
        timeout=10,
        json={"message": "Your table is ready", "recipients": ["0611111111"]},
    ).json()
    delivered = wait_for(lambda: subscriber.deliveries("/delivery_receipt"), what="the receipt")[0]
    event = Webhook(hooks["delivery_receipt"]).verify(delivered["body"], delivered["headers"])
    assert event["data"]["sms_id"] == sent["sms_ids"][0]["sms_id"]
    reply = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector.ops.cli",
            "reply",
            "--url",
            url,
            "--phone",
            "0611111111",
            "--message",
            "On arrive",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reply.returncode == 0, reply.stdout + reply.stderr
    delivered = wait_for(lambda: subscriber.deliveries("/reply_received"), what="the reply")[0]
    event = Webhook(hooks["reply_received"]).verify(delivered["body"], delivered["headers"])
    assert event["data"]["message"] == "On arrive"
    # Everything the whole loop logged (web, worker, sandbox): no secret, number or text of it.
    token = requests.get(url + "/v1/me", auth=auth, timeout=10).json()["inbound_url"].rsplit("/", 1)[1]
    text = logged(served[1], log_format)
    assert "/v1/inbound/allmysms/" in text  # the callbacks were logged, by path
    for secret in (
        token,
        *hooks.values(),
        "0611111111",
        "33611111111",
        "Your table is ready",
        "On arrive",
        "ZGVtbzpkZW1vLWFwaS1rZXk=",
    ):
        assert secret not in text, f"{secret[:6]}… appears in the log"


def _trickle(url: str, stop: threading.Event, count: int = 150) -> list[socket.socket]:
    """``count`` clients that open a request and send it a byte at a time, half stuck in their headers and
    half in their body, until ``stop`` is set."""
    port = int(url.rsplit(":", 1)[1])
    heads = [
        b"POST /v1/actions/send_sms HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000,
        b"POST /v1/actions/send_sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{" + b" " * 4000,
    ]
    clients = []
    for n in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(heads[n % 2][:40])
        clients.append(client)

    def drip():
        sent = 40
        while not stop.wait(0.3) and sent < 4000:
            for n, client in enumerate(clients):
                try:
                    client.send(heads[n % 2][sent : sent + 1])
                except OSError:
                    pass  # cut off by the server: what a deadline does
            sent += 1

    threading.Thread(target=drip, daemon=True).start()
    return clients


def test_clients_trickling_their_requests_do_not_keep_health_checks_from_being_answered(tmp_path):
    env = clean_env(tmp_path, CONNECTOR_WORKERS="1", CONNECTOR_THREADS="2", CONNECTOR_REQUEST_READ_TIMEOUT="60")
    url, _, process = start([sys.executable, "-m", "connector.ops.cli", "serve"], env, tmp_path, ready="/healthz")
    stop_dripping = threading.Event()
    clients = []
    try:
        clients = _trickle(url, stop_dripping)
        # Every trickling client has been accepted and is half-way through its request, and yet:
        health = requests.get(url + "/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        sent = requests.post(
            url + "/v1/actions/send_sms",
            auth=("demo", "demo-api-key"),
            timeout=30,
            json={"message": "Hi", "recipients": ["0611111111"]},
        )
        assert sent.status_code == 200 and sent.json()["sms_ids"], sent.text
    finally:
        stop_dripping.set()
        for client in clients:
            client.close()
        stop(process)


def _ask_slowly(port: int, request: bytes, piece: int = 7) -> bytes:
    """Send ``request`` a few bytes at a time and read the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        for at in range(0, len(request), piece):
            client.sendall(request[at : at + piece])
            time.sleep(0.01)  # pacing the client, so each piece arrives on its own
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


def test_a_request_that_arrives_in_pieces_is_answered_whole_and_one_that_stops_is_cut_off(tmp_path):
    env = clean_env(tmp_path, CONNECTOR_WORKERS="1", CONNECTOR_THREADS="2", CONNECTOR_REQUEST_READ_TIMEOUT="2")
    url, _, process = start([sys.executable, "-m", "connector.ops.cli", "serve"], env, tmp_path, ready="/healthz")
    port = int(url.rsplit(":", 1)[1])
    auth = b"Authorization: Basic ZGVtbzpkZW1vLWFwaS1rZXk=\r\nConnection: close\r\n"
    body = b'{"message": "Hi", "recipients": ["0611111111"]}'
    try:
        plain = _ask_slowly(
            port,
            b"POST /v1/actions/send_sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\n" + auth + b"Content-Length: %d\r\n\r\n" % len(body) + body,
        )
        assert plain.startswith(b"HTTP/1.1 200") and b'"sms_ids"' in plain, plain[:300]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
        answer = _ask_slowly(
            port,
            b"POST /v1/actions/send_sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\n" + auth + b"Transfer-Encoding: chunked\r\n\r\n" + chunked,
        )
        assert answer.startswith(b"HTTP/1.1 200") and b'"sms_ids"' in answer, answer[:300]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as stalled:
            stalled.sendall(b"POST /v1/actions/send_sms HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
            # The server gives up on it (the read timeout is 2 s here) and says so; recv waits for that.
            assert stalled.recv(65536).startswith(b"HTTP/1.1 408")
    finally:
        stop(process)

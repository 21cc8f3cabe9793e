"""Limits against abuse (issue 13): refused callers cost little and are throttled, AllMySMS is never asked
too often on anyone's behalf, and nothing a caller sends makes the service keep memory or echo it back."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import requests

from connector import create_app
from connector.description.validation import MAX_EXPLAINED_ITEMS
from connector.sandbox import SandboxState, create_sandbox_app
from tests.conftest import DEMO, LoopbackServer, Scripted, connector_settings, free_port, wait_for

GET_INFO = "/http/9.0/getInfo/"
BAD_ITEMS = {"message": "hi", "recipients": [{"a": 0}] * 20_000}


class CountedSandbox:
    """The built-in sandbox on loopback, with the path of every call it was asked."""

    def __init__(self):
        self.state = SandboxState()
        self._app = create_sandbox_app(self.state)
        self.paths: list[str] = []
        self.server = LoopbackServer(self._wsgi)
        self.url = self.server.url

    def _wsgi(self, environ, start_response):
        self.paths.append(environ["PATH_INFO"])
        return self._app(environ, start_response)

    def asked(self, path: str = GET_INFO) -> int:
        return self.paths.count(path)


@pytest.fixture
def counted():
    sandbox = CountedSandbox()
    yield sandbox
    sandbox.server.stop()
    sandbox.state.close()


def _connector(counted, **settings):
    return create_app(connector_settings(counted.url, **settings)).test_client()


def _from(address: str, key: str, login: str = "demo") -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}, "auth": (login, key)}


# --- finding 1: the caller is known before the expensive work ----------------------------------------


def test_an_invalid_20000_item_body_with_a_wrong_key_is_refused_after_one_check_and_never_explained(counted):
    client = _connector(counted)
    answer = client.post("/v1/actions/send_sms", json=BAD_ITEMS, auth=("demo", "wrong"))
    assert answer.status_code == 401
    error = answer.get_json()["error"]
    assert error["code"] == "invalid_credentials" and "fields" not in error
    assert counted.paths == [GET_INFO]


def test_with_the_right_key_a_20000_item_invalid_body_explains_a_few_items_and_counts_the_others(counted):
    answer = _connector(counted).post("/v1/actions/send_sms", json=BAD_ITEMS, auth=DEMO)
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    explained = {field["path"].split(".")[0] for field in error["fields"]}
    assert explained == {f"recipients[{i}]" for i in range(MAX_EXPLAINED_ITEMS)}
    assert len(error["fields"]) + error["more_fields"] >= 20_000
    assert error["message"].startswith("At least ")
    assert counted.asked("/http/9.0/sendSms/") == 0


def test_a_valid_small_send_asks_allmysms_nothing_more_than_the_send(counted):
    answer = _connector(counted).post(
        "/v1/actions/send_sms", json={"message": "Hi", "recipients": ["0611111111"]}, auth=DEMO
    )
    assert answer.status_code == 200
    assert counted.paths == ["/http/9.0/sendSms/"]


# --- finding 2: failed credentials are throttled, refused pairs remembered, calls capped --------------


def test_wrong_keys_from_one_address_end_in_429_and_allmysms_is_asked_only_a_few_times(counted):
    client = _connector(counted)
    answers = [client.get("/v1/me", **_from("203.0.113.7", f"guess-{n}")) for n in range(120)]
    assert [a.status_code for a in answers[:10]] == [401] * 10
    assert {a.status_code for a in answers[10:]} == {429}
    last = answers[-1]
    assert int(last.headers["Retry-After"]) >= 1
    assert last.get_json()["error"]["code"] == "too_many_failures"
    assert last.get_json()["error"]["disposition"] == "retry_later"
    assert counted.asked() == 10
    # The login's owner, elsewhere, is not held back.
    mine = client.get("/v1/me", **_from("198.51.100.2", DEMO[1]))
    assert mine.status_code == 200 and mine.get_json()["login"] == "demo"


@pytest.mark.parametrize("route", ["/v1/me", "/v1/triggers/delivery_receipt/events", "/v1/actions/get_account"])
def test_every_authenticated_route_counts_failures(counted, route):
    client = _connector(counted, CONNECTOR_AUTH_FAILURES_PER_MINUTE=3)
    call = client.post if route.startswith("/v1/actions") else client.get
    statuses = [call(route, **_from("203.0.113.8", f"guess-{n}")).status_code for n in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


def test_many_addresses_guessing_one_login_are_held_back_but_its_accepted_key_is_not(counted):
    client = _connector(counted, CONNECTOR_LOGIN_FAILURES_PER_MINUTE=5)
    assert client.get("/v1/me", **_from("198.51.100.2", DEMO[1])).status_code == 200
    statuses = [client.get("/v1/me", **_from(f"203.0.113.{n}", f"guess-{n}")).status_code for n in range(10)]
    assert statuses == [401] * 5 + [429] * 5
    assert client.get("/v1/me", **_from("198.51.100.3", DEMO[1])).status_code == 200
    # Another login is not concerned.
    assert client.get("/v1/me", **_from("203.0.113.99", "low-api-key", login="low")).status_code == 200


def test_a_pair_allmysms_refused_is_refused_again_from_memory(counted):
    client = _connector(counted)
    first = client.get("/v1/me", auth=("demo", "wrong"))
    again = client.post(
        "/v1/actions/send_sms", json={"message": "Hi", "recipients": ["0611111111"]}, auth=("demo", "wrong")
    )
    assert (first.status_code, again.status_code) == (401, 401)
    assert again.headers["WWW-Authenticate"].startswith("Basic")
    assert counted.paths == [GET_INFO]


def test_behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for(counted, serve):
    proxied = serve(
        create_app(
            connector_settings(counted.url, CONNECTOR_AUTH_FAILURES_PER_MINUTE=2, CONNECTOR_TRUSTED_PROXIES="127.0.0.1")
        )
    )
    proxied.session.auth = None

    def me(client: str, key: str) -> int:
        return proxied.get("/v1/me", auth=("demo", key), headers={"X-Forwarded-For": client}).status_code

    assert [me("203.0.113.1", f"guess-{n}") for n in range(3)] == [401, 401, 429]
    assert me("203.0.113.2", "guess-x") == 401
    assert me("203.0.113.2", DEMO[1]) == 200


def test_without_trusted_proxies_x_forwarded_for_is_not_believed(counted, serve):
    direct = serve(create_app(connector_settings(counted.url, CONNECTOR_AUTH_FAILURES_PER_MINUTE=2)))
    direct.session.auth = None
    statuses = [
        direct.get("/v1/me", auth=("demo", f"guess-{n}"), headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(3)
    ]
    assert statuses == [401, 401, 429]


def test_over_the_cap_on_calls_to_allmysms_a_request_gets_503_with_retry_after_instead_of_queueing(scripted, through):
    api = through(ALLMYSMS_MAX_CONCURRENT_CALLS=1, ALLMYSMS_CONNECT_TIMEOUT=0.2)
    scripted.script(Scripted(body={"status": "Active Account", "credits": "1000"}, delay=1.0))
    slow = threading.Thread(target=api.get, args=("/v1/me",))
    slow.start()
    wait_for(lambda: scripted.requests, what="the first call to reach AllMySMS")
    busy = api.get("/v1/me")
    asked_meanwhile = len(scripted.requests)  # the slow call still holds the only slot
    slow.join()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    error = busy.json()["error"]
    assert error["code"] == "upstream_busy" and error["disposition"] == "retry_later"
    assert asked_meanwhile == 1


# --- finding 4: one OpenAPI document, whatever the Host header -----------------------------------------


def test_fifty_host_names_build_the_openapi_document_once(counted, monkeypatch):
    from connector.exports import openapi

    builds = []
    real = openapi.document
    monkeypatch.setattr(openapi, "document", lambda *args, **kwargs: builds.append(args[1:]) or real(*args, **kwargs))
    client = _connector(counted)
    for n in range(50):
        answer = client.get("/openapi.json", headers={"Host": f"h{n}.example"})
        assert answer.get_json()["servers"] == [{"url": f"http://h{n}.example"}]
    # One document for every Host: none kept per address, however many a client makes up.
    assert len(builds) == 1


# --- finding 11: HTTP hygiene --------------------------------------------------------------------------


def test_a_huge_unknown_field_name_is_quoted_cut_short_in_the_answer(counted):
    name = "x" * 100_000
    answer = _connector(counted).post(
        "/v1/actions/send_sms", json={"message": "Hi", "recipients": ["0611111111"], name: 1}, auth=DEMO
    )
    assert answer.status_code == 422
    assert len(answer.data) < 2_000
    field = answer.get_json()["error"]["fields"][0]
    assert field["path"] == "x" * 100 + "…" and field["message"].startswith("Unknown field 'xxx")
    assert "x" * 101 not in answer.get_data(as_text=True)


def test_a_huge_value_quoted_in_an_error_is_cut_short_in_the_answer(counted):
    answer = _connector(counted).post(
        "/v1/actions/send_sms", json={"message": "Hi", "recipients": "x" * 100_000}, auth=DEMO
    )
    assert answer.status_code == 422
    assert len(answer.data) < 2_000
    error = answer.get_json()["error"]
    assert "…" in error["message"] and "…" in error["fields"][0]["message"]
    assert "x" * 101 not in answer.get_data(as_text=True)


@pytest.fixture
def gunicorn(counted, tmp_path):
    """The connector as `connector serve` runs it (gunicorn.conf.py), one worker, in front of the sandbox."""
    port = free_port()
    env = {
        **os.environ,
        "ALLMYSMS_BASE_URL": counted.url,
        "PORT": str(port),
        "CONNECTOR_WORKERS": "1",
        "CONNECTOR_DATA_DIR": str(tmp_path / "var"),
        "CONNECTOR_HOST": "127.0.0.1",
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "connector:create_app()"],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready():
        try:
            return requests.get(url + "/healthz", timeout=1).ok
        except requests.RequestException:
            return process.poll() is not None  # stops the wait; the test then fails on the dead server

    try:
        wait_for(ready, timeout=30, what="gunicorn to answer")
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.mark.parametrize(("path", "auth"), [("/v1/actions/nope", DEMO), ("/v1/actions/send_sms", ("demo", "wrong"))])
def test_a_large_body_nobody_reads_leaves_the_keep_alive_connection_usable(gunicorn, path, auth):
    session = requests.Session()
    refused = session.post(
        gunicorn + path, data=b" " * 1_000_000, auth=auth, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert refused.status_code in (401, 404)
    after = session.get(gunicorn + "/v1/manifest", timeout=30)
    assert after.status_code == 200 and after.json()["connector"]

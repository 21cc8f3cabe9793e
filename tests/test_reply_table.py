"""Every way a keyed send to AllMySMS can end, end to end: what the caller is told, whether the
Idempotency-Key stays taken, and how many times AllMySMS saw the send once the caller retried.

The upstream here is a raw TCP server, so that it can also refuse connections, hang up without
answering, or stall: every row of connector.sending.outcomes.ENDINGS is reached by a real fault on loopback.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass

import pytest

from connector import create_app
from connector.sending import outcomes
from tests.conftest import connector_settings

SEND = {"message": "Hi", "recipients": ["0611111111"]}
SUCCESS = {
    "status": 100,
    "statusText": "Your messages have been sent",
    "invalidNumbers": "",
    "campaignId": "42",
    "credits": "985",
    "creditsUsed": 15,
    "nbContacts": "1",
    "nbSms": "1",
    "smsIds": [{"phoneNumber": "33611111111", "smsId": "s1"}],
}
ACCOUNT = {
    "status": "Active Account",
    "credits": "1000",
    "firstName": "A",
    "lastName": "B",
    "society": "C",
    "email": "a@example.com",
}


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: tuple = (("Content-Type", "application/json"),)


def _json(value) -> bytes:
    return json.dumps(value).encode()


HANG_UP = "hang up"  # read the request, close without a word
STALL = "stall"  # read the request, answer nothing until the test ends


class FaultyUpstream:
    """AllMySMS on a raw socket: getInfo always succeeds; each sendSms gets the next scripted fault."""

    def __init__(self):
        self.sends: list[bytes] = []
        self.script: list = []
        self._stop = threading.Event()
        self._listener = None
        self._threads: list[threading.Thread] = []
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.listen()

    def listen(self):
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.05)
        thread = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def refuse(self):
        """Close the port: connections are refused until listen() again."""
        listener, self._listener = self._listener, None
        listener.close()
        for thread in self._threads:
            thread.join(5)

    def close(self):
        self._stop.set()
        if self._listener is not None:
            self.refuse()

    def _accept(self, listener):
        while not self._stop.is_set() and self._listener is listener:
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            path = self._read_request(conn)
            if path is None:
                return
            if "/getInfo/" in path:
                self._answer(conn, Answer(body=_json(ACCOUNT)))
                return
            self.sends.append(path.encode())
            fault = self.script.pop(0) if self.script else Answer(body=_json(SUCCESS))
            if fault == HANG_UP:
                return
            if fault == STALL:
                self._stop.wait(10)
                return
            self._answer(conn, fault)

    @staticmethod
    def _read_request(conn) -> str | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            (
                int(v)
                for k, _, v in (line.partition(":") for line in lines[1:])
                if k.strip().lower() == "content-length"
            ),
            0,
        )
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        return lines[0].split(" ")[1]

    @staticmethod
    def _answer(conn, answer: Answer):
        head = [
            f"HTTP/1.1 {answer.status} X",
            f"Content-Length: {len(answer.body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in answer.headers),
        ]
        try:
            conn.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + answer.body)
        except OSError:
            pass


@pytest.fixture
def faulty():
    upstream = FaultyUpstream()
    yield upstream
    upstream.close()


_HTML = Answer(body=b"<html><body>502 Bad Gateway</body></html>", headers=(("Content-Type", "text/html"),))

# row: (the first answer to the send, the HTTP status and code the caller gets, its disposition,
#       whether the key stays taken, how many sendSms AllMySMS has seen after the caller's retry)
ROWS = {
    "not_connected": ("refuse", 502, "upstream_unavailable", "retry_later", False, 1),
    "no_answer (hung up)": (HANG_UP, 504, "outcome_unknown", "check_before_retry", True, 1),
    "no_answer (read timeout)": (STALL, 504, "outcome_unknown", "check_before_retry", True, 1),
    "too_large": (
        Answer(body=_json(SUCCESS | {"padding": "x" * 5000})),
        502,
        "upstream_reply_too_large",
        "check_before_retry",
        True,
        1,
    ),
    "unreadable (a proxy's page)": (_HTML, 502, "upstream_unreadable_reply", "check_before_retry", True, 1),
    "unreadable (truncated JSON)": (
        Answer(body=b'{"status": 100, "campaignId": "4'),
        502,
        "upstream_unreadable_reply",
        "check_before_retry",
        True,
        1,
    ),
    "status_missing": (
        Answer(body=_json({"campaignId": "42"})),
        502,
        "upstream_no_status",
        "check_before_retry",
        True,
        1,
    ),
    "status_unreadable": (
        Answer(body=_json({"status": "OK"})),
        502,
        "upstream_unreadable_status",
        "check_before_retry",
        True,
        1,
    ),
    "status_unknown": (
        Answer(body=_json({"status": 116, "statusText": "?"})),
        502,
        "unknown_allmysms_status",
        "check_before_retry",
        True,
        1,
    ),
    "redirect": (
        Answer(302, headers=(("Location", "https://elsewhere.example/"),)),
        502,
        "upstream_redirect",
        "check_before_retry",
        True,
        1,
    ),
    "client_error": (
        Answer(404, b"<html>Not Found</html>", (("Content-Type", "text/html"),)),
        502,
        "upstream_error",
        "check_before_retry",
        True,
        1,
    ),
    "server_error": (
        Answer(500, b"oops", (("Content-Type", "text/plain"),)),
        502,
        "upstream_error",
        "check_before_retry",
        True,
        1,
    ),
    # The pair AllMySMS refused is refused again from memory, without asking it: the retry sends nothing.
    "credentials_refused": (Answer(401, b""), 401, "invalid_credentials", "fix_credentials", False, 1),
    "throttled": (Answer(429, b"slow down", (("Retry-After", "7"),)), 429, "rate_limited", "retry_later", False, 2),
    "refused": (
        Answer(body=_json({"status": 104, "statusText": "Not enough credits"})),
        402,
        "insufficient_credit",
        "top_up_credit",
        False,
        2,
    ),
    "success": (Answer(body=_json(SUCCESS)), 200, None, None, True, 1),
}


def test_the_rows_cover_every_ending_of_the_table():
    assert {name.split(" ")[0] for name in ROWS} == set(outcomes.ENDINGS)


@pytest.mark.parametrize("row", list(ROWS))
def test_a_keyed_send_ending_this_way_tells_what_to_do_and_a_retry_never_sends_twice(faulty, serve, row):
    first, http, code, disposition, kept, sends_seen = ROWS[row]
    api = serve(
        create_app(
            connector_settings(
                faulty.url, ALLMYSMS_CONNECT_RETRIES=0, ALLMYSMS_READ_TIMEOUT=0.5, ALLMYSMS_MAX_REPLY_BYTES=2048
            )
        )
    )
    assert api.get("/v1/me").status_code == 200  # the credentials are known before the send
    if first == "refuse":
        faulty.refuse()
    else:
        faulty.script.append(first)
    headers = {"Idempotency-Key": "row-" + "".join(c if c.isalnum() else "-" for c in row)}

    answer = api.action("send_sms", SEND, headers=headers)

    assert answer.status_code == http, answer.text
    if code is not None:
        error = answer.json()["error"]
        assert (error["code"], error["disposition"]) == (code, disposition)
    if first == "refuse":
        faulty.listen()
    retry = api.action("send_sms", SEND, headers=headers)
    assert (retry.headers.get("Idempotent-Replayed") == "true") is kept
    if kept:
        assert (retry.status_code, retry.json()) == (answer.status_code, answer.json())
    elif code == "invalid_credentials":
        assert retry.status_code == 401 and "a moment ago" in retry.json()["error"]["message"]
    else:
        assert retry.status_code == 200 and retry.json()["campaign_id"] == "42"
    assert len(faulty.sends) == sends_seen

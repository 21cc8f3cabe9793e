"""How AllMySMS's answers and failures reach the caller: every status code, and faults on loopback."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import tracemalloc

import pytest

from connector import create_app
from tests.conftest import Scripted, connector_settings

SEND = {"message": "Hi", "recipients": ["0611111111"]}
SUCCESS_FIELDS = {
    "campaignId": "42",
    "credits": "985",
    "creditsUsed": 15,
    "nbContacts": "1",
    "nbSms": "1",
    "invalidNumbers": [],
    "smsIds": [{"phoneNumber": "33611111111", "smsId": "s1"}],
}

# status → (HTTP status the caller gets, error code or None on success, field blamed or None)
EXPECTED = {
    100: (200, None, None),
    101: (200, None, None),
    113: (200, None, None),
    102: (401, "invalid_credentials", None),
    103: (402, "no_credit", None),
    104: (402, "insufficient_credit", None),
    105: (422, "empty_feed", "recipients"),
    106: (422, "invalid_feed", None),
    107: (422, "invalid_feed", "recipients"),
    108: (422, "invalid_client_code", None),
    109: (422, "invalid_feed", None),
    110: (422, "empty_message", "message"),
    111: (422, "message_too_long", "message"),
    112: (422, "invalid_feed", None),
    114: (422, "no_valid_number", "recipients"),
    115: (422, "invalid_date", "send_at"),
    117: (422, "link_too_long", "message"),
    118: (422, "unknown_master_account", None),
}


@pytest.mark.parametrize("status", sorted(EXPECTED))
def test_every_allmysms_status_reaches_the_caller_as_documented(scripted, through, status):
    http, code, field = EXPECTED[status]
    body = {"status": status, "statusText": "Texte de AllMySMS 45 20"}
    if code is None:
        body |= SUCCESS_FIELDS
    scripted.script(Scripted(body=body))
    response = through().action("send_sms", SEND)
    assert response.status_code == http, response.text
    if code is None:
        assert response.json()["campaign_id"] == "42" and response.json()["credits_left"] == 985
        return
    error = response.json()["error"]
    assert error["code"] == code and error["allmysms_status"] == status
    assert "Texte de AllMySMS" in error["message"]
    assert [f["path"] for f in error.get("fields", [])] == ([field] if field else [])


def test_a_status_written_as_text_is_read_as_a_number(scripted, through):
    scripted.script(Scripted(body={"status": "101", "statusText": "scheduled"} | SUCCESS_FIELDS))
    response = through().action("send_sms", SEND)
    assert response.status_code == 200, response.text
    result = response.json()
    # 101 is "scheduled", not 100's "sent": the status was read for its value, not only as "not an error".
    assert result["status"] == "scheduled" and result["status_text"] == "scheduled"
    assert result["campaign_id"] == "42" and result["credits_left"] == 985 and result["credits_used"] == 15
    assert result["sms_ids"] == [{"phone_number": "+33611111111", "sms_id": "s1"}]


def test_an_xml_reply_is_read_when_allmysms_ignores_returnformat(scripted, through):
    scripted.script(
        Scripted(
            body=b"<response><status>100</status><statusText>ok</statusText>"
            b"<campaignId>7</campaignId><credits>10</credits><creditsUsed>15</creditsUsed>"
            b"<nbContacts>1</nbContacts><nbSms>1</nbSms><smsIds><sms><phoneNumber>33611111111"
            b"</phoneNumber><smsId>x1</smsId></sms></smsIds></response>",
            headers={"Content-Type": "application/xml"},
        )
    )
    response = through().action("send_sms", SEND)
    assert response.status_code == 200, response.text
    assert response.json()["sms_ids"] == [{"phone_number": "+33611111111", "sms_id": "x1"}]


def test_connection_refused_is_retried_then_reported_as_safe_to_retry(serve):
    # A port bound and never listened on refuses connections, and no other test can take it meanwhile (a port
    # only found free could be, by a test running beside this one).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        api = serve(create_app(connector_settings(f"http://127.0.0.1:{port}", ALLMYSMS_CONNECT_RETRIES=1)))
        response = api.action("send_sms", SEND)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unavailable" and error["retryable"] is True
    assert "Nothing was sent" in error["message"]


def test_a_send_whose_answer_times_out_may_have_gone_out_and_is_not_retried(scripted, through):
    scripted.script(Scripted(body={"status": 100} | SUCCESS_FIELDS, delay=1.0))
    response = through(ALLMYSMS_READ_TIMEOUT=0.3).action("send_sms", SEND)
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "outcome_unknown" and error["disposition"] == "check_before_retry"
    assert "MAY have been sent" in error["message"]
    assert len([r for r in scripted.requests if r["path"].endswith("/sendSms/")]) == 1


def test_a_read_that_times_out_is_safe_to_retry(scripted, through):
    scripted.script(Scripted(body={"status": "Active Account", "credits": "1"}, delay=1.0))
    response = through(ALLMYSMS_READ_TIMEOUT=0.3).get("/v1/me")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert response.json()["error"]["retryable"] is True


def test_a_server_error_on_a_send_asks_to_check_before_retrying(scripted, through):
    scripted.script(
        Scripted(status=500, body=b"<html>Internal Server Error</html>", headers={"Content-Type": "text/html"})
    )
    response = through().action("send_sms", SEND)
    assert response.status_code == 502
    assert response.json()["error"]["disposition"] == "check_before_retry"


def test_a_server_error_on_a_read_is_safe_to_retry(scripted, through):
    scripted.script(Scripted(status=503, body=b"busy"))
    response = through().get("/v1/me")
    assert response.status_code == 502 and response.json()["error"]["retryable"] is True


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Maintenance</body></html>",
        b'{"status": 100, "campaignId": "4',
        b"[1, 2, 3]",
        b"",
        b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><response>&b;</response>',
    ],
    ids=["html page", "truncated json", "json list", "empty", "entity expansion"],
)
def test_a_garbage_reply_is_a_502_that_never_claims_success(scripted, through, body):
    scripted.script(Scripted(body=body, headers={"Content-Type": "text/html"}))
    response = through().action("send_sms", SEND)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unreadable_reply" and error["disposition"] == "check_before_retry"


def test_429_is_passed_on_with_retry_after(scripted, through):
    scripted.script(Scripted(status=429, body=b"slow down", headers={"Retry-After": "120"}))
    response = through().action("send_sms", SEND)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "120"
    assert response.json()["error"]["retryable"] is True


def test_a_redirect_is_not_followed(scripted, through):
    scripted.script(Scripted(status=302, headers={"Location": scripted.url + "/elsewhere"}))
    response = through().action("send_sms", SEND)
    assert response.status_code == 502
    assert [r["path"] for r in scripted.requests] == ["/http/9.0/sendSms/"]


def test_an_oversized_reply_is_cut_off(scripted, through):
    scripted.script(Scripted(body={"status": 100, "padding": "x" * 5000} | SUCCESS_FIELDS))
    response = through(ALLMYSMS_MAX_REPLY_BYTES=2048).action("send_sms", SEND)
    assert response.status_code == 502


def test_a_compressed_reply_is_read(scripted, through):
    body = json.dumps({"status": 100} | SUCCESS_FIELDS).encode()
    scripted.script(Scripted(body=gzip.compress(body), headers={"Content-Encoding": "gzip"}))
    response = through().action("send_sms", SEND)
    assert response.status_code == 200, response.text
    assert response.json()["campaign_id"] == "42"


def test_a_compressed_reply_that_swells_past_the_limit_is_cut_off_without_being_inflated(scripted, through):
    # 64 MB of spaces inside a valid reply, some 64 KB once compressed: read whole, it would be the limit x 30,000.
    swollen = b'{"status": 100, "pad": "' + b" " * (64 << 20) + b'"}'
    gzipped = {"Content-Encoding": "gzip"}
    scripted.script(
        Scripted(body=gzip.compress(json.dumps({"status": 100} | SUCCESS_FIELDS).encode()), headers=gzipped),
        Scripted(body=gzip.compress(swollen, 9), headers=gzipped),
    )
    del swollen
    api = through(ALLMYSMS_MAX_REPLY_BYTES=2048)
    # The first compressed reply loads what reads one (a few MB, once per process); the second is measured.
    assert api.action("send_sms", SEND).status_code == 200
    tracemalloc.start()
    try:
        response = api.action("send_sms", SEND)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_reply_too_large" and error["disposition"] == "check_before_retry"
    # Read whole, the reply alone would be 64 MB. The 10 MB below that are the test upstream's own: werkzeug's
    # server drains a closed connection into a 10 MB buffer.
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MB held while reading a 2 KB reply"


def test_the_feed_carries_credentials_and_asks_for_json(scripted, through):
    scripted.script(Scripted(body={"status": 100} | SUCCESS_FIELDS))
    through().action(
        "send_sms", SEND | {"sender": "MyShop", "flash": True, "client_reference": "order-7", "campaign_name": "Orders"}
    )
    form = scripted.requests[-1]["form"]
    assert form["login"] == "demo" and form["apiKey"] == "demo-api-key" and form["returnformat"] == "json"
    assert '"TPOA":"MyShop"' in form["smsData"] and '"FLASH":"1"' in form["smsData"]
    assert '"CLIMSGID":"order-7"' in form["smsData"] and '"CAMPAIGN_NAME":"Orders"' in form["smsData"]


def test_the_voice_request_uses_the_documented_field_names(scripted, through):
    scripted.script(
        Scripted(
            status=201,
            body={
                "code": 100,
                "campaignId": "9",
                "cost": 0.19,
                "balance": 2.81,
                "invalidNumbers": "",
                "nbContacts": 1,
                "smsIds": [{"phoneNumber": "33611111111", "smsId": "v1"}],
            },
        )
    )
    response = through().action(
        "send_voice",
        {
            "recipients": ["0611111111"],
            "audio_url": "https://e.x/a.mp3",
            "sender": "0123456789",
            "campaign_name": "Recall",
        },
    )
    assert response.status_code == 200, response.text
    sent = scripted.requests[-1]
    assert sent["path"] == "/voice/send/bulk"
    # `from` is a French landline written nationally, as the voice API wants it.
    assert sent["json"] == {
        "to": ["33611111111"],
        "type": "directdeposit",
        "url": "https://e.x/a.mp3",
        "from": "0123456789",
        "campaignName": "Recall",
    }
    # Money, not credits: nothing rounded away.
    assert (response.json()["cost"], response.json()["balance"]) == (0.19, 2.81)


def test_a_voice_call_refused_for_credentials_is_a_401(scripted, through):
    scripted.script(Scripted(status=401, body={"code": 102, "description": "Login or API key invalid"}))
    response = through().action("send_voice", {"recipients": ["0611111111"], "text": "Bonjour"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["code"], error["allmysms_status"], error["disposition"], error["retryable"]) == (
        "invalid_credentials",
        102,
        "fix_credentials",
        False,
    )
    assert "does not recognise this login and API key" in error["message"]
    assert "AllMySMS says: Login or API key invalid" in error["message"]  # its own words, passed on
    assert [r["path"] for r in scripted.requests] == ["/voice/send/bulk"]  # refused once, not tried again


def test_an_answer_trickling_in_past_the_read_timeout_is_cut_and_counts_as_lost(serve):
    """AllMySMS's headers come at once, then the body a byte every 0.1 s: each wait is short, the whole
    is not. The send may have gone out: 504, and the connection is cut long before the answer ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    dripped, cut = [], threading.Event()

    def trickle():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
            try:
                for _ in range(400):
                    conn.sendall(b" ")
                    dripped.append(1)
                    time.sleep(0.1)  # the upstream dripping its answer is the behaviour under test
            except OSError:
                cut.set()

    threading.Thread(target=trickle, daemon=True).start()
    app = create_app(
        connector_settings(
            f"http://127.0.0.1:{listener.getsockname()[1]}", ALLMYSMS_READ_TIMEOUT=0.5, ALLMYSMS_CONNECT_RETRIES=0
        )
    )
    response = serve(app).action("send_sms", SEND)
    listener.close()
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "outcome_unknown"
    assert cut.wait(10), "the connector kept reading the trickle"
    assert len(dripped) < 400


@pytest.mark.parametrize("status", [99, 116, 119, 999])
def test_a_status_allmysms_never_documented_is_not_taken_for_success(scripted, through, status):
    scripted.script(Scripted(body={"status": status, "statusText": "Nouveau", "campaignId": "42"}))
    response = through().action("send_sms", SEND)
    error = response.json()["error"]
    assert response.status_code == 502 and error["allmysms_status"] == status
    assert error["code"] == "unknown_allmysms_status" and error["disposition"] == "check_before_retry"


def test_a_connect_timeout_is_retried_then_reported_as_nothing_sent(serve):
    """An upstream whose accept queue is full drops new connections: connecting times out. Nothing left,
    so the connector retries, then answers 502 upstream_unavailable (safe to retry)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    # Fill the accept queue (never accepted): the kernel then ignores further connection attempts.
    queued = []
    for _ in range(4):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        queued.append(client)
    try:
        app = create_app(
            connector_settings(f"http://127.0.0.1:{port}", ALLMYSMS_CONNECT_TIMEOUT=0.3, ALLMYSMS_CONNECT_RETRIES=1)
        )
        response = serve(app).action("send_sms", SEND)
    finally:
        for client in queued:
            client.close()
        listener.close()
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_unavailable" and error["retryable"] is True

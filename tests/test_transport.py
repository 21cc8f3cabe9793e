"""Posting to subscribers over real sockets on 127.0.0.1: reuse, pinning, and subscribers that misbehave."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from connector.events.targets import AllowList, TargetRefused
from connector.events.transport import MAX_ANSWER_BYTES, DeliveryFailed, Transport

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class RawSubscriber:
    """A TCP server that reads each request and answers with what `answer(request)` gives: bytes to send,
    or a callable taking the socket (for subscribers that misbehave)."""

    def __init__(self, answer):
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self._exchange(conn)
        except OSError:  # the transport hung up first, as it does on answers it will not read
            pass

    def _exchange(self, conn):
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(
                    next(
                        (
                            line.split(b":")[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length")
                        ),
                        b"0",
                    )
                )
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                answer = self.answer(head)
                if callable(answer):
                    answer(conn)
                    return
                conn.sendall(answer)

    def url(self, path="/hook", host="127.0.0.1"):
        return f"http://{host}:{self.port}{path}"

    def close(self):
        self.listener.close()


@pytest.fixture
def subscriber_factory():
    made = []

    def make(answer=lambda head: NO_CONTENT):
        made.append(RawSubscriber(answer))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def transport():
    return Transport(AllowList("127.0.0.1, hooks.test"), timeout=1.0)


def post(transport, *urls, body=b"{}", headers=None):
    """POST to each URL in turn on one event loop; the answers, or the exception each raised."""

    async def run():
        answers = []
        for url in urls:
            try:
                answers.append(await transport.post(url, body, headers or {}))
            except Exception as problem:
                answers.append(problem)
        transport.close()
        return answers

    return asyncio.run(run())


def test_many_deliveries_to_one_subscriber_share_one_kept_alive_connection(subscriber_factory, transport):
    subscriber = subscriber_factory()
    answers = post(transport, *[subscriber.url(f"/hook/{n}") for n in range(20)], headers={"webhook-id": "msg_1"})
    assert answers == [(204, None)] * 20
    assert subscriber.connections == 1
    assert len(subscriber.requests) == 20
    assert subscriber.requests[3].startswith(b"POST /hook/3 HTTP/1.1\r\n")
    assert b"\r\nwebhook-id: msg_1\r\n" in subscriber.requests[3]


def test_the_connection_goes_to_the_checked_address_with_the_host_name_in_the_request(subscriber_factory):
    subscriber = subscriber_factory()
    looked_up = []

    def resolve(host, port, type=0):
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    transport = Transport(AllowList("hooks.test"), timeout=1.0, resolve=resolve)
    answers = post(transport, subscriber.url(host="hooks.test"), subscriber.url(host="hooks.test"))
    assert [a[0] for a in answers] == [204, 204]
    assert looked_up == ["hooks.test"]  # looked up and checked once per connection, not per post
    assert f"Host: hooks.test:{subscriber.port}\r\n".encode() in subscriber.requests[0]


def test_a_private_address_is_refused_before_connecting(subscriber_factory):
    subscriber = subscriber_factory()
    [answer] = post(Transport(AllowList(), timeout=1.0), subscriber.url())
    assert isinstance(answer, TargetRefused)
    assert subscriber.connections == 0


def test_spaces_and_line_breaks_in_a_target_path_never_reach_the_subscriber(subscriber_factory, transport):
    subscriber = subscriber_factory()
    [answer] = post(transport, subscriber.url("/hook/a b\r\nX-Injected: 1"))
    assert isinstance(answer, TargetRefused) and "position" in str(answer)
    assert subscriber.requests == []


def test_characters_a_request_line_cannot_carry_are_escaped_in_the_target_path(subscriber_factory, transport):
    subscriber = subscriber_factory()
    [answer] = post(transport, subscriber.url("/hook/café?q=é"))
    assert answer[0] == 204
    assert subscriber.requests[0].startswith(b"POST /hook/caf%C3%A9?q=%C3%A9 HTTP/1.1\r\nHost: ")


def test_a_connection_the_subscriber_closes_after_answering_is_replaced(subscriber_factory, transport):
    def answer_then_hang_up(head):
        return lambda conn: conn.sendall(NO_CONTENT)

    subscriber = subscriber_factory(answer_then_hang_up)
    assert post(transport, *[subscriber.url()] * 3) == [(204, None)] * 3
    assert subscriber.connections == 3


def test_status_and_retry_after_are_read_and_a_huge_answer_is_not(subscriber_factory, transport):
    huge = b"x" * (MAX_ANSWER_BYTES * 4)
    subscriber = subscriber_factory(
        lambda head: (
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: %d\r\n\r\n" % len(huge) + huge
        )
    )
    # The rest of the first answer was not read, so its connection is not reused.
    assert post(transport, subscriber.url(), subscriber.url()) == [(429, "30")] * 2
    assert subscriber.connections == 2


def test_an_answer_without_a_length_ends_with_the_connection(subscriber_factory, transport):
    subscriber = subscriber_factory(lambda head: lambda conn: conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nthanks"))
    assert post(transport, subscriber.url()) == [(200, None)]


def test_an_interim_100_continue_is_skipped(subscriber_factory, transport):
    subscriber = subscriber_factory(lambda head: b"HTTP/1.1 100 Continue\r\n\r\n" + NO_CONTENT)
    assert post(transport, subscriber.url()) == [(204, None)]


def test_a_subscriber_trickling_its_answer_is_cut_at_the_deadline(subscriber_factory, transport):
    whole, sent, hung_up = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", [], threading.Event()

    def trickle(head):
        def reply(conn):
            try:
                for byte in whole:
                    conn.sendall(bytes([byte]))
                    sent.append(byte)
                    time.sleep(0.1)  # the trickle is the behaviour under test: about 4 s for the whole answer
            finally:
                hung_up.set()

        return reply

    subscriber = subscriber_factory(trickle)
    [answer] = post(transport, subscriber.url())
    assert isinstance(answer, DeliveryFailed) and str(answer) == "no answer within 1 s"
    # Cut off part-way: the transport stopped reading and hung up before the answer was whole.
    assert hung_up.wait(30) and len(sent) < len(whole)


@pytest.mark.parametrize(
    "answer, reason",
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "the answer was not HTTP"),
        (lambda conn: None, "the subscriber closed the connection without answering"),
    ],
)
def test_an_answer_that_is_not_http_fails_with_a_reason(subscriber_factory, transport, answer, reason):
    subscriber = subscriber_factory(lambda head: answer)
    [failed] = post(transport, subscriber.url())
    assert isinstance(failed, DeliveryFailed) and str(failed) == reason


def test_nothing_listening_fails_with_could_not_connect(transport):
    spare = socket.create_server(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    [failed] = post(transport, f"http://127.0.0.1:{port}/hook")
    assert isinstance(failed, DeliveryFailed) and str(failed) == "could not connect"


def test_a_subscriber_that_does_not_speak_tls_fails_as_tls():
    listener = socket.create_server(("127.0.0.1", 0))

    def greet():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(NO_CONTENT)  # plain HTTP where a TLS handshake is expected
            conn.recv(65536)

    threading.Thread(target=greet, daemon=True).start()
    try:
        [failed] = post(
            Transport(AllowList("127.0.0.1"), timeout=2.0), f"https://127.0.0.1:{listener.getsockname()[1]}/hook"
        )
    finally:
        listener.close()
    assert isinstance(failed, DeliveryFailed) and str(failed) == "TLS failed (certificate or protocol)"

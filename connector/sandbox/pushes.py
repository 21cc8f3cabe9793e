"""Pushing receipts and replies to an account's callback URL, as AllMySMS calls its customers back.

How the real service encodes a push is not documented, so each account picks one of `FORMATS`:
"form" (POST application/x-www-form-urlencoded, the default), "json" (POST application/json),
"get" (GET with the fields added to the URL's query string) or "xml" (POST application/xml: one
element per push, <ack> for a receipt and <mo> for a reply, holding one element per field; AllMySMS
says its flows go "in XML or JSON"). Any 2xx answer is a success;
anything else, a redirect included (never followed), or a network error is retried after each
delay of the retry schedule, then dropped and counted in `failures`.

Pushes run on a few worker threads sharing one `requests.Session`; the workers start when there
is something to send and end when the queue is empty. Nothing about a push but its kind, attempt
count and outcome is logged: the URL carries the account's token and the fields carry numbers.
"""

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

FORMATS = ("form", "json", "get", "xml")
DEFAULT_FORMAT = "form"
DEFAULT_RETRY_DELAYS = (0.5, 1.0, 2.0)
DEFAULT_TIMEOUT = 5.0
DEFAULT_WORKERS = 8
USER_AGENT = "AllMySMS-sandbox"


# The root element of an XML push, by kind: the names getAcks and getPulls give their records.
XML_ROOTS = {"receipt": "ack", "reply": "mo"}


def request_arguments(callback_format, fields, kind="receipt"):
    """The HTTP method and `requests` keyword arguments that carry `fields` (a push of this kind) in
    this format."""
    if callback_format == "form":
        return "POST", {"data": fields}
    if callback_format == "json":
        return "POST", {"json": fields}
    if callback_format == "get":
        # requests appends these to a query string the URL may already have (its token).
        return "GET", {"params": fields}
    if callback_format == "xml":
        headers = {"Content-Type": "application/xml; charset=utf-8"}
        return "POST", {"data": xml_body(fields, XML_ROOTS[kind]), "headers": headers}
    raise ValueError(f"callback format must be one of {', '.join(FORMATS)}")


def xml_body(fields, root_tag):
    """`fields` as one XML element named `root_tag`, each field an element of its own, in UTF-8."""
    root = ElementTree.Element(root_tag)
    for name, value in fields.items():
        ElementTree.SubElement(root, name).text = "" if value is None else str(value)
    body = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    # XML parsers turn a raw carriage return into a line feed; a character reference keeps it.
    return body.replace(b"\r", b"&#13;")


@dataclass
class _Push:
    url: str
    callback_format: str
    fields: dict
    kind: str
    attempt: int = 0


class Pusher:
    """Sends pushes on worker threads and retries failed ones through the dispatcher's timer.

    `retry_delays` is the retry schedule in seconds: (0.5, 1.0, 2.0) means up to three retries,
    four attempts in all. `session` may be injected; the pusher then leaves it open on stop.
    """

    def __init__(
        self,
        dispatcher,
        *,
        retry_delays=DEFAULT_RETRY_DELAYS,
        timeout=DEFAULT_TIMEOUT,
        workers=DEFAULT_WORKERS,
        session=None,
    ):
        delays = tuple(retry_delays)
        if any(not isinstance(d, (int, float)) or isinstance(d, bool) or d < 0 for d in delays):
            raise ValueError("retry delays must be numbers of seconds >= 0")
        if type(workers) is not int or workers < 1:
            raise ValueError("workers must be a whole number >= 1")
        self._dispatcher = dispatcher
        self._retry_delays = delays
        self._timeout = timeout
        self._workers = workers
        self._owns_session = session is None
        self._session = session if session is not None else _new_session(workers)
        self._lock = threading.Lock()
        self._queue: deque[Any] = deque()
        self._active = 0
        self._stopped = False
        self.delivered = 0
        self.failures = 0

    def push(self, url, callback_format, fields, kind):
        """Queue one push of `fields` (a receipt or a reply: `kind` only names it in logs)."""
        request_arguments(callback_format, fields, kind)  # refuse an unknown format here, not later
        self._enqueue(_Push(url, callback_format, fields, kind))

    def stop(self):
        """Drop queued pushes; a push already on the wire finishes but is not retried."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.clear()
        if self._owns_session:
            self._session.close()

    def _enqueue(self, push):
        with self._lock:
            if self._stopped:
                return
            self._queue.append(push)
            if self._active < self._workers:
                self._active += 1
                name = "allmysms-sandbox-push"
                threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self):
        while True:
            with self._lock:
                if self._stopped or not self._queue:
                    self._active -= 1
                    return
                push = self._queue.popleft()
            self._send(push)

    def _send(self, push):
        method, arguments = request_arguments(push.callback_format, push.fields, push.kind)
        try:
            response = self._session.request(
                method, push.url, timeout=self._timeout, allow_redirects=False, **arguments
            )
            response.close()
            problem = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        # Only the exception's type: its text names the URL, and so the account's token.
        except requests.RequestException as error:
            problem = type(error).__name__
        push.attempt += 1
        with self._lock:
            if self._stopped:
                return
            if problem is None:
                self.delivered += 1
                return
            give_up = push.attempt > len(self._retry_delays)
            if give_up:
                self.failures += 1
        if give_up:
            log.warning("sandbox %s push dropped after %d attempts (%s)", push.kind, push.attempt, problem)
            return
        log.info("sandbox %s push attempt %d failed (%s), retrying", push.kind, push.attempt, problem)
        self._dispatcher.after(self._retry_delays[push.attempt - 1], lambda: self._enqueue(push))


def _new_session(workers):
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    # One pooled connection per worker, so concurrent pushes to one receiver reuse connections.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=workers)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

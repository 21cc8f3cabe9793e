"""Prometheus metrics at /metrics: what each process counts, and what the shared database holds.

Counts (actions, AllMySMS requests, callbacks, delivery attempts) are kept per process. Under
`connector serve` and `connector worker` every process writes them to files in one directory
(prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR), so any web worker answering a
scrape reports the sum over all the processes of its machine. What is waiting (queues, deliveries by
status, the oldest due delivery) is read from the database at each scrape: every machine sharing it
reports the same numbers.

Labels come from closed sets (action keys, error codes, AllMySMS method names and statuses, status
classes): never a login, a phone number, a URL or a token.
"""

from __future__ import annotations

import collections
import glob
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from connector.observe import processes

log = logging.getLogger(__name__)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_LAG = (0.05, 0.1, 0.25, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 4 * 3600, 12 * 3600)
_DB_PID = re.compile(r"_(\d+)\.db$")


#: A memory filesystem, where the shared counts are kept when it is there (see default_directory).
MEMORY = "/dev/shm"


def default_directory(data_dir: str) -> str:
    """Where the processes of a service keep their counts unless PROMETHEUS_MULTIPROC_DIR says: in memory, in
    a folder named after the data folder, else ``<data dir>/metrics``. Not beside the data: prometheus-client
    maps its files into memory and grows them sparse, and a process writing to such a page on a full disk is
    killed (SIGBUS): a full data disk must cost callbacks a 503, not the processes their lives."""
    data_dir = os.path.abspath(data_dir)
    if os.path.isdir(MEMORY) and os.access(MEMORY, os.W_OK | os.X_OK):
        name = hashlib.sha256(data_dir.encode()).hexdigest()[:16]
        return os.path.join(MEMORY, f"allmysms-connector-{os.getuid()}-{name}")
    return os.path.join(data_dir, "metrics")


def prepare_directory(data_dir: str) -> str:
    """Point prometheus-client at the directory the processes of this machine share (the one already in
    PROMETHEUS_MULTIPROC_DIR, or default_directory), and remove the files of processes that ended.

    Must run before prometheus_client is first imported in this process: the library picks single- or
    multi-process storage at import, from the environment, and processes started from here inherit it.
    """
    path = os.environ.get(MULTIPROCESS_DIR) or default_directory(data_dir)
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.environ[MULTIPROCESS_DIR] = path
    # The library asks for the directory to be emptied between runs: counts of a previous run would be
    # added to this one's. Only dead processes' files go, since a `connector worker` started on its own
    # may be writing here already.
    for name in glob.glob(os.path.join(path, "*.db")):
        found = _DB_PID.search(name)
        if found and not processes.alive(int(found.group(1))):
            try:
                os.remove(name)
            except FileNotFoundError:
                pass
    return path


def process_ended(pid: int) -> None:
    """What the library asks of a supervisor when one of its processes ends (gunicorn's child_exit hook,
    the delivery worker's supervisor): drop the files of gauges that only count while a process lives.
    Its counters' files stay, so that totals never go down while the service runs."""
    if os.environ.get(MULTIPROCESS_DIR):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


_creating = threading.Lock()
_instruments_made: SimpleNamespace | None = None


def _instruments() -> SimpleNamespace:
    # Made once per process, under a lock: two sets made by threads at once would each keep their own
    # value of a count and write it over the other's in the shared file, losing counts. Once made, every
    # count reads them without the lock.
    global _instruments_made
    if _instruments_made is None:
        with _creating:
            if _instruments_made is None:
                _instruments_made = _made()
    return _instruments_made


def _made() -> SimpleNamespace:
    # Imported here, at the first count, never when the package is imported: by then `connector serve`
    # or `connector worker` has chosen the directory (see prepare_directory).
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry(auto_describe=True)
    return SimpleNamespace(
        registry=registry,
        # As the library chose when imported just now: later changes to the environment do not count.
        shared=bool(os.environ.get(MULTIPROCESS_DIR)),
        actions=Counter(
            "connector_actions",
            "Actions answered, by action and outcome (an error code, or ok).",
            ["action", "outcome"],
            registry=registry,
        ),
        action_seconds=Histogram(
            "connector_action_duration_seconds",
            "Time to answer an action.",
            ["action"],
            buckets=_SECONDS,
            registry=registry,
        ),
        upstream=Counter(
            "connector_upstream_requests",
            "Requests to AllMySMS, by method, HTTP status and AllMySMS status ('none' when there "
            "was no answer or no status).",
            ["method", "http_status", "allmysms_status"],
            registry=registry,
        ),
        upstream_seconds=Histogram(
            "connector_upstream_request_duration_seconds",
            "Time AllMySMS took to answer, the answer read.",
            ["method"],
            buckets=_SECONDS,
            registry=registry,
        ),
        callbacks=Counter(
            "connector_callbacks_received", "Callbacks AllMySMS sent to an inbound URL.", registry=registry
        ),
        rejected=Counter(
            "connector_callbacks_rejected", "Callbacks refused, by reason.", ["reason"], registry=registry
        ),
        records=Counter(
            "connector_callback_records",
            "Records in accepted callbacks: stored as new events, duplicates of stored ones, "
            "refused, or journalled (kept in the local journal while the database was away).",
            ["result"],
            registry=registry,
        ),
        attempts=Counter(
            "connector_delivery_attempts",
            "Delivery attempts to subscribers, by outcome (succeeded, retrying, failed: no retry "
            "left, gone: the subscriber answered 410) and the answer's status class.",
            ["outcome", "status_class"],
            registry=registry,
        ),
        journalled=Counter(
            "connector_callbacks_journalled",
            "Callbacks kept in the local journal because the database could not take them.",
            registry=registry,
        ),
        replayed=Counter(
            "connector_journal_replayed", "Journal entries replayed into the database.", registry=registry
        ),
        outages=Counter(
            "connector_database_outages",
            "Times a process found the database unreachable after it had answered.",
            registry=registry,
        ),
        lag=Histogram(
            "connector_delivery_lag_seconds",
            "Seconds from the moment a delivery attempt was due to the moment it was made.",
            buckets=_LAG,
            registry=registry,
        ),
    )


# Counting, called where things happen.


_children: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _labelled(metric, *values: str):
    # labels() takes a lock and builds its key at every call: each child is made once (labels come from
    # closed sets) and kept. Two threads making one at once get the same child from the library.
    child = _children.get((metric, values))
    if child is None:
        child = _children[(metric, values)] = metric.labels(*values)
    return child


def action(key: str, outcome: str, seconds: float) -> None:
    counts = _instruments()
    _labelled(counts.actions, key, outcome).inc()
    _labelled(counts.action_seconds, key).observe(seconds)


@contextmanager
def upstream_request(method: str):
    """Measure one request to AllMySMS; the caller fills in ``http_status`` and ``reply`` as it learns them."""
    seen = SimpleNamespace(http_status=None, reply=None)
    started = time.perf_counter()
    try:
        yield seen
    finally:
        counts = _instruments()
        _labelled(counts.upstream_seconds, method).observe(time.perf_counter() - started)
        _labelled(
            counts.upstream, method, str(seen.http_status) if seen.http_status else "none", _allmysms_status(seen.reply)
        ).inc()


def _allmysms_status(reply) -> str:
    if not isinstance(reply, dict):
        return "none"
    value: Any = reply.get("status", reply.get("code"))
    try:
        number = int(value)
    except (TypeError, ValueError):
        # getInfo writes its status as words ("Active Account"): not a number, and not a label to keep.
        return "text" if str(value or "").strip() else "none"
    return str(number) if 0 <= number < 1000 else "other"


def callback(
    rejected: str | None = None, *, new: int = 0, duplicates: int = 0, refused: int = 0, journalled: bool = False
) -> None:
    """One callback received: refused as a whole for ``rejected`` (a reason class), or accepted with
    these counts of records (``journalled``: kept in the journal, its records not yet known new or not)."""
    counts = _instruments()
    counts.callbacks.inc()
    if journalled:
        counts.journalled.inc()
        counts.records.labels("journalled").inc(new)
        new = 0
    if rejected:
        _labelled(counts.rejected, rejected).inc()
    for result, number in (("new", new), ("duplicate", duplicates), ("refused", refused)):
        if number:
            _labelled(counts.records, result).inc(number)


def journal_replayed(entries: int) -> None:
    _instruments().replayed.inc(entries)


def database_lost() -> None:
    _instruments().outages.inc()


def deliveries(outcomes: list[dict]) -> None:
    """Attempts whose outcome was just recorded (delivery.Worker's outcomes)."""
    if not outcomes:
        return
    counts = _instruments()
    attempts: collections.Counter[tuple[str, str]] = collections.Counter()
    for o in outcomes:
        code = o["status_code"]
        status_class = f"{code // 100}xx" if code and 100 <= code < 600 else "none"
        outcome = "gone" if o.get("subscription") == "gone" else {"pending": "retrying"}.get(o["status"], o["status"])
        attempts[outcome, status_class] += 1
        due_at = getattr(o["due"], "due_at", None)
        if due_at is not None:
            counts.lag.observe(max(0.0, o["attempted_at"] - due_at))
    # Added once a kind: each addition to a counter shared between processes takes a lock and a file write.
    for labels, number in attempts.items():
        counts.attempts.labels(*labels).inc(number)


# The scrape.


class _StoreState:
    """Gauges read from the database at scrape time."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("connector_database_up", "1 when the database answered this scrape's queries.")
        try:
            state = self.store.views.state(time.time())
        except SQLAlchemyError as exc:
            if not self.store.outage.failed(exc):  # an outage is logged once, by the store
                log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "connector_queue_depth",
            "Work waiting: events not yet turned into deliveries (fanout), deliveries due now or out (deliveries).",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "connector_queue_oldest_seconds",
            "How long the oldest waiting item has been due (0 when none).",
            labels=["queue"],
        )
        for queue in ("fanout", "deliveries"):
            depth.add_metric([queue], state[queue]["depth"])
            oldest.add_metric([queue], state[queue]["oldest_seconds"])
        yield depth
        yield oldest
        by_status = GaugeMetricFamily(
            "connector_deliveries",
            "Deliveries kept (events' retention), by status; pending includes those waiting for a retry.",
            labels=["status"],
        )
        for status, number in sorted(state["deliveries"]["by_status"].items()):
            by_status.add_metric([status], number)
        yield by_status
        subscriptions = GaugeMetricFamily("connector_subscriptions", "Subscriptions, by status.", labels=["status"])
        for status, number in sorted(state["subscriptions"].items()):
            subscriptions.add_metric([status], number)
        yield subscriptions


class _JournalState:
    """Gauges of the local journal: what waits to be replayed into the database (this machine's)."""

    def __init__(self, journal):
        self.journal = journal

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        depth = self.journal.depth()
        for name, what in (("entries", "Entries"), ("bytes", "Bytes"), ("files", "Files")):
            gauge = GaugeMetricFamily(
                f"connector_journal_{name}", f"{what} in the local journal, waiting to be replayed into the database."
            )
            gauge.add_metric([], depth[name])
            yield gauge


class _Scrape:
    """What one scrape reports: the processes' counts, then the database's state."""

    def __init__(self, *sources):
        self.sources = sources

    def collect(self):
        for source in self.sources:
            yield from source.collect()


def exposition(store, journal=None) -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    counts = _instruments()
    if counts.shared:
        from prometheus_client.multiprocess import MultiProcessCollector

        processes = MultiProcessCollector(None)
    else:
        processes = counts.registry
    sources = (processes, _StoreState(store)) + ((_JournalState(journal),) if journal is not None else ())
    return generate_latest(_Scrape(*sources)), CONTENT_TYPE_LATEST


def blueprint() -> Blueprint:
    bp = Blueprint("metrics", __name__)

    @bp.get("/metrics")
    def metrics_view():
        token = current_app.config["CONNECTOR_METRICS_TOKEN"]
        if token and not _bearer_matches(request.headers.get("Authorization", ""), token):
            return _refused()
        services = current_app.extensions["connector"]
        body, content_type = exposition(services.store, services.journal)
        return Response(body, content_type=content_type)

    return bp


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _refused():
    from connector.errors import AuthenticationFailed

    error = AuthenticationFailed(
        "The metrics need the token set in CONNECTOR_METRICS_TOKEN, as 'Authorization: Bearer <token>'.",
        code="invalid_metrics_token",
    )
    response = jsonify(error.as_json(g.get("request_id")))
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response

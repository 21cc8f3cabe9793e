"""The delivery worker: sends stored events to subscribers, signed, with retries, at least once."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from . import signing, targets
from .store import FAILED, PENDING, SUCCEEDED, Due, Store

log = logging.getLogger(__name__)

#: How much of a subscriber's answer is read: only its status matters.
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "AllMySMS-Connector/0.1 (+webhooks)"


@dataclass(frozen=True)
class Policy:
    """The retry rules, from settings."""

    schedule: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    jitter: float = 0.1
    timeout: float = 15.0
    disable_after: float = 5 * 86400
    max_retry_after: float = 86400


def next_step(policy: Policy, attempts_before: int, status_code: int | None, retry_after: float | None,
              now: float, failing_since: float | None, rng: random.Random) -> dict:
    """What follows one attempt: pure, so every rule is testable without a network.

    ``attempts_before`` counts the attempts made before this one.
    """
    if status_code is not None and 200 <= status_code < 300:
        return {"status": SUCCEEDED, "next_attempt_at": None}
    if status_code == 410:
        # The platform removed the hook (a Zap turned off): stop for good.
        return {"status": FAILED, "next_attempt_at": None, "subscription": "gone"}
    made = attempts_before + 1
    outcome: dict = {"status": FAILED, "next_attempt_at": None}
    if made < len(policy.schedule):
        delay = policy.schedule[made] * (1 + rng.uniform(-policy.jitter, policy.jitter))
        if retry_after is not None and status_code in (429, 503):
            delay = max(delay, min(retry_after, policy.max_retry_after))
        outcome = {"status": PENDING, "next_attempt_at": now + delay}
    if failing_since is not None and now - failing_since >= policy.disable_after:
        outcome.update(subscription="disable",
                       reason=f"Every delivery failed for {round((now - failing_since) / 3600)} hours.")
    return outcome


def body_of(due: Due) -> bytes:
    """The exact bytes sent and signed: the canonical event."""
    return json.dumps({"id": due.event_id, "type": due.event_type, "timestamp": due.event_timestamp,
                       "data": json.loads(due.event_data)}, ensure_ascii=False, separators=(",", ":")).encode()


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


class Worker:
    """Claims due deliveries, sends them concurrently, records the outcome in batches.

    Runs as its own process (`connector worker`) or as a thread of each web process; any number of
    them can share one store, since a delivery is leased to one worker at a time.
    """

    def __init__(self, store: Store, *, policy: Policy, allowed: targets.AllowList, concurrency: int = 32,
                 lease_seconds: float = 60.0, poll_interval: float = 0.05, retention_seconds: float = 30 * 86400,
                 clock=time.time, resolve=None):
        self.store = store
        self.policy = policy
        self.allowed = allowed
        self.concurrency = concurrency
        self.lease_seconds = max(lease_seconds, policy.timeout + 5)
        self.poll_interval = poll_interval
        self.retention_seconds = retention_seconds
        self.clock = clock
        self.resolve = resolve
        self.rng = random.Random()
        self.session = requests.Session()
        # Proxy, netrc and CA-bundle lookups from the environment on every post cost a fifth of the
        # worker's time; deliveries go straight to their targets.
        self.session.trust_env = False
        adapter = HTTPAdapter(max_retries=0, pool_connections=concurrency, pool_maxsize=concurrency)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="delivery")
        self._results: list[dict] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0

    def start(self) -> "Worker":
        self._thread = threading.Thread(target=self.run, name="delivery-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._flush()
        self.session.close()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Exception:  # a database hiccup must not end deliveries for good
                log.exception("delivery loop failed; retrying")
                busy = False
            if not busy:
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    def step(self) -> bool:
        """One turn: record finished attempts, claim what is due, start sending it."""
        self._flush()
        now = self.clock()
        if now - self._pruned_at > 3600:
            self._pruned_at = now
            pruned = self.store.prune(now - self.retention_seconds)
            if pruned:
                log.info("pruned %d events older than the retention", pruned)
        with self._lock:
            free = self.concurrency - self._in_flight
        if free <= 0:
            return False
        claimed = self.store.claim(free, now, self.lease_seconds)
        with self._lock:
            self._in_flight += len(claimed)
        for due in claimed:
            self._pool.submit(self._send, due)
        return len(claimed) == free

    def _flush(self) -> None:
        with self._lock:
            results, self._results = self._results, []
        if not results:
            return
        self.store.finish(results, self.clock())
        with self._lock:
            self._in_flight -= len(results)

    def _send(self, due: Due) -> None:
        started = self.clock()
        status_code, error, retry_after = None, None, None
        try:
            status_code, retry_after = self._post(due, started)
        except targets.TargetRefused as refused:
            error = str(refused)
        except requests.exceptions.Timeout:
            error = f"no answer within {self.policy.timeout:g} s"
        except requests.exceptions.SSLError:
            error = "TLS failed (certificate or protocol)"
        except requests.exceptions.ConnectionError:
            error = "could not connect"
        except Exception as exc:  # whatever happens, the attempt is recorded and retried
            error = f"failed: {type(exc).__name__}"
        if status_code is not None and not 200 <= status_code < 300:
            error = "redirects are not followed" if 300 <= status_code < 400 else f"answered HTTP {status_code}"
        now = self.clock()
        failing_since = None if status_code and 200 <= status_code < 300 else (
            self.store.failing_since(due.subscription_id) or started)
        outcome = next_step(self.policy, due.attempts, status_code, retry_after, now, failing_since, self.rng)
        outcome.update(due=due, attempted_at=started, status_code=status_code, error=error,
                       latency_ms=int((now - started) * 1000))
        with self._lock:
            self._results.append(outcome)
        self._wake.set()

    def _post(self, due: Due, now: float) -> tuple[int, float | None]:
        kwargs = {"resolve": self.resolve} if self.resolve else {}
        targets.check(due.target_url, self.allowed, **kwargs)
        body = body_of(due)
        headers = signing.headers(due.secret, due.id, int(now), body)
        headers.update({"Content-Type": "application/json", "User-Agent": USER_AGENT})
        response = self.session.post(due.target_url, data=body, headers=headers, allow_redirects=False,
                                     timeout=(min(5.0, self.policy.timeout), self.policy.timeout), stream=True)
        with response:
            # Read a little, never all of a huge answer: only the status is used.
            response.raw.read(MAX_ANSWER_BYTES, decode_content=False)
        return response.status_code, _retry_after(response)

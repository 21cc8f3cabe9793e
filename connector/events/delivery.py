"""The delivery worker: sends stored events to subscribers, signed, with retries, at least once."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from connector.observe import metrics
from connector.events import signing, targets
from connector.events.fairness import Shares
from connector.events.pacing import HostBudget, Pacing
from connector.storage.outage import Backoff
from connector.sending.retry import retry_after_seconds
from connector.events.transport import DeliveryFailed, Transport
from connector.storage.store import Store
from connector.storage.tables import FAILED, PENDING, SUCCEEDED, Due

log = logging.getLogger(__name__)

USER_AGENT = "AllMySMS-Connector/0.1 (+webhooks)"
#: How long outcomes are gathered before they are recorded, while deliveries are out (seconds).
BATCH_WINDOW = 0.01
#: How long deliveries in flight may finish when the worker is told to stop (seconds); `connector worker`
#: uses CONNECTOR_SHUTDOWN_GRACE instead.
STOP_GRACE = 5.0
#: A delivery whose host has had its share waits in the worker at most this long; one that would wait
#: longer goes back to the database, due when its turn comes (seconds).
MAX_HELD = 0.5


@dataclass(frozen=True)
class Policy:
    """The retry rules, from settings."""

    schedule: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    jitter: float = 0.1
    timeout: float = 15.0
    disable_after: float = 5 * 86400
    max_retry_after: float = 86400
    #: Deliveries a second to any one host, from each worker, in bursts of up to a second's worth; 0: no
    #: limit. Hosts of the allow-list (the operator's own) are not limited.
    per_host: float = 0.0


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


class Worker:
    """Claims due deliveries, sends them concurrently from one event loop, records outcomes in batches.

    Runs as its own process (`connector worker`) or as a thread; any number of them can share one
    store, since a delivery is leased to one worker at a time. The database is used from one thread of
    its own, so a slow commit never stalls the connections in flight.
    """

    def __init__(self, store: Store, *, policy: Policy, allowed: targets.AllowList, concurrency: int = 256,
                 lease_seconds: float = 60.0, poll_interval: float = 0.025, retention_seconds: float = 30 * 86400,
                 keys_kept_for: float = 86400, clock=time.time, resolve=None,
                 unlimited: targets.AllowList | None = None):
        """``unlimited``: hosts the per-host limit does not apply to (the allow-list, unless given)."""
        self.store = store
        self.policy = policy
        self.concurrency = concurrency
        self.shares = Shares(concurrency)
        self.pacing = Pacing(HostBudget(policy.per_host), allowed if unlimited is None else unlimited)
        self.lease_seconds = max(lease_seconds, policy.timeout + 5)
        self.poll_interval = poll_interval
        self.retention_seconds = retention_seconds
        self.keys_kept_for = keys_kept_for
        self.clock = clock
        self.rng = random.Random()
        self.transport = Transport(allowed, timeout=policy.timeout, resolve=resolve)
        self._results: list[dict] = []
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._out: dict[int, Due] = {}  # deliveries begun whose attempt has no result yet, by number
        self._held: set[asyncio.Task] = set()  # those of them still waiting for their host's turn
        # Waits between turns while the database is away; back to the shortest after a turn that worked.
        self._backoff = Backoff(first=0.25, most=10.0)
        self._stopping = False
        self._stop_by = 0.0  # when deliveries still out are given up (time.monotonic)
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0

    def start(self) -> "Worker":
        self._thread = threading.Thread(target=self.run, name="delivery-worker", daemon=True)
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self, timeout: float = 10.0, grace: float = STOP_GRACE) -> None:
        """Stop, letting deliveries that are out finish for up to ``grace`` seconds; what has not finished by
        then goes back to the queue, for any worker to take at once."""
        self._stop_by = time.monotonic() + grace
        self._stopping = True
        if self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop has already ended
                pass
        if self._thread:
            self._thread.join(timeout)

    def run(self) -> None:
        """Deliver until stop() is called (blocks)."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        database = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-db")
        self._started.set()
        try:
            while not self._stopping:
                results = self._take_results()
                try:
                    busy = await self._loop.run_in_executor(database, self._turn_in_database, results,
                                                            self._full(), self.shares.later())
                    for due in busy:
                        self._begin(due)
                    more = len(busy) >= max(1, self.concurrency // 4)
                except Exception as exc:  # a database hiccup must not end deliveries for good
                    if self.store.outage.failed(exc):
                        # The database is away, which the store has said once: nothing more to log. Every
                        # outcome waits for it, however long it takes (the deliveries stay leased to us
                        # meanwhile, or go to another worker once their lease ends: sent again, same id).
                        self._results[:0] = results
                        await self._pause(self._backoff.delay())
                        continue
                    log.exception("delivery loop failed; retrying")
                    # The transaction was undone: these outcomes are recorded next turn, not lost (lost,
                    # their deliveries would be sent again once the lease ran out). Once only: outcomes
                    # that fail a turn twice would otherwise stop this worker for good.
                    self._results[:0] = [{**r, "again": True} for r in results if not r.get("again")]
                    more = False
                else:
                    self._backoff.reset()
                if not more:
                    # While deliveries are out, outcomes are gathered for a short while and recorded
                    # together: one transaction per outcome cost most of the worker's time.
                    await self._sleep(BATCH_WINDOW if self._tasks else self.poll_interval)
            # Stopping: deliveries waiting for their host's turn are not begun; those out may finish within
            # the grace. What is left goes back to the queue, untried (another worker sends it, with the
            # same webhook-id, at once rather than after our lease).
            for task in list(self._held):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=max(0.0, self._stop_by - time.monotonic()))
            cut = list(self._tasks)
            for task in cut:
                task.cancel()
            if cut:
                await asyncio.wait(cut)  # each ends (and leaves self._out) as it was cancelled
            await self._loop.run_in_executor(database, self._settle, self._take_results(), list(self._out.values()))
        finally:
            self.transport.close()
            database.shutdown(wait=True)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if told to stop: outcomes coming in do not end this wait."""
        until = time.monotonic() + seconds
        while not self._stopping and (left := until - time.monotonic()) > 0:
            await self._sleep(left)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    def _take_results(self) -> list[dict]:
        results, self._results = self._results, []
        return results

    def _full(self) -> tuple[int, list[str]]:
        """Free slots, and the subscriptions that may not have more in flight: those with their share out,
        and those whose host has had its share for the moment."""
        return self.concurrency - len(self._tasks), self.shares.full() + self.pacing.held_back()

    def _turn_in_database(self, results: list[dict], room: tuple[int, list[str]],
                          busy: set[int] = frozenset()) -> list[Due]:
        """In the database thread: record finished attempts and claim what is due, in one transaction;
        prune now and then."""
        now = self.clock()
        if now - self._pruned_at > 3600:
            self._pruned_at = now
            pruned = self.store.events.prune(now - self.retention_seconds)
            if pruned:
                log.info("pruned %d events older than the retention", pruned)
            self.store.keys.prune(now - self.keys_kept_for)
        free, full = room
        outcomes = self._outcomes(results, now)
        claimed = self.store.outbox.finish_and_claim(outcomes, now, free, self.lease_seconds, skip_subscriptions=full,
                                                     later_accounts=busy)
        self.shares.claimed(claimed, free, busy)
        # Counted once committed: a turn undone is made again, and would count its attempts twice.
        metrics.deliveries([o for o in outcomes if not o.get("postponed")])
        return claimed

    def _record(self, results: list[dict]) -> None:
        if results:
            now = self.clock()
            outcomes = self._outcomes(results, now)
            self.store.outbox.finish(outcomes, now)
            metrics.deliveries([o for o in outcomes if not o.get("postponed")])

    def _settle(self, results: list[dict], unfinished: list[Due]) -> None:
        """In the database thread, last: record the outcomes, give back the deliveries not finished. With the
        database away, both stay as they are: the deliveries leased, sent again once the lease ends."""
        recorded = False
        try:
            self._record(results)
            recorded = True
            self.store.outbox.give_back(unfinished, self.clock())
        except Exception as exc:
            left = 0 if recorded else len(results)
            if self.store.outage.failed(exc):
                log.warning("stopping with %d outcomes not recorded and %d deliveries not given back, as the "
                            "database does not answer: they are sent again once their lease ends", left,
                            len(unfinished))
            else:
                log.exception("stopping: %d outcomes not recorded and %d deliveries not given back", left,
                              len(unfinished))

    def _outcomes(self, results: list[dict], now: float) -> list[dict]:
        """What follows each attempt (next_step), with what the delivery log keeps of it."""
        if not results:
            return []
        failing = self.store.subscriptions.failing_since({r["due"].subscription_id for r in results
                                                          if not r.get("postponed") and not _ok(r["status_code"])})
        outcomes = []
        for result in results:
            if result.get("postponed"):
                outcomes.append(result)
                continue
            result = dict(result)  # kept as it was, should this turn be undone and made again
            due = result["due"]
            since = None if _ok(result["status_code"]) else (failing.get(due.subscription_id) or result["attempted_at"])
            outcome = next_step(self.policy, due.attempts, result["status_code"], result.pop("retry_after"), now,
                                since, self.rng)
            outcome.update(result)
            outcomes.append(outcome)
        return outcomes

    def _begin(self, due: Due) -> None:
        wait = self.pacing.wait(due)
        if wait > MAX_HELD:
            # Not tried, so neither an attempt nor a failure: back to the database, due when its turn comes.
            later = self.pacing.give_back(due, wait)
            self._results.append({"due": due, "postponed": True, "status": PENDING,
                                  "next_attempt_at": self.clock() + later})
            return
        task = self._loop.create_task(self._send(due, wait))
        self._tasks.add(task)
        self._out[due.seq] = due
        if wait:
            self._held.add(task)
        self.shares.begun(due)

    async def _send(self, due: Due, wait: float = 0.0) -> None:
        started = self.clock()
        status_code, error, retry_after = None, None, None
        try:
            if wait:
                try:
                    await asyncio.sleep(wait)
                finally:
                    self._held.discard(asyncio.current_task())
                started = self.clock()
            body = body_of(due)
            headers = signing.headers(due.secret, due.id, int(started), body)
            headers.update({"Content-Type": "application/json", "User-Agent": USER_AGENT})
            status_code, retry_after_header = await self.transport.post(due.target_url, body, headers)
            retry_after = retry_after_seconds(retry_after_header, started)
        except (targets.TargetRefused, DeliveryFailed) as failed:
            error = str(failed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever happens, the attempt is recorded and retried
            log.exception("delivery %s failed unexpectedly", due.id)
            error = f"failed: {type(exc).__name__}"
        finally:
            self._tasks.discard(asyncio.current_task())
            self.shares.ended(due)
        if status_code is not None and not _ok(status_code):
            error = "redirects are not followed" if 300 <= status_code < 400 else f"answered HTTP {status_code}"
        self._results.append({"due": due, "attempted_at": started, "status_code": status_code, "error": error,
                              "retry_after": retry_after, "latency_ms": int((self.clock() - started) * 1000)})
        del self._out[due.seq]
        # Early only when many slots are free again: they are worth filling now.
        if len(self._results) >= self.concurrency // 2:
            self._wake.set()


def _ok(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300

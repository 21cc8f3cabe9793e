"""The delivery worker: sends stored events to subscribers, signed, with retries, at least once."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from connector.events import signing, targets
from connector.events.books import RECHECK, Books, ok
from connector.events.fairness import Shares
from connector.events.pacing import HostBudget, Pacing
from connector.events.policy import Policy
from connector.events.transport import DeliveryFailed, Transport
from connector.sending.retry import retry_after_seconds
from connector.storage.doorbell import Listener
from connector.storage.outage import Backoff
from connector.storage.store import Store
from connector.storage.tables import PENDING, Due

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


def body_of(due: Due) -> bytes:
    """The exact bytes sent and signed: the canonical event."""
    return _body(due.event_id, due.event_type, due.event_timestamp, due.event_data)


# An event goes to each of its subscriptions, usually in the same turn: its body is made once for them all.
@lru_cache(maxsize=1024)
def _body(event_id: str, event_type: str, timestamp: str, data: str) -> bytes:
    return json.dumps(
        {"id": event_id, "type": event_type, "timestamp": timestamp, "data": json.loads(data)},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


class Worker:
    """Claims due deliveries, sends them concurrently from one event loop, records outcomes in batches.

    Runs as its own process (`connector worker`) or as a thread; any number of them can share one
    store, since a delivery is leased to one worker at a time. The database is used from one thread of
    its own, so a slow commit never stalls the connections in flight.

    At rest it sleeps until the store's doorbell rings (work made due elsewhere: see storage/doorbell.py) or
    its next retry is due; ``poll_interval`` is only a safety net (leases that ran out, a ring missed).
    """

    def __init__(
        self,
        store: Store,
        *,
        policy: Policy,
        allowed: targets.AllowList,
        concurrency: int = 256,
        lease_seconds: float = 60.0,
        poll_interval: float = 5.0,
        retention_seconds: float = 30 * 86400,
        keys_kept_for: float = 86400,
        clock: Callable[[], float] = time.time,
        resolve: Callable[..., list[tuple[Any, ...]]] | None = None,
        unlimited: targets.AllowList | None = None,
    ) -> None:
        """``unlimited``: hosts the per-host limit does not apply to (the allow-list, unless given)."""
        self.store = store
        self.policy = policy
        self.concurrency = concurrency
        self.shares = Shares(concurrency)
        self.pacing = Pacing(HostBudget(policy.per_host), allowed if unlimited is None else unlimited)
        self.poll_interval = poll_interval
        self.clock = clock
        self.books = Books(
            store,
            policy,
            self.shares,
            clock=clock,
            lease_seconds=max(lease_seconds, policy.timeout + 5),
            retention_seconds=retention_seconds,
            keys_kept_for=keys_kept_for,
        )
        self.transport = Transport(allowed, timeout=policy.timeout, resolve=resolve)
        self._results: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Bound to the loop that first waits on it; _main makes a new one for its loop.
        self._wake = asyncio.Event()
        self._out: dict[int, Due] = {}  # deliveries begun whose attempt has no result yet, by number
        self._held: set[asyncio.Task[None]] = set()  # those of them still waiting for their host's turn
        # Waits between turns while the database is away; back to the shortest after a turn that worked.
        self._backoff = Backoff(first=0.25, most=10.0)
        self._stopping = False
        self._stop_by = 0.0  # when deliveries still out are given up (time.monotonic)
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0
        self._rang = False  # a ring heard since the current turn began
        self._ring_pending = False  # a ring on its way from the doorbell's thread to the loop
        self.listener: Listener | None = None  # the doorbell's, while the worker runs

    def start(self) -> Worker:
        self._thread = threading.Thread(target=self.run, name="delivery-worker", daemon=True)
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self, timeout: float = 10.0, grace: float = STOP_GRACE) -> None:
        """Stop, letting deliveries that are out finish for up to ``grace`` seconds; what has not finished by
        then goes back to the queue, for any worker to take at once."""
        self._stop_by = time.monotonic() + grace
        self._stopping = True
        if self._loop is not None:
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
        # Its first ring comes once it listens, and starts a turn.
        self.listener = doorbell = self.store.database.doorbell.listener(self._heard).start()
        self._started.set()
        try:
            while not self._stopping:
                results = self._take_results()
                self._rang = False
                try:
                    room = self._full()
                    busy = await self._loop.run_in_executor(
                        database, self.books.turn, results, room, self.shares.later()
                    )
                    for due in busy:
                        self._begin(due)
                    more = len(busy) >= max(1, self.concurrency // 4)
                    rest = BATCH_WINDOW
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
                    more, rest = False, BATCH_WINDOW if self._tasks else RECHECK
                else:
                    self._backoff.reset()
                    if not more and not self._tasks and not self._results:
                        rest = await self._loop.run_in_executor(
                            database, self.books.rest, bool(room[1]), doorbell.hearing, self.poll_interval
                        )
                if not more and self._tasks:
                    # While deliveries are out: until one comes back or a ring, then outcomes are gathered for a
                    # short while and recorded together (one transaction per outcome cost most of the worker's
                    # time); not a turn every BATCH_WINDOW for nothing while slow subscribers answer.
                    if not self._results and not self._rang:
                        await self._sleep(self.poll_interval)
                    await self._sleep(BATCH_WINDOW)
                elif not more:  # at rest, until a ring or what is due next (a ring during the turn: at once)
                    await self._sleep(0.0 if self._rang else rest)
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
            await self._loop.run_in_executor(
                database, self.books.settle, self._take_results(), list(self._out.values())
            )
        finally:
            doorbell.stop()
            self.transport.close()
            database.shutdown(wait=True)

    def _heard(self) -> None:
        """In the doorbell's thread: a ring. Passed to the loop once, however many come before it runs."""
        if not self._ring_pending and self._loop is not None:
            self._ring_pending = True
            self._loop.call_soon_threadsafe(self._rung)

    def _rung(self) -> None:
        self._ring_pending = False
        # With deliveries out, only the first ring since the turn began wakes the loop: the next ones must not
        # cut short the gathering of their outcomes.
        if not self._rang or not self._tasks:
            self._wake.set()
        self._rang = True

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

    def _take_results(self) -> list[dict[str, Any]]:
        results, self._results = self._results, []
        return results

    def _full(self) -> tuple[int, list[str]]:
        """Free slots, and the subscriptions that may not have more in flight: those with their share out,
        and those whose host has had its share for the moment."""
        return self.concurrency - len(self._tasks), self.shares.full() + self.pacing.held_back()

    def _begin(self, due: Due) -> None:
        wait = self.pacing.wait(due)
        if wait > MAX_HELD:
            # Not tried, so neither an attempt nor a failure: back to the database, due when its turn comes.
            later = self.pacing.give_back(due, wait)
            self._results.append(
                {"due": due, "postponed": True, "status": PENDING, "next_attempt_at": self.clock() + later}
            )
            return
        task = asyncio.get_running_loop().create_task(self._send(due, wait))  # called in _main's loop only

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
        if status_code is not None and not ok(status_code):
            error = "redirects are not followed" if 300 <= status_code < 400 else f"answered HTTP {status_code}"
        self._results.append(
            {
                "due": due,
                "attempted_at": started,
                "status_code": status_code,
                "error": error,
                "retry_after": retry_after,
                "latency_ms": int((self.clock() - started) * 1000),
            }
        )
        del self._out[due.seq]
        # The first outcome starts the gathering (see _main); early only when many slots are free again: they
        # are worth filling now.
        if len(self._results) == 1 or len(self._results) >= self.concurrency // 2:
            self._wake.set()

"""Running jobs when they fall due: one time-ordered queue, one background thread, no timer per job.

Two kinds of due time share the thread:
- `at(when, job)`: an aware datetime on the sandbox's clock. Receipts use it, so a test that
  injects a clock and moves it forward makes them fall due without sleeping.
- `after(seconds, job)`: real elapsed time. Push retries use it, so a frozen test clock never
  stalls them.

The thread starts when a job is queued and ends when the queue is empty, so an idle sandbox holds
no thread. Jobs run one at a time on that thread and must be short: long work re-queues its rest.
"""

import heapq
import itertools
import logging
import threading
import time

log = logging.getLogger(__name__)

# The longest the thread waits before reading the clock again. The real clock is re-read now and
# then in case the wall clock jumps; an injected clock cannot announce that it moved, so it is
# re-read often while jobs wait (close the state when a test is done with it).
REAL_CLOCK_RECHECK = 30.0
INJECTED_CLOCK_RECHECK = 0.02


class Dispatcher:
    """A time-ordered job queue served by one daemon thread; `stop()` is final and idempotent."""

    def __init__(self, clock, *, recheck=REAL_CLOCK_RECHECK, name="allmysms-sandbox-dispatcher"):
        self._clock = clock
        self._recheck = recheck
        self._name = name
        self._condition = threading.Condition()
        self._by_clock = []  # (aware datetime, sequence, job)
        self._by_timer = []  # (time.monotonic() value, sequence, job)
        # The sequence keeps equal due times in arrival order and spares comparing jobs.
        self._sequence = itertools.count()
        self._thread = None
        self._stopped = False

    def at(self, when, job):
        """Run `job()` once the clock reads `when` or later; False if the dispatcher is stopped."""
        return self._queue(self._by_clock, when, job)

    def after(self, seconds, job):
        """Run `job()` after `seconds` of real time; False if the dispatcher is stopped."""
        return self._queue(self._by_timer, time.monotonic() + seconds, job)

    @property
    def pending(self):
        """How many jobs wait in the queue."""
        with self._condition:
            return len(self._by_clock) + len(self._by_timer)

    @property
    def running(self):
        with self._condition:
            return self._thread is not None

    def stop(self, timeout=5.0):
        """Drop every queued job and end the thread; the job running now, if any, finishes."""
        with self._condition:
            self._stopped = True
            self._by_clock.clear()
            self._by_timer.clear()
            thread = self._thread
            self._condition.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _queue(self, heap, due, job):
        with self._condition:
            if self._stopped:
                return False
            heapq.heappush(heap, (due, next(self._sequence), job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
            else:
                self._condition.notify()
            return True

    def _serve(self):
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                job()
            # One bad job must not stop the receipts of every other campaign. Only the type is
            # logged: exception texts could carry numbers or URLs.
            except Exception as error:
                log.error("sandbox dispatcher job failed (%s)", type(error).__name__)

    def _next_job(self):
        """Wait for the next due job and take it; None (and the thread ends) when there is none."""
        with self._condition:
            while True:
                if self._stopped or not (self._by_clock or self._by_timer):
                    self._thread = None
                    return None
                wait = self._recheck
                if self._by_clock:
                    left = (self._by_clock[0][0] - self._clock()).total_seconds()
                    if left <= 0:
                        return heapq.heappop(self._by_clock)[2]
                    wait = min(wait, left)
                if self._by_timer:
                    left = self._by_timer[0][0] - time.monotonic()
                    if left <= 0:
                        return heapq.heappop(self._by_timer)[2]
                    wait = min(wait, left)
                self._condition.wait(wait)

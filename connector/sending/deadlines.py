"""Deadlines kept by one thread per process: what overstays its time is acted on (a read cut short).

A timer thread per request cost more than the request's own work on a busy web worker; here arming and
cancelling a deadline is a heap push and an assignment.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from collections.abc import Callable


class Deadline:
    __slots__ = ("when", "order", "action")

    def __init__(self, when: float, order: int, action: Callable[[], object] | None) -> None:
        self.when, self.order, self.action = when, order, action

    def __lt__(self, other: Deadline) -> bool:
        return (self.when, self.order) < (other.when, other.order)

    def cancel(self) -> None:
        self.action = None  # left in the heap; dropped once it comes first


class Deadlines:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[Deadline] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._owner: int | None = None  # the process whose thread keeps them: a forked child starts its own
        self._waking_at = math.inf  # when the keeping thread wakes next, unless told of an earlier deadline

    def after(self, seconds: float, action: Callable[[], object]) -> Deadline:
        """Call ``action()`` in ``seconds`` unless the returned deadline is cancelled first."""
        deadline = Deadline(self.clock() + seconds, next(self._order), action)
        with self._changed:
            if self._owner != os.getpid():
                self._owner = os.getpid()
                threading.Thread(target=self._keep, name="deadlines", daemon=True).start()
            heapq.heappush(self._heap, deadline)
            if deadline.when < self._waking_at:
                self._changed.notify()
        return deadline

    def _keep(self) -> None:
        while True:
            due: list[Deadline] = []

            with self._changed:
                while not due:
                    now = self.clock()
                    # Cancelled deadlines go as soon as they come first, whatever their time: nearly every
                    # deadline is cancelled well before it is due, and waking for each of them at its time
                    # cost a busy worker a thread switch per request.
                    while self._heap and (self._heap[0].action is None or self._heap[0].when <= now):
                        deadline = heapq.heappop(self._heap)
                        if deadline.action is not None:
                            due.append(deadline)
                    if not due:
                        self._waking_at = self._heap[0].when if self._heap else math.inf
                        self._changed.wait(self._waking_at - now if self._heap else None)
            for deadline in due:
                action = deadline.action
                if action is not None:
                    try:
                        action()
                    except Exception:  # one failed action must not stop the others' deadlines
                        pass

"""Group commit: writes asked for at the same moment by many threads go to the database together.

A commit costs a disk flush (about 1 ms on the machines measured), and a web process answers many
callbacks at once. The first thread to arrive writes everything queued so far in one transaction while
the others wait; whoever is still waiting when it is done writes the next group. Nobody is answered
before its own write is committed.

Callers may say they are coming (``coming()``, from the moment a request starts to be read): a writer whose
group is smaller than the callers on their way waits for them a little (``linger``). Each transaction, and
each thread woken, cost more than reading a callback: under load, fuller groups answered more callbacks with
the same processor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar, cast

from connector import bells
from connector.bells import Bell

Job = TypeVar("Job")
Result = TypeVar("Result")


class _Slot(Generic[Job, Result]):
    __slots__ = ("job", "done", "result", "error", "bell")

    def __init__(self, job: Job):
        self.job = job
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.bell: Bell | None = None  # the caller's thread's, when it may have to wait (bells.py)

    def arm(self) -> None:
        if self.bell is None:
            self.bell = bells.own()

    def wake(self) -> None:
        cast(Bell, self.bell).ring()

    def wait(self, timeout: float | None = None) -> bool:
        # Each wait here is for one ring that comes once, so the bell is clear again when it returns.
        bell = cast(Bell, self.bell)
        try:
            return bell.wait(timeout)
        except BaseException:
            bells.disown(bell)  # interrupted: its ring may come later
            raise


class GroupWriter(Generic[Job, Result]):
    """Calls ``write(jobs)`` (one transaction, one result per job) for whatever was queued together.

    If a group fails, each of its jobs is written again alone, so one bad job fails only its own caller.
    Each waiting thread is woken once: when its job is written, or when it is its turn to write the next
    group (waking them all at each group, to find out which, cost more than a small group's write).
    """

    def __init__(self, write: Callable[[list[Job]], list[Result]], max_group: int = 256, linger: float = 0.0):
        self._write = write
        self._max_group = max_group
        self._linger = linger
        self._queue: list[_Slot] = []
        self._writing = False
        self._lock = threading.Lock()
        self._coming = 0  # callers between coming() and the end of their submit
        self._lingering: _Slot | None = None  # the writer waiting for the callers on their way

    @contextmanager
    def coming(self) -> Iterator[None]:
        """A caller that is about to submit (or not, if it finds nothing to write): the writer of the group
        it would join waits for it, up to ``linger`` seconds."""
        with self._lock:
            self._coming += 1
        try:
            yield
        finally:
            with self._lock:
                self._coming -= 1
                lingering = self._done_lingering()
            if lingering is not None:
                lingering.wake()

    def _done_lingering(self) -> _Slot | None:
        """Under the lock: the writer to wake, once everybody on their way is queued (woken by the caller,
        once the lock is let go)."""
        lingering = self._lingering
        if lingering is not None and len(self._queue) >= min(self._coming, self._max_group):
            self._lingering = None
            return lingering
        return None

    def submit(self, job: Job) -> Result:
        return self._submitted(_Slot(job))

    def _submitted(self, slot: _Slot[Job, Result]) -> Result:
        if self._writing or self._linger:
            slot.arm()  # it may wait: armed before it is queued, where others may wake it
        with self._lock:
            if self._writing:
                slot.arm()  # somebody began writing meanwhile: it waits after all
            self._queue.append(slot)
            waiting, self._writing = self._writing, True
            lingering = self._done_lingering()
        if lingering is not None:
            lingering.wake()
        if waiting:
            slot.wait()  # written by the writer of its group, or handed the turn to write
        if not slot.done:
            # Its turn: it is first in the queue, so in the group it writes.
            if self._linger:
                with self._lock:
                    if len(self._queue) < min(self._coming, self._max_group):
                        self._lingering = slot
                if self._lingering is slot and not slot.wait(self._linger):
                    with self._lock:
                        if self._lingering is slot:
                            self._lingering = None
                        else:  # woken at the moment it gave up: the wake is spent here
                            slot.wait()
            with self._lock:
                group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
            try:
                self._write_group(group)
            finally:
                with self._lock:
                    after = self._queue[0] if self._queue else None  # the turn passes on; _writing stays set
                    self._writing = after is not None
                if after is not None:
                    after.wake()
                for other in group:
                    if other is not slot:
                        other.wake()
        if slot.error is not None:
            raise slot.error
        return cast(Result, slot.result)  # done without an error: its result is set

    def _write_group(self, group: list[_Slot]) -> None:
        try:
            results = self._write([slot.job for slot in group])
        except Exception as error:
            if len(group) == 1:
                self._settle(group[0], None, error)
                return
            for slot in group:
                try:
                    self._settle(slot, self._write([slot.job])[0], None)
                except Exception as alone:
                    self._settle(slot, None, alone)
            return
        except BaseException as error:  # interrupted: nobody may be left waiting for a write that is gone
            for slot in group:
                self._settle(slot, None, error)
            raise
        for slot, result in zip(group, results):
            self._settle(slot, result, None)

    @staticmethod
    def _settle(slot: _Slot, result, error) -> None:
        slot.result, slot.error, slot.done = result, error, True

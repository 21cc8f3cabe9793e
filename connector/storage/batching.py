"""Group commit: writes asked for at the same moment by many threads go to the database together.

A commit costs a disk flush (about 1 ms on the machines measured), and a web process answers many
callbacks at once. The first thread to arrive writes everything queued so far in one transaction while
the others wait; whoever is still waiting when it is done writes the next group. Nobody is answered
before its own write is committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

Job = TypeVar("Job")
Result = TypeVar("Result")


class _Slot(Generic[Job, Result]):
    __slots__ = ("job", "done", "result", "error", "_woken")

    def __init__(self, job: Job):
        self.job = job
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None
        # Held from the start and released once to wake its thread: a lock is the cheapest signal there is.
        self._woken = threading.Lock()
        self._woken.acquire()

    def wake(self) -> None:
        self._woken.release()

    def wait(self) -> None:
        self._woken.acquire()


class GroupWriter(Generic[Job, Result]):
    """Calls ``write(jobs)`` (one transaction, one result per job) for whatever was queued together.

    If a group fails, each of its jobs is written again alone, so one bad job fails only its own caller.
    Each waiting thread is woken once: when its job is written, or when it is its turn to write the next
    group (waking them all at each group, to find out which, cost more than a small group's write).
    """

    def __init__(self, write: Callable[[list[Job]], list[Result]], max_group: int = 256):
        self._write = write
        self._max_group = max_group
        self._queue: list[_Slot] = []
        self._writing = False
        self._lock = threading.Lock()

    def submit(self, job: Job) -> Result:
        slot: _Slot[Job, Result] = _Slot(job)
        with self._lock:
            self._queue.append(slot)
            waiting, self._writing = self._writing, True
        if waiting:
            slot.wait()  # written by the writer of its group, or handed the turn to write
        if not slot.done:
            # Its turn: it is first in the queue, so in the group it writes.
            with self._lock:
                group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
            try:
                self._write_group(group)
            finally:
                with self._lock:
                    if self._queue:
                        self._queue[0].wake()  # the turn passes on; _writing stays set
                    else:
                        self._writing = False
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

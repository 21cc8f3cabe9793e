"""One thread keeps every deadline of a process: due ones act, cancelled ones do not."""

from __future__ import annotations

import threading
import time

from connector.sending.deadlines import Deadlines
from tests.conftest import wait_for


def test_a_deadline_acts_when_due_and_a_cancelled_one_never_does():
    deadlines, fired = Deadlines(), []
    kept = deadlines.after(0.05, lambda: fired.append("kept"))
    dropped = deadlines.after(0.05, lambda: fired.append("dropped"))
    dropped.cancel()
    wait_for(lambda: fired, timeout=5, what="the kept deadline")
    assert kept.action is not None
    late = deadlines.after(0.2, lambda: fired.append("late"))
    wait_for(lambda: "late" in fired, timeout=5, what="a later deadline")
    assert fired == ["kept", "late"] and late.action is not None


def test_an_earlier_deadline_added_later_is_not_held_up_by_a_far_one():
    deadlines, fired = Deadlines(), threading.Event()
    deadlines.after(3600, lambda: None)
    deadlines.after(0.05, fired.set)
    assert fired.wait(30)  # held up by the far one, it would fire only an hour from now


def test_a_failing_action_does_not_stop_the_others():
    deadlines, fired = Deadlines(), threading.Event()

    def broken():
        raise RuntimeError("a socket already closed")

    deadlines.after(0.01, broken)
    deadlines.after(0.02, fired.set)
    assert fired.wait(5)


def test_cancelled_deadlines_do_not_wake_the_keeping_thread_one_by_one():
    """A busy worker arms and cancels a deadline per request, each later than the last: the thread that
    keeps them must not wake for each (a thread switch per request)."""
    wakes = []

    def clock():
        if threading.current_thread().name == "deadlines":
            wakes.append(1)
        return time.monotonic()

    deadlines, fired = Deadlines(clock), threading.Event()
    deadlines.after(0.3, fired.set)
    for _ in range(1000):
        deadlines.after(0.05, lambda: None).cancel()
    assert fired.wait(30)
    assert len(wakes) <= 10  # one per wait; cancelled deadlines woke it once each before

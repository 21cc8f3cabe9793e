"""Group commit: jobs submitted together are written together; a failing job fails only its caller."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from connector import bells
from connector.storage import batching
from connector.storage.batching import GroupWriter
from tests.conftest import wait_for


class Recorder:
    """A write function that records each group and holds the first one until released, so that the
    jobs submitted meanwhile queue up behind it."""

    def __init__(self):
        self.groups: list[list] = []
        self.first_started = threading.Event()
        self.release = threading.Event()

    def __call__(self, jobs: list) -> list:
        self.groups.append(list(jobs))
        if len(self.groups) == 1:
            self.first_started.set()
            self.release.wait(5)
        if any(job == "bad" for job in jobs):
            raise ValueError("bad job")
        return [job * 2 for job in jobs]


def behind_a_held_group(writer: GroupWriter, write: Recorder, pool, first, later: list):
    """Submit ``first`` and hold its write; submit ``later`` meanwhile, wait until they are all queued
    behind it, then let the write go. The futures: first's, then later's."""
    held = pool.submit(writer.submit, first)
    assert write.first_started.wait(5)
    queued = [pool.submit(writer.submit, job) for job in later]
    wait_for(lambda: len(writer._queue) == len(later), what="the jobs to queue")
    write.release.set()
    return held, queued


def test_jobs_that_arrive_while_a_group_is_written_go_together_in_the_next_one():
    write = Recorder()
    writer = GroupWriter(write)
    with ThreadPoolExecutor(12) as pool:
        first, rest = behind_a_held_group(writer, write, pool, 1, list(range(2, 12)))
        assert first.result(5) == 2
        assert [f.result(5) for f in rest] == [n * 2 for n in range(2, 12)]
    # In the order they reached the queue, which threads racing for it decide.
    assert [sorted(group) for group in write.groups] == [[1], list(range(2, 12))]


def test_a_failing_job_fails_only_its_own_caller():
    write = Recorder()
    writer = GroupWriter(write)
    with ThreadPoolExecutor(4) as pool:
        first, (good, bad, other) = behind_a_held_group(writer, write, pool, 1, [3, "bad", 5])
        assert first.result(5) == 2
        assert good.result(5) == 6 and other.result(5) == 10
        with pytest.raises(ValueError, match="bad job"):
            bad.result(5)
    # The group failed as a whole, then each of its jobs was written alone.
    assert sorted(map(str, write.groups[1])) == ["3", "5", "bad"]
    assert sorted(str(g[0]) for g in write.groups[2:]) == ["3", "5", "bad"]


def test_groups_are_never_larger_than_the_limit():
    write = Recorder()
    writer = GroupWriter(write, max_group=4)
    with ThreadPoolExecutor(12) as pool:
        _, rest = behind_a_held_group(writer, write, pool, 0, list(range(1, 11)))
        assert [f.result(5) for f in rest] == [n * 2 for n in range(1, 11)]
    assert [len(g) for g in write.groups] == [1, 4, 4, 2]


def _groups_written(writer_linger: float, second_submits: bool) -> list[list]:
    """Two callers say they are coming; the first submits at once, the second a moment later (or leaves
    without submitting): the groups written."""
    groups: list[list] = []

    def write(jobs: list) -> list:
        groups.append(list(jobs))
        return jobs

    writer: GroupWriter = GroupWriter(write, linger=writer_linger)
    second_in, first_done = threading.Event(), threading.Event()

    def first():
        with writer.coming():
            assert second_in.wait(5)
            writer.submit("first")
        first_done.set()

    def second():
        with writer.coming():
            second_in.set()
            # On its way while the first one's writer waits for it.
            wait_for(lambda: writer._lingering is not None, what="the writer to wait for the second caller")
            if second_submits:
                writer.submit("second")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert first_done.is_set() and not any(thread.is_alive() for thread in threads)
    return groups


def test_a_writer_waits_for_a_caller_on_its_way_and_writes_both_in_one_group():
    assert _groups_written(3600.0, second_submits=True) == [["first", "second"]]


def test_a_caller_that_leaves_without_submitting_lets_the_waiting_writer_go_on():
    assert _groups_written(3600.0, second_submits=False) == [["first"]]


def test_the_lock_kept_where_there_is_no_eventfd_groups_and_wakes_alike(monkeypatch):
    monkeypatch.setattr(bells, "EVENTFD", False)
    assert _groups_written(3600.0, second_submits=True) == [["first", "second"]]
    write = Recorder()
    writer = GroupWriter(write)
    with ThreadPoolExecutor(4) as pool:
        held, queued = behind_a_held_group(writer, write, pool, 1, [2, 3])
        assert held.result(5) == 2 and [f.result(5) for f in queued] == [4, 6]
    assert [sorted(group) for group in write.groups] == [[1], [2, 3]]


def test_no_wake_up_file_is_left_open():
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    write = Recorder()
    writer = GroupWriter(write, linger=0.001)
    with ThreadPoolExecutor(4) as pool:
        held, queued = behind_a_held_group(writer, write, pool, 1, [2, 3, 4])
        assert [f.result(5) for f in [held, *queued]] == [2, 4, 6, 8]
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


def test_a_thread_waits_on_one_bell_of_its_own_and_a_wait_cut_short_gives_it_up(monkeypatch):
    write = Recorder()
    writer = GroupWriter(write)
    seen: list[bells.Bell] = []

    def waiting_twice():
        for job in (2, 3):
            assert writer.submit(job) == job * 2
            seen.append(bells.own())

    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(writer.submit, 1)
        assert write.first_started.wait(5)
        caller = threading.Thread(target=waiting_twice)
        caller.start()
        wait_for(lambda: len(writer._queue) == 1, what="the second job to wait")
        write.release.set()
        caller.join(5)
        assert held.result(5) == 2
    assert len(seen) == 2 and seen[0] is seen[1]

    # A wait interrupted (its ring may still come) leaves the thread with a new bell for its next wait.
    mine = bells.own()
    slot = batching._Slot("job")
    slot.arm()
    monkeypatch.setattr(bells.Bell, "wait", lambda self, timeout=None: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        slot.wait()
    assert slot.bell is mine and bells.own() is not mine

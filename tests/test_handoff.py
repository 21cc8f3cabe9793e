"""The web process's request threads: each request handed over runs once, on at most ``size`` threads, its
future settled and its done callbacks called, before and after the threads have gone idle; shutdown stops
them all."""

from __future__ import annotations

import threading

import pytest

from connector import bells
from connector.ops.handoff import RequestThreads
from tests.conftest import wait_for


@pytest.fixture(params=["eventfd", "lock"])
def pool(request, monkeypatch):
    if request.param == "lock":
        monkeypatch.setattr(bells, "EVENTFD", False)
    elif not bells.EVENTFD:
        pytest.skip("no eventfd on this system")
    made = RequestThreads(3, name="test-request")
    yield made
    made.shutdown(wait=True)


def test_each_request_runs_once_on_at_most_size_threads_and_its_callback_is_called(pool):
    ran: list[int] = []
    called: list[int] = []
    names: set[str] = set()
    lock = threading.Lock()

    def handle(n: int) -> int:
        with lock:
            ran.append(n)
            names.add(threading.current_thread().name)
        return n * 2

    futures = []
    for n in range(200):
        future = pool.submit(handle, n)
        future.add_done_callback(lambda f, n=n: called.append(n))
        futures.append(future)
    assert [f.result(10) for f in futures] == [n * 2 for n in range(200)]
    wait_for(lambda: len(called) == 200, what="every done callback")
    assert sorted(ran) == list(range(200)) and sorted(called) == list(range(200))
    assert 1 <= len(names) <= 3 and all(name.startswith("test-request-") for name in names)


def test_threads_gone_idle_are_woken_for_the_next_request(pool):
    assert pool.submit(lambda: "first").result(10) == "first"
    wait_for(lambda: len(pool._idle) == 1, what="the thread to go idle")
    assert pool.submit(lambda: "after a rest").result(10) == "after a rest"
    assert len(pool._threads) == 1


def test_an_exception_settles_its_future_and_the_thread_serves_on(pool):
    def broken():
        raise ValueError("a bad request")

    failed = pool.submit(broken)
    with pytest.raises(ValueError, match="a bad request"):
        failed.result(10)
    assert pool.submit(lambda: 42).result(10) == 42


def test_shutdown_stops_idle_and_busy_threads_and_refuses_more_work(pool):
    release = threading.Event()
    busy = pool.submit(release.wait, 10)
    pool.submit(lambda: None).result(10)
    wait_for(lambda: len(pool._idle) >= 1, what="a thread to go idle")
    threads = list(pool._threads)
    release.set()
    pool.shutdown(wait=True)
    assert busy.result(10) is True
    assert not any(thread.is_alive() for thread in threads)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


@pytest.mark.parametrize("eventfd", [True, False])
def test_a_bell_keeps_a_ring_made_before_the_wait_and_a_wait_for_none_times_out(eventfd):
    if eventfd and not bells.EVENTFD:
        pytest.skip("no eventfd on this system")
    bell = bells.Bell(eventfd=eventfd)
    try:
        bell.ring()
        bell.ring()  # two rings before a wait count as one
        assert bell.wait(5)
        assert not bell.wait(0.01)
        threading.Timer(0.01, bell.ring).start()
        assert bell.wait(10)
    finally:
        bell.close()

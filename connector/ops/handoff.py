"""The web process's request threads: a request read whole by the event loop is handed to an idle thread,
which is woken by its own bell (connector/bells.py), not by a queue.

gunicorn's threaded worker hands requests to a ``ThreadPoolExecutor``, whose queue wakes a thread with the
interpreter's lock held: under load the event loop then stood still, with every request waiting on it,
until the kernel gave it the processor back (some 5 % of a web process's time). Same interface, so the
worker uses it unchanged: ``submit`` returns a ``Future`` and done callbacks run in the request's thread.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

from connector.bells import Bell


class RequestThreads(futures.Executor):
    """Up to ``size`` threads, started as requests need them; idle ones wait on their bell, the one that
    went idle last is woken first (its stack is still warm)."""

    def __init__(self, size: int, name: str = "request") -> None:
        if size < 1:
            raise ValueError("at least one thread")
        self._size = size
        self._name = name
        self._lock = threading.Lock()
        self._work: collections.deque[tuple[futures.Future, Callable[..., Any], tuple, dict]] = collections.deque()
        self._idle: list[Bell] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        future: futures.Future = futures.Future()
        with self._lock:
            if self._stopping:
                raise RuntimeError("cannot take work after shutdown")
            self._work.append((future, fn, args, kwargs))
            bell = self._idle.pop() if self._idle else None
            if bell is None and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{len(self._threads)}", args=(Bell(),), daemon=True
                )
                self._threads.append(thread)
                thread.start()
        if bell is not None:
            bell.ring()  # outside the lock: the woken thread's first step is to take it
        return future

    def _serve(self, bell: Bell) -> None:
        try:
            while True:
                with self._lock:
                    item = self._work.popleft() if self._work else None
                    if item is None:
                        if self._stopping:
                            return
                        self._idle.append(bell)
                if item is None:
                    bell.wait()  # rung by submit (a ring before the wait is kept) or by shutdown
                    continue
                future, fn, args, kwargs = item
                del item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:
                    future.set_exception(error)
                else:
                    future.set_result(result)
                del future, fn, args, kwargs
        finally:
            bell.close()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._stopping = True
            if cancel_futures:
                while self._work:
                    self._work.popleft()[0].cancel()
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for bell in idle:
            bell.ring()
        if wait:
            for thread in threads:
                thread.join()

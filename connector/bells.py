"""Waking a waiting thread without holding the interpreter's lock while the system wakes it.

Releasing a ``threading.Lock`` that another thread waits on (what ``Event.set``, ``Condition.notify`` and
``queue.put`` come down to) makes the system call with the interpreter's lock held. The kernel often switches
to the woken thread right then, which finds that lock taken and sleeps again; the waker, meanwhile off the
processor, still holds it, and no thread of the process can run until the waker is scheduled again. Under
load a web process lost about a tenth of its time so. A :class:`Bell` on Linux is an eventfd:
``os.eventfd_write`` lets the interpreter's lock go around the system call, so whoever runs next runs.
Elsewhere it is a lock, as before.
"""

from __future__ import annotations

import os
import select
import threading

#: Whether bells are eventfds (Linux).
EVENTFD = hasattr(os, "eventfd")


class Bell:
    """Rung by one thread, waited for by another. A ring that comes before the wait is not lost; rings
    before one wait count as one. ``close()`` once it is no longer needed (a file descriptor on Linux), or
    let it be collected."""

    __slots__ = ("_fd", "_lock")

    def __init__(self, eventfd: bool | None = None) -> None:
        self._fd: int | None = None
        self._lock: threading.Lock | None = None
        if EVENTFD if eventfd is None else eventfd:
            self._fd = os.eventfd(0, os.EFD_CLOEXEC)
        else:
            self._lock = threading.Lock()
            self._lock.acquire()

    def ring(self) -> None:
        if self._fd is not None:
            os.eventfd_write(self._fd, 1)
        elif self._lock is not None and self._lock.locked():
            try:
                self._lock.release()
            except RuntimeError:  # rung twice at once: it is rung
                pass

    def wait(self, timeout: float | None = None) -> bool:
        """Whether it was rung (within ``timeout`` seconds, when given); the ring is used up."""
        if self._fd is None:
            assert self._lock is not None
            return self._lock.acquire(timeout=-1 if timeout is None else timeout)
        if timeout is not None and not select.select([self._fd], [], [], timeout)[0]:
            return False
        os.eventfd_read(self._fd)
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # at interpreter exit, os may be gone already
            pass


_mine = threading.local()


def own() -> Bell:
    """This thread's bell, made at its first use and closed when the thread ends: a thread that waits for
    one ring at a time, each rung once, needs no new bell each time (two system calls fewer per wait). A
    caller whose wait is cut short by an exception must :func:`disown` it: its ring may still come."""
    bell = getattr(_mine, "bell", None)
    if bell is None or (bell._fd is not None) != EVENTFD:
        bell = _mine.bell = Bell()
    return bell


def disown(bell: Bell) -> None:
    """Stop reusing ``bell`` in this thread (it closes once nobody can ring it any more)."""
    if getattr(_mine, "bell", None) is bell:
        del _mine.bell

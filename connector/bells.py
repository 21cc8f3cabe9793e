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
    before one wait count as one. ``close()`` once it is no longer needed (a file descriptor on Linux)."""

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

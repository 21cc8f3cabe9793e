"""Which process holds a piece of work, written so that another process can later tell whether it is gone.

An identity is ``host:pid:start``, the start being the process's start time in clock ticks since boot
(Linux /proc), so that a pid reused by a new process is not taken for the old one. Only a process on the
same host can be judged; elsewhere the answer is "cannot tell".
"""

from __future__ import annotations

import functools
import os
import socket
import threading


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name (field 2) may hold spaces and parentheses: count from its closing one.
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[19].decode()  # field 22 of the file, "starttime"


def identity(pid: int | None = None) -> str:
    """The identity of process ``pid`` (this one by default), while it runs."""
    return _identity(os.getpid() if pid is None else pid)


@functools.lru_cache(maxsize=64)  # by pid: a forked child asks with its own
def _identity(pid: int) -> str:
    return f"{_host()}:{pid}:{_start_ticks(pid) or '?'}"


@functools.cache
def _host() -> str:
    return socket.gethostname()


def gone(holder: str | None) -> bool:
    """True only when ``holder`` is surely a process of this host that has ended."""
    if not holder:
        return False
    host, _, rest = holder.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != _host() or not pid_text.isdigit():
        return False
    if start != "?" and os.path.isdir("/proc"):
        return _start_ticks(int(pid_text)) != start  # ended, or its pid now names another process
    return not alive(int(pid_text))


def alive(pid: int) -> bool:
    """Whether a process ``pid`` of this host runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


_stopping = threading.Event()


def stop_taking_work() -> None:
    """This process was told to stop (SIGTERM): it answers what it holds and takes nothing more."""
    _stopping.set()


def draining() -> bool:
    """Whether this process was told to stop and is answering the requests it holds: not ready for more
    (/readyz), so that a proxy sends them elsewhere."""
    return _stopping.is_set()

"""A local, durable journal of what the database could not take, replayed into it once it answers.

A callback AllMySMS pushed while the database was away is answered 200 only once it is here: appended to a
file of this process's own in ``<data folder>/journal`` and flushed to disk. When the database answers again,
the process replays its journal in the order it was written and removes each file once every entry of it is
stored. Replaying twice is harmless: an event's id is derived from the callback, so a callback both
journalled and stored is one event.

Each line is ``<crc32 in hex> <json>``: a line cut short by a crash (never acknowledged, since the answer
waits for the flush) fails its checksum and is skipped. A process holds an exclusive lock on the file it
writes; a file nobody holds (its process ended, or it was sealed for replay) can be replayed by any process
sharing the folder, one at a time.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import logging
import os
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from connector.storage.outage import Backoff, Outage, unavailable

log = logging.getLogger(__name__)

SUFFIX = ".journal"
#: Entries handed to the replaying function at a time.
BATCH = 200
#: How often a file held by another process is looked at again (seconds).
HELD_FILES_POLL = 2.0


class JournalUnavailable(Exception):
    """The journal cannot take an entry: the disk is full or refuses writes, or the journal is at its size."""


@dataclass(frozen=True)
class Entry:
    kind: str
    data: dict


def folder_of(data_dir: str) -> Path:
    return Path(data_dir) / "journal"


def encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


def _line(entry: Entry) -> bytes:
    payload = json.dumps({"kind": entry.kind, "data": entry.data}, ensure_ascii=False, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _read(data: bytes) -> tuple[list[Entry], int]:
    """The entries of a file's bytes, and how many lines were unreadable (a torn last line, or damage)."""
    entries, bad = [], 0
    for line in data.split(b"\n"):
        if not line:
            continue
        checksum, _, payload = line.partition(b" ")
        try:
            if int(checksum, 16) != zlib.crc32(payload):
                raise ValueError("checksum")
            item = json.loads(payload)
            entries.append(Entry(item["kind"], item["data"]))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return entries, bad


class Journal:
    """Appends entries durably, bounded to ``max_bytes`` over the whole folder; replays them in order."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._pid = os.getpid()
        self._sealed: list[Path] = []  # this process's files, closed for replay and not yet replayed
        self._backlog = False
        self._counted: dict[Path, tuple[int, int]] = {}  # see depth()
        self.outage = Outage(
            "the local journal cannot be written",
            "the local journal can be written again",
            "Callbacks the database cannot take are answered 503 with Retry-After meanwhile.",
        )

    # Writing.

    def append(self, entry: Entry) -> None:
        """Keep ``entry`` on disk (flushed) or raise JournalUnavailable."""
        line = _line(entry)
        with self._lock:
            if self._pid != os.getpid():  # a forked child must not write to its parent's file
                self._fd, self._path, self._sealed, self._pid = None, None, [], os.getpid()
            used = self.size()
            if used + len(line) > self.max_bytes:
                self.outage.went_away("it is full: CONNECTOR_JOURNAL_MAX_BYTES")
                raise JournalUnavailable(f"the journal holds {used} bytes, its limit (CONNECTOR_JOURNAL_MAX_BYTES)")
            try:
                fd = self._open()
                end = os.lseek(fd, 0, os.SEEK_END)
                try:
                    view = memoryview(line)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:
                    # A partial line would only be skipped on replay; cut it now so the next entry is whole.
                    os.ftruncate(fd, end)
                    if end == 0:  # and leave no empty file behind
                        self._discard()
                    raise
            except OSError as error:
                self.outage.went_away(_words(error))
                raise JournalUnavailable(_words(error)) from None
            self._backlog = True
        self.outage.answered()

    def _open(self) -> int:
        if self._fd is None:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Named by time first: replaying files in name order replays entries in the order written.
            path = self.folder / f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if this process dies
                _flush_folder(self.folder)  # the file itself must survive a power cut, not only its lines
            except OSError:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
            self._fd, self._path = fd, path
        return self._fd

    def _discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        self._fd = self._path = None

    @property
    def backlog(self) -> bool:
        """Whether entries this process wrote are still waiting: new callbacks then follow them here, so
        that the database receives them in the order AllMySMS sent them."""
        return self._backlog

    # Reading.

    def files(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:
            return []

    def size(self) -> int:
        total = 0
        for path in self.files():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def depth(self) -> dict:
        """What waits, for metrics and /readyz: files, bytes and entries. Files only grow until they are
        removed, so each is read from where the last look stopped."""
        files, size, entries, seen = 0, 0, 0, {}
        for path in self.files():
            try:
                with open(path, "rb") as reading:
                    known_size, known_lines = self._counted.get(path, (0, 0))
                    reading.seek(known_size)
                    more = reading.read()
            except FileNotFoundError:
                continue
            seen[path] = (known_size + len(more), known_lines + more.count(b"\n"))
            files, size, entries = files + 1, size + seen[path][0], entries + seen[path][1]
        self._counted = seen
        return {"files": files, "bytes": size, "entries": entries}

    def replay(self, apply: Callable[[list[Entry]], None]) -> int:
        """Hand every entry of every file nobody else holds to ``apply``, oldest first, a batch at a time, and
        remove each file once it is done; entries replayed. ``apply`` raising stops here: the file stays, to
        be replayed again (whole) on the next call."""
        done = 0
        while True:
            with self._lock:
                self._seal()
                paths = self.files()
            progressed = False
            for path in paths:
                replayed = self._replay_file(path, apply)
                if replayed is not None:
                    done, progressed = done + replayed, True
            with self._lock:
                self._sealed = [p for p in self._sealed if p.exists()]
                self._backlog = self._fd is not None or bool(self._sealed)
                if not progressed or not self._backlog:
                    return done

    def _seal(self) -> None:
        """Close this process's file: it becomes replayable, and new entries go to a new file."""
        if self._fd is not None:
            os.close(self._fd)  # and with it our lock
            if self._path is not None:  # set with the file
                self._sealed.append(self._path)
            self._fd = self._path = None

    def _replay_file(self, path: Path, apply) -> int | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # its process still writes it, or another process replays it now
            if os.fstat(fd).st_nlink == 0:
                return 0  # replayed and removed by another process while we waited for it
            with os.fdopen(os.dup(fd), "rb") as reading:
                entries, bad = _read(reading.read())
            if bad:
                log.error(
                    "journal file %s: %d unreadable line(s) skipped (cut short by a crash, or damaged)", path.name, bad
                )
            for start in range(0, len(entries), BATCH):
                apply(entries[start : start + BATCH])
            path.unlink()
            _flush_folder(self.folder)
            return len(entries)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


def _flush_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _words(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the data folder refuses writes"
    named = errno.errorcode.get(error.errno, error.errno) if error.errno is not None else None
    return f"the journal could not be written ({named})"


class Replayer:
    """A thread that replays the journal while it holds anything, backing off while the database is away.
    Started on demand (the first entry written, the first request finding files): never in a process that
    only forks others."""

    def __init__(self, journal: Journal, apply: Callable[[list[Entry]], None], name: str = "journal-replay"):
        self.journal = journal
        self.apply = apply
        self.name = name
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def wake(self) -> None:
        with self._lock:
            self._wake.set()
            if self._stopped or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            self._wake.set()
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        backoff = Backoff(first=0.1, most=10.0)
        replayed = 0
        while not self._stopped:
            self._wake.clear()
            try:
                replayed += self.journal.replay(self.apply)
                backoff.reset()
            except Exception as error:
                if not unavailable(error):
                    log.exception("replaying the journal failed; trying again")
                # Not cut short by new entries: while the database is away, each would be one more try.
                self._stop.wait(backoff.delay())
                continue
            with self._lock:
                # Done unless something was written meanwhile, or a file is still held by another process
                # (which replays it itself; looked at again now and then in case that process dies).
                if not self.journal.backlog and not self._wake.is_set() and not self.journal.files():
                    self._thread = None
                    if replayed:
                        log.warning(
                            "replayed %d journalled entr%s into the database; the journal is empty",
                            replayed,
                            "y" if replayed == 1 else "ies",
                        )
                    return
            self._wake.wait(HELD_FILES_POLL)

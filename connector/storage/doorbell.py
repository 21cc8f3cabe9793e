"""The doorbell: delivery workers at rest are woken when work becomes due, instead of polling the database.

Whoever makes deliveries due (an event stored, a replay, deliveries given back, a subscription active again)
rings in the transaction that does it, and every listening worker hears the ring once that transaction has
committed. On PostgreSQL the ring is a NOTIFY, which the server delivers at commit to every connection that
LISTENs; on SQLite, whose processes share one machine, it is a datagram to each listening worker's Unix
socket, sent when the connection goes back to the pool, after the commit. A ring can be missed (a worker
between two connections, a datagram dropped because the worker's buffer is full of rings already): workers
still look at the database now and then, and at once whenever they (re)start listening.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import PoolProxiedConnection

from connector.storage.outage import Backoff, Outage, liveness, reason

log = logging.getLogger(__name__)

#: The PostgreSQL channels rings go to: one per schema (services sharing a database do not wake each other),
#: named after the schema's md5, as a channel name is at most 63 bytes.
CHANNEL = "connector_due_"
#: The channel of the schema a PostgreSQL connection writes to, as SQL (statements that ring by themselves).
CHANNEL_SQL = f"'{CHANNEL}' || md5(coalesce(current_schema(), ''))"
_NOTIFY = f"SELECT pg_notify({CHANNEL_SQL}, '')"
#: Marks a pooled SQLite connection whose transaction rang, for when it is back in the pool.
_RANG = "connector_doorbell_rang"


class Doorbell:
    """Rings (``ring``) and listening (``listener``) for one database; this base class never rings, and its
    listeners never hear: a database only this process sees (SQLite in memory)."""

    def ring(self, db: Connection | PoolProxiedConnection) -> None:
        """Called in the write transaction that makes work due (on its connection, or on the pooled connection
        of a write through the driver): heard once it commits."""

    def listener(self, on_ring: Callable[[], None]) -> Listener:
        """A listener calling ``on_ring`` (from a thread of its own) after each ring heard, and after it starts
        or starts again to listen; not started."""
        return _Deaf(on_ring)


def for_engine(engine: Engine, outage: Outage) -> Doorbell:
    """The doorbell of the database behind ``engine``; ``outage`` is told when a listener loses it."""
    if engine.url.get_backend_name() == "postgresql":
        return Notifications(engine, outage)
    database = engine.url.database
    if database and database != ":memory:":
        return Datagrams(Path(f"{database}-doorbell"), engine)
    return Doorbell()


class Listener:
    """A thread listening for rings; ``hearing`` while it does (a worker that cannot hear polls instead)."""

    def __init__(self, on_ring: Callable[[], None]):
        self.on_ring = on_ring
        self.hearing = False
        self._stopping = threading.Event()
        self._stop_r = self._stop_w = -1  # a pipe written to stop the thread's wait
        self._thread: threading.Thread | None = None

    def start(self) -> Listener:
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="doorbell", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        os.write(self._stop_w, b"x")
        self._thread.join(timeout)
        if not self._thread.is_alive():  # else it still waits on them (a connection being made)
            for fd in (self._stop_r, self._stop_w):
                os.close(fd)

    def _run(self) -> None:
        backoff = Backoff(first=0.25, most=10.0)
        retried = said = False  # a connection lost is made again at once, quietly; a second failure is said once
        while not self._stopping.is_set():
            try:
                source = self._open()
            except Exception as exc:
                if retried:
                    if not said:
                        said = True
                        self._failed(exc)
                    if self._stopping.wait(backoff.delay()):
                        return
                retried = True
                continue
            backoff.reset()
            if said:
                log.info("the doorbell hears again")
            retried = said = False
            try:
                self.hearing = True
                self._rang()  # what became due while nobody listened
                while True:
                    readable, _, _ = select.select([source, self._stop_r], [], [])
                    if self._stop_r in readable:
                        return
                    if self._drain(source):
                        self._rang()
            except Exception as exc:
                log.debug("the doorbell stopped hearing (%s); listening again", reason(exc))
            finally:
                self.hearing = False
                self._close(source)

    def _rang(self) -> None:
        try:
            self.on_ring()
        except Exception:  # the worker has ended meanwhile (its loop closed): nothing to wake
            pass

    def _failed(self, exc: Exception) -> None:
        log.warning("the doorbell cannot listen (%s); deliveries are looked for now and then instead", reason(exc))

    # What to listen on, and how.

    def _open(self) -> Any:
        raise NotImplementedError

    def _drain(self, source: Any) -> bool:
        """Take every ring waiting; whether there was any. Raises when the source is lost."""
        raise NotImplementedError

    def _close(self, source: Any) -> None:
        raise NotImplementedError


class _Deaf(Listener):
    """Listens to nothing: its worker polls."""

    def start(self) -> Listener:
        return self

    def stop(self, timeout: float = 5.0) -> None:
        pass


class Notifications(Doorbell):
    """PostgreSQL: NOTIFY in the transaction, LISTEN on a connection of the listener's own."""

    def __init__(self, engine: Engine, outage: Outage):
        self.engine = engine
        self.outage = outage

    def ring(self, db: Connection | PoolProxiedConnection) -> None:
        # Through the driver: SQLAlchemy's own path cost twice the statement's CPU. A ring costs a round trip,
        # and transactions that notify commit one at a time (PostgreSQL holds a lock from queueing their
        # notifications to their commit): only transactions that make deliveries due ring.
        driver = (db.connection if isinstance(db, Connection) else db).driver_connection
        assert driver is not None  # a connection in a transaction has its driver's
        driver.execute(_NOTIFY)

    def listener(self, on_ring: Callable[[], None]) -> Listener:
        return _Listening(self, on_ring)


class _Listening(Listener):
    def __init__(self, bell: Notifications, on_ring: Callable[[], None]):
        super().__init__(on_ring)
        self.bell = bell

    def _open(self) -> Any:
        import psycopg

        # The same server, user and options as the store's connections (SQLAlchemy reads them from the URL).
        cargs, cparams = self.bell.engine.dialect.create_connect_args(self.bell.engine.url)
        cparams.pop("context", None)
        # A connection that only waits must still learn that the server is gone: keepalives do the asking.
        cparams.update(liveness(cparams))
        connection = psycopg.connect(*cargs, **cparams, autocommit=True)
        try:
            [schema] = connection.execute("SELECT coalesce(current_schema(), '')").fetchone() or [""]
            connection.execute(f"LISTEN {CHANNEL}{hashlib.md5(schema.encode(), usedforsecurity=False).hexdigest()}")
        except BaseException:
            connection.close()
            raise
        return connection

    def _drain(self, source: Any) -> bool:
        pgconn = source.pgconn
        pgconn.consume_input()  # raises once the server is gone
        heard = False
        while pgconn.notifies() is not None:
            heard = True
        return heard

    def _close(self, source: Any) -> None:
        try:
            source.close()
        except Exception:
            pass

    def _failed(self, exc: Exception) -> None:
        # The database away is said once, by the store's outage; anything else here.
        if not self.bell.outage.failed(exc):
            super()._failed(exc)


class Datagrams(Doorbell):
    """SQLite: each listener binds a Unix datagram socket and names it in ``folder``; a ring sends a byte to
    each, without waiting, and forgets those nobody listens on any more (their process died)."""

    def __init__(self, folder: Path, engine: Engine):
        self.folder = folder
        # On Linux the sockets have abstract names (no file, no length limit on the folder's path); the
        # folder then only names them.
        self._abstract = sys.platform.startswith("linux")
        self._prefix = "\0connector-doorbell-" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16] + "-"
        self._sender: socket.socket | None = None
        self._sender_pid = 0
        self._listed: list[tuple[str, str]] = []  # (entry name, address)
        self._listed_stamp: int | None = None
        event.listen(engine, "checkin", self._checked_in)

    def ring(self, db: Connection | PoolProxiedConnection) -> None:
        db.info[_RANG] = True

    def _checked_in(self, _dbapi_connection, record) -> None:
        # Back in the pool: its transaction has ended (committed, or rolled back: a ring for nothing).
        if record is not None and record.info.pop(_RANG, False):
            self.ring_now()

    def address(self, name: str) -> str:
        return self._prefix + name if self._abstract else str(self.folder / name)

    def ring_now(self) -> None:
        """Ring every listener, at once."""
        for name, address in self._listeners():
            try:
                self._socket().sendto(b"!", address)
            except BlockingIOError:  # its buffer is full of rings: it has been rung already
                pass
            except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
                self._forget(name)
            except OSError:
                pass

    def _listeners(self) -> list[tuple[str, str]]:
        try:
            stamp = os.stat(self.folder).st_mtime_ns
        except OSError:
            return []  # nobody has listened yet
        # Listed again when the folder changed, and for a second after: two changes within one tick of the
        # file system's clock leave one time stamp.
        if stamp != self._listed_stamp or time.time_ns() - stamp < 1_000_000_000:
            try:
                names = sorted(entry.name for entry in os.scandir(self.folder))
            except OSError:
                names = []
            self._listed = [(name, self.address(name)) for name in names]
            self._listed_stamp = stamp
        return self._listed

    def _socket(self) -> socket.socket:
        if self._sender is None or self._sender_pid != os.getpid():  # not one inherited from a parent
            sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
            self._sender, self._sender_pid = sender, os.getpid()
        return self._sender

    def _forget(self, name: str) -> None:
        try:
            (self.folder / name).unlink()
        except OSError:
            pass
        self._listed = [listed for listed in self._listed if listed[0] != name]

    def listener(self, on_ring: Callable[[], None]) -> Listener:
        return _Receiving(self, on_ring)


class _Receiving(Listener):
    def __init__(self, bell: Datagrams, on_ring: Callable[[], None]):
        super().__init__(on_ring)
        self.bell = bell
        self._name = ""

    def _open(self) -> Any:
        self.bell.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._name = f"{os.getpid()}-{secrets.token_hex(6)}"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            receiver.setblocking(False)
            receiver.bind(self.bell.address(self._name))
            if self.bell._abstract:
                # Named once it can be rung: a ringer that finds the name finds the socket.
                (self.bell.folder / self._name).touch(mode=0o600)
        except BaseException:
            receiver.close()
            raise
        return receiver

    def _drain(self, source: Any) -> bool:
        heard = False
        while True:
            try:
                source.recv(64)
            except (BlockingIOError, InterruptedError):
                return heard
            heard = True

    def _close(self, source: Any) -> None:
        source.close()
        try:
            (self.bell.folder / self._name).unlink()
        except OSError:
            pass

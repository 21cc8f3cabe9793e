"""The database as the store uses it: the engine and its settings per backend, one writer at a time on
SQLite, write transactions, and statements built once.

SQLAlchemy Core keeps the SQL portable: SQLite (a file in WAL mode) on one machine, PostgreSQL when
several share it.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, column, create_engine, event, func, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError

from connector.storage import schema
from connector.storage.doorbell import for_engine as doorbell_for
from connector.storage.outage import Outage, liveness, unavailable


def engine_url(url: str) -> str:
    """SQLAlchemy's URL for a DATABASE_URL: hosts write PostgreSQL's as ``postgres://`` or
    ``postgresql://``, which SQLAlchemy would open with psycopg2, a driver not installed here."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def data_folder(data_dir: str) -> Path:
    """The data folder, made readable by this user only when it is created here: it holds the database
    and the secret key."""
    path = Path(data_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def default_url(data_dir: str) -> str:
    return f"sqlite:///{(data_folder(data_dir) / 'connector.db').resolve()}"


def _private_database(database: str) -> None:
    """Make the SQLite file before SQLite does, readable by this user only: SQLite gives its -wal and -shm
    files the database's mode. Files made by earlier versions (0644) are narrowed too."""
    fd = os.open(database, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for path in (database, f"{database}-wal", f"{database}-shm"):
        try:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
        except FileNotFoundError:
            pass


class Database:
    """One engine and its write gate. ``replayable``: every write through it can be made again, as a delivery
    worker's are (an attempt recorded twice, a delivery sent twice with the same webhook-id). On SQLite its
    commits then skip the disk flush: a power cut may undo the last of them, never an event, since each
    callback's commit flushes everything written before it."""

    def __init__(self, url: str, replayable: bool = False):
        self.url = url = engine_url(url)
        self.sqlite = url.startswith("sqlite")
        kwargs = (
            {"connect_args": {"timeout": 30, "check_same_thread": False}}
            if self.sqlite
            else {"pool_size": 10, "max_overflow": 20, "connect_args": liveness(make_url(url).query)}
        )
        self.engine: Engine = create_engine(url, **kwargs)
        if not self.sqlite:
            _ping_when_idle(self.engine)
        # Whether the database answers, as this process last found it (see outage.py).
        self.outage = Outage(counted=_database_lost).attach(self.engine)
        # Rung where deliveries become due, heard by the delivery workers (see doorbell.py).
        self.doorbell = doorbell_for(self.engine, self.outage)
        self._gate = None
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas_flushing_lazily if replayable else _sqlite_pragmas)
            database = self.engine.url.database
            if database and database != ":memory:":
                data_folder(str(Path(database).parent))  # as for the default file
                _private_database(database)
                self._gate = WriterGate(f"{database}-writer.lock")
            with self._gate or nullcontext():  # processes starting together migrate one after the other
                schema.migrate(self.engine)
        else:
            if replayable:
                event.listen(self.engine, "connect", _postgresql_commits_unflushed)
            try:
                schema.check(self.engine)
            except Exception as error:
                # A process (re)started while the database is away starts anyway: it journals callbacks and
                # answers actions meanwhile; /readyz checks the schema once the database answers.
                if not unavailable(error):
                    raise
        self._built: dict[str, dict | tuple] = {}

    @contextmanager
    def writing(self):
        """A write transaction. On SQLite, writers queue at the gate first: SQLite itself makes a writer
        that finds the database locked sleep and try again (up to 100 ms a time), which under load cost
        more than the writes; the gate hands the turn over the moment the last writer is done."""
        with self._gate or nullcontext(), self.engine.begin() as db:
            yield db
        self.outage.answered(wrote=True)

    @contextmanager
    def driving(self):
        """A write straight through the driver, for the busiest writes (see intake.py): yields the pooled
        connection (its ``driver_connection`` is the driver's own). On SQLite it is one transaction, behind the
        gate, committed at the end; on PostgreSQL each statement is its own transaction. SQLAlchemy's
        bookkeeping is done here in its stead: a connection found dropped leaves the pool, an outage is noted."""
        with self._gate or nullcontext():
            pooled = None
            try:
                pooled = self.engine.raw_connection()
                driver: Any = pooled.driver_connection
                if self.sqlite:
                    yield pooled
                    driver.commit()
                else:
                    driver.autocommit = True
                    try:
                        yield pooled
                    finally:
                        if not driver.closed:
                            driver.autocommit = False
            except Exception as error:
                if pooled is not None and unavailable(error):
                    pooled.invalidate()
                self.outage.failed(error, wrote=True)
                raise
            finally:
                if pooled is not None:
                    pooled.close()  # back to the pool, which rolls back whatever was not committed
        self.outage.answered(wrote=True)

    def probe_write(self) -> None:
        """Commit one small write, to learn whether writes go through again (asked only while they fail: a
        full disk lets reads through)."""
        with self.writing() as db:
            db.execute(update(schema.compatibility).values(readable_by=schema.compatibility.c.readable_by))

    def insert(self, table):
        """INSERT with ON CONFLICT, which each engine spells in its own dialect."""
        return (sqlite_insert if self.sqlite else postgresql_insert)(table)

    def skip_locked(self, query):
        """On PostgreSQL, rows another worker's transaction holds are passed over rather than waited for:
        each worker takes its own share of the queue at once. SQLite has one writer at a time anyway."""
        return query if self.sqlite else query.with_for_update(skip_locked=True, of=query.selected_columns[0].table)

    def statements(self, name: str, build):
        """Statements built once per database: SQLAlchemy then reuses their compiled form without working out
        again that they are the same (a third of the cost of a small transaction)."""
        built = self._built.get(name)
        if built is None:
            built = self._built[name] = build()
        return built

    def close(self) -> None:
        self.engine.dispose()


def unnested(*fields):
    """PostgreSQL: rows made of one array parameter per column, each field ``(column, parameter, type)``, as a
    table to select from: a turn's many rows go in a handful of arrays, one statement, not one per row."""
    return (
        func.unnest(*(bindparam(parameter, type_=ARRAY(kind)) for _, parameter, kind in fields))
        .table_valued(*(column(name, kind) for name, _, kind in fields))
        .render_derived()
    )


#: Seconds a pooled PostgreSQL connection may rest before it is checked again when lent.
IDLE_BEFORE_PING = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection with a round trip before lending it, only if it has rested: a check at each
    loan (SQLAlchemy's pool_pre_ping) cost a round trip per transaction, a third of a callback's. A connection
    the server dropped within the last second is found out by its statement instead: that request fails as
    the database being away (a callback goes to the journal) and the pool starts afresh."""

    def rested(_connection, record) -> None:
        record.info["rested_since"] = time.monotonic()

    def lent(connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("rested_since", 0.0) < IDLE_BEFORE_PING:
            return
        try:
            engine.dialect.do_ping(connection)
        except Exception as error:
            raise DisconnectionError() from error  # the pool drops it and lends a new one

    event.listen(engine, "connect", rested)
    event.listen(engine, "checkin", rested)
    event.listen(engine, "checkout", lent)


def _database_lost() -> None:
    from connector.observe import metrics

    metrics.database_lost()


class WriterGate:
    """One writer at a time across threads and processes: a lock for the threads of this process, then
    an exclusive flock on a file beside the database for the processes."""

    def __init__(self, path: str):
        self._threads = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self):
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc_info):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


def _postgresql_commits_unflushed(connection, _record):
    # PostgreSQL's own form of the same bargain as on SQLite: a server crash may undo the last few of a
    # worker's commits (a delivery sent again, same webhook-id), never corrupt anything.
    cursor = connection.cursor()
    cursor.execute("SET synchronous_commit TO OFF")
    cursor.close()
    connection.commit()


def _sqlite_pragmas_flushing_lazily(connection, record):
    _sqlite_pragmas(connection, record)
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: no flush at commit, safe from crashes
    cursor.close()


def _sqlite_pragmas(connection, _record):
    cursor = connection.cursor()
    # WAL lets web and worker processes read while one writes; FULL syncs every commit, so an event
    # acknowledged to AllMySMS survives a power cut too; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # 64 MB of page cache (2 MB by default): the outbox tables and their indexes stay in memory.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()

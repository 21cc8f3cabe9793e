"""The campaigns each account's sends made, read back when a platform polls for receipts; and when AllMySMS was
last read for each account, so that it is asked at most once an interval however often platforms poll."""

from __future__ import annotations

import atexit
import json
import logging
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, event, or_, select, update

from connector.storage.database import Database
from connector.storage.outage import unavailable
from connector.storage.tables import campaigns, upstream_reads

RECEIPTS, REPLIES = "receipts", "replies"

log = logging.getLogger(__name__)

#: The writer gathers what sends record for up to this long (seconds), or this many rows, before it commits.
GATHER_SECONDS, GATHER_ROWS = 0.05, 500

#: Marks a pooled SQLite connection whose commits were left unflushed: it is set back to flushing (FULL) as it
#: goes back to the pool, so that no other write (a callback's) ever commits unflushed on it.
_UNFLUSHED = "connector.campaigns.unflushed"


@dataclass(frozen=True)
class Campaign:
    """A campaign to read receipts of: ``messages`` maps each E.164 number to its SMS id."""

    campaign_id: str
    sent_at: float
    messages: dict[str, str]


class CampaignStore:
    """Campaigns recorded as sends end, the ones due for a read, and the per-account read times."""

    def __init__(self, database: Database):
        self.database = database
        # Written by a thread of their own, whatever was recorded meanwhile in one commit, after the send is
        # answered: a send waiting for its campaigns' commit spent a quarter of its CPU on it, most of that
        # in threads handing the turn to write over to each other.
        self._pending: list[dict[str, Any]] = []
        self._writing = 0  # rows taken by the writer and not yet committed (or given up)
        self._hurried = 0  # callers of flush() waiting: the writer does not gather more
        self._changed = threading.Condition()
        self._writer: threading.Thread | None = None
        if database.sqlite:
            event.listen(database.engine, "checkin", _flushing_again)

    def record(self, account_id: int, sent: Iterable[tuple[str, dict[str, str]]], now: float) -> None:
        """Keep the campaigns of a send, each with its numbers' SMS ids; a campaign already kept keeps its row."""
        rows = [
            {
                "account_id": account_id,
                "campaign_id": campaign_id,
                "sent_at": now,
                "settled": 0,
                "messages": json.dumps(messages, separators=(",", ":")),
            }
            for campaign_id, messages in sent
            if campaign_id
        ]
        if not rows:
            return
        with self._changed:
            first = not self._pending
            self._pending += rows
            if self._writer is None:
                # Started here rather than with the store: gunicorn forks web processes after the app is made.
                self._writer = threading.Thread(target=self._keep_writing, name="campaigns", daemon=True)
                self._writer.start()
                _open.add(self)
            # The writer is woken for the first rows and for a full group only: gathering, it would otherwise
            # wake at each send just to find it should wait on.
            if first or len(self._pending) >= GATHER_ROWS > len(self._pending) - len(rows):
                self._changed.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every campaign recorded so far is written (or given up with the database away); whether
        that happened within ``timeout``."""
        with self._changed:
            self._hurried += 1
            self._changed.notify_all()
            try:
                return self._changed.wait_for(lambda: not self._pending and not self._writing, timeout)
            finally:
                self._hurried -= 1

    def _keep_writing(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending))
                # Nobody waits for these rows but a reader: a moment more makes one commit of many sends.
                self._changed.wait_for(lambda: len(self._pending) >= GATHER_ROWS or self._hurried, GATHER_SECONDS)
                rows, self._pending = self._pending, []
                self._writing = len(rows)
            try:
                self._write(rows)
            except Exception as error:
                if unavailable(error):
                    # Not logged: the store says once that the database is away. These campaigns' receipts
                    # then come by push only, as with any send made while it is away.
                    self.database.outage.failed(error)
                else:
                    log.exception("%d campaigns could not be kept for polling", len(rows))
            finally:
                with self._changed:
                    self._writing = 0
                    self._changed.notify_all()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        add = self.database.statements(
            "campaigns",
            lambda: self.database.insert(campaigns).on_conflict_do_nothing(
                index_elements=["account_id", "campaign_id"]
            ),
        )
        with self.database.writing() as db:
            self._unflushed(db)
            db.execute(add, rows)

    def _unflushed(self, db) -> None:
        """Commit this transaction without waiting for the disk (the flush cost a send as much CPU as all the
        rest of its bookkeeping). The rows are in the database's log, and so survive this process crashing;
        only a power cut or an OS crash within moments could undo them, until the
        next flushed commit (any callback's) or checkpoint takes them to disk with it. What that costs is
        what a database outage already costs: these campaigns' receipts come by push only."""
        if self.database.sqlite:
            # SQLite refuses to change it inside a transaction, and pysqlite begins one only at the first
            # write: should one be open already (a driver beginning at once), the commit is flushed as any.
            if db.connection.dbapi_connection.in_transaction:
                return
            db.connection.info[_UNFLUSHED] = True
            db.exec_driver_sql("PRAGMA synchronous=NORMAL")
        else:
            db.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")  # this transaction only

    def due(self, account_id: int, since: float, limit: int) -> list[Campaign]:
        """The account's campaigns sent since ``since`` and not yet settled, newest first, at most ``limit``."""
        self.flush()  # what this process's sends recorded is read back (others' may be moments behind)
        query = (
            select(campaigns.c.campaign_id, campaigns.c.sent_at, campaigns.c.messages)
            .where(campaigns.c.account_id == account_id, campaigns.c.sent_at >= since, campaigns.c.settled == 0)
            .order_by(campaigns.c.sent_at.desc(), campaigns.c.campaign_id.desc())
            .limit(limit)
        )
        with self.database.engine.connect() as db:
            rows = db.execute(query).all()
        return [Campaign(row.campaign_id, row.sent_at, json.loads(row.messages)) for row in rows]

    def messages(self, account_id: int, campaign_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """The numbers' SMS ids of those of ``campaign_ids`` the account's sends made, by campaign."""
        wanted = sorted(set(campaign_ids))
        if not wanted:
            return {}
        self.flush()
        query = select(campaigns.c.campaign_id, campaigns.c.messages).where(
            campaigns.c.account_id == account_id, campaigns.c.campaign_id.in_(wanted)
        )
        with self.database.engine.connect() as db:
            return {row.campaign_id: json.loads(row.messages) for row in db.execute(query)}

    def forget(self, account_id: int, before: float) -> int:
        """Drop the account's campaigns sent before ``before``: too old to be read again. How many went."""
        self.flush()
        with self.database.writing() as db:
            return db.execute(
                delete(campaigns).where(campaigns.c.account_id == account_id, campaigns.c.sent_at < before)
            ).rowcount

    def read(self, account_id: int, campaign_id: str, now: float, settled: bool) -> None:
        """Note that a campaign's receipts were read; ``settled``: all of them final, never to be read again."""
        self.flush()
        with self.database.writing() as db:
            db.execute(
                update(campaigns)
                .where(campaigns.c.account_id == account_id, campaigns.c.campaign_id == campaign_id)
                .values(read_at=now, settled=int(settled))
            )

    def claim_read(self, account_id: int, source: str, now: float, interval: float) -> bool:
        """Whether this caller may read ``source`` from AllMySMS for the account now: True for one caller an
        interval, whichever process it runs in (the conditional update decides, not a look-up first)."""
        with self.database.writing() as db:
            db.execute(
                self.database.insert(upstream_reads)
                .on_conflict_do_nothing(index_elements=["account_id", "source"])
                .values(account_id=account_id, source=source, read_at=now - interval - 1)
            )
            taken = db.execute(
                update(upstream_reads)
                .where(
                    and_(upstream_reads.c.account_id == account_id, upstream_reads.c.source == source),
                    # A clock set back must not stop reads for as long as it was set back.
                    or_(upstream_reads.c.read_at <= now - interval, upstream_reads.c.read_at > now + interval),
                )
                .values(read_at=now)
            ).rowcount
        return bool(taken)


#: Stores whose writer has started: what they still hold is written as the process exits (a web process stopped
#: by gunicorn, or by Ctrl-C). Only a process killed outright (SIGKILL, a crash) within moments of a send loses
#: its campaigns, whose receipts then come by push only.
_open: weakref.WeakSet[CampaignStore] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for store in list(_open):
        store.flush(timeout=5.0)


def _flushing_again(dbapi_connection, record) -> None:
    # The pool's checkin: the transaction has ended (committed or rolled back), so the level may change.
    if not record.info.pop(_UNFLUSHED, False) or dbapi_connection is None:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()
    except Exception as error:
        record.invalidate(error)  # never reused unflushed: the pool opens a fresh one, FULL from the start

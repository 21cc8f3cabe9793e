"""Persistence behind one interface: accounts, events, subscriptions, deliveries (the outbox), attempts.

SQLAlchemy Core keeps the SQL portable: SQLite (a file in WAL mode) on one machine, PostgreSQL when
several share it. Times are Unix seconds (floats). Every write that must happen together happens in
one transaction: an event and its place in the fan-out queue are stored at once, or not at all; a
worker turns queued events into deliveries (one per active subscription) in its own transactions, so
answering a callback writes two rows, not one per subscriber.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from pathlib import Path

from sqlalchemy import (BigInteger, Boolean, Column, Float, case, null, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, bindparam, create_engine, delete, event, func, insert, or_, select, update)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from connector.storage import schema
from connector.events import signing
from connector.storage.batching import GroupWriter
from connector.storage.outage import Outage, unavailable

metadata = MetaData()

# Row numbers that may pass two thousand million over the years on PostgreSQL; on SQLite the primary key
# must be spelled INTEGER to be the table's rowid.
Seq = BigInteger().with_variant(Integer, "sqlite")

accounts = Table(
    "accounts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(255), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

events = Table(
    "events", metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("timestamp", String(32), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("data", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Index("events_by_account_type", "account_id", "type", "seq"),
    Index("events_by_received_at", "received_at"),
)

subscriptions = Table(
    "subscriptions", metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("trigger", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("target_url", Text, nullable=False),
    # Empty: the signing secret is derived from the service's secret key (signing.derived_secret). Only
    # subscriptions made before secrets were derived keep theirs here, until they are deleted.
    Column("secret", String(80), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("status_reason", Text),
    Column("failing_since", Float),
    Column("last_attempt_at", Float),
    Column("last_status_code", Integer),
    Index("subscriptions_by_account_type", "account_id", "event_type", "status"),
)

deliveries = Table(
    "deliveries", metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("event_seq", Seq, ForeignKey("events.seq", ondelete="CASCADE"), nullable=False),
    Column("subscription_id", String(40), ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),
    Column("lease_until", Float),
    Column("lease", String(40)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    UniqueConstraint("event_seq", "subscription_id", name="one_delivery_per_event_and_subscription"),
    Index("deliveries_due", "status", "next_attempt_at"),
    Index("deliveries_by_subscription", "subscription_id", "seq"),
)

# Events stored but not yet turned into deliveries: written with the event, emptied by a worker.
fanout = Table(
    "fanout", metadata,
    Column("event_seq", Seq, ForeignKey("events.seq", ondelete="CASCADE"), primary_key=True),
    Column("account_id", Integer, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("received_at", Float, nullable=False),
)

attempts = Table(
    "attempts", metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("delivery_seq", Seq, ForeignKey("deliveries.seq", ondelete="CASCADE"), nullable=False),
    Column("attempted_at", Float, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text),
    Index("attempts_by_delivery", "delivery_seq", "seq"),
)

rejected_callbacks = Table(
    "rejected_callbacks", metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id")),
    Column("received_at", Float, nullable=False),
    Column("method", String(8), nullable=False),
    Column("content_type", String(200)),
    Column("reason", Text, nullable=False),
    Column("body_excerpt", Text),
)

# Results of actions sent with an Idempotency-Key, so that a retry gets the first answer instead of a
# second send. state: running (the first call is still out), done (its answer is kept), unknown (it
# ended without an answer: it may have sent).
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("login", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("action", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("status_code", Integer),
    Column("response", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("owner", String(120)),  # the process running the first call (connector/observe/processes.py)
    Index("idempotency_keys_by_age", "created_at"),
)

credit_watch = Table(
    "credit_watch", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
    Column("threshold", Integer, primary_key=True),
    Column("below", Integer, nullable=False),
    Column("crossings", Integer, nullable=False),
)

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
#: Events turned into deliveries per transaction, at most.
FAN_OUT_BATCH = 1000
ACTIVE, DISABLED = "active", "disabled"


class SubscriptionLimit(Exception):
    """The account already has as many subscriptions on this trigger as it may."""

    def __init__(self, limit: int):
        super().__init__(f"at most {limit} subscriptions per trigger")
        self.limit = limit


@dataclass(frozen=True)
class Due:
    """A delivery claimed by a worker, with what it needs to send it."""

    seq: int
    id: str
    lease: str
    attempts: int
    event_id: str
    event_type: str
    event_timestamp: str
    event_data: str
    subscription_id: str
    target_url: str
    secret: str
    due_at: float | None = None  # when this attempt was due: the delivery lag is measured from it
    account_id: int | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def delivery_id(event_id: str, subscription_id: str) -> str:
    """The id of the one delivery of an event to a subscription (its webhook-id), derived rather than drawn:
    a worker's commit that a database crash undoes (workers commit without waiting for the disk) makes the
    same deliveries again when it is redone, and a receiver that already has them must see the same ids."""
    digest = hashlib.sha256(f"{event_id}\0{subscription_id}".encode()).hexdigest()
    return f"msg_{digest[:24]}"


def engine_url(url: str) -> str:
    """SQLAlchemy's URL for a DATABASE_URL: hosts write PostgreSQL's as ``postgres://`` or
    ``postgresql://``, which SQLAlchemy would open with psycopg2, a driver not installed here."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
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


class Store:
    """``replayable``: every write through this store can be made again, as a delivery worker's are
    (an attempt recorded twice, a delivery sent twice with the same webhook-id). On SQLite its commits
    then skip the disk flush: a power cut may undo the last of them, never an event, since each
    callback's commit flushes everything written before it."""

    def __init__(self, url: str, replayable: bool = False, secret_key: str | None = None):
        self.url = url = engine_url(url)
        self.secret_key = secret_key  # signing secrets are derived from it
        self.sqlite = url.startswith("sqlite")
        kwargs = {"connect_args": {"timeout": 30, "check_same_thread": False}} if self.sqlite else {
            "pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
        self.engine: Engine = create_engine(url, **kwargs)
        # Whether the database answers, as this process last found it (see outage.py).
        self.outage = Outage(counted=_database_lost).attach(self.engine)
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
        self._event_writer = GroupWriter(self._write_events)

    @contextmanager
    def _writing(self):
        """A write transaction. On SQLite, writers queue at the gate first: SQLite itself makes a writer
        that finds the database locked sleep and try again (up to 100 ms a time), which under load cost
        more than the writes; the gate hands the turn over the moment the last writer is done."""
        with self._gate or nullcontext(), self.engine.begin() as db:
            yield db
        self.outage.answered(wrote=True)

    def probe_write(self) -> None:
        """Commit one small write, to learn whether writes go through again (asked only while they fail: a
        full disk lets reads through)."""
        with self._writing() as db:
            db.execute(update(schema.compatibility).values(readable_by=schema.compatibility.c.readable_by))

    @property
    def _insert(self):
        """INSERT with ON CONFLICT, which each engine spells in its own dialect."""
        return sqlite_insert if self.sqlite else postgresql_insert

    def close(self) -> None:
        self.engine.dispose()

    # Accounts.

    def account(self, login: str, token_hash: str) -> int:
        """The account's id, created on first sight; its token hash follows the current secret key."""
        with self.engine.connect() as db:
            row = db.execute(select(accounts.c.id, accounts.c.token_hash).where(accounts.c.login == login)).first()
        if row is not None and row.token_hash == token_hash:
            return row.id
        with self._writing() as db:
            # Two processes seeing a login for the first time at once: the unique login decides.
            db.execute(self._insert(accounts).on_conflict_do_nothing(index_elements=["login"])
                       .values(login=login, token_hash=token_hash, created_at=time.time()))
            row = db.execute(select(accounts.c.id, accounts.c.token_hash).where(accounts.c.login == login)).one()
            if row.token_hash != token_hash:
                db.execute(update(accounts).where(accounts.c.id == row.id).values(token_hash=token_hash))
            return row.id

    def account_by_token_hash(self, token_hash: str) -> tuple[int, str] | None:
        with self.engine.connect() as db:
            row = db.execute(select(accounts.c.id, accounts.c.login)
                             .where(accounts.c.token_hash == token_hash)).first()
        return (row.id, row.login) if row else None

    # Events.

    def add_events(self, account_id: int, items: list[dict], now: float) -> list[bool]:
        """Store events, each with its place in the fan-out queue, in one transaction.

        ``items`` are ``{"id", "type", "timestamp", "data", "raw"}``; the answer says, per item,
        whether it was new (a duplicate callback is stored once: the unique event id decides).
        Callbacks arriving together are committed together (see batching.py).
        """
        return self._event_writer.submit((account_id, items, now))

    def _write_events(self, jobs: list[tuple[int, list[dict], float]]) -> list[list[bool]]:
        add_event, queue = self._statements("events", lambda: (
            # The unique event id decides, not a look-up first: two web processes receiving the same
            # callback at the same moment still store one event.
            self._insert(events).on_conflict_do_nothing(index_elements=["id"]).returning(events.c.seq),
            insert(fanout)))
        answers, queued = [], []
        with self._writing() as db:
            for account_id, items, now in jobs:
                fresh = []
                for item in items:
                    seq = db.execute(add_event, {
                        "id": item["id"], "account_id": account_id, "type": item["type"],
                        "timestamp": item["timestamp"], "received_at": now,
                        "data": json.dumps(item["data"], ensure_ascii=False),
                        "raw": json.dumps(item.get("raw", {}), ensure_ascii=False)}).scalar()
                    fresh.append(seq is not None)
                    if seq is not None:
                        queued.append({"event_seq": seq, "account_id": account_id, "event_type": item["type"],
                                       "received_at": now})
                answers.append(fresh)
            if queued:
                db.execute(queue, queued)
        return answers

    def fan_out(self, now: float, limit: int = FAN_OUT_BATCH) -> int:
        """Turn queued events into deliveries, one per active subscription of the event's account and
        type at this moment; the number of events done."""
        with self._writing() as db:
            return self._fan_out_in(db, now, limit)

    def _fan_out_in(self, db, now: float, limit: int = FAN_OUT_BATCH) -> int:
        statements = self._statements("fan_out", lambda: {
            "queued": self._skip_locked(select(fanout).order_by(fanout.c.event_seq).limit(bindparam("b_limit"))),
            "active": select(subscriptions.c.id, subscriptions.c.account_id, subscriptions.c.event_type).where(
                subscriptions.c.account_id.in_(bindparam("b_accounts", expanding=True)),
                subscriptions.c.status == ACTIVE),
            # A replay may have made some already: one delivery per event and subscription, always.
            "deliver": self._insert(deliveries).on_conflict_do_nothing(
                index_elements=["event_seq", "subscription_id"]),
            "done": delete(fanout).where(fanout.c.event_seq.in_(bindparam("b_seqs", expanding=True))),
            "ids": select(events.c.seq, events.c.id).where(events.c.seq.in_(bindparam("b_seqs", expanding=True))),
        })
        queued = db.execute(statements["queued"], {"b_limit": limit}).all()
        if not queued:
            return 0
        active: dict[tuple[int, str], list[str]] = {}
        for sub in db.execute(statements["active"], {"b_accounts": sorted({q.account_id for q in queued})}):
            active.setdefault((sub.account_id, sub.event_type), []).append(sub.id)
        wanted = [q for q in queued if (q.account_id, q.event_type) in active]
        event_ids = (dict(db.execute(statements["ids"], {"b_seqs": [q.event_seq for q in wanted]}).all())
                     if wanted else {})
        rows = [{"id": delivery_id(event_ids[q.event_seq], sub), "event_seq": q.event_seq, "subscription_id": sub,
                 "status": PENDING, "attempts": 0, "next_attempt_at": q.received_at, "created_at": now,
                 "updated_at": now}
                for q in wanted for sub in active[(q.account_id, q.event_type)]]
        if rows:
            db.execute(statements["deliver"], rows)
        db.execute(statements["done"], {"b_seqs": [q.event_seq for q in queued]})
        return len(queued)

    def recent_events(self, account_id: int, event_type: str, limit: int) -> list[dict]:
        with self.engine.connect() as db:
            rows = db.execute(select(events.c.id, events.c.type, events.c.timestamp, events.c.data)
                              .where(events.c.account_id == account_id, events.c.type == event_type)
                              .order_by(events.c.seq.desc()).limit(limit)).all()
        return [{"id": r.id, "type": r.type, "timestamp": r.timestamp, "data": json.loads(r.data)} for r in rows]

    def event(self, account_id: int, event_id: str) -> dict | None:
        with self.engine.connect() as db:
            row = db.execute(select(events).where(events.c.id == event_id, events.c.account_id == account_id)).first()
        if row is None:
            return None
        return {"id": row.id, "type": row.type, "timestamp": row.timestamp, "data": json.loads(row.data),
                "raw": json.loads(row.raw), "seq": row.seq}

    def reject_callback(self, account_id: int | None, method: str, content_type: str, reason: str,
                        body: bytes, now: float) -> None:
        with self._writing() as db:
            db.execute(insert(rejected_callbacks).values(
                account_id=account_id, received_at=now, method=method, content_type=_text(content_type[:200]),
                reason=_text(reason), body_excerpt=_text(body[:2048].decode("utf-8", "replace"))))

    def rejected(self, account_id: int, limit: int = 50) -> list[dict]:
        with self.engine.connect() as db:
            rows = db.execute(select(rejected_callbacks).where(rejected_callbacks.c.account_id == account_id)
                              .order_by(rejected_callbacks.c.seq.desc()).limit(limit)).all()
        return [{"received_at": r.received_at, "method": r.method, "content_type": r.content_type,
                 "reason": r.reason} for r in rows]

    # Idempotency keys.

    def claim_key(self, login: str, key: str, action: str, request_hash: str, now: float,
                  owner: str | None = None) -> dict | None:
        """Take ``key`` for a new request: None when it is ours now, else the row of the request that has
        it (whatever its state). The primary key decides, so two processes cannot both take it."""
        # RETURNING, not the row count: psycopg reports no count for an INSERT that did nothing.
        statement = self._insert(idempotency_keys).on_conflict_do_nothing(
            index_elements=["login", "key"]).returning(idempotency_keys.c.key)
        with self._writing() as db:
            taken = db.execute(statement.values(login=login, key=key, action=action, request_hash=request_hash,
                                                state="running", created_at=now, updated_at=now,
                                                owner=owner)).first()
            if taken is not None:
                return None
        return self.key_state(login, key)

    def key_state(self, login: str, key: str) -> dict | None:
        with self.engine.connect() as db:
            row = db.execute(select(idempotency_keys).where(idempotency_keys.c.login == login,
                                                            idempotency_keys.c.key == key)).first()
        return dict(row._mapping) if row else None

    def settle_key(self, login: str, key: str, state: str, status_code: int | None, response: str | None,
                   now: float) -> None:
        with self._writing() as db:
            db.execute(update(idempotency_keys).where(idempotency_keys.c.login == login, idempotency_keys.c.key == key)
                       .values(state=state, status_code=status_code, response=response, updated_at=now))

    def undo_claim(self, login: str, key: str, owner: str, created_at: float) -> None:
        """Forget the claim of a key made by ``owner`` at ``created_at`` if it is there and still running:
        the answer to its INSERT was lost, nothing ran under it. Any later claim of the key is left alone."""
        with self._writing() as db:
            db.execute(delete(idempotency_keys).where(
                idempotency_keys.c.login == login, idempotency_keys.c.key == key, idempotency_keys.c.owner == owner,
                idempotency_keys.c.created_at == created_at, idempotency_keys.c.state == "running"))

    def release_key(self, login: str, key: str) -> None:
        """Forget a key whose request did nothing upstream: a retry with it runs afresh."""
        with self._writing() as db:
            db.execute(delete(idempotency_keys).where(idempotency_keys.c.login == login,
                                                      idempotency_keys.c.key == key))

    def prune_keys(self, older_than: float) -> int:
        with self._writing() as db:
            return db.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < older_than)).rowcount

    def prune(self, older_than: float) -> int:
        """Forget events (and their deliveries and attempts) received before ``older_than``."""
        with self._writing() as db:
            old = select(events.c.seq).where(events.c.received_at < older_than).scalar_subquery()
            doomed = select(deliveries.c.seq).where(deliveries.c.event_seq.in_(old)).scalar_subquery()
            db.execute(delete(attempts).where(attempts.c.delivery_seq.in_(doomed)))
            db.execute(delete(deliveries).where(deliveries.c.event_seq.in_(old)))
            db.execute(delete(fanout).where(fanout.c.event_seq.in_(old)))
            count = db.execute(delete(events).where(events.c.received_at < older_than)).rowcount
            db.execute(delete(rejected_callbacks).where(rejected_callbacks.c.received_at < older_than))
        return count

    def watch_credits(self, account_id: int, threshold: int, credits: int) -> int | None:
        """Note the account's credits against ``threshold``: the crossing number when they have just
        fallen below it, None otherwise. Rising back above re-arms the watch."""
        below = credits < threshold
        for _ in range(3):  # two first polls at once: one inserts, the other retries as an update
            try:
                with self._writing() as db:
                    row = db.execute(select(credit_watch).where(credit_watch.c.account_id == account_id,
                                                                credit_watch.c.threshold == threshold)).first()
                    if row is None:
                        db.execute(insert(credit_watch).values(account_id=account_id, threshold=threshold,
                                                               below=int(below), crossings=int(below)))
                        return 1 if below else None
                    if below and not row.below:
                        # Only the poller whose update still finds the watch armed counts the crossing.
                        done = db.execute(update(credit_watch).where(
                            credit_watch.c.account_id == account_id, credit_watch.c.threshold == threshold,
                            credit_watch.c.below == 0).values(below=1, crossings=row.crossings + 1)).rowcount
                        return row.crossings + 1 if done else None
                    if not below and row.below:
                        db.execute(update(credit_watch).where(credit_watch.c.account_id == account_id,
                                                              credit_watch.c.threshold == threshold).values(below=0))
                    return None
            except IntegrityError:
                continue
        return None

    # Subscriptions.

    def subscribe(self, account_id: int, trigger: str, event_type: str, target_url: str, now: float,
                  limit: int | None = None) -> tuple[dict, bool]:
        """(the subscription, whether it is new). The same target on the same trigger again is the
        subscription already there, made active again: platforms subscribe again when a flow is turned
        back on, and a second one would send every event twice. SubscriptionLimit when the account has
        ``limit`` subscriptions on this trigger already."""
        with self._writing() as db:
            if not self.sqlite:
                # Subscriptions of one account are made one at a time, so two at once cannot both pass the
                # limit or both add the same target. (On SQLite writers already take turns.)
                db.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update())
            mine = db.execute(select(subscriptions).where(subscriptions.c.account_id == account_id,
                                                          subscriptions.c.trigger == trigger)).all()
            same = next((dict(r._mapping) for r in mine if r.target_url == target_url), None)
            if same is not None:
                if same["status"] != ACTIVE:
                    db.execute(update(subscriptions).where(subscriptions.c.id == same["id"])
                               .values(status=ACTIVE, status_reason=None, failing_since=None))
                    same.update(status=ACTIVE, status_reason=None, failing_since=None)
                return self._signing(same), False
            if limit is not None and len(mine) >= limit:
                raise SubscriptionLimit(limit)
            row = {"id": new_id("sub"), "account_id": account_id, "trigger": trigger, "event_type": event_type,
                   "target_url": target_url, "secret": "", "created_at": now, "status": ACTIVE}
            db.execute(insert(subscriptions).values(**row))
        return self._signing(row), True

    def _signing(self, row: dict) -> dict:
        """The row with its signing secret: the one kept from before secrets were derived, else derived."""
        return {**row, "secret": row["secret"] or signing.derived_secret(self.secret_key, row["id"])}

    def signing_secret(self, subscription_id: str, kept: str = "") -> str:
        return kept or signing.derived_secret(self.secret_key, subscription_id)

    def subscriptions(self, account_id: int, trigger: str | None = None) -> list[dict]:
        query = select(subscriptions).where(subscriptions.c.account_id == account_id)
        if trigger:
            query = query.where(subscriptions.c.trigger == trigger)
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query.order_by(subscriptions.c.created_at)).all()]

    def subscription(self, account_id: int, subscription_id: str) -> dict | None:
        with self.engine.connect() as db:
            row = db.execute(select(subscriptions).where(subscriptions.c.id == subscription_id,
                                                         subscriptions.c.account_id == account_id)).first()
        return dict(row._mapping) if row else None

    def unsubscribe(self, account_id: int | None, subscription_id: str) -> bool:
        with self._writing() as db:
            owned = select(subscriptions.c.id).where(subscriptions.c.id == subscription_id)
            if account_id is not None:
                owned = owned.where(subscriptions.c.account_id == account_id)
            if db.execute(owned).first() is None:
                return False
            self._forget_subscription(db, subscription_id)
            return True

    def set_subscription_status(self, subscription_id: str, status: str, reason: str | None) -> None:
        with self._writing() as db:
            db.execute(update(subscriptions).where(subscriptions.c.id == subscription_id)
                       .values(status=status, status_reason=reason,
                               failing_since=None if status == ACTIVE else subscriptions.c.failing_since))

    # Deliveries.

    def claim(self, limit: int, now: float, lease_seconds: float, skip_subscriptions=()) -> list[Due]:
        """Up to ``limit`` due deliveries, leased to the caller: no other worker takes them until the
        lease ends, and a worker that dies simply lets its lease run out. Deliveries to
        ``skip_subscriptions`` (those the caller has enough of in flight) are left for later."""
        return self.finish_and_claim([], now, limit, lease_seconds, skip_subscriptions)

    def finish_and_claim(self, outcomes: list[dict], now: float, limit: int, lease_seconds: float,
                         skip_subscriptions=(), later_accounts=()) -> list[Due]:
        """finish(outcomes), fan_out(now), then claim(...), in one transaction: a worker commits once a
        turn, and a new event's deliveries are claimed as soon as they exist.

        Deliveries of ``later_accounts`` (those that have more than their share out) are claimed only with the
        room the other accounts' due deliveries leave: one account's backlog, however old and over however
        many subscriptions, does not keep every other account waiting behind it."""
        if not outcomes:
            statements = self._statements("claim", lambda: _claim_statements(self._skip_locked))
            with self.engine.connect() as db:
                # A read first: an idle worker polling often must not take the write lock each time.
                if db.execute(statements["any_queued"]).first() is None and (
                        limit <= 0 or db.execute(statements["any_due"], {"b_now": now}).first() is None):
                    return []
        with self._writing() as db:
            noted = self._finish_in(db, outcomes, now)
            self._fan_out_in(db, now)
            claimed = []
            if limit > 0 and later_accounts:
                claimed = self._claim_in(db, limit, now, lease_seconds, skip_subscriptions, sorted(later_accounts))
            if limit - len(claimed) > 0:
                claimed += self._claim_in(db, limit - len(claimed), now, lease_seconds, skip_subscriptions)
            # Last: every worker writes these few rows, and holds them until it commits.
            self._note_subscriptions(db, noted)
            return claimed

    def _claim_in(self, db, limit: int, now: float, lease_seconds: float, skip_subscriptions,
                  other_than_accounts=()) -> list[Due]:
        statements = self._statements("claim", lambda: _claim_statements(self._skip_locked))
        lease = new_id("lease")
        values = {"b_now": now, "b_limit": limit, "b_lease": lease, "b_until": now + lease_seconds}
        # The conditions are checked again on each row: a row another worker took meanwhile is skipped.
        if other_than_accounts:
            db.execute(statements["lease_others"], {**values, "b_skip": list(skip_subscriptions),
                                                    "b_busy": list(other_than_accounts)})
        elif skip_subscriptions:
            db.execute(statements["lease_skipping"], {**values, "b_skip": list(skip_subscriptions)})
        else:
            db.execute(statements["lease"], values)
        rows = db.execute(statements["leased"], {"b_lease": lease}).all()
        secrets_of: dict[str, str] = {}
        for r in rows:
            if r.sub_id not in secrets_of:
                secrets_of[r.sub_id] = self.signing_secret(r.sub_id, r.secret)
        return [Due(r.seq, r.id, lease, r.attempts, r.event_id, r.type, r.timestamp, r.data, r.sub_id,
                    r.target_url, secrets_of[r.sub_id], r.next_attempt_at, r.account_id) for r in rows]

    def _skip_locked(self, query):
        """On PostgreSQL, rows another worker's transaction holds are passed over rather than waited for:
        each worker takes its own share of the queue at once. SQLite has one writer at a time anyway."""
        return query if self.sqlite else query.with_for_update(skip_locked=True, of=query.selected_columns[0].table)

    def _statements(self, name: str, build) -> dict:
        """Statements built once per store: SQLAlchemy then reuses their compiled form without working out
        again that they are the same (a third of the cost of a small transaction)."""
        built = self._built.get(name)
        if built is None:
            built = self._built[name] = build()
        return built

    def finish(self, outcomes: list[dict], now: float) -> None:
        """Record attempts and move deliveries on, all in one transaction.

        Each outcome: ``due`` (a Due), ``attempted_at``, ``status_code``, ``latency_ms``, ``error``, and
        what comes next: ``status`` (pending/succeeded/failed), ``next_attempt_at``, and optionally
        ``subscription`` ("gone" or "disable", with a ``reason``).
        """
        if not outcomes:
            return
        with self._writing() as db:
            self._note_subscriptions(db, self._finish_in(db, outcomes, now))

    def _finish_in(self, db, outcomes: list[dict], now: float) -> list[dict]:
        """Record the attempts and move the deliveries on; what to note on their subscriptions is returned,
        for :meth:`_note_subscriptions` at the end of the transaction."""
        if not outcomes:
            return []
        statements = self._statements("finish", _finish_statements)
        # A delivery unsubscribed (or pruned) while it was out is gone, with its log: nothing to record.
        still = set(db.execute(statements["existing"], {"b_seqs": [o["due"].seq for o in outcomes]}).scalars())
        # Rows are always taken in the same order (by number, by id), so that workers finishing at the
        # same moment wait for each other instead of deadlocking.
        outcomes = sorted((o for o in outcomes if o["due"].seq in still), key=lambda o: o["due"].seq)
        postponed = [o for o in outcomes if o.get("postponed")]
        if postponed:
            # Held back by the worker (its host had had enough for the moment), not tried: no attempt, the
            # same count, due again later.
            db.execute(statements["postpone"], [{"b_seq": o["due"].seq, "b_lease": o["due"].lease,
                                                 "b_next": o["next_attempt_at"], "b_now": now} for o in postponed])
            outcomes = [o for o in outcomes if not o.get("postponed")]
        if not outcomes:
            return []
        db.execute(statements["attempt"], [
            {"delivery_seq": o["due"].seq, "attempted_at": o["attempted_at"], "status_code": o["status_code"],
             "latency_ms": o["latency_ms"], "error": o["error"]} for o in outcomes])
        db.execute(statements["move_on"],
                   [{"b_seq": o["due"].seq, "b_lease": o["due"].lease, "b_status": o["status"],
                     "b_next": o["next_attempt_at"], "b_code": o["status_code"], "b_error": o["error"],
                     "b_now": now} for o in outcomes])
        by_subscription: dict[str, list[dict]] = {}
        for o in outcomes:
            by_subscription.setdefault(o["due"].subscription_id, []).append(o)
        changes = []
        for subscription_id, mine in sorted(by_subscription.items()):
            if any(o.get("subscription") == "gone" for o in mine):
                self._forget_subscription(db, subscription_id)
                continue
            last = max(mine, key=lambda o: o["attempted_at"])
            failures = [o["attempted_at"] for o in mine if o["status"] != SUCCEEDED]
            disabled = [o for o in mine if o.get("subscription") == "disable"]
            changes.append({"b_id": subscription_id, "b_at": last["attempted_at"], "b_code": last["status_code"],
                            "b_ok": last["status"] == SUCCEEDED, "b_first": min(failures, default=None),
                            "b_status": DISABLED if disabled else None,
                            "b_reason": disabled[0].get("reason") if disabled else None})
        return changes

    def _note_subscriptions(self, db, changes: list[dict]) -> None:
        if changes:
            db.execute(self._statements("finish", _finish_statements)["subscription"], changes)

    @staticmethod
    def _forget_subscription(db, subscription_id: str) -> None:
        doomed = select(deliveries.c.seq).where(deliveries.c.subscription_id == subscription_id).scalar_subquery()
        db.execute(delete(attempts).where(attempts.c.delivery_seq.in_(doomed)))
        db.execute(delete(deliveries).where(deliveries.c.subscription_id == subscription_id))
        db.execute(delete(subscriptions).where(subscriptions.c.id == subscription_id))

    def return_leases(self, unfinished: list[Due], now: float) -> int:
        """Give back deliveries a stopping worker claimed and did not finish: due as they were, for any worker
        to take at once rather than after the lease, with no attempt counted. One whose lease ran out and
        that another worker took since is left alone. How many went back."""
        if not unfinished:
            return 0
        # A lease id belongs to one claim of one worker: a row holding one of these is one of these rows.
        with self._writing() as db:
            return db.execute(update(deliveries).where(
                deliveries.c.seq.in_(sorted({d.seq for d in unfinished})),
                deliveries.c.lease.in_(sorted({d.lease for d in unfinished})), deliveries.c.status == PENDING)
                .values(lease=None, lease_until=None, updated_at=now)).rowcount

    def failing_since(self, subscription_ids) -> dict[str, float]:
        """Since when each of these subscriptions has been failing, for those that are."""
        if not subscription_ids:
            return {}
        with self.engine.connect() as db:
            rows = db.execute(select(subscriptions.c.id, subscriptions.c.failing_since)
                              .where(subscriptions.c.id.in_(list(subscription_ids)),
                                     subscriptions.c.failing_since.is_not(None))).all()
        return {row.id: row.failing_since for row in rows}

    def replay_event(self, account_id: int, event_id: str, now: float) -> int:
        """Deliver an event again to every active subscription of its type: existing deliveries are
        due again (same id, so receivers can tell), new subscriptions get one."""
        with self._writing() as db:
            row = db.execute(select(events.c.seq, events.c.id, events.c.type).where(
                events.c.id == event_id, events.c.account_id == account_id)).first()
            if row is None:
                return -1
            subs = db.execute(select(subscriptions.c.id).where(
                subscriptions.c.account_id == account_id, subscriptions.c.event_type == row.type,
                subscriptions.c.status == ACTIVE)).scalars().all()
            existing = set(db.execute(select(deliveries.c.subscription_id).where(
                deliveries.c.event_seq == row.seq)).scalars())
            db.execute(update(deliveries).where(deliveries.c.event_seq == row.seq,
                                                deliveries.c.subscription_id.in_(subs))
                       .values(status=PENDING, next_attempt_at=now, lease=None, lease_until=None, updated_at=now))
            new = [{"id": delivery_id(row.id, s), "event_seq": row.seq, "subscription_id": s, "status": PENDING,
                    "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
                   for s in subs if s not in existing]
            if new:
                db.execute(insert(deliveries), new)
            return len(subs)

    def replay_failed(self, subscription_id: str, since: float, now: float, limit: int) -> tuple[int, bool]:
        """Make up to ``limit`` failed deliveries of the subscription due again, oldest first: (how many,
        whether failed ones are left for another call)."""
        failed = select(deliveries.c.seq).where(
            deliveries.c.subscription_id == subscription_id, deliveries.c.status == FAILED,
            deliveries.c.created_at >= since).order_by(deliveries.c.seq)
        with self._writing() as db:
            chosen = db.execute(failed.limit(limit + 1)).scalars().all()
            more, chosen = len(chosen) > limit, chosen[:limit]
            if chosen:
                db.execute(update(deliveries).where(deliveries.c.seq.in_(chosen), deliveries.c.status == FAILED)
                           .values(status=PENDING, next_attempt_at=now, lease=None, lease_until=None,
                                   updated_at=now))
            return len(chosen), more

    def delivery_log(self, subscription_id: str, limit: int) -> list[dict]:
        with self.engine.connect() as db:
            rows = db.execute(
                select(deliveries.c.seq, deliveries.c.id, deliveries.c.status, deliveries.c.attempts,
                       deliveries.c.next_attempt_at, deliveries.c.last_status_code, deliveries.c.last_error,
                       deliveries.c.created_at, events.c.id.label("event_id"))
                .join(events, events.c.seq == deliveries.c.event_seq)
                .where(deliveries.c.subscription_id == subscription_id)
                .order_by(deliveries.c.seq.desc()).limit(limit)).all()
            seqs = [r.seq for r in rows]
            tries: dict[int, list] = {}
            if seqs:
                for a in db.execute(select(attempts).where(attempts.c.delivery_seq.in_(seqs))
                                    .order_by(attempts.c.seq)).all():
                    tries.setdefault(a.delivery_seq, []).append(
                        {"at": iso(a.attempted_at), "status_code": a.status_code, "latency_ms": a.latency_ms,
                         "error": a.error})
        return [{"id": r.id, "event_id": r.event_id, "status": r.status, "attempts": tries.get(r.seq, []),
                 "next_attempt_at": iso(r.next_attempt_at) if r.status == PENDING else None,
                 "created_at": iso(r.created_at)} for r in rows]

    # The state of the outbox, for /metrics and the console's overview.

    def state(self, now: float) -> dict:
        """At ``now``: the fan-out queue and the deliveries due now (each with how long its oldest item has
        been due), the deliveries waiting for a later try, deliveries and subscriptions by status.
        Deliveries of subscriptions that are not active are not due: no worker takes them."""
        due = (deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now,
               deliveries.c.subscription_id.in_(select(subscriptions.c.id).where(subscriptions.c.status == ACTIVE)))
        with self.engine.connect() as db:
            queued, queued_since = db.execute(select(func.count(), func.min(fanout.c.received_at))).one()
            waiting, due_since = db.execute(select(func.count(), func.min(deliveries.c.next_attempt_at))
                                            .where(*due)).one()
            later = db.execute(select(func.count()).where(deliveries.c.status == PENDING,
                                                          deliveries.c.next_attempt_at > now)).scalar()
            by_status = dict(db.execute(select(deliveries.c.status, func.count())
                                        .group_by(deliveries.c.status)).all())
            by_subscription_status = dict(db.execute(select(subscriptions.c.status, func.count())
                                                     .group_by(subscriptions.c.status)).all())
        return {"fanout": {"depth": queued, "oldest_seconds": max(0.0, now - queued_since) if queued else 0.0},
                "deliveries": {"depth": waiting, "oldest_seconds": max(0.0, now - due_since) if waiting else 0.0,
                               "later": later,
                               "by_status": {status: by_status.get(status, 0)
                                             for status in (PENDING, SUCCEEDED, FAILED)} | by_status},
                "subscriptions": {status: by_subscription_status.get(status, 0)
                                  for status in (ACTIVE, DISABLED)} | by_subscription_status}

    def counts(self) -> dict:
        with self.engine.connect() as db:
            return {status: count for status, count in db.execute(
                select(deliveries.c.status, func.count()).group_by(deliveries.c.status)).all()}

    # Console.

    def events_per_hour(self, start: float, hours: int) -> list[int]:
        """Events received in each of the ``hours`` hours from ``start``, oldest first."""
        edges = [start + 3600 * n for n in range(hours + 1)]
        # Bucketed by comparisons, not by dividing: SQLite truncates a float cast to an integer where
        # PostgreSQL rounds it.
        hour = case(*[(events.c.received_at < edges[n + 1], n) for n in range(hours)], else_=hours - 1)
        received = select(hour.label("hour")).where(events.c.received_at >= edges[0],
                                                    events.c.received_at < edges[-1]).subquery()
        counts = [0] * hours
        with self.engine.connect() as db:
            for n, count in db.execute(select(received.c.hour, func.count()).group_by(received.c.hour)).all():
                counts[n] = count
        return counts

    def accounts_overview(self) -> list[dict]:
        """Every account, with how many subscriptions it has in each status."""
        with self.engine.connect() as db:
            rows = db.execute(select(accounts.c.id, accounts.c.login, accounts.c.created_at)
                              .order_by(accounts.c.login)).all()
            tally: dict[int, dict] = {}
            for account_id, status, count in db.execute(
                    select(subscriptions.c.account_id, subscriptions.c.status, func.count())
                    .group_by(subscriptions.c.account_id, subscriptions.c.status)).all():
                tally.setdefault(account_id, {})[status] = count
        return [{"id": r.id, "login": r.login, "created_at": r.created_at, "subscriptions": tally.get(r.id, {})}
                for r in rows]

    def all_subscriptions(self) -> list[dict]:
        """Every subscription with its account's login; signing secrets stay out."""
        with self.engine.connect() as db:
            rows = db.execute(
                select(*[c for c in subscriptions.c if c.name != "secret"], accounts.c.login)
                .join(accounts, accounts.c.id == subscriptions.c.account_id)
                .order_by(accounts.c.login, subscriptions.c.created_at)).all()
        return [dict(r._mapping) for r in rows]

    def subscription_by_id(self, subscription_id: str) -> dict | None:
        with self.engine.connect() as db:
            row = db.execute(select(subscriptions.c.id, subscriptions.c.status)
                             .where(subscriptions.c.id == subscription_id)).first()
        return dict(row._mapping) if row else None

    def find_events(self, *, event_type: str | None = None, data_fields: dict | None = None,
                    since: float | None = None, until: float | None = None, limit: int = 100) -> list[dict]:
        """Newest first, of every account: each with its login and its deliveries counted by status.
        ``data_fields`` are exact values of top-level fields of the event's data."""
        query = (select(events.c.seq, events.c.id, events.c.type, events.c.timestamp, events.c.received_at,
                        events.c.data, accounts.c.login).join(accounts, accounts.c.id == events.c.account_id))
        if event_type:
            query = query.where(events.c.type == event_type)
        for name, value in (data_fields or {}).items():
            # Events are stored as json.dumps writes them: the field and its value, spelt the same way.
            needle = json.dumps({name: value}, ensure_ascii=False)[1:-1]
            query = query.where(events.c.data.contains(needle, autoescape=True))
        if since is not None:
            query = query.where(events.c.received_at >= since)
        if until is not None:
            query = query.where(events.c.received_at < until)
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(events.c.seq.desc()).limit(limit)).all()
            outcomes: dict[int, dict] = {}
            if rows:
                for seq, status, count in db.execute(
                        select(deliveries.c.event_seq, deliveries.c.status, func.count())
                        .where(deliveries.c.event_seq.in_([r.seq for r in rows]))
                        .group_by(deliveries.c.event_seq, deliveries.c.status)).all():
                    outcomes.setdefault(seq, {})[status] = count
        return [{"id": r.id, "type": r.type, "timestamp": r.timestamp, "received_at": r.received_at,
                 "login": r.login, "data": json.loads(r.data), "deliveries": outcomes.get(r.seq, {})} for r in rows]

    def event_with_deliveries(self, event_id: str) -> dict | None:
        """An event of any account, its payload as received, and each delivery of it with its attempts."""
        with self.engine.connect() as db:
            row = db.execute(select(events, accounts.c.login).join(accounts, accounts.c.id == events.c.account_id)
                             .where(events.c.id == event_id)).first()
            if row is None:
                return None
            sent = db.execute(
                select(deliveries.c.seq, deliveries.c.id, deliveries.c.status, deliveries.c.next_attempt_at,
                       deliveries.c.subscription_id, subscriptions.c.target_url, subscriptions.c.trigger)
                .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
                .where(deliveries.c.event_seq == row.seq).order_by(deliveries.c.seq)).all()
            tries: dict[int, list] = {}
            if sent:
                for a in db.execute(select(attempts).where(attempts.c.delivery_seq.in_([d.seq for d in sent]))
                                    .order_by(attempts.c.seq)).all():
                    tries.setdefault(a.delivery_seq, []).append(
                        {"at": a.attempted_at, "status_code": a.status_code, "latency_ms": a.latency_ms,
                         "error": a.error})
        return {"id": row.id, "account_id": row.account_id, "login": row.login, "type": row.type,
                "timestamp": row.timestamp, "received_at": row.received_at, "data": json.loads(row.data),
                "raw": json.loads(row.raw),
                "deliveries": [{"id": d.id, "status": d.status, "subscription_id": d.subscription_id,
                                "target_url": d.target_url, "trigger": d.trigger,
                                "next_attempt_at": d.next_attempt_at if d.status == PENDING else None,
                                "attempts": tries.get(d.seq, [])} for d in sent]}


def _database_lost() -> None:
    from connector.observe import metrics
    metrics.database_lost()


def _text(value: str) -> str:
    """Text any backend can keep: PostgreSQL refuses NUL characters, which a rejected callback may hold;
    they are shown as the replacement character, like bytes that are not UTF-8."""
    return value.replace("\x00", "\ufffd")


def iso(epoch: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC, as every API answer writes times."""
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _claim_statements(skip_locked) -> dict:
    now = bindparam("b_now")
    free = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
    due = select(deliveries.c.seq).where(
        deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now, free,
        deliveries.c.subscription_id.in_(select(subscriptions.c.id).where(subscriptions.c.status == ACTIVE)))
    skipping = due.where(deliveries.c.subscription_id.not_in(bindparam("b_skip", expanding=True)))
    others = skipping.where(deliveries.c.subscription_id.in_(
        select(subscriptions.c.id).where(subscriptions.c.account_id.not_in(bindparam("b_busy", expanding=True)))))

    def lease(chosen):
        # By due time, then in the order the deliveries were made (an event's to every subscription together).
        chosen = chosen.order_by(deliveries.c.next_attempt_at, deliveries.c.seq).limit(bindparam("b_limit"))
        taking = update(deliveries).values(lease=bindparam("b_lease"), lease_until=bindparam("b_until"))
        locked = skip_locked(chosen)
        if locked is not chosen:
            # PostgreSQL may run a subquery under IN more than once, each run locking rows of its own, and
            # so lease more than the limit; a CTE is run once.
            chosen = locked.cte("chosen")
            return taking.where(deliveries.c.seq == chosen.c.seq)
        return taking.where(deliveries.c.seq.in_(chosen.scalar_subquery()), deliveries.c.status == PENDING, free)
    return {
        "any_due": select(deliveries.c.seq).where(deliveries.c.status == PENDING,
                                                  deliveries.c.next_attempt_at <= now).limit(1),
        "any_queued": select(fanout.c.event_seq).limit(1),
        "lease": lease(due),
        "lease_skipping": lease(skipping),
        "lease_others": lease(others),
        "leased": select(deliveries.c.seq, deliveries.c.id, deliveries.c.attempts, deliveries.c.next_attempt_at,
                         events.c.id.label("event_id"),
                         events.c.type, events.c.timestamp, events.c.data, subscriptions.c.id.label("sub_id"),
                         subscriptions.c.target_url, subscriptions.c.secret, subscriptions.c.account_id)
        .join(events, events.c.seq == deliveries.c.event_seq)
        .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
        .where(deliveries.c.lease == bindparam("b_lease")),
    }


def _finish_statements() -> dict:
    return {
        "existing": select(deliveries.c.seq).where(deliveries.c.seq.in_(bindparam("b_seqs", expanding=True))),
        "attempt": insert(attempts),
        # Only a worker still holding the lease may move a delivery on.
        "move_on": update(deliveries)
        .where(deliveries.c.seq == bindparam("b_seq"), deliveries.c.lease == bindparam("b_lease"))
        .values(status=bindparam("b_status"), attempts=deliveries.c.attempts + 1,
                next_attempt_at=bindparam("b_next"), lease=None, lease_until=None, updated_at=bindparam("b_now"),
                last_status_code=bindparam("b_code"), last_error=bindparam("b_error")),
        "postpone": update(deliveries)
        .where(deliveries.c.seq == bindparam("b_seq"), deliveries.c.lease == bindparam("b_lease"))
        .values(next_attempt_at=bindparam("b_next"), lease=None, lease_until=None, updated_at=bindparam("b_now")),
        # What the subscription shows of its latest attempts: since when it has been failing (kept from
        # the first failure until a success), and whether it was disabled.
        "subscription": update(subscriptions).where(subscriptions.c.id == bindparam("b_id")).values(
            last_attempt_at=bindparam("b_at"), last_status_code=bindparam("b_code"),
            failing_since=case((bindparam("b_ok", type_=Boolean), null()),
                               else_=func.coalesce(subscriptions.c.failing_since, bindparam("b_first", type_=Float))),
            status=func.coalesce(bindparam("b_status", type_=String), subscriptions.c.status),
            status_reason=case((bindparam("b_status", type_=String).is_(None), subscriptions.c.status_reason),
                               else_=bindparam("b_reason", type_=Text))),
    }


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

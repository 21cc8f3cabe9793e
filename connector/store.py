"""Persistence behind one interface: accounts, events, subscriptions, deliveries (the outbox), attempts.

SQLAlchemy Core keeps the SQL portable: SQLite (a file in WAL mode) on one machine, PostgreSQL when
several share it. Times are Unix seconds (floats). Every write that must happen together happens in
one transaction: an event and its deliveries are stored at once, or not at all.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, bindparam, create_engine, delete, event, func, insert, or_, select, update)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

metadata = MetaData()

accounts = Table(
    "accounts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(255), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

events = Table(
    "events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
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
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("event_seq", Integer, ForeignKey("events.seq", ondelete="CASCADE"), nullable=False),
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

attempts = Table(
    "attempts", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("delivery_seq", Integer, ForeignKey("deliveries.seq", ondelete="CASCADE"), nullable=False),
    Column("attempted_at", Float, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text),
    Index("attempts_by_delivery", "delivery_seq", "seq"),
)

rejected_callbacks = Table(
    "rejected_callbacks", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id")),
    Column("received_at", Float, nullable=False),
    Column("method", String(8), nullable=False),
    Column("content_type", String(200)),
    Column("reason", Text, nullable=False),
    Column("body_excerpt", Text),
)

credit_watch = Table(
    "credit_watch", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
    Column("threshold", Integer, primary_key=True),
    Column("below", Integer, nullable=False),
    Column("crossings", Integer, nullable=False),
)

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
ACTIVE, DISABLED = "active", "disabled"


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


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def default_url(data_dir: str) -> str:
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(path / 'connector.db').resolve()}"


class Store:
    def __init__(self, url: str):
        self.url = url
        self.sqlite = url.startswith("sqlite")
        kwargs = {"connect_args": {"timeout": 30, "check_same_thread": False}} if self.sqlite else {
            "pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    @property
    def _insert(self):
        """INSERT with ON CONFLICT, which each engine spells in its own dialect."""
        return sqlite_insert if self.sqlite else postgresql_insert

    def close(self) -> None:
        self.engine.dispose()

    # Accounts.

    def account(self, login: str, token_hash: str) -> int:
        """The account's id, created on first sight; its token hash follows the current secret key."""
        with self.engine.begin() as db:
            row = db.execute(select(accounts.c.id, accounts.c.token_hash).where(accounts.c.login == login)).first()
            if row is None:
                try:
                    return db.execute(insert(accounts).values(login=login, token_hash=token_hash,
                                                              created_at=time.time())).inserted_primary_key[0]
                except IntegrityError:
                    pass  # another process created it first
            elif row.token_hash != token_hash:
                db.execute(update(accounts).where(accounts.c.id == row.id).values(token_hash=token_hash))
                return row.id
            else:
                return row.id
        with self.engine.connect() as db:
            return db.execute(select(accounts.c.id).where(accounts.c.login == login)).scalar_one()

    def account_by_token_hash(self, token_hash: str) -> tuple[int, str] | None:
        with self.engine.connect() as db:
            row = db.execute(select(accounts.c.id, accounts.c.login)
                             .where(accounts.c.token_hash == token_hash)).first()
        return (row.id, row.login) if row else None

    # Events.

    def add_events(self, account_id: int, items: list[dict], now: float) -> list[bool]:
        """Store events and fan them out to the account's active subscriptions, in one transaction.

        ``items`` are ``{"id", "type", "timestamp", "data", "raw"}``; the answer says, per item,
        whether it was new (a duplicate callback is stored once: the unique event id decides).
        """
        fresh = []
        # The unique event id decides, not a look-up first: two web processes receiving the same
        # callback at the same moment still store one event.
        add_event = (self._insert(events).on_conflict_do_nothing(index_elements=["id"])
                     .returning(events.c.seq))
        with self.engine.begin() as db:
            active: dict[str, list[str]] = {}
            for item in items:
                seq = db.execute(add_event.values(
                    id=item["id"], account_id=account_id, type=item["type"], timestamp=item["timestamp"],
                    received_at=now, data=json.dumps(item["data"], ensure_ascii=False),
                    raw=json.dumps(item.get("raw", {}), ensure_ascii=False))).scalar()
                if seq is None:
                    fresh.append(False)
                    continue
                if item["type"] not in active:
                    active[item["type"]] = db.execute(select(subscriptions.c.id).where(
                        subscriptions.c.account_id == account_id, subscriptions.c.event_type == item["type"],
                        subscriptions.c.status == ACTIVE)).scalars().all()
                rows = [{"id": new_id("msg"), "event_seq": seq, "subscription_id": sub, "status": PENDING,
                         "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
                        for sub in active[item["type"]]]
                if rows:
                    db.execute(insert(deliveries), rows)
                fresh.append(True)
        return fresh

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
        with self.engine.begin() as db:
            db.execute(insert(rejected_callbacks).values(
                account_id=account_id, received_at=now, method=method, content_type=content_type[:200],
                reason=reason, body_excerpt=body[:2048].decode("utf-8", "replace")))

    def rejected(self, account_id: int, limit: int = 50) -> list[dict]:
        with self.engine.connect() as db:
            rows = db.execute(select(rejected_callbacks).where(rejected_callbacks.c.account_id == account_id)
                              .order_by(rejected_callbacks.c.seq.desc()).limit(limit)).all()
        return [{"received_at": r.received_at, "method": r.method, "content_type": r.content_type,
                 "reason": r.reason} for r in rows]

    def prune(self, older_than: float) -> int:
        """Forget events (and their deliveries and attempts) received before ``older_than``."""
        with self.engine.begin() as db:
            old = select(events.c.seq).where(events.c.received_at < older_than).scalar_subquery()
            doomed = select(deliveries.c.seq).where(deliveries.c.event_seq.in_(old)).scalar_subquery()
            db.execute(delete(attempts).where(attempts.c.delivery_seq.in_(doomed)))
            db.execute(delete(deliveries).where(deliveries.c.event_seq.in_(old)))
            count = db.execute(delete(events).where(events.c.received_at < older_than)).rowcount
            db.execute(delete(rejected_callbacks).where(rejected_callbacks.c.received_at < older_than))
        return count

    def watch_credits(self, account_id: int, threshold: int, credits: int) -> int | None:
        """Note the account's credits against ``threshold``: the crossing number when they have just
        fallen below it, None otherwise. Rising back above re-arms the watch."""
        below = credits < threshold
        for _ in range(3):  # two first polls at once: one inserts, the other retries as an update
            try:
                with self.engine.begin() as db:
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

    def subscribe(self, account_id: int, trigger: str, event_type: str, target_url: str, secret: str,
                  now: float) -> dict:
        row = {"id": new_id("sub"), "account_id": account_id, "trigger": trigger, "event_type": event_type,
               "target_url": target_url, "secret": secret, "created_at": now, "status": ACTIVE}
        with self.engine.begin() as db:
            db.execute(insert(subscriptions).values(**row))
        return row

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
        with self.engine.begin() as db:
            owned = select(subscriptions.c.id).where(subscriptions.c.id == subscription_id)
            if account_id is not None:
                owned = owned.where(subscriptions.c.account_id == account_id)
            if db.execute(owned).first() is None:
                return False
            self._forget_subscription(db, subscription_id)
            return True

    def set_subscription_status(self, subscription_id: str, status: str, reason: str | None) -> None:
        with self.engine.begin() as db:
            db.execute(update(subscriptions).where(subscriptions.c.id == subscription_id)
                       .values(status=status, status_reason=reason,
                               failing_since=None if status == ACTIVE else subscriptions.c.failing_since))

    # Deliveries.

    def claim(self, limit: int, now: float, lease_seconds: float) -> list[Due]:
        """Up to ``limit`` due deliveries, leased to the caller: no other worker takes them until the
        lease ends, and a worker that dies simply lets its lease run out."""
        lease = new_id("lease")
        with self.engine.connect() as db:
            # A read first: an idle worker polling often must not take the write lock each time.
            if db.execute(select(deliveries.c.seq).where(deliveries.c.status == PENDING,
                                                         deliveries.c.next_attempt_at <= now).limit(1)).first() is None:
                return []
        active = select(subscriptions.c.id).where(subscriptions.c.status == ACTIVE)
        due = (select(deliveries.c.seq)
               .where(deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now,
                      deliveries.c.subscription_id.in_(active),
                      or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now))
               .order_by(deliveries.c.next_attempt_at).limit(limit)).scalar_subquery()
        with self.engine.begin() as db:
            # The conditions are checked again on each row: a row another worker took meanwhile is skipped.
            db.execute(update(deliveries)
                       .where(deliveries.c.seq.in_(due), deliveries.c.status == PENDING,
                              or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now))
                       .values(lease=lease, lease_until=now + lease_seconds))
            rows = db.execute(
                select(deliveries.c.seq, deliveries.c.id, deliveries.c.attempts, events.c.id.label("event_id"),
                       events.c.type, events.c.timestamp, events.c.data, subscriptions.c.id.label("sub_id"),
                       subscriptions.c.target_url, subscriptions.c.secret)
                .join(events, events.c.seq == deliveries.c.event_seq)
                .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
                .where(deliveries.c.lease == lease)).all()
        return [Due(r.seq, r.id, lease, r.attempts, r.event_id, r.type, r.timestamp, r.data, r.sub_id,
                    r.target_url, r.secret) for r in rows]

    def finish(self, outcomes: list[dict], now: float) -> None:
        """Record attempts and move deliveries on, all in one transaction.

        Each outcome: ``due`` (a Due), ``attempted_at``, ``status_code``, ``latency_ms``, ``error``, and
        what comes next: ``status`` (pending/succeeded/failed), ``next_attempt_at``, and optionally
        ``subscription`` ("gone" or "disable", with a ``reason``).
        """
        if not outcomes:
            return
        with self.engine.begin() as db:
            db.execute(insert(attempts), [
                {"delivery_seq": o["due"].seq, "attempted_at": o["attempted_at"], "status_code": o["status_code"],
                 "latency_ms": o["latency_ms"], "error": o["error"]} for o in outcomes])
            # Only a worker still holding the lease may move a delivery on.
            db.execute(update(deliveries)
                       .where(deliveries.c.seq == bindparam("b_seq"), deliveries.c.lease == bindparam("b_lease"))
                       .values(status=bindparam("b_status"), attempts=deliveries.c.attempts + 1,
                               next_attempt_at=bindparam("b_next"), lease=None, lease_until=None, updated_at=now,
                               last_status_code=bindparam("b_code"), last_error=bindparam("b_error")),
                       [{"b_seq": o["due"].seq, "b_lease": o["due"].lease, "b_status": o["status"],
                         "b_next": o["next_attempt_at"], "b_code": o["status_code"], "b_error": o["error"]}
                        for o in outcomes])
            by_subscription: dict[str, list[dict]] = {}
            for o in outcomes:
                by_subscription.setdefault(o["due"].subscription_id, []).append(o)
            for subscription_id, mine in by_subscription.items():
                if any(o.get("subscription") == "gone" for o in mine):
                    self._forget_subscription(db, subscription_id)
                    continue
                last = max(mine, key=lambda o: o["attempted_at"])
                values = {"last_attempt_at": last["attempted_at"], "last_status_code": last["status_code"]}
                if last["status"] == SUCCEEDED:
                    values["failing_since"] = None
                else:
                    first_failure = min(o["attempted_at"] for o in mine if o["status"] != SUCCEEDED)
                    values["failing_since"] = func.coalesce(subscriptions.c.failing_since, first_failure)
                disabled = [o for o in mine if o.get("subscription") == "disable"]
                if disabled:
                    values.update(status=DISABLED, status_reason=disabled[0].get("reason"))
                db.execute(update(subscriptions).where(subscriptions.c.id == subscription_id).values(**values))

    @staticmethod
    def _forget_subscription(db, subscription_id: str) -> None:
        doomed = select(deliveries.c.seq).where(deliveries.c.subscription_id == subscription_id).scalar_subquery()
        db.execute(delete(attempts).where(attempts.c.delivery_seq.in_(doomed)))
        db.execute(delete(deliveries).where(deliveries.c.subscription_id == subscription_id))
        db.execute(delete(subscriptions).where(subscriptions.c.id == subscription_id))

    def failing_since(self, subscription_id: str) -> float | None:
        with self.engine.connect() as db:
            return db.execute(select(subscriptions.c.failing_since)
                              .where(subscriptions.c.id == subscription_id)).scalar()

    def replay_event(self, account_id: int, event_id: str, now: float) -> int:
        """Deliver an event again to every active subscription of its type: existing deliveries are
        due again (same id, so receivers can tell), new subscriptions get one."""
        with self.engine.begin() as db:
            row = db.execute(select(events.c.seq, events.c.type).where(
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
            new = [{"id": new_id("msg"), "event_seq": row.seq, "subscription_id": s, "status": PENDING,
                    "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
                   for s in subs if s not in existing]
            if new:
                db.execute(insert(deliveries), new)
            return len(subs)

    def replay_failed(self, subscription_id: str, since: float, now: float) -> int:
        with self.engine.begin() as db:
            return db.execute(update(deliveries).where(
                deliveries.c.subscription_id == subscription_id, deliveries.c.status == FAILED,
                deliveries.c.created_at >= since)
                .values(status=PENDING, next_attempt_at=now, lease=None, lease_until=None, updated_at=now)).rowcount

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

    def counts(self) -> dict:
        with self.engine.connect() as db:
            return {status: count for status, count in db.execute(
                select(deliveries.c.status, func.count()).group_by(deliveries.c.status)).all()}


def iso(epoch: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC, as every API answer writes times."""
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _sqlite_pragmas(connection, _record):
    cursor = connection.cursor()
    # WAL lets web and worker processes read while one writes; FULL syncs every commit, so an event
    # acknowledged to AllMySMS survives a power cut too; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()

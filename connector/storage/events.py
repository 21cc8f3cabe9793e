"""The events: stored once each with their place in the fan-out queue, turned into deliveries by a worker;
and the callbacks refused, kept for their accounts to see.

Answering a callback writes two rows, not one per subscriber: a worker turns queued events into deliveries
(one per active subscription) in its own transactions.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager

from sqlalchemy import BigInteger, Float, String, bindparam, delete, insert, literal, select

from connector.storage import intake
from connector.storage.batching import GroupWriter
from connector.storage.database import Database, unnested
from connector.storage.tables import (
    ACTIVE,
    PENDING,
    attempts,
    deliveries,
    delivery_id,
    events,
    fanout,
    rejected_callbacks,
    subscriptions,
)

#: Seconds a group of callbacks waits, at most, for callbacks being read in the same process to join it.
LINGER = 0.002
#: Events turned into deliveries per transaction, at most.
FAN_OUT_BATCH = 1000


class EventStore:
    """Events in (grouped into shared commits), the fan-out queue emptied, events read back and pruned."""

    def __init__(self, database: Database):
        self.database = database
        self._writer = GroupWriter(self._write, linger=LINGER)

    def arriving(self) -> AbstractContextManager[None]:
        """Around the reading of a callback whose events ``add`` is likely to store: the group they would join
        waits for them (batching.py)."""
        return self._writer.coming()

    def add(self, account_id: int, items: list[dict], now: float) -> list[bool]:
        """Store events, each with its place in the fan-out queue, in one transaction.

        ``items`` are ``{"id", "type", "timestamp", "data", "raw"}``; the answer says, per item,
        whether it was new (a duplicate callback is stored once: the unique event id decides).
        Callbacks arriving together are committed together (see batching.py).
        """
        return self._writer.submit((account_id, items, now))

    def _write(self, jobs: list[tuple[int, list[dict], float]]) -> list[list[bool]]:
        rows = [
            (
                item["id"],
                account_id,
                item["type"],
                item["timestamp"],
                now,
                json.dumps(item["data"], ensure_ascii=False),
                json.dumps(item.get("raw", {}), ensure_ascii=False),
            )
            for account_id, items, now in jobs
            for item in items
        ]
        # The whole group in one statement, through the driver (intake.py). The unique event id decides, not a
        # look-up first: two web processes receiving the same callback at the same moment still store one
        # event. An event is queued for the delivery workers only where a subscription wants it: one nobody
        # subscribes to (an account whose platforms poll) would wake them for nothing; a subscription made
        # meanwhile, in a transaction committing after this one, gets the events that follow.
        inserted = intake.write(self.database, rows) if rows else {}
        answers = []
        for _, items, _ in jobs:
            # An id twice in the group is inserted once, and only its first occurrence is new.
            answers.append([inserted.pop(item["id"], None) is not None for item in items])
        return answers

    def fan_out(self, now: float, limit: int = FAN_OUT_BATCH) -> int:
        """Turn queued events into deliveries, one per active subscription of the event's account and
        type at this moment; the number of events done."""
        with self.database.writing() as db:
            return self.fan_out_in(db, now, limit)

    def fan_out_in(self, db, now: float, limit: int = FAN_OUT_BATCH) -> int:
        statements = self.database.statements(
            "fan_out",
            lambda: {
                "queued": self.database.skip_locked(
                    select(fanout, events.c.id)
                    .join(events, events.c.seq == fanout.c.event_seq)
                    .order_by(fanout.c.event_seq)
                    .limit(bindparam("b_limit"))
                ),
                "active": select(subscriptions.c.id, subscriptions.c.account_id, subscriptions.c.event_type).where(
                    subscriptions.c.account_id.in_(bindparam("b_accounts", expanding=True)),
                    subscriptions.c.status == ACTIVE,
                ),
                # A replay may have made some already: one delivery per event and subscription, always.
                "deliver": (
                    self.database.insert(deliveries)
                    if self.database.sqlite
                    # PostgreSQL: the rows sent as one array per column, inserted by one statement (a
                    # statement per row cost a worker's turn more than all the rest).
                    else self.database.insert(deliveries).from_select(*_unnested_deliveries())
                ).on_conflict_do_nothing(index_elements=["event_seq", "subscription_id"]),
                "done": delete(fanout).where(fanout.c.event_seq.in_(bindparam("b_seqs", expanding=True))),
            },
        )
        queued = db.execute(statements["queued"], {"b_limit": limit}).all()
        if not queued:
            return 0
        active: dict[tuple[int, str], list[str]] = {}
        for sub in db.execute(statements["active"], {"b_accounts": sorted({q.account_id for q in queued})}):
            active.setdefault((sub.account_id, sub.event_type), []).append(sub.id)
        wanted = [q for q in queued if (q.account_id, q.event_type) in active]
        rows = [
            {
                "id": delivery_id(q.id, sub),
                "event_seq": q.event_seq,
                "subscription_id": sub,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_at": q.received_at,
                "created_at": now,
                "updated_at": now,
            }
            for q in wanted
            for sub in active[(q.account_id, q.event_type)]
        ]
        if rows and self.database.sqlite:
            db.execute(statements["deliver"], rows)
        elif rows:
            db.execute(
                statements["deliver"],
                {
                    "b_ids": [row["id"] for row in rows],
                    "b_event_seqs": [row["event_seq"] for row in rows],
                    "b_subscriptions": [row["subscription_id"] for row in rows],
                    "b_nexts": [row["next_attempt_at"] for row in rows],
                    "b_now": now,
                },
            )
        db.execute(statements["done"], {"b_seqs": [q.event_seq for q in queued]})
        return len(queued)

    def recent(self, account_id: int, event_type: str, limit: int) -> list[dict]:
        with self.database.engine.connect() as db:
            rows = db.execute(
                select(events.c.id, events.c.type, events.c.timestamp, events.c.data)
                .where(events.c.account_id == account_id, events.c.type == event_type)
                .order_by(events.c.seq.desc())
                .limit(limit)
            ).all()
        return [{"id": r.id, "type": r.type, "timestamp": r.timestamp, "data": json.loads(r.data)} for r in rows]

    def get(self, account_id: int, event_id: str) -> dict | None:
        with self.database.engine.connect() as db:
            row = db.execute(select(events).where(events.c.id == event_id, events.c.account_id == account_id)).first()
        if row is None:
            return None
        return {
            "id": row.id,
            "type": row.type,
            "timestamp": row.timestamp,
            "data": json.loads(row.data),
            "raw": json.loads(row.raw),
            "seq": row.seq,
        }

    def reject(
        self, account_id: int | None, method: str, content_type: str, reason: str, body: bytes, now: float
    ) -> None:
        with self.database.writing() as db:
            db.execute(
                insert(rejected_callbacks).values(
                    account_id=account_id,
                    received_at=now,
                    method=method,
                    content_type=_text(content_type[:200]),
                    reason=_text(reason),
                    body_excerpt=_text(body[:2048].decode("utf-8", "replace")),
                )
            )

    def rejected(self, account_id: int, limit: int = 50) -> list[dict]:
        with self.database.engine.connect() as db:
            rows = db.execute(
                select(rejected_callbacks)
                .where(rejected_callbacks.c.account_id == account_id)
                .order_by(rejected_callbacks.c.seq.desc())
                .limit(limit)
            ).all()
        return [
            {"received_at": r.received_at, "method": r.method, "content_type": r.content_type, "reason": r.reason}
            for r in rows
        ]

    def prune(self, older_than: float) -> int:
        """Forget events (and their deliveries and attempts) received before ``older_than``."""
        with self.database.writing() as db:
            old = select(events.c.seq).where(events.c.received_at < older_than).scalar_subquery()
            doomed = select(deliveries.c.seq).where(deliveries.c.event_seq.in_(old)).scalar_subquery()
            db.execute(delete(attempts).where(attempts.c.delivery_seq.in_(doomed)))
            db.execute(delete(deliveries).where(deliveries.c.event_seq.in_(old)))
            db.execute(delete(fanout).where(fanout.c.event_seq.in_(old)))
            count = db.execute(delete(events).where(events.c.received_at < older_than)).rowcount
            db.execute(delete(rejected_callbacks).where(rejected_callbacks.c.received_at < older_than))
        return count


def _text(value: str) -> str:
    """Text any backend can keep: PostgreSQL refuses NUL characters, which a rejected callback may hold;
    they are shown as the replacement character, like bytes that are not UTF-8."""
    return value.replace("\x00", "\ufffd")


def _unnested_deliveries() -> tuple[list[str], object]:
    """New pending deliveries from arrays of their ids, events, subscriptions and due times (PostgreSQL):
    the columns and the SELECT of an INSERT ... SELECT, in the arrays' order."""
    given = unnested(
        ("id", "b_ids", String),
        ("event_seq", "b_event_seqs", BigInteger),
        ("subscription_id", "b_subscriptions", String),
        ("next", "b_nexts", Float),
    )
    now = bindparam("b_now", type_=Float)
    return (
        ["id", "event_seq", "subscription_id", "status", "attempts", "next_attempt_at", "created_at", "updated_at"],
        select(
            given.c.id, given.c.event_seq, given.c.subscription_id, literal(PENDING), literal(0), given.c.next, now, now
        ),
    )

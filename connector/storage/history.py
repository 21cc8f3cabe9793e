"""Deliveries as history: each subscription's log of deliveries and attempts, and deliveries made due again
(an event replayed to its subscriptions, a subscription's failures replayed)."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from connector.storage.database import Database
from connector.storage.tables import (
    ACTIVE,
    FAILED,
    PENDING,
    attempts,
    deliveries,
    delivery_id,
    events,
    iso,
    subscriptions,
)


class History:
    """What was delivered to each subscription, and doing it again."""

    def __init__(self, database: Database):
        self.database = database

    def replay(self, account_id: int, event_id: str, now: float) -> int:
        """Deliver an event again to every active subscription of its type: existing deliveries are
        due again (same id, so receivers can tell), new subscriptions get one."""
        with self.database.writing() as db:
            row = db.execute(
                select(events.c.seq, events.c.id, events.c.type).where(
                    events.c.id == event_id, events.c.account_id == account_id
                )
            ).first()
            if row is None:
                return -1
            subs = (
                db.execute(
                    select(subscriptions.c.id).where(
                        subscriptions.c.account_id == account_id,
                        subscriptions.c.event_type == row.type,
                        subscriptions.c.status == ACTIVE,
                    )
                )
                .scalars()
                .all()
            )
            existing = set(
                db.execute(select(deliveries.c.subscription_id).where(deliveries.c.event_seq == row.seq)).scalars()
            )
            db.execute(
                update(deliveries)
                .where(deliveries.c.event_seq == row.seq, deliveries.c.subscription_id.in_(subs))
                .values(status=PENDING, next_attempt_at=now, lease=None, lease_until=None, updated_at=now)
            )
            new = [
                {
                    "id": delivery_id(row.id, s),
                    "event_seq": row.seq,
                    "subscription_id": s,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for s in subs
                if s not in existing
            ]
            if new:
                db.execute(insert(deliveries), new)
            self.database.doorbell.ring(db)
            return len(subs)

    def replay_failed(self, subscription_id: str, since: float, now: float, limit: int) -> tuple[int, bool]:
        """Make up to ``limit`` failed deliveries of the subscription due again, oldest first: (how many,
        whether failed ones are left for another call)."""
        failed = (
            select(deliveries.c.seq)
            .where(
                deliveries.c.subscription_id == subscription_id,
                deliveries.c.status == FAILED,
                deliveries.c.created_at >= since,
            )
            .order_by(deliveries.c.seq)
        )
        with self.database.writing() as db:
            chosen = db.execute(failed.limit(limit + 1)).scalars().all()
            more, chosen = len(chosen) > limit, chosen[:limit]
            if chosen:
                db.execute(
                    update(deliveries)
                    .where(deliveries.c.seq.in_(chosen), deliveries.c.status == FAILED)
                    .values(status=PENDING, next_attempt_at=now, lease=None, lease_until=None, updated_at=now)
                )
                self.database.doorbell.ring(db)
            return len(chosen), more

    def log(self, subscription_id: str, limit: int) -> list[dict]:
        with self.database.engine.connect() as db:
            rows = db.execute(
                select(
                    deliveries.c.seq,
                    deliveries.c.id,
                    deliveries.c.status,
                    deliveries.c.attempts,
                    deliveries.c.next_attempt_at,
                    deliveries.c.last_status_code,
                    deliveries.c.last_error,
                    deliveries.c.created_at,
                    events.c.id.label("event_id"),
                )
                .join(events, events.c.seq == deliveries.c.event_seq)
                .where(deliveries.c.subscription_id == subscription_id)
                .order_by(deliveries.c.seq.desc())
                .limit(limit)
            ).all()
            seqs = [r.seq for r in rows]
            tries: dict[int, list] = {}
            if seqs:
                for a in db.execute(
                    select(attempts).where(attempts.c.delivery_seq.in_(seqs)).order_by(attempts.c.seq)
                ).all():
                    tries.setdefault(a.delivery_seq, []).append(
                        {
                            "at": iso(a.attempted_at),
                            "status_code": a.status_code,
                            "latency_ms": a.latency_ms,
                            "error": a.error,
                        }
                    )
        return [
            {
                "id": r.id,
                "event_id": r.event_id,
                "status": r.status,
                "attempts": tries.get(r.seq, []),
                "next_attempt_at": iso(r.next_attempt_at) if r.status == PENDING else None,
                "created_at": iso(r.created_at),
            }
            for r in rows
        ]

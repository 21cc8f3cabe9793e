"""Read models for the console and /metrics: the state of the outbox, and every account's data seen at once
(the API only ever shows one account its own)."""

from __future__ import annotations

import json

from sqlalchemy import case, func, select

from connector.storage.database import Database
from connector.storage.tables import (
    ACTIVE,
    DISABLED,
    FAILED,
    PENDING,
    SUCCEEDED,
    accounts,
    attempts,
    deliveries,
    events,
    fanout,
    subscriptions,
)


class Views:
    """Reads across every account, for operators: never shown to an account through the API."""

    def __init__(self, database: Database):
        self.database = database

    def state(self, now: float) -> dict:
        """At ``now``: the fan-out queue and the deliveries due now (each with how long its oldest item has
        been due), the deliveries waiting for a later try, deliveries and subscriptions by status.
        Deliveries of subscriptions that are not active are not due: no worker takes them."""
        due = (
            deliveries.c.status == PENDING,
            deliveries.c.next_attempt_at <= now,
            deliveries.c.subscription_id.in_(select(subscriptions.c.id).where(subscriptions.c.status == ACTIVE)),
        )
        with self.database.engine.connect() as db:
            queued, queued_since = db.execute(select(func.count(), func.min(fanout.c.received_at))).one()
            waiting, due_since = db.execute(
                select(func.count(), func.min(deliveries.c.next_attempt_at)).where(*due)
            ).one()
            later = db.execute(
                select(func.count()).where(deliveries.c.status == PENDING, deliveries.c.next_attempt_at > now)
            ).scalar()
            by_status: dict[str, int] = dict(
                db.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status)).all()
            )
            by_subscription_status: dict[str, int] = dict(
                db.execute(select(subscriptions.c.status, func.count()).group_by(subscriptions.c.status)).all()
            )
        return {
            "fanout": {"depth": queued, "oldest_seconds": max(0.0, now - queued_since) if queued else 0.0},
            "deliveries": {
                "depth": waiting,
                "oldest_seconds": max(0.0, now - due_since) if waiting else 0.0,
                "later": later,
                "by_status": {status: by_status.get(status, 0) for status in (PENDING, SUCCEEDED, FAILED)} | by_status,
            },
            "subscriptions": {status: by_subscription_status.get(status, 0) for status in (ACTIVE, DISABLED)}
            | by_subscription_status,
        }

    def counts(self) -> dict:
        with self.database.engine.connect() as db:
            return {
                status: count
                for status, count in db.execute(
                    select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
                ).all()
            }

    def events_per_hour(self, start: float, hours: int) -> list[int]:
        """Events received in each of the ``hours`` hours from ``start``, oldest first."""
        edges = [start + 3600 * n for n in range(hours + 1)]
        # Bucketed by comparisons, not by dividing: SQLite truncates a float cast to an integer where
        # PostgreSQL rounds it.
        hour = case(*[(events.c.received_at < edges[n + 1], n) for n in range(hours)], else_=hours - 1)
        received = (
            select(hour.label("hour"))
            .where(events.c.received_at >= edges[0], events.c.received_at < edges[-1])
            .subquery()
        )
        counts = [0] * hours
        with self.database.engine.connect() as db:
            for n, count in db.execute(select(received.c.hour, func.count()).group_by(received.c.hour)).all():
                counts[n] = count
        return counts

    def accounts(self) -> list[dict]:
        """Every account, with how many subscriptions it has in each status."""
        with self.database.engine.connect() as db:
            rows = db.execute(
                select(accounts.c.id, accounts.c.login, accounts.c.created_at).order_by(accounts.c.login)
            ).all()
            tally: dict[int, dict] = {}
            for account_id, status, count in db.execute(
                select(subscriptions.c.account_id, subscriptions.c.status, func.count()).group_by(
                    subscriptions.c.account_id, subscriptions.c.status
                )
            ).all():
                tally.setdefault(account_id, {})[status] = count
        return [
            {"id": r.id, "login": r.login, "created_at": r.created_at, "subscriptions": tally.get(r.id, {})}
            for r in rows
        ]

    def subscriptions(self) -> list[dict]:
        """Every subscription with its account's login; signing secrets stay out."""
        with self.database.engine.connect() as db:
            rows = db.execute(
                select(*[c for c in subscriptions.c if c.name != "secret"], accounts.c.login)
                .join(accounts, accounts.c.id == subscriptions.c.account_id)
                .order_by(accounts.c.login, subscriptions.c.created_at)
            ).all()
        return [dict(r._mapping) for r in rows]

    def subscription(self, subscription_id: str) -> dict | None:
        with self.database.engine.connect() as db:
            row = db.execute(
                select(subscriptions.c.id, subscriptions.c.status).where(subscriptions.c.id == subscription_id)
            ).first()
        return dict(row._mapping) if row else None

    def find_events(
        self,
        *,
        event_type: str | None = None,
        data_fields: dict | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[dict]:
        """Newest first, of every account: each with its login and its deliveries counted by status.
        ``data_fields`` are exact values of top-level fields of the event's data."""
        query = select(
            events.c.seq,
            events.c.id,
            events.c.type,
            events.c.timestamp,
            events.c.received_at,
            events.c.data,
            accounts.c.login,
        ).join(accounts, accounts.c.id == events.c.account_id)
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
        with self.database.engine.connect() as db:
            rows = db.execute(query.order_by(events.c.seq.desc()).limit(limit)).all()
            outcomes: dict[int, dict] = {}
            if rows:
                for seq, status, count in db.execute(
                    select(deliveries.c.event_seq, deliveries.c.status, func.count())
                    .where(deliveries.c.event_seq.in_([r.seq for r in rows]))
                    .group_by(deliveries.c.event_seq, deliveries.c.status)
                ).all():
                    outcomes.setdefault(seq, {})[status] = count
        return [
            {
                "id": r.id,
                "type": r.type,
                "timestamp": r.timestamp,
                "received_at": r.received_at,
                "login": r.login,
                "data": json.loads(r.data),
                "deliveries": outcomes.get(r.seq, {}),
            }
            for r in rows
        ]

    def event(self, event_id: str) -> dict | None:
        """An event of any account, its payload as received, and each delivery of it with its attempts."""
        with self.database.engine.connect() as db:
            row = db.execute(
                select(events, accounts.c.login)
                .join(accounts, accounts.c.id == events.c.account_id)
                .where(events.c.id == event_id)
            ).first()
            if row is None:
                return None
            sent = db.execute(
                select(
                    deliveries.c.seq,
                    deliveries.c.id,
                    deliveries.c.status,
                    deliveries.c.next_attempt_at,
                    deliveries.c.subscription_id,
                    subscriptions.c.target_url,
                    subscriptions.c.trigger,
                )
                .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
                .where(deliveries.c.event_seq == row.seq)
                .order_by(deliveries.c.seq)
            ).all()
            tries: dict[int, list] = {}
            if sent:
                for a in db.execute(
                    select(attempts).where(attempts.c.delivery_seq.in_([d.seq for d in sent])).order_by(attempts.c.seq)
                ).all():
                    tries.setdefault(a.delivery_seq, []).append(
                        {
                            "at": a.attempted_at,
                            "status_code": a.status_code,
                            "latency_ms": a.latency_ms,
                            "error": a.error,
                        }
                    )
        return {
            "id": row.id,
            "account_id": row.account_id,
            "login": row.login,
            "type": row.type,
            "timestamp": row.timestamp,
            "received_at": row.received_at,
            "data": json.loads(row.data),
            "raw": json.loads(row.raw),
            "deliveries": [
                {
                    "id": d.id,
                    "status": d.status,
                    "subscription_id": d.subscription_id,
                    "target_url": d.target_url,
                    "trigger": d.trigger,
                    "next_attempt_at": d.next_attempt_at if d.status == PENDING else None,
                    "attempts": tries.get(d.seq, []),
                }
                for d in sent
            ],
        }

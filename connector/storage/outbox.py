"""The outbox: deliveries leased to workers, and their attempts recorded."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, String, Text, bindparam, case, func, insert, null, or_, select, update
from sqlalchemy.sql.expression import BindParameter

from connector.storage.database import Database
from connector.storage.events import EventStore
from connector.storage.subscriptions import SubscriptionStore
from connector.storage.tables import (
    ACTIVE,
    DISABLED,
    PENDING,
    SUCCEEDED,
    Due,
    attempts,
    deliveries,
    events,
    fanout,
    new_id,
    subscriptions,
)


class Outbox:
    """Deliveries leased to workers and moved on by their outcomes."""

    def __init__(self, database: Database, event_store: EventStore, subscription_store: SubscriptionStore):
        self.database = database
        self._events = event_store
        self._subscriptions = subscription_store

    def claim(self, limit: int, now: float, lease_seconds: float, skip_subscriptions=()) -> list[Due]:
        """Up to ``limit`` due deliveries, leased to the caller: no other worker takes them until the
        lease ends, and a worker that dies simply lets its lease run out. Deliveries to
        ``skip_subscriptions`` (those the caller has enough of in flight) are left for later."""
        return self.finish_and_claim([], now, limit, lease_seconds, skip_subscriptions)

    def finish_and_claim(
        self,
        outcomes: list[dict],
        now: float,
        limit: int,
        lease_seconds: float,
        skip_subscriptions=(),
        later_accounts=(),
    ) -> list[Due]:
        """finish(outcomes), fan_out(now), then claim(...), in one transaction: a worker commits once a
        turn, and a new event's deliveries are claimed as soon as they exist.

        Deliveries of ``later_accounts`` (those that have more than their share out) are claimed only with the
        room the other accounts' due deliveries leave: one account's backlog, however old and over however
        many subscriptions, does not keep every other account waiting behind it."""
        if not outcomes:
            statements = self.database.statements("claim", lambda: _claim_statements(self.database.skip_locked))
            with self.database.engine.connect() as db:
                # A read first: an idle worker polling often must not take the write lock each time.
                if db.execute(statements["any_queued"]).first() is None and (
                    limit <= 0 or db.execute(statements["any_due"], {"b_now": now}).first() is None
                ):
                    return []
        with self.database.writing() as db:
            noted = self._finish_in(db, outcomes, now)
            self._events.fan_out_in(db, now)
            claimed = []
            if limit > 0 and later_accounts:
                claimed = self._claim_in(db, limit, now, lease_seconds, skip_subscriptions, sorted(later_accounts))
            if limit - len(claimed) > 0:
                claimed += self._claim_in(db, limit - len(claimed), now, lease_seconds, skip_subscriptions)
            # Last: every worker writes these few rows, and holds them until it commits.
            self._note_subscriptions(db, noted)
            return claimed

    def _claim_in(
        self, db, limit: int, now: float, lease_seconds: float, skip_subscriptions, other_than_accounts=()
    ) -> list[Due]:
        statements = self.database.statements("claim", lambda: _claim_statements(self.database.skip_locked))
        lease = new_id("lease")
        values = {"b_now": now, "b_limit": limit, "b_lease": lease, "b_until": now + lease_seconds}
        # The conditions are checked again on each row: a row another worker took meanwhile is skipped.
        if other_than_accounts:
            db.execute(
                statements["lease_others"],
                {**values, "b_skip": list(skip_subscriptions), "b_busy": list(other_than_accounts)},
            )
        elif skip_subscriptions:
            db.execute(statements["lease_skipping"], {**values, "b_skip": list(skip_subscriptions)})
        else:
            db.execute(statements["lease"], values)
        rows = db.execute(statements["leased"], {"b_lease": lease}).all()
        secrets_of: dict[str, str] = {}
        for r in rows:
            if r.sub_id not in secrets_of:
                secrets_of[r.sub_id] = self._subscriptions.secret(r.sub_id, r.secret)
        return [
            Due(
                r.seq,
                r.id,
                lease,
                r.attempts,
                r.event_id,
                r.type,
                r.timestamp,
                r.data,
                r.sub_id,
                r.target_url,
                secrets_of[r.sub_id],
                r.next_attempt_at,
                r.account_id,
            )
            for r in rows
        ]

    def finish(self, outcomes: list[dict], now: float) -> None:
        """Record attempts and move deliveries on, all in one transaction.

        Each outcome: ``due`` (a Due), ``attempted_at``, ``status_code``, ``latency_ms``, ``error``, and
        what comes next: ``status`` (pending/succeeded/failed), ``next_attempt_at``, and optionally
        ``subscription`` ("gone" or "disable", with a ``reason``).
        """
        if not outcomes:
            return
        with self.database.writing() as db:
            self._note_subscriptions(db, self._finish_in(db, outcomes, now))

    def _finish_in(self, db, outcomes: list[dict], now: float) -> list[dict]:
        """Record the attempts and move the deliveries on; what to note on their subscriptions is returned,
        for :meth:`_note_subscriptions` at the end of the transaction."""
        if not outcomes:
            return []
        statements = self.database.statements("finish", _finish_statements)
        # A delivery unsubscribed (or pruned) while it was out is gone, with its log: nothing to record.
        still = set(db.execute(statements["existing"], {"b_seqs": [o["due"].seq for o in outcomes]}).scalars())
        # Rows are always taken in the same order (by number, by id), so that workers finishing at the
        # same moment wait for each other instead of deadlocking.
        outcomes = sorted((o for o in outcomes if o["due"].seq in still), key=lambda o: o["due"].seq)
        postponed = [o for o in outcomes if o.get("postponed")]
        if postponed:
            # Held back by the worker (its host had had enough for the moment), not tried: no attempt, the
            # same count, due again later.
            db.execute(
                statements["postpone"],
                [
                    {"b_seq": o["due"].seq, "b_lease": o["due"].lease, "b_next": o["next_attempt_at"], "b_now": now}
                    for o in postponed
                ],
            )
            outcomes = [o for o in outcomes if not o.get("postponed")]
        if not outcomes:
            return []
        db.execute(
            statements["attempt"],
            [
                {
                    "delivery_seq": o["due"].seq,
                    "attempted_at": o["attempted_at"],
                    "status_code": o["status_code"],
                    "latency_ms": o["latency_ms"],
                    "error": o["error"],
                }
                for o in outcomes
            ],
        )
        db.execute(
            statements["move_on"],
            [
                {
                    "b_seq": o["due"].seq,
                    "b_lease": o["due"].lease,
                    "b_status": o["status"],
                    "b_next": o["next_attempt_at"],
                    "b_code": o["status_code"],
                    "b_error": o["error"],
                    "b_now": now,
                }
                for o in outcomes
            ],
        )
        by_subscription: dict[str, list[dict]] = {}
        for o in outcomes:
            by_subscription.setdefault(o["due"].subscription_id, []).append(o)
        changes = []
        for subscription_id, mine in sorted(by_subscription.items()):
            if any(o.get("subscription") == "gone" for o in mine):
                self._subscriptions.forget(db, subscription_id)
                continue
            last = max(mine, key=lambda o: o["attempted_at"])
            failures = [o["attempted_at"] for o in mine if o["status"] != SUCCEEDED]
            disabled = [o for o in mine if o.get("subscription") == "disable"]
            changes.append(
                {
                    "b_id": subscription_id,
                    "b_at": last["attempted_at"],
                    "b_code": last["status_code"],
                    "b_ok": last["status"] == SUCCEEDED,
                    "b_first": min(failures, default=None),
                    "b_status": DISABLED if disabled else None,
                    "b_reason": disabled[0].get("reason") if disabled else None,
                }
            )
        return changes

    def _note_subscriptions(self, db, changes: list[dict]) -> None:
        if changes:
            db.execute(self.database.statements("finish", _finish_statements)["subscription"], changes)

    def give_back(self, unfinished: list[Due], now: float) -> int:
        """Give back deliveries a stopping worker claimed and did not finish: due as they were, for any worker
        to take at once rather than after the lease, with no attempt counted. One whose lease ran out and
        that another worker took since is left alone. How many went back."""
        if not unfinished:
            return 0
        # A lease id belongs to one claim of one worker: a row holding one of these is one of these rows.
        with self.database.writing() as db:
            return db.execute(
                update(deliveries)
                .where(
                    deliveries.c.seq.in_(sorted({d.seq for d in unfinished})),
                    deliveries.c.lease.in_(sorted({d.lease for d in unfinished})),
                    deliveries.c.status == PENDING,
                )
                .values(lease=None, lease_until=None, updated_at=now)
            ).rowcount


def _claim_statements(skip_locked) -> dict:
    now: BindParameter[float] = bindparam("b_now")
    free = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
    due = select(deliveries.c.seq).where(
        deliveries.c.status == PENDING,
        deliveries.c.next_attempt_at <= now,
        free,
        deliveries.c.subscription_id.in_(select(subscriptions.c.id).where(subscriptions.c.status == ACTIVE)),
    )
    skipping = due.where(deliveries.c.subscription_id.not_in(bindparam("b_skip", expanding=True)))
    others = skipping.where(
        deliveries.c.subscription_id.in_(
            select(subscriptions.c.id).where(subscriptions.c.account_id.not_in(bindparam("b_busy", expanding=True)))
        )
    )

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
        "any_due": select(deliveries.c.seq)
        .where(deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now)
        .limit(1),
        "any_queued": select(fanout.c.event_seq).limit(1),
        "lease": lease(due),
        "lease_skipping": lease(skipping),
        "lease_others": lease(others),
        "leased": select(
            deliveries.c.seq,
            deliveries.c.id,
            deliveries.c.attempts,
            deliveries.c.next_attempt_at,
            events.c.id.label("event_id"),
            events.c.type,
            events.c.timestamp,
            events.c.data,
            subscriptions.c.id.label("sub_id"),
            subscriptions.c.target_url,
            subscriptions.c.secret,
            subscriptions.c.account_id,
        )
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
        .values(
            status=bindparam("b_status"),
            attempts=deliveries.c.attempts + 1,
            next_attempt_at=bindparam("b_next"),
            lease=None,
            lease_until=None,
            updated_at=bindparam("b_now"),
            last_status_code=bindparam("b_code"),
            last_error=bindparam("b_error"),
        ),
        "postpone": update(deliveries)
        .where(deliveries.c.seq == bindparam("b_seq"), deliveries.c.lease == bindparam("b_lease"))
        .values(next_attempt_at=bindparam("b_next"), lease=None, lease_until=None, updated_at=bindparam("b_now")),
        # What the subscription shows of its latest attempts: since when it has been failing (kept from
        # the first failure until a success), and whether it was disabled.
        "subscription": update(subscriptions)
        .where(subscriptions.c.id == bindparam("b_id"))
        .values(
            last_attempt_at=bindparam("b_at"),
            last_status_code=bindparam("b_code"),
            failing_since=case(
                (bindparam("b_ok", type_=Boolean), null()),
                else_=func.coalesce(subscriptions.c.failing_since, bindparam("b_first", type_=Float)),
            ),
            status=func.coalesce(bindparam("b_status", type_=String), subscriptions.c.status),
            status_reason=case(
                (bindparam("b_status", type_=String).is_(None), subscriptions.c.status_reason),
                else_=bindparam("b_reason", type_=Text),
            ),
        ),
    }

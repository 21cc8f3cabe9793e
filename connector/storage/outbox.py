"""The outbox: deliveries leased to workers, and their attempts recorded."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Integer,
    String,
    Text,
    bindparam,
    case,
    exists,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.sql.expression import BindParameter

from connector.storage.database import Database, unnested
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
        statements = self.database.statements("claim", lambda: _claim_statements(self.database))
        if not outcomes:
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
        statements = self.database.statements("claim", lambda: _claim_statements(self.database))
        lease = new_id("lease")
        values = {"b_now": now, "b_limit": limit, "b_lease": lease, "b_until": now + lease_seconds}
        # On PostgreSQL a row another worker holds is passed over, and the conditions are checked again on the
        # rows locked: one another worker took meanwhile is skipped. On SQLite writers take turns.
        if other_than_accounts:
            name = "lease_others"
            values.update(b_skip=list(skip_subscriptions), b_busy=list(other_than_accounts))
        elif skip_subscriptions:
            name = "lease_skipping"
            values.update(b_skip=list(skip_subscriptions))
        else:
            name = "lease"
        if self.database.sqlite:
            seqs = list(db.execute(statements[name], values).scalars())
            rows = db.execute(statements["leased"], {"b_seqs": seqs}).all() if seqs else []
        else:  # leased and read back in one statement
            in_due_order(db)
            rows = db.execute(statements[name], values).all()
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
        statements = self.database.statements("finish", lambda: _finish_statements(self.database))
        # Rows are always taken in the same order (by number, by id), so that workers finishing at the
        # same moment wait for each other instead of deadlocking.
        outcomes = sorted(outcomes, key=lambda o: o["due"].seq)
        if self.database.sqlite:
            # A delivery unsubscribed (or pruned) while it was out is gone, with its log: nothing to record.
            still = set(db.execute(statements["existing"], {"b_seqs": [o["due"].seq for o in outcomes]}).scalars())
            outcomes = [o for o in outcomes if o["due"].seq in still]
        postponed = [o for o in outcomes if o.get("postponed")]
        if postponed:
            # Held back by the worker (its host had had enough for the moment), not tried: no attempt, the
            # same count, due again later. (A delivery gone meanwhile matches no row.)
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
        if self.database.sqlite:
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
        else:
            # One statement for the lot (a statement per row cost more than the rows): attempts recorded for the
            # deliveries still there, which it answers, and those still leased to this worker moved on.
            still = set(
                db.execute(
                    statements["record"],
                    {
                        "b_seqs": [o["due"].seq for o in outcomes],
                        "b_leases": [o["due"].lease for o in outcomes],
                        "b_statuses": [o["status"] for o in outcomes],
                        "b_nexts": [o["next_attempt_at"] for o in outcomes],
                        "b_codes": [o["status_code"] for o in outcomes],
                        "b_errors": [o["error"] for o in outcomes],
                        "b_ats": [o["attempted_at"] for o in outcomes],
                        "b_latencies": [o["latency_ms"] for o in outcomes],
                        "b_now": now,
                    },
                ).scalars()
            )
            outcomes = [o for o in outcomes if o["due"].seq in still]
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
        if not changes:
            return
        statements = self.database.statements("finish", lambda: _finish_statements(self.database))
        if self.database.sqlite:
            db.execute(statements["subscription"], changes)
        else:  # one statement, the rows locked in the order of their ids
            db.execute(
                statements["subscriptions"],
                {
                    arrays: [change[name] for change in changes]
                    for arrays, name in (
                        ("b_ids", "b_id"),
                        ("b_ats", "b_at"),
                        ("b_codes", "b_code"),
                        ("b_oks", "b_ok"),
                        ("b_firsts", "b_first"),
                        ("b_statuses", "b_status"),
                        ("b_reasons", "b_reason"),
                    )
                },
            )

    def give_back(self, unfinished: list[Due], now: float) -> int:
        """Give back deliveries a stopping worker claimed and did not finish: due as they were, for any worker
        to take at once rather than after the lease, with no attempt counted. One whose lease ran out and
        that another worker took since is left alone. How many went back."""
        if not unfinished:
            return 0
        # A lease id belongs to one claim of one worker: a row holding one of these is one of these rows.
        with self.database.writing() as db:
            self.database.doorbell.ring(db)  # due at once: the other workers are woken
            return db.execute(
                update(deliveries)
                .where(
                    deliveries.c.seq.in_(sorted({d.seq for d in unfinished})),
                    deliveries.c.lease.in_(sorted({d.lease for d in unfinished})),
                    deliveries.c.status == PENDING,
                )
                .values(lease=None, lease_until=None, updated_at=now)
            ).rowcount


def in_due_order(db) -> None:
    """PostgreSQL, in the claim's transaction: the claim reads the due-order index from its start and stops at
    its limit. A queue's statistics are seldom fresh (a burst, a new table: autovacuum analyses it within a
    minute), and a planner that believes the backlog small fetches all of it by bitmap and sorts it instead:
    13 ms a claim for 10,000 due deliveries, against 0.4 ms, every turn, while the backlog lasts."""
    db.exec_driver_sql("SET LOCAL enable_bitmapscan = off")


def _claim_statements(database: Database) -> dict:
    now: BindParameter[float] = bindparam("b_now")
    free = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
    active = select(subscriptions.c.id).where(subscriptions.c.status == ACTIVE)
    due = select(deliveries.c.seq).where(
        deliveries.c.status == PENDING,
        deliveries.c.next_attempt_at <= now,
        free,
        deliveries.c.subscription_id.in_(active),
    )
    skipping = due.where(deliveries.c.subscription_id.not_in(bindparam("b_skip", expanding=True)))
    not_busy = subscriptions.c.account_id.not_in(bindparam("b_busy", expanding=True))
    others = skipping.where(
        deliveries.c.subscription_id.in_(select(subscriptions.c.id).where(not_busy)),
        # Asked once, before any delivery is read (PostgreSQL plans it as a one-time filter): without it, a
        # claim would read through the busy accounts' whole backlog, first in due order, to learn that no
        # other account has anything to send.
        exists(active.where(not_busy, subscriptions.c.id.not_in(bindparam("b_skip", expanding=True)))),
    )
    taking = update(deliveries).values(lease=bindparam("b_lease"), lease_until=bindparam("b_until"))

    def lease(chosen):
        # By due time, then in the order the deliveries were made (an event's to every subscription together):
        # the order of the index deliveries_due_in_order, read from its start.
        chosen = chosen.order_by(deliveries.c.next_attempt_at, deliveries.c.seq).limit(bindparam("b_limit"))
        if database.sqlite:
            # One writer at a time: what the subquery chose is still free when taken. (Said again here, the
            # conditions made SQLite read every pending row rather than the chosen ones by number.)
            return taking.where(deliveries.c.seq.in_(chosen.scalar_subquery())).returning(deliveries.c.seq)
        # PostgreSQL may run a subquery under IN more than once, each run locking rows of its own, and so lease
        # more than the limit; a CTE is run once. What it leased is read back in the same statement.
        chosen = database.skip_locked(chosen).cte("chosen")
        taken = taking.where(deliveries.c.seq == chosen.c.seq).returning(*_taken_columns(deliveries)).cte("taken")
        return _leased(taken)

    return {
        "any_due": select(deliveries.c.seq)
        .where(deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now)
        .limit(1),
        "any_queued": select(fanout.c.event_seq).limit(1),
        "lease": lease(due),
        "lease_skipping": lease(skipping),
        "lease_others": lease(others),
        "leased": _leased(
            select(*_taken_columns(deliveries))
            .where(deliveries.c.seq.in_(bindparam("b_seqs", expanding=True)))
            .subquery("taken")
        ),
    }


def _taken_columns(table) -> list:
    return [
        table.c.seq,
        table.c.id,
        table.c.attempts,
        table.c.next_attempt_at,
        table.c.event_seq,
        table.c.subscription_id,
    ]


def _leased(taken):
    """The deliveries ``taken`` with what sending them needs, in the order they were claimed."""
    return (
        select(
            taken.c.seq,
            taken.c.id,
            taken.c.attempts,
            taken.c.next_attempt_at,
            events.c.id.label("event_id"),
            events.c.type,
            events.c.timestamp,
            events.c.data,
            subscriptions.c.id.label("sub_id"),
            subscriptions.c.target_url,
            subscriptions.c.secret,
            subscriptions.c.account_id,
        )
        .join_from(taken, events, events.c.seq == taken.c.event_seq)
        .join(subscriptions, subscriptions.c.id == taken.c.subscription_id)
        .order_by(taken.c.next_attempt_at, taken.c.seq)
    )


def _finish_statements(database: Database) -> dict:
    return {
        **({} if database.sqlite else {"record": _record_statement(), "subscriptions": _notes_statement()}),
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
        "subscription": update(subscriptions)
        .where(subscriptions.c.id == bindparam("b_id"))
        .values(
            _noted(
                bindparam("b_at", type_=Float),
                bindparam("b_code", type_=Integer),
                bindparam("b_ok", type_=Boolean),
                bindparam("b_first", type_=Float),
                bindparam("b_status", type_=String),
                bindparam("b_reason", type_=Text),
            )
        ),
    }


def _record_statement():
    """PostgreSQL: a turn's outcomes, sent as one array per field, recorded in one statement. Attempts are kept
    for the deliveries still there (their numbers are the answer); only those still leased to the worker are
    moved on, locked first in the order of their numbers, as everywhere."""
    tried = unnested(
        ("seq", "b_seqs", BigInteger),
        ("lease", "b_leases", String),
        ("status", "b_statuses", String),
        ("next", "b_nexts", Float),
        ("code", "b_codes", Integer),
        ("error", "b_errors", Text),
        ("at", "b_ats", Float),
        ("latency", "b_latencies", Integer),
    )
    # The rows to move on, with what to write in them. A generic plan (the statement is prepared) cannot know
    # how many outcomes there are: the update is driven by these rows, never by the arrays again.
    locked = (
        select(deliveries.c.seq, tried.c.status, tried.c.next, tried.c.code, tried.c.error)
        .join(tried, (tried.c.seq == deliveries.c.seq) & (tried.c.lease == deliveries.c.lease))
        .order_by(deliveries.c.seq)
        .with_for_update(key_share=True, of=deliveries)
        .cte("locked")
    )
    moved = (
        update(deliveries)
        .where(deliveries.c.seq == locked.c.seq)
        .values(
            status=locked.c.status,
            attempts=deliveries.c.attempts + 1,
            next_attempt_at=locked.c.next,
            lease=None,
            lease_until=None,
            updated_at=bindparam("b_now"),
            last_status_code=locked.c.code,
            last_error=locked.c.error,
        )
        .cte("moved")
    )
    recorded = (
        insert(attempts)
        .from_select(
            ["delivery_seq", "attempted_at", "status_code", "latency_ms", "error"],
            select(tried.c.seq, tried.c.at, tried.c.code, tried.c.latency, tried.c.error).join(
                deliveries, deliveries.c.seq == tried.c.seq
            ),
        )
        .returning(attempts.c.delivery_seq)
        .cte("recorded")
    )
    return select(recorded.c.delivery_seq).add_cte(moved)


def _noted(at, code, ok, first, status, reason) -> dict:
    """What a subscription shows of its latest attempts: since when it has been failing (kept from the first
    failure until a success), and whether it was disabled."""
    return {
        subscriptions.c.last_attempt_at: at,
        subscriptions.c.last_status_code: code,
        subscriptions.c.failing_since: case((ok, null()), else_=func.coalesce(subscriptions.c.failing_since, first)),
        subscriptions.c.status: func.coalesce(status, subscriptions.c.status),
        subscriptions.c.status_reason: case((status.is_(None), subscriptions.c.status_reason), else_=reason),
    }


def _notes_statement():
    """PostgreSQL: what a turn notes on its subscriptions, sent as one array per field, in one statement."""
    given = unnested(
        ("id", "b_ids", String),
        ("at", "b_ats", Float),
        ("code", "b_codes", Integer),
        ("ok", "b_oks", Boolean),
        ("first", "b_firsts", Float),
        ("status", "b_statuses", String),
        ("reason", "b_reasons", Text),
    )
    # Every worker writes these rows each turn: locked in the order of their ids, as with one statement each.
    locked = (
        select(subscriptions.c.id, *(given.c[name] for name in ("at", "code", "ok", "first", "status", "reason")))
        .join(given, given.c.id == subscriptions.c.id)
        .order_by(subscriptions.c.id)
        .with_for_update(key_share=True, of=subscriptions)
        .cte("noted")
    )
    return (
        update(subscriptions)
        .where(subscriptions.c.id == locked.c.id)
        .values(_noted(locked.c.at, locked.c.code, locked.c.ok, locked.c.first, locked.c.status, locked.c.reason))
    )


def next_due(database: Database, now: float) -> float | None:
    """When the first delivery no worker holds is due (or was: then at once) to an active subscription, if any:
    a worker at rest sleeps until then."""
    with database.engine.connect() as db:
        return db.execute(database.statements("next_due", _next_due_statement), {"b_now": now}).scalar()


def _next_due_statement():
    now: BindParameter[float] = bindparam("b_now")
    return (
        select(deliveries.c.next_attempt_at)
        .where(
            deliveries.c.status == PENDING,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
            deliveries.c.subscription_id.in_(select(subscriptions.c.id).where(subscriptions.c.status == ACTIVE)),
        )
        .order_by(deliveries.c.next_attempt_at)
        .limit(1)
    )

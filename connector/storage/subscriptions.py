"""The subscriptions: where each account's events of a type go, with what each shows of its latest
deliveries."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update

from connector.events import signing
from connector.storage.database import Database
from connector.storage.tables import ACTIVE, accounts, attempts, deliveries, new_id, subscriptions


class SubscriptionLimit(Exception):
    """The account already has as many subscriptions on this trigger as it may."""

    def __init__(self, limit: int):
        super().__init__(f"at most {limit} subscriptions per trigger")
        self.limit = limit


class SubscriptionStore:
    """Subscriptions of one account at a time, with their signing secrets."""

    def __init__(self, database: Database, secret_key: str | None = None):
        self.database = database
        self._secret_key = secret_key  # signing secrets are derived from it

    def add(
        self, account_id: int, trigger: str, event_type: str, target_url: str, now: float, limit: int | None = None
    ) -> tuple[dict, bool]:
        """(the subscription, whether it is new). The same target on the same trigger again is the
        subscription already there, made active again: platforms subscribe again when a flow is turned
        back on, and a second one would send every event twice. SubscriptionLimit when the account has
        ``limit`` subscriptions on this trigger already."""
        with self.database.writing() as db:
            if not self.database.sqlite:
                # Subscriptions of one account are made one at a time, so two at once cannot both pass the
                # limit or both add the same target. (On SQLite writers already take turns.)
                db.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update())
            mine = db.execute(
                select(subscriptions).where(
                    subscriptions.c.account_id == account_id, subscriptions.c.trigger == trigger
                )
            ).all()
            same = next((dict(r._mapping) for r in mine if r.target_url == target_url), None)
            if same is not None:
                if same["status"] != ACTIVE:
                    db.execute(
                        update(subscriptions)
                        .where(subscriptions.c.id == same["id"])
                        .values(status=ACTIVE, status_reason=None, failing_since=None)
                    )
                    self.database.doorbell.ring(db)  # its deliveries waiting are due again
                    same.update(status=ACTIVE, status_reason=None, failing_since=None)
                return self._signing(same), False
            if limit is not None and len(mine) >= limit:
                raise SubscriptionLimit(limit)
            row = {
                "id": new_id("sub"),
                "account_id": account_id,
                "trigger": trigger,
                "event_type": event_type,
                "target_url": target_url,
                "secret": "",
                "created_at": now,
                "status": ACTIVE,
            }
            db.execute(insert(subscriptions).values(**row))
        return self._signing(row), True

    def _signing(self, row: dict) -> dict:
        """The row with its signing secret: the one kept from before secrets were derived, else derived."""
        return {**row, "secret": row["secret"] or self._derived(row["id"])}

    def secret(self, subscription_id: str, kept: str = "") -> str:
        return kept or self._derived(subscription_id)

    def _derived(self, subscription_id: str) -> str:
        if self._secret_key is None:  # a store built without one can keep subscriptions but not sign for them
            raise ValueError("signing secrets are derived from the secret key, and this store was given none")
        return signing.derived_secret(self._secret_key, subscription_id)

    def of_account(self, account_id: int, trigger: str | None = None) -> list[dict]:
        query = select(subscriptions).where(subscriptions.c.account_id == account_id)
        if trigger:
            query = query.where(subscriptions.c.trigger == trigger)
        with self.database.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query.order_by(subscriptions.c.created_at)).all()]

    def get(self, account_id: int, subscription_id: str) -> dict | None:
        with self.database.engine.connect() as db:
            row = db.execute(
                select(subscriptions).where(
                    subscriptions.c.id == subscription_id, subscriptions.c.account_id == account_id
                )
            ).first()
        return dict(row._mapping) if row else None

    def remove(self, account_id: int | None, subscription_id: str) -> bool:
        with self.database.writing() as db:
            owned = select(subscriptions.c.id).where(subscriptions.c.id == subscription_id)
            if account_id is not None:
                owned = owned.where(subscriptions.c.account_id == account_id)
            if db.execute(owned).first() is None:
                return False
            self.forget(db, subscription_id)
            return True

    def set_status(self, subscription_id: str, status: str, reason: str | None) -> None:
        with self.database.writing() as db:
            db.execute(
                update(subscriptions)
                .where(subscriptions.c.id == subscription_id)
                .values(
                    status=status,
                    status_reason=reason,
                    failing_since=None if status == ACTIVE else subscriptions.c.failing_since,
                )
            )
            if status == ACTIVE:
                self.database.doorbell.ring(db)  # its deliveries waiting are due again

    def failing_since(self, subscription_ids) -> dict[str, float]:
        """Since when each of these subscriptions has been failing, for those that are."""
        if not subscription_ids:
            return {}
        with self.database.engine.connect() as db:
            rows = db.execute(
                select(subscriptions.c.id, subscriptions.c.failing_since).where(
                    subscriptions.c.id.in_(list(subscription_ids)), subscriptions.c.failing_since.is_not(None)
                )
            ).all()
        return {row.id: row.failing_since for row in rows}

    @staticmethod
    def forget(db, subscription_id: str) -> None:
        """Delete the subscription with its deliveries and their attempts, in the caller's transaction."""
        doomed = select(deliveries.c.seq).where(deliveries.c.subscription_id == subscription_id).scalar_subquery()
        db.execute(delete(attempts).where(attempts.c.delivery_seq.in_(doomed)))
        db.execute(delete(deliveries).where(deliveries.c.subscription_id == subscription_id))
        db.execute(delete(subscriptions).where(subscriptions.c.id == subscription_id))

"""The accounts: one per AllMySMS login, found by the hash of its token; and the credit watch of each."""

from __future__ import annotations

import time

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from connector.storage.database import Database
from connector.storage.tables import accounts, credit_watch


class AccountStore:
    """Accounts by login and by token hash; the credit watch of each."""

    def __init__(self, database: Database):
        self.database = database

    def ensure(self, login: str, token_hash: str) -> int:
        """The account's id, created on first sight; its token hash follows the current secret key."""
        with self.database.engine.connect() as db:
            row = db.execute(select(accounts.c.id, accounts.c.token_hash).where(accounts.c.login == login)).first()
        if row is not None and row.token_hash == token_hash:
            return row.id
        with self.database.writing() as db:
            # Two processes seeing a login for the first time at once: the unique login decides.
            db.execute(
                self.database.insert(accounts)
                .on_conflict_do_nothing(index_elements=["login"])
                .values(login=login, token_hash=token_hash, created_at=time.time())
            )
            row = db.execute(select(accounts.c.id, accounts.c.token_hash).where(accounts.c.login == login)).one()
            if row.token_hash != token_hash:
                db.execute(update(accounts).where(accounts.c.id == row.id).values(token_hash=token_hash))
            return row.id

    def by_token_hash(self, token_hash: str) -> tuple[int, str] | None:
        """(id, login) of the account whose token hashes to ``token_hash``."""
        with self.database.engine.connect() as db:
            row = db.execute(select(accounts.c.id, accounts.c.login).where(accounts.c.token_hash == token_hash)).first()
        return (row.id, row.login) if row else None

    def watch_credits(self, account_id: int, threshold: int, credits: int) -> int | None:
        """Note the account's credits against ``threshold``: the crossing number when they have just
        fallen below it, None otherwise. Rising back above re-arms the watch."""
        below = credits < threshold
        for _ in range(3):  # two first polls at once: one inserts, the other retries as an update
            try:
                with self.database.writing() as db:
                    row = db.execute(
                        select(credit_watch).where(
                            credit_watch.c.account_id == account_id, credit_watch.c.threshold == threshold
                        )
                    ).first()
                    if row is None:
                        db.execute(
                            insert(credit_watch).values(
                                account_id=account_id, threshold=threshold, below=int(below), crossings=int(below)
                            )
                        )
                        return 1 if below else None
                    if below and not row.below:
                        # Only the poller whose update still finds the watch armed counts the crossing.
                        done = db.execute(
                            update(credit_watch)
                            .where(
                                credit_watch.c.account_id == account_id,
                                credit_watch.c.threshold == threshold,
                                credit_watch.c.below == 0,
                            )
                            .values(below=1, crossings=row.crossings + 1)
                        ).rowcount
                        return row.crossings + 1 if done else None
                    if not below and row.below:
                        db.execute(
                            update(credit_watch)
                            .where(credit_watch.c.account_id == account_id, credit_watch.c.threshold == threshold)
                            .values(below=0)
                        )
                    return None
            except IntegrityError:
                continue
        return None

"""Idempotency keys: the results of actions sent with an Idempotency-Key, so that a retry gets the first
answer instead of a second send."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from connector.storage.database import Database
from connector.storage.tables import idempotency_keys


class KeyStore:
    """Idempotency keys, each claimed by the first request that brings it and settled with its answer."""

    def __init__(self, database: Database):
        self.database = database

    def claim(
        self, login: str, key: str, action: str, request_hash: str, now: float, owner: str | None = None
    ) -> dict | None:
        """Take ``key`` for a new request: None when it is ours now, else the row of the request that has
        it (whatever its state). The primary key decides, so two processes cannot both take it."""
        # RETURNING, not the row count: psycopg reports no count for an INSERT that did nothing.
        statement = (
            self.database.insert(idempotency_keys)
            .on_conflict_do_nothing(index_elements=["login", "key"])
            .returning(idempotency_keys.c.key)
        )
        with self.database.writing() as db:
            taken = db.execute(
                statement.values(
                    login=login,
                    key=key,
                    action=action,
                    request_hash=request_hash,
                    state="running",
                    created_at=now,
                    updated_at=now,
                    owner=owner,
                )
            ).first()
            if taken is not None:
                return None
        return self.state(login, key)

    def state(self, login: str, key: str) -> dict | None:
        with self.database.engine.connect() as db:
            row = db.execute(
                select(idempotency_keys).where(idempotency_keys.c.login == login, idempotency_keys.c.key == key)
            ).first()
        return dict(row._mapping) if row else None

    def settle(
        self, login: str, key: str, state: str, status_code: int | None, response: str | None, now: float
    ) -> None:
        with self.database.writing() as db:
            db.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.login == login, idempotency_keys.c.key == key)
                .values(state=state, status_code=status_code, response=response, updated_at=now)
            )

    def undo_claim(self, login: str, key: str, owner: str, created_at: float) -> None:
        """Forget the claim of a key made by ``owner`` at ``created_at`` if it is there and still running:
        the answer to its INSERT was lost, nothing ran under it. Any later claim of the key is left alone."""
        with self.database.writing() as db:
            db.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.login == login,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.owner == owner,
                    idempotency_keys.c.created_at == created_at,
                    idempotency_keys.c.state == "running",
                )
            )

    def release(self, login: str, key: str) -> None:
        """Forget a key whose request did nothing upstream: a retry with it runs afresh."""
        with self.database.writing() as db:
            db.execute(delete(idempotency_keys).where(idempotency_keys.c.login == login, idempotency_keys.c.key == key))

    def prune(self, older_than: float) -> int:
        with self.database.writing() as db:
            return db.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < older_than)).rowcount

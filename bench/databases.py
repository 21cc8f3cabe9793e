"""PostgreSQL schemas for benchmark runs: each run on a schema of its own, made by `connector migrate` as a
release step would, and dropped at the end."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from sqlalchemy import bindparam, create_engine, text

import servers
from connector.store import engine_url

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class Schemas:
    def __init__(self, base_url: str = POSTGRES_URL):
        self.base_url = base_url
        self.made: list[str] = []

    def new(self) -> str:
        """A DATABASE_URL on a new, migrated schema."""
        name = f"bench_{secrets.token_hex(4)}"
        self._admin(f"CREATE SCHEMA {name}")
        self.made.append(name)
        url = f"{self.base_url}?options=-csearch_path%3D{name}&application_name={name}"
        subprocess.run([sys.executable, "-m", "connector.cli", "migrate"], env=servers.clean_env(DATABASE_URL=url),
                       check=True, capture_output=True, timeout=120)
        return url

    def drop_all(self) -> None:
        for name in self.made:
            self._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n",
                        n=name)
            self._admin(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        self.made.clear()

    def _admin(self, statement: str, **values) -> None:
        engine = create_engine(engine_url(self.base_url), isolation_level="AUTOCOMMIT")
        with engine.connect() as db:
            db.execute(text(statement), values)
        engine.dispose()


def counts(database_url: str) -> dict:
    """Rows in the connector's database (SQLite or PostgreSQL), read after its servers stopped."""
    engine = create_engine(engine_url(database_url))
    try:
        with engine.connect() as db:
            def count(table: str) -> int:
                return db.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            return {"events": count("events"), "deliveries": count("deliveries"), "attempts": count("attempts"),
                    "queued": count("fanout"),
                    "by_status": dict(db.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status")).all())}
    finally:
        engine.dispose()


def key_states(database_url: str, login: str, keys: list[str]) -> dict:
    """The state of each of these Idempotency-Keys of ``login`` (running, done, unknown)."""
    if not keys:
        return {}
    engine = create_engine(engine_url(database_url))
    try:
        with engine.connect() as db:
            rows = db.execute(text("SELECT key, state FROM idempotency_keys WHERE login = :login AND key IN :keys")
                              .bindparams(bindparam("keys", expanding=True)), {"login": login, "keys": keys}).all()
    finally:
        engine.dispose()
    return {key: state for key, state in rows}

"""The database schema's version. Alembic's migrations (connector/migrations) make it; every process
checks it when it opens the store, and refuses to run on one it was not written for.

SQLite, the one-machine default, migrates itself on start: there is no release step there, and its
writers already take turns at a file lock. PostgreSQL is migrated by `connector migrate` (the Procfile's
``release:`` line) under an advisory lock, so two releases at once cannot both apply a migration, and web
and worker processes never change a schema that other machines are using.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from .errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
#: The revision a database made before migrations existed is at: its tables are exactly this one's.
FIRST = "0001"
# Any constant both `connector migrate` processes agree on: it names the lock, nothing else.
_ADVISORY_LOCK = 0x616C6C6D79736D73

log = logging.getLogger(__name__)


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The revision this version of the connector is written for."""
    return ScriptDirectory.from_config(_config()).get_current_head()


@functools.cache
def known() -> frozenset[str]:
    return frozenset(script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions())


def current(connection: Connection) -> str | None:
    """The database's revision; None when no migration ever ran on it."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its own chatter; ours says what changed
    return MigrationContext.configure(connection).get_current_revision()


def check(engine: Engine) -> None:
    """Raise ConfigError unless the database is at :func:`head`."""
    with engine.connect() as connection:
        revision = current(connection)
    if revision == head():
        return
    if revision is not None and revision not in known():
        raise ConfigError("The database was migrated by a newer version of the connector", [
            f"its schema is at revision {revision}, which this version does not know (it knows up to {head()}); "
            "run the version that migrated it, or a newer one"])
    raise ConfigError("The database's schema is not the one this version needs", [
        f"it is at {'no revision (empty)' if revision is None else 'revision ' + revision}, this version needs "
        f"{head()}: run `connector migrate` (the Procfile's release step does) with the same DATABASE_URL"])


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to :func:`head`: (revision before, revision after)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends: a second `connector migrate` waits, then finds nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
        before = current(connection)
        if before is not None and before not in known():
            check(engine)  # raises, with the reason
        config = _config(connection)
        if before is None and inspect(connection).has_table("events"):
            command.stamp(config, FIRST)
        if before != head():
            command.upgrade(config, "head")
        after = current(connection)
    if after != before:
        log.info("database schema at %s (was %s)", after, before or "empty")
    return before, after

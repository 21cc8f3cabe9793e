"""The database schema's version. Alembic's migrations (connector/storage/migrations) make it; every process
checks it when it opens the store, and refuses to run on one it cannot work with.

SQLite, the one-machine default, migrates itself on start: there is no release step there, and its
writers already take turns at a file lock. PostgreSQL is migrated by `connector migrate` (the Procfile's
``release:`` line) under an advisory lock, so two releases at once cannot both apply a migration, and web
and worker processes never change a schema that other machines are using.

A release migrates while the previous release still serves (expand first, contract in a later release),
so a process also runs on a schema newer than its own when that schema says it may. Each migration
declares ``readable_by``: the oldest head revision whose code still works on the schema it leaves (an
expand keeps the previous migration's value, a contract names itself; unsaid, it is the revision itself).
An older version cannot read a newer version's migration files, so `connector migrate` writes what they
declare into the database, in the ``connector_schema`` row, in the transaction that migrates.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, Table, column, delete, insert, inspect, select, table, text
from sqlalchemy.engine import Connection, Engine

from connector.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
#: The revision a database made before migrations existed is at: its tables are exactly this one's.
FIRST = "0001"
# Any constant both `connector migrate` processes agree on: it names the lock, nothing else.
_ADVISORY_LOCK = 0x616C6C6D79736D73

log = logging.getLogger(__name__)

bookkeeping = MetaData()
#: One row: the database's revision, and the oldest head revision whose code can run on it. Every later
#: version reads these two columns, whatever it knows of the schema: they never change.
compatibility = Table(
    "connector_schema",
    bookkeeping,
    Column("revision", String(32), primary_key=True),
    Column("readable_by", String(32), nullable=False),
)
_alembic_version = table("alembic_version", column("version_num", String(32)))
#: The newer revisions this process has said it runs on: it says so once for each.
_told: set[str] = set()


def _config(connection: Connection | None = None, migrations: Path = MIGRATIONS) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head(migrations: Path = MIGRATIONS) -> str:
    """The revision this version of the connector is written for."""
    # The migrations shipped end in one revision.
    return cast(str, ScriptDirectory.from_config(_config(None, migrations)).get_current_head())


@functools.cache
def _history(migrations: Path = MIGRATIONS) -> tuple:
    """The migrations, first to last: the history is a line."""
    return tuple(reversed(list(ScriptDirectory.from_config(_config(None, migrations)).walk_revisions())))


@functools.cache
def known(migrations: Path = MIGRATIONS) -> frozenset[str]:
    """This version's revisions: its head and every one before it."""
    return frozenset(script.revision for script in _history(migrations))


def _declared(script) -> str:
    return getattr(script.module, "readable_by", script.revision)


def declaration_problems(migrations: Path = MIGRATIONS) -> list[str]:
    """What is wrong in the migrations' ``readable_by``: each must name its own revision or an earlier one."""
    seen, problems = set(), []
    for script in _history(migrations):
        seen.add(script.revision)
        if _declared(script) not in seen:
            problems.append(
                f"{Path(script.path).name}: readable_by = {_declared(script)!r} is neither its revision "
                f"({script.revision}) nor one before it"
            )
    return problems


@functools.cache
def readable_by(migrations: Path = MIGRATIONS) -> str:
    """The oldest head revision whose code runs on a database at :func:`head`: the latest that any migration
    up to head declares, so that an expand which keeps an older value cannot undo a contract before it."""
    problems = declaration_problems(migrations)
    if problems:
        raise ConfigError("The migrations do not say correctly which versions can run on their schema", problems)
    order = {script.revision: number for number, script in enumerate(_history(migrations))}
    return max((_declared(script) for script in _history(migrations)), key=order.__getitem__)


def current(connection: Connection) -> str | None:
    """The database's revision; None when no migration ever ran on it."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its own chatter; ours says what changed
    return MigrationContext.configure(connection).get_current_revision()


def check(engine: Engine, migrations: Path = MIGRATIONS) -> None:
    """Raise ConfigError unless this version can run on the database: at :func:`head`, or at a newer revision
    that declares itself readable by this version."""
    with engine.connect() as connection:
        revision = current(connection)
        if revision == head(migrations):
            return
        if revision is None or revision in known(migrations):
            raise ConfigError(
                "The database's schema is not the one this version needs",
                [
                    f"it is at {'no revision (empty)' if revision is None else 'revision ' + revision}, this version "
                    f"needs {head(migrations)}: run `connector migrate` (the Procfile's release step does) with the "
                    "same DATABASE_URL"
                ],
            )
        revision, oldest = _newer(connection, revision, migrations)
    if revision not in _told:
        _told.add(revision)
        log.info(
            "database schema at %s, newer than this version's %s, which it declares readable by %s and later: running",
            revision,
            head(migrations),
            oldest,
        )


def _newer(connection: Connection, revision: str, migrations: Path) -> tuple[str, str]:
    """(revision, readable_by) of a database a newer version migrated, when this version can run on it;
    ConfigError otherwise."""
    row = None
    if inspect(connection).has_table(compatibility.name):
        # One statement, so that a migration committing meanwhile cannot pair one revision with another's row;
        # a row of another revision (the database migrated by other means) says nothing.
        row = connection.execute(
            select(compatibility.c.revision, compatibility.c.readable_by).where(
                compatibility.c.revision == select(_alembic_version.c.version_num).scalar_subquery()
            )
        ).first()
    if row is not None and row.readable_by in known(migrations):
        return row.revision, row.readable_by
    if row is None:
        why = "and it does not say which older versions can run on it"
    else:
        revision = row.revision
        why = f"and it can only be used by versions at revision {row.readable_by} or later"
    raise ConfigError(
        "The database was migrated by a newer version of the connector",
        [
            f"its schema is at revision {revision}, which this version does not know (it knows up to "
            f"{head(migrations)}), {why}; run the version that migrated it, or a newer one"
        ],
    )


def migrate(engine: Engine, migrations: Path = MIGRATIONS) -> tuple[str | None, str]:
    """Bring the database to :func:`head`, and its ``connector_schema`` row with it, in one transaction:
    (revision before, revision after). A database a newer version migrated is left as it is when this
    version can run on it, and refused otherwise."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends: a second `connector migrate` waits, then finds nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
        elif connection.dialect.name == "sqlite":
            # pysqlite opens a transaction only before INSERT, UPDATE or DELETE: without this, a migration
            # failing half-way would leave its first tables and columns behind, under the old revision.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        before = current(connection)
        if before is not None and before not in known(migrations):
            _newer(connection, before, migrations)  # raises, with the reason, unless this version can run on it
            log.info(
                "database schema at %s, newer than this version's %s: already current (newer, compatible)",
                before,
                head(migrations),
            )
            return before, before
        oldest = readable_by(migrations)  # migrations that say it wrong change nothing
        config = _config(connection, migrations)
        if before is None and inspect(connection).has_table("events"):
            command.stamp(config, FIRST)
        if before != head(migrations):
            command.upgrade(config, "head")
        after = cast(str, current(connection))  # at head by now
        _note(connection, after, oldest)
    if after != before:
        log.info("database schema at %s (was %s)", after, before or "empty")
    return before, after


def _note(connection: Connection, revision: str, oldest: str) -> None:
    """Write the ``connector_schema`` row, unless it already says this."""
    if connection.execute(select(compatibility.c.revision, compatibility.c.readable_by)).all() != [(revision, oldest)]:
        connection.execute(delete(compatibility))
        connection.execute(insert(compatibility).values(revision=revision, readable_by=oldest))

"""A database migrated by a later version: this version runs on it when the later one's migrations declare
that it can (an expand), and refuses it, saying why, when they do not (a contract)."""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import DBAPIError

from connector.errors import ConfigError
from connector.storage import schema
from connector.storage.database import engine_url
from connector.storage.store import Store
from tests.conftest import stored_receipt as receipt

KEY = "k" * 64

_REVISION = '''"""A later version's migration, written by a test."""

from alembic import op
import sqlalchemy as sa

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None
{readable_by}


def upgrade() -> None:
{body}


def downgrade() -> None:
    raise NotImplementedError
'''

# A nullable column on a table every worker writes, and a table of its own tied to events.
EXPAND = """    op.add_column('deliveries', sa.Column('priority', sa.Integer(), nullable=True))
    op.create_table('event_labels',
        sa.Column('event_seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  sa.ForeignKey('events.seq', ondelete='CASCADE'), primary_key=True),
        sa.Column('label', sa.String(40), nullable=False))"""
# A column this version writes with every keyed action.
CONTRACT = """    with op.batch_alter_table('idempotency_keys') as table:
        table.drop_column('owner')"""


class Later:
    """A later version's migrations: a copy of this version's, with revisions of a test's own after them."""

    def __init__(self, folder: Path):
        self.path = folder
        shutil.copytree(schema.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
        self.head = schema.head()

    def add(self, body: str, readable_by: str | None = None) -> str:
        """A revision after the last one; ``readable_by`` None leaves it unsaid. Its (unique) revision id."""
        # Unique, so that what this process says once per newer revision it says in each test.
        revision = f"t{secrets.token_hex(4)}"
        (self.path / "versions" / f"{revision}.py").write_text(
            _REVISION.format(
                revision=revision,
                down=self.head,
                body=body,
                readable_by="" if readable_by is None else f"readable_by = {readable_by!r}",
            )
        )
        self.head = revision
        return revision


@pytest.fixture
def later(tmp_path):
    return Later(tmp_path / "later")


@pytest.fixture
def database(backend):
    """The test's database at this version's head, and an engine on it."""
    Store(backend).close()  # migrates SQLite; PostgreSQL's schema comes migrated
    engine = create_engine(engine_url(backend))
    yield backend, engine
    engine.dispose()


def revision_and_row(engine) -> tuple[str, list[tuple]]:
    with engine.connect() as connection:
        return (
            schema.current(connection),
            [tuple(row) for row in connection.execute(select(schema.compatibility)).all()],
        )


def columns(engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def test_a_migration_writes_which_versions_can_run_on_the_schema_it_leaves(database):
    _, engine = database
    assert revision_and_row(engine) == (schema.head(), [(schema.head(), schema.readable_by())])
    # 0003 and 0004 only added tables (connector_schema; campaigns, upstream_reads), which 0002 never looks at.
    assert schema.readable_by() == "0002"


def test_every_shipped_migration_says_which_versions_can_run_on_its_schema():
    assert schema.declaration_problems() == []
    unsaid = [script.revision for script in schema._history() if not hasattr(script.module, "readable_by")]
    assert unsaid == []


def test_this_version_runs_on_a_newer_schema_that_declares_itself_readable_by_it(database, later, caplog):
    url, engine = database
    caplog.set_level(logging.INFO, logger="connector.storage.schema")
    newer = later.add(EXPAND, readable_by=schema.head())
    assert schema.migrate(engine, later.path) == (schema.head(), newer)
    assert revision_and_row(engine) == (newer, [(newer, schema.head())])

    schema.check(engine)
    store = Store(url, secret_key=KEY)  # SQLite migrates on start, PostgreSQL checks: both run
    try:
        account = store.accounts.ensure("demo", "a" * 64)
        subscription = store.subscriptions.add(
            account, "delivery_receipt", "sms.delivery_receipt", "https://hooks.example.com/one", 1.0
        )[0]["id"]
        assert store.events.add(account, [receipt("evt_1")], 10.0) == [True]
        assert store.events.fan_out(11.0) == 1
        claimed = store.outbox.claim(10, 12.0, 30.0)
        assert [(due.event_id, due.subscription_id, due.event_data) for due in claimed] == [
            ("evt_1", subscription, '{"sms_id": "evt_1"}')
        ]
        assert store.events.get(account, "evt_1")["data"] == {"sms_id": "evt_1"}
        with store.engine.begin() as db:  # the later version labels the event in its own table
            db.execute(
                text("INSERT INTO event_labels (event_seq, label) VALUES (:seq, 'vip')"),
                {"seq": store.events.get(account, "evt_1")["seq"]},
            )
            assert db.execute(text("SELECT id, priority FROM deliveries")).all() == [(claimed[0].id, None)]
        # Its table follows the events it points at, so this version can still forget old events.
        assert store.events.prune(older_than=100.0) == 1
        with store.engine.connect() as db:
            assert db.execute(text("SELECT count(*) FROM event_labels")).scalar() == 0
    finally:
        store.close()
    schema.check(engine)
    said = [r.getMessage() for r in caplog.records if newer in r.getMessage() and "running" in r.getMessage()]
    assert said == [
        f"database schema at {newer}, newer than this version's {schema.head()}, which it declares "
        f"readable by {schema.head()} and later: running"
    ]
    assert revision_and_row(engine)[0] == newer


def test_migrating_with_this_version_leaves_a_newer_readable_schema_as_it_is(database, later):
    _, engine = database
    newer = later.add(EXPAND, readable_by=schema.head())
    schema.migrate(engine, later.path)

    assert schema.migrate(engine) == (newer, newer)
    done = subprocess.run(
        [sys.executable, "-m", "connector.ops.cli", "migrate"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"database schema at {newer} (newer than this version's" in done.stdout and "left as it is" in done.stdout
    assert "already current (newer, compatible)" in done.stderr
    assert revision_and_row(engine) == (newer, [(newer, schema.head())])
    assert "priority" in columns(engine, "deliveries")


def test_a_newer_schema_that_drops_what_this_version_uses_is_refused_naming_its_revision(database, later):
    url, engine = database
    newer = later.add(CONTRACT)  # unsaid: readable by itself only
    schema.migrate(engine, later.path)
    assert revision_and_row(engine) == (newer, [(newer, newer)])

    for attempt in (lambda: schema.check(engine), lambda: Store(url), lambda: schema.migrate(engine)):
        with pytest.raises(ConfigError) as refused:
            attempt()
        assert "newer version" in str(refused.value)
        assert f"its schema is at revision {newer}" in str(refused.value)
        assert f"only be used by versions at revision {newer} or later" in str(refused.value)
    assert revision_and_row(engine) == (newer, [(newer, newer)])
    assert "owner" not in columns(engine, "idempotency_keys")


def test_a_schema_behind_this_version_still_needs_connector_migrate(database):
    _, engine = database
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    with pytest.raises(ConfigError) as refused:
        schema.check(engine)
    assert "revision 0002" in str(refused.value) and "connector migrate" in str(refused.value)


@pytest.mark.parametrize(
    "failing, error",
    [
        (
            "    op.add_column('events', sa.Column('half', sa.Integer(), nullable=True))\n"
            "    raise RuntimeError('a migration failing half-way')",
            RuntimeError,
        ),
        # Alembic moves the revision on, then the row cannot be written: the revision must go back too.
        ("    op.drop_table('connector_schema')", DBAPIError),
    ],
    ids=["in its upgrade", "when its row is written"],
)
def test_a_migration_that_fails_leaves_neither_the_revision_nor_the_row_changed(database, later, failing, error):
    _, engine = database
    before = revision_and_row(engine)
    later.add(EXPAND, readable_by=schema.head())  # succeeds, then the next one fails: one transaction
    later.add(failing, readable_by=schema.head())
    with pytest.raises(error):
        schema.migrate(engine, later.path)
    assert revision_and_row(engine) == before == (schema.head(), [(schema.head(), schema.readable_by())])
    assert "priority" not in columns(engine, "deliveries") and "half" not in columns(engine, "events")
    assert "event_labels" not in inspect(engine).get_table_names()


def test_an_expand_after_a_contract_cannot_make_the_schema_readable_by_older_versions(tmp_path):
    later = Later(tmp_path / "later")
    contract = later.add(CONTRACT, readable_by=None)
    later.add(EXPAND, readable_by=schema.head())  # the value before the contract, copied by mistake
    assert schema.readable_by(later.path) == contract


def test_a_migration_that_declares_a_later_revision_is_refused_before_anything_changes(database, later):
    _, engine = database
    before = revision_and_row(engine)
    newer = later.add(EXPAND, readable_by="9999")
    with pytest.raises(ConfigError) as refused:
        schema.migrate(engine, later.path)
    assert f"{newer}.py: readable_by = '9999' is neither its revision ({newer})" in str(refused.value)
    assert revision_and_row(engine) == before
    assert "priority" not in columns(engine, "deliveries")

"""The schema's migrations, and what a process does on a database it was not written for."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from connector import create_app
from connector.errors import ConfigError
from connector.storage import schema
from connector.storage.database import engine_url
from connector.storage.store import Store
from connector.storage.tables import metadata
from tests.conftest import connector_settings, postgres_database


def test_the_migrations_build_exactly_the_tables_the_code_uses(backend):
    engine = create_engine(engine_url(backend))
    schema.migrate(engine)
    with engine.connect() as connection:
        assert schema.current(connection) == schema.head()
        assert compare_metadata(MigrationContext.configure(connection), [metadata, schema.bookkeeping]) == []
    engine.dispose()


def test_a_database_at_a_revision_this_version_does_not_know_is_refused(backend):
    Store(backend).close()
    engine = create_engine(engine_url(backend))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(ConfigError) as refused:
        Store(backend)
    assert "0999" in str(refused.value) and "newer version" in str(refused.value)
    engine.dispose()


def test_a_sqlite_file_from_before_migrations_is_taken_as_the_first_revision(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:  # the tables the versions before migrations made, and no revision
        command.upgrade(schema._config(connection), schema.FIRST)
        connection.execute(text("DROP TABLE alembic_version"))
    Store(url).close()
    with engine.connect() as connection:
        assert schema.current(connection) == schema.head()
    engine.dispose()


def test_sqlite_migrates_itself_on_first_start(tmp_path, sandbox):
    app = create_app(connector_settings(sandbox.url, CONNECTOR_DATA_DIR=str(tmp_path / "fresh")))
    ready = app.test_client().get("/readyz").get_json()
    assert (ready["status"], ready["schema"]) == ("ok", schema.head())


@pytest.fixture
def empty_postgres(monkeypatch):
    with postgres_database(monkeypatch, migrated=False) as url:
        yield url


def test_on_postgresql_the_service_refuses_an_unmigrated_database_until_connector_migrate(empty_postgres, sandbox):
    with pytest.raises(ConfigError) as refused:
        create_app(connector_settings(sandbox.url))
    assert "connector migrate" in str(refused.value)
    done = subprocess.run(
        [sys.executable, "-m", "connector.ops.cli", "migrate"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"database schema at {schema.head()} (was empty)" in done.stdout
    client = create_app(connector_settings(sandbox.url)).test_client()
    assert client.get("/readyz").status_code == 200


def test_two_migrations_at_once_apply_it_once(empty_postgres):
    engines = [create_engine(engine_url(empty_postgres)) for _ in range(2)]
    results, problems = [], []

    def run(engine):
        try:
            results.append(schema.migrate(engine))
        except Exception as exc:  # a failure in either thread fails the test below
            problems.append(exc)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert problems == []
    assert sorted(results, key=str) == sorted([(None, schema.head()), (schema.head(), schema.head())], key=str)
    for engine in engines:
        engine.dispose()


def test_readiness_fails_with_a_reason_when_the_schema_changes_under_a_running_service(backend, sandbox):
    client = create_app(connector_settings(sandbox.url)).test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    engine = create_engine(engine_url(backend))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["code"] == "not_ready" and "0999" in error["message"]
    assert client.get("/healthz").status_code == 200


def test_an_upgrade_keeps_what_the_database_holds(backend):
    """From the first revision to the current one, on each backend, with a row in the table that changes."""
    engine = create_engine(engine_url(backend))
    with engine.begin() as connection:
        for table in (
            "alembic_version",
            "connector_schema",
            "upstream_reads",
            "campaigns",
            "idempotency_keys",
            "credit_watch",
            "attempts",
            "fanout",
            "deliveries",
            "subscriptions",
            "rejected_callbacks",
            "events",
            "accounts",
        ):
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        command.upgrade(schema._config(connection), schema.FIRST)
        connection.execute(
            text(
                "INSERT INTO idempotency_keys (login, key, action, request_hash, state, created_at, "
                "updated_at) VALUES ('demo', 'k-1', 'send_sms', 'h', 'done', 1, 1)"
            )
        )
    assert schema.migrate(engine) == (schema.FIRST, schema.head())
    with engine.connect() as connection:
        assert connection.execute(text("SELECT login, key, state, owner FROM idempotency_keys")).all() == [
            ("demo", "k-1", "done", None)
        ]
    engine.dispose()


def test_a_sqlite_file_in_a_folder_not_yet_made_is_created_with_the_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'not' / 'yet' / 'there.db'}"
    Store(url).close()
    assert (tmp_path / "not" / "yet" / "there.db").exists()

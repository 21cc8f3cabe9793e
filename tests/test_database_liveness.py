"""A PostgreSQL connection gives up connecting, and asks a silent server, in bounded time: libpq would otherwise
wait as long as TCP does (minutes, behind a dropped route) with a web thread or a worker on it."""

from __future__ import annotations

from connector.storage.database import Database


def _parameters(database: Database) -> dict[str, str]:
    with database.engine.connect() as connection:
        return dict(connection.connection.driver_connection.info.get_parameters())


def test_store_connections_give_up_and_ask_in_bounded_time(postgres):
    database = Database(postgres)
    try:
        parameters = _parameters(database)
    finally:
        database.engine.dispose()
    assert parameters["connect_timeout"] == "10"
    assert (parameters["keepalives"], parameters["keepalives_idle"]) == ("1", "30")
    assert (parameters["keepalives_interval"], parameters["keepalives_count"]) == ("10", "3")


def test_what_the_database_url_sets_is_kept(postgres):
    database = Database(postgres + "&connect_timeout=3&keepalives_idle=120")
    try:
        parameters = _parameters(database)
    finally:
        database.engine.dispose()
    assert (parameters["connect_timeout"], parameters["keepalives_idle"]) == ("3", "120")
    assert parameters["keepalives_count"] == "3"  # what it does not set keeps its default

"""Events arriving: a group of callbacks' events written by one statement, straight through the driver.

Storing a callback is the busiest write of the service, and most of its cost was not the database's work but
the way there: SQLAlchemy's execution path (about 80 µs a statement) and, on PostgreSQL, a round trip for
each of BEGIN, the insert, the look-up of subscriptions, the ring and COMMIT. Here the events, their places in
the fan-out queue (only where an active subscription wants them) and, on PostgreSQL, the ring that wakes the
delivery workers are one statement, run by the driver itself; on PostgreSQL that statement is its own
transaction (one round trip). The SQL is written out because it is what is measured: the tables are those
of tables.py, and tests/test_event_groups.py checks it against them on both databases.
"""

from __future__ import annotations

import json
from functools import lru_cache

from connector.storage.database import Database
from connector.storage.doorbell import CHANNEL_SQL
from connector.storage.tables import ACTIVE

#: The events table's columns, in the order of each row given to ``write``.
COLUMNS = ("id", "account_id", "type", "timestamp", "received_at", "data", "raw")
#: Rows per SQLite statement, at most: SQLite takes 32,766 parameters in one.
_SQLITE_ROWS = 1000

_SUBSCRIBED = (
    "EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = {row}.account_id "
    f"AND s.event_type = {{row}}.type AND s.status = '{ACTIVE}')"
)

# PostgreSQL: the rows as one JSON text of arrays (one parameter, one statement shape whatever their number,
# so the server plans it once per connection; the driver took longer to write seven arrays than the server to
# read the JSON); the new events, their queue places and the ring in one transaction.
_POSTGRESQL = f"""
WITH given AS (
    SELECT row->>0 AS id, (row->>1)::integer AS account_id, row->>2 AS type, row->>3 AS timestamp,
        (row->>4)::double precision AS received_at, row->>5 AS data, row->>6 AS raw
    FROM json_array_elements(%(rows)s::json) AS row
), added AS (
    INSERT INTO events ({", ".join(COLUMNS)})
    SELECT {", ".join(COLUMNS)} FROM given
    ON CONFLICT (id) DO NOTHING
    RETURNING id, seq, account_id, type, received_at
), queued AS (
    INSERT INTO fanout (event_seq, account_id, event_type, received_at)
    SELECT a.seq, a.account_id, a.type, a.received_at FROM added a WHERE {_SUBSCRIBED.format(row="a")}
    RETURNING event_seq
), rung AS (
    SELECT pg_notify({CHANNEL_SQL}, '') FROM (SELECT 1 FROM queued LIMIT 1) AS any_queued
)
SELECT added.id, added.seq FROM added LEFT JOIN rung ON true
"""

_SQLITE_QUEUE = "INSERT INTO fanout (event_seq, account_id, event_type, received_at) VALUES (?, ?, ?, ?)"


def write(database: Database, rows: list[tuple]) -> dict[str, int]:
    """Store ``rows`` (tuples in COLUMNS' order) in one transaction, and wake the delivery workers when any
    was queued: the new events' ``{id: seq}``. An id already stored, or met earlier in ``rows``, is not
    new."""
    with database.driving() as pooled:
        if not database.sqlite:
            return _postgresql(pooled.driver_connection, rows)  # the statement rings by itself
        inserted, queued = _sqlite(pooled.driver_connection, rows)
        if queued:
            database.doorbell.ring(pooled)  # heard once this commits
        return inserted


def _postgresql(driver, rows: list[tuple]) -> dict[str, int]:
    """On a psycopg connection in autocommit: the statement is its own transaction."""
    return dict(driver.execute(_POSTGRESQL, {"rows": json.dumps(rows, ensure_ascii=False)}).fetchall())


def _sqlite(driver, rows: list[tuple]) -> tuple[dict[str, int], bool]:
    """On a sqlite3 connection, in its transaction (committed by the caller); also whether any event was
    queued. The insert itself says which new events a subscription wants; a second statement queues those,
    when there are any."""
    cursor = driver.cursor()
    try:
        inserted: dict[str, int] = {}
        wanted: set[str] = set()
        for start in range(0, len(rows), _SQLITE_ROWS):
            chunk = rows[start : start + _SQLITE_ROWS]
            cursor.execute(_sqlite_insert(len(chunk)), [value for row in chunk for value in row])
            for event_id, seq, subscribed in cursor.fetchall():
                inserted[event_id] = seq
                if subscribed:
                    wanted.add(event_id)
        if wanted:
            queue = []
            for event_id, account_id, event_type, _, received_at, _, _ in rows:
                if event_id in wanted:
                    wanted.discard(event_id)  # an id twice in the group is queued once
                    queue.append((inserted[event_id], account_id, event_type, received_at))
            cursor.executemany(_SQLITE_QUEUE, queue)
            return inserted, True
        return inserted, False
    finally:
        cursor.close()


@lru_cache(maxsize=64)
def _sqlite_insert(count: int) -> str:
    values = ",".join(["(" + ",".join("?" * len(COLUMNS)) + ")"] * count)
    return (
        f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES {values} "
        f"ON CONFLICT (id) DO NOTHING RETURNING id, seq, {_SUBSCRIBED.format(row='events')}"
    )

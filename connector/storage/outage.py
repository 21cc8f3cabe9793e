"""The database as one process sees it: answering, or away since a given moment.

An outage is a state, not a stream of errors: the process says once that the database went away (with the
driver's reason) and once that it is back (with how long it was away). In between, every failed query is
expected and silent: web requests answer 503 ``retry_later`` or keep callbacks in the journal, workers back
off with jitter, /readyz says why it is not ready. The engine reports both edges itself (``attach``), so no
caller has to remember to.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

#: How a PostgreSQL connection learns that the server cannot be reached, unless DATABASE_URL says otherwise: a
#: connect gives up after 10 s, and a connection silent for 30 s asks the server, every 10 s, three times. Without
#: them libpq waits as long as TCP does: minutes for a server behind a dropped route, with the threads on it.
LIVENESS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def liveness(given: Mapping[str, Any]) -> dict[str, Any]:
    """LIVENESS, less what ``given`` (the connection's parameters from its URL) sets already."""
    return {name: value for name, value in LIVENESS.items() if name not in given}


# What a database that is down, restarting, unreachable, out of disk or locked for too long raises. A
# programming error (a constraint, a syntax error) is none of these: it still reaches the log in full.
_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    sqlite3.OperationalError,
)


def unavailable(error: BaseException | None) -> bool:
    """Whether ``error`` says the database cannot be used at the moment (as opposed to a bug)."""
    if isinstance(error, _UNAVAILABLE):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    try:
        import psycopg
    except ImportError:  # SQLite only: the driver is not installed
        return False
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))


def reason(error: BaseException) -> str:
    """The driver's own words, first line only and short: what an operator needs to tell a refused connection
    from a full disk. SQLAlchemy's text would add the statement and its parameters (phone numbers)."""
    original = getattr(error, "orig", None) or error
    words = str(original).strip().splitlines()
    first = words[0].strip() if words else ""
    return f"{type(original).__name__}: {first[:160]}" if first else type(original).__name__


#: Seconds without a failure before an answer ends an outage.
QUIET = 3.0


class Outage:
    """Whether something the process needs answers (the database, the journal's disk), as this process last
    found it; logs each change once."""

    DATABASE = (
        "the database does not answer",
        "the database answers again",
        "Until it does, callbacks are kept in the local journal, keyed actions and subscriptions answer 503, "
        "deliveries wait; nothing more is logged about it.",
    )

    def __init__(
        self,
        gone: str = DATABASE[0],
        back: str = DATABASE[1],
        meanwhile: str = DATABASE[2],
        counted=None,
        clock=time.monotonic,
        quiet: float = QUIET,
    ):
        """``counted``: called once per outage (a metric)."""
        self.gone, self.back, self.meanwhile = gone, back, meanwhile
        self.counted = counted
        self.clock = clock
        self.quiet = quiet
        self._since: float | None = None
        self._last_failure = 0.0
        self._writes_failed = False
        self._reason: str | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._since is not None

    @property
    def why(self) -> str | None:
        """The reason of the outage in progress, None while it answers."""
        return self._reason if self._since is not None else None

    def away_for(self) -> float:
        since = self._since
        return 0.0 if since is None else self.clock() - since

    def failed(self, error: BaseException, wrote: bool = False) -> bool:
        """Note ``error`` if it says the database is away; whether it did. ``wrote``: it ended a write."""
        if not unavailable(error):
            return False
        self.went_away(reason(error), wrote)
        return True

    def went_away(self, why: str, wrote: bool = False) -> None:
        with self._lock:
            self._writes_failed = self._writes_failed or wrote
            self._last_failure = now = self.clock()
            if self._since is not None:
                return
            self._since, self._reason = now, why
        log.error("%s (%s). %s", _capital(self.gone), why, self.meanwhile)
        if self.counted is not None:
            self.counted()

    def answered(self, wrote: bool = False) -> None:
        """It just answered (``wrote``: a write was committed). The outage ends once nothing has failed for
        ``quiet`` seconds and, if a write failed, a write has gone through since: a full disk lets every read
        and some small writes through while the others fail, and must not be an outage ending and starting
        again every moment in the log."""
        if self._since is None:  # the usual case: no lock
            return
        with self._lock:
            now = self.clock()
            if self._since is None or (self._writes_failed and not wrote) or now - self._last_failure < self.quiet:
                return
            away, self._since, self._reason = now - self._since, None, None
            self._writes_failed = False
        log.warning("%s, after %.1f s.", _capital(self.back), away)

    def attach(self, engine: Engine) -> Outage:
        """Let ``engine`` report its failures and successes here."""

        def on_error(context):
            if context.is_disconnect or unavailable(context.original_exception):
                # No statement on an open connection: its commit failed.
                statement = (context.statement or "").lstrip()[:6].upper()
                wrote = statement in ("INSERT", "UPDATE", "DELETE") or (
                    not statement and context.connection is not None
                )
                self.failed(context.sqlalchemy_exception or context.original_exception, wrote)

        event.listen(engine, "handle_error", on_error)
        event.listen(engine, "after_cursor_execute", lambda *_: self.answered())
        return self


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


class Backoff:
    """Waits between tries at something that is away: doubling from ``first`` up to ``most`` seconds, each
    spread by ±``jitter`` so that the processes of a service do not all come back at the same instant."""

    def __init__(self, first: float = 0.25, most: float = 10.0, jitter: float = 0.5, rng: random.Random | None = None):
        self.first, self.most, self.jitter = first, most, jitter
        self.rng = rng or random.Random()
        self._next = first

    def delay(self) -> float:
        """The wait before the next try (and the one after will be longer)."""
        base, self._next = self._next, min(self.most, self._next * 2)
        return base * (1 + self.rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = self.first

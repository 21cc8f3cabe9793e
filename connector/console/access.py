"""Who may use the console: the operator token, the login throttle, the sessions and their CSRF token."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import secrets
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from flask import session
from flask.sessions import SecureCookieSessionInterface

from connector.web.accounts import kept_secret

TOKEN_FILE = "operator-token"
SESSIONS_FILE = "console-sessions"
#: Wrong tokens one address may send before each further try has to wait; the wait then doubles with each
#: failure, up to MAX_WAIT. The right token is never refused for good: behind a proxy every visitor may
#: share one address, and a lockout would shut the operator out with the guesser.
FREE_FAILURES = 5
MAX_WAIT = 60
#: A failure is forgotten this long after the address's last one.
FAILURE_MEMORY = 900.0
_MAX_ADDRESSES = 10_000
#: Live sessions kept at most: the oldest login goes first.
_MAX_SESSIONS = 64


def token_path(data_dir: str) -> Path:
    return Path(data_dir).resolve() / TOKEN_FILE


def operator_token(settings: dict) -> str | None:
    """The configured token; on the sandbox, one made once and kept in the data directory; else None
    (the console is off: a real service gets one only when its operator chooses it)."""
    if settings["CONNECTOR_OPERATOR_TOKEN"]:
        return settings["CONNECTOR_OPERATOR_TOKEN"]
    if settings["ALLMYSMS_SANDBOX"]:
        return kept_secret(token_path(settings["CONNECTOR_DATA_DIR"]))
    return None


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed cookie, opened on the console's own pages only: the API and the inbound URL never
    carry it, and opening it (building its signer) cost every one of their requests a few per cent."""

    def open_session(self, app, request):
        if request.path.startswith(app.config["SESSION_COOKIE_PATH"]):
            return super().open_session(app, request)
        return self.make_null_session(app)


def session_key(secret_key: str, token: str) -> bytes:
    """What signs the console's session cookie: changing the operator token logs everybody out."""
    return hmac.new(secret_key.encode(), b"console-session\0" + token.encode(), hashlib.sha256).digest()


def token_matches(expected: str, given: str) -> bool:
    # Compared as digests, so the time taken tells nothing of the length either.
    return hmac.compare_digest(hashlib.sha256(expected.encode()).digest(), hashlib.sha256(given.encode()).digest())


class Throttle:
    """Wrong tokens per address, in each web process: after FREE_FAILURES, the address waits 1 s, then 2 s,
    4 s… (at most MAX_WAIT) after each wrong token before it may try again."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # address: (count, time of the last)
        self._lock = threading.Lock()

    def wait_for(self, address: str) -> int:
        """0 when this address may try now, else whole seconds until it may."""
        now = self.clock()
        with self._lock:
            count, last = self._recent(address, now)
            if count < FREE_FAILURES:
                return 0
            left = last + _delay(count) - now
            return 0 if left <= 0 else max(1, int(left + 0.999))

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= _MAX_ADDRESSES:
                for known in [a for a, (_, last) in self._failures.items() if last <= now - FAILURE_MEMORY]:
                    del self._failures[known]
            count, _ = self._recent(address, now)
            self._failures[address] = (count + 1, now)

    def _recent(self, address: str, now: float) -> tuple[int, float]:
        count, last = self._failures.get(address, (0, 0.0))
        return (count, last) if last > now - FAILURE_MEMORY else (0, 0.0)


def _delay(failures: int) -> float:
    return float(min(MAX_WAIT, 2 ** (failures - FREE_FAILURES)))


class Sessions:
    """The console's live sessions, in a file of the data directory that every web process of the host
    reads: a signed cookie alone cannot be taken back, so a cookie names a session, and a session not
    listed here is over, whichever copy of the cookie comes back. Only digests of the ids are kept."""

    def __init__(self, data_dir: str, lifetime: float, clock=time.time):
        self.path = Path(data_dir).resolve() / SESSIONS_FILE
        self.lifetime, self.clock = lifetime, clock

    def open(self) -> str:
        session_id = secrets.token_urlsafe(24)
        with self._changing() as live:
            live[_digest(session_id)] = self.clock() + self.lifetime
            for oldest in sorted(live, key=live.get)[:-_MAX_SESSIONS]:
                del live[oldest]
        return session_id

    def live(self, session_id) -> bool:
        if not isinstance(session_id, str):
            return False
        expires = self._read().get(_digest(session_id))
        return expires is not None and expires > self.clock()

    def end(self, session_id) -> None:
        if isinstance(session_id, str):
            with self._changing() as live:
                live.pop(_digest(session_id), None)

    def _read(self) -> dict[str, float]:
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return {}
        live = {}
        for line in text.splitlines():
            digest, _, expires = line.partition(" ")
            try:
                live[digest] = float(expires)
            except ValueError:
                continue  # a damaged line ends that session, nothing more
        return live

    @contextmanager
    def _changing(self):
        """The live sessions, to change, under an exclusive lock; written whole and renamed into place, so
        that a reader never sees half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            now = self.clock()
            live = {digest: expires for digest, expires in self._read().items() if expires > now}
            yield live
            draft = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
            with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="ascii") as out:
                out.writelines(f"{digest} {expires:.0f}\n" for digest, expires in live.items())
            os.replace(draft, self.path)
        finally:
            os.close(lock)  # which releases the lock


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token() -> str:
    """The session's CSRF token, made on first use; every form of the console carries it."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_problem(given: str | None) -> int | None:
    """None when the form's token is the session's, else the status to refuse it with."""
    expected = session.get("csrf")
    if not expected or not given:
        return 400
    return None if hmac.compare_digest(expected.encode(), given.encode()) else 403


def log_in(sessions: Sessions) -> None:
    session.clear()
    session.permanent = True
    session["operator"] = True
    session["sid"] = sessions.open()
    session["csrf"] = secrets.token_urlsafe(32)  # a token seen before logging in is not reused after


def log_out(sessions: Sessions) -> None:
    sessions.end(session.get("sid"))
    session.clear()


def logged_in(sessions: Sessions) -> bool:
    return session.get("operator") is True and sessions.live(session.get("sid"))

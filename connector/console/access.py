"""Who may use the console: the operator token, the login throttle, the session and its CSRF token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from flask import session

from ..accounts import kept_secret

TOKEN_FILE = "operator-token"
#: Failed logins one address may make in a window before it has to wait.
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
_MAX_ADDRESSES = 10_000


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


def session_key(secret_key: str, token: str) -> bytes:
    """What signs the console's session cookie: changing the operator token logs everybody out."""
    return hmac.new(secret_key.encode(), b"console-session\0" + token.encode(), hashlib.sha256).digest()


def token_matches(expected: str, given: str) -> bool:
    # Compared as digests, so the time taken tells nothing of the length either.
    return hmac.compare_digest(hashlib.sha256(expected.encode()).digest(), hashlib.sha256(given.encode()).digest())


class Throttle:
    """Failed logins per address, in each web process: past MAX_FAILURES in FAILURE_WINDOW seconds,
    logins from there are refused until the oldest failure is out of the window."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._failures: dict[str, deque] = {}
        self._lock = threading.Lock()

    def wait_for(self, address: str) -> int:
        """0 when this address may try now, else whole seconds until it may."""
        now = self.clock()
        with self._lock:
            failures = self._recent(address, now)
            if len(failures) < MAX_FAILURES:
                return 0
            return max(1, int(failures[0] + FAILURE_WINDOW - now) + 1)

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= _MAX_ADDRESSES:
                for known in list(self._failures):
                    if not self._recent(known, now):
                        del self._failures[known]
            self._failures.setdefault(address, deque()).append(now)

    def _recent(self, address: str, now: float) -> deque:
        failures = self._failures.get(address, deque())
        while failures and failures[0] <= now - FAILURE_WINDOW:
            failures.popleft()
        return failures


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


def log_in() -> None:
    session.clear()
    session.permanent = True
    session["operator"] = True
    session["csrf"] = secrets.token_urlsafe(32)  # a token seen before logging in is not reused after


def logged_in() -> bool:
    return session.get("operator") is True

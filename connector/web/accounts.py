"""Accounts as the connector knows them: an AllMySMS login whose credentials AllMySMS accepted, and its
inbound URL token. API keys are never stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from connector.sending.upstream import AllMySMS, Credentials
from connector.storage.store import Store


@dataclass(frozen=True)
class Account:
    id: int
    login: str
    token: str


def inbound_token(secret_key: str, login: str) -> str:
    """The account's inbound URL token: 192 bits derived from the service's secret key, so nothing
    secret is stored per account and the same login always gets the same URL."""
    digest = hmac.new(secret_key.encode(), b"inbound-url\0" + login.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def token_hash(token: str) -> str:
    """What the store keeps and looks tokens up by; a lookup by hash reveals nothing of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def secret_key(configured: str | None, data_dir: str) -> str:
    """The configured secret key, or one made once and kept in the data directory."""
    if configured:
        return configured
    return kept_secret(Path(data_dir) / "secret_key")


def kept_secret(path: Path) -> str:
    """The secret in ``path``, made on first use: readable by this user only from the start, and complete
    when it appears, so that processes starting together all read the same one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32))
            os.link(draft, path)  # two processes starting at once: the first link wins
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()


class Accounts:
    """Checks credentials with AllMySMS (remembered a few minutes) and returns the account."""

    def __init__(self, store: Store, upstream: AllMySMS, secret: str, ttl: float = 300.0):
        self.store = store
        self.upstream = upstream
        self.secret = secret
        self.ttl = ttl
        self._verified: dict[str, tuple[float, int]] = {}
        self._remembered: set[str] = set()
        self._unremembered: set[str] = set()  # logins that could not be made while the database was away
        self._tokens: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def verified(self, credentials: Credentials) -> Account:
        token = inbound_token(self.secret, credentials.login)
        key = hashlib.sha256(f"{credentials.login}\0{credentials.api_key}".encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._verified.get(key)
        if hit and now - hit[0] < self.ttl:
            return Account(hit[1], credentials.login, token)
        self.upstream.account(credentials)  # raises when AllMySMS refuses the credentials
        account_id = self.store.accounts.ensure(credentials.login, token_hash(token))
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[key] = (now, account_id)
        return Account(account_id, credentials.login, token)

    def remember(self, login: str) -> None:
        """Make sure the account exists, for a login whose credentials AllMySMS has just accepted."""
        with self._lock:
            if login in self._remembered:
                return
        self.store.accounts.ensure(login, token_hash(inbound_token(self.secret, login)))
        with self._lock:
            self._remembered.add(login)
            self._unremembered.discard(login)

    def unremembered(self, login: str) -> bool:
        """Note that ``login`` could not be made now; True the first time (so it is kept for later once)."""
        with self._lock:
            if login in self._unremembered or len(self._unremembered) > 10_000:
                return False
            self._unremembered.add(login)
            return True

    def id_of(self, login: str) -> int | None:
        """The id of the account of ``login``, None when there is none yet."""
        found = self.by_token(inbound_token(self.secret, login))
        return found[0] if found else None

    def by_token(self, token: str) -> tuple[int, str] | None:
        with self._lock:
            known = self._tokens.get(token)
        if known:
            return known
        found = self.store.accounts.by_token_hash(token_hash(token))
        if found is None:
            return None
        # The row was found by hash; compare the derived token too, in constant time, so a stale row
        # (secret key changed) cannot answer for a token that is no longer valid.
        expected = inbound_token(self.secret, found[1])
        if not hmac.compare_digest(expected, token):
            return None
        with self._lock:
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            # Only tokens that matched are remembered, so the cache cannot be filled by guessing.
            self._tokens[token] = found
        return found

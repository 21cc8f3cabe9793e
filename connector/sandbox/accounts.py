"""The sandbox's accounts: logins and API keys, credits, profiles and callback settings.

Every method takes the state's lock (re-entrant, shared with the rest of SandboxState), so a debit and
the campaign it pays for can be made under one hold of it.
"""

import hmac
import secrets
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from . import statuses
from .pushes import DEFAULT_FORMAT, FORMATS
from .statuses import ApiError

DEMO_ACCOUNTS = MappingProxyType(
    {
        "demo": MappingProxyType({"api_key": "demo-api-key", "credits": 100000}),
        # No credit at all: every send answers 103.
        "broke": MappingProxyType({"api_key": "broke-api-key", "credits": 0}),
        # One French SMS costs 15: a second recipient already answers 104.
        "low": MappingProxyType({"api_key": "low-api-key", "credits": 20}),
    }
)


@dataclass
class Account:
    login: str
    api_key: str = field(repr=False)
    credits: int
    first_name: str = "Demo"
    last_name: str = "User"
    society: str = "AllMySMS Sandbox"
    email: str = ""
    callback_url: str | None = field(default=None, repr=False)
    callback_format: str = DEFAULT_FORMAT

    @property
    def client_code(self):
        """The code a feed's CLIENT tag must carry: the sandbox's choice is the login in capitals."""
        return self.login.upper()


class Accounts:
    """The accounts of one sandbox, from login -> {"api_key", "credits"} specs (optionally "first_name",
    "last_name", "society", "email")."""

    def __init__(self, specs, lock):
        self._lock = lock
        self._by_login = {login: _build_account(login, spec) for login, spec in specs.items()}
        # Compared against when the login is unknown, so a wrong login and a wrong key take the
        # same time to refuse.
        self._decoy_key = secrets.token_hex(16).encode()

    @property
    def logins(self):
        return tuple(self._by_login)

    def get(self, login):
        """The account itself; KeyError for an unknown login."""
        try:
            return self._by_login[login]
        except KeyError:
            raise KeyError("unknown sandbox login") from None

    def authenticate(self, login, api_key):
        """True when `login` exists and `api_key` is its key (constant-time comparison)."""
        account = self._by_login.get(login) if isinstance(login, str) else None
        expected = account.api_key.encode() if account else self._decoy_key
        given = api_key.encode() if isinstance(api_key, str) else b""
        return hmac.compare_digest(given, expected) and account is not None

    def info(self, login):
        """The account's profile and credits, without its API key."""
        with self._lock:
            account = self.get(login)
            return {
                "login": account.login,
                "credits": account.credits,
                "first_name": account.first_name,
                "last_name": account.last_name,
                "society": account.society,
                "email": account.email,
            }

    def credits(self, login):
        with self._lock:
            return self.get(login).credits

    def set_credits(self, login, credits):
        if type(credits) is not int or credits < 0:
            raise ValueError("credits must be a whole number >= 0")
        with self._lock:
            self.get(login).credits = credits

    def debit(self, login, credits):
        """Take `credits` from the account; return what is left. Raises ApiError 103 when the account is
        empty and 104 when it cannot pay that much."""
        with self._lock:
            account = self.get(login)
            if account.credits <= 0:
                raise ApiError(statuses.NO_CREDIT)
            if credits > account.credits:
                raise ApiError(statuses.NOT_ENOUGH_CREDIT, needed=credits, available=account.credits)
            account.credits -= credits
            return account.credits

    def refund(self, login, credits):
        """Give `credits` back to the account; return its credits."""
        with self._lock:
            account = self.get(login)
            account.credits += credits
            return account.credits

    def check_feed(self, login, data):
        """Raise 108 when the feed's CLIENT is not the account's client code, 118 when its MASTERACCOUNT
        names no account."""
        with self._lock:
            account = self.get(login)
            if "CLIENT" in data and data["CLIENT"] != account.client_code:
                raise ApiError(statuses.WRONG_CLIENT_CODE)
            master = data.get("MASTERACCOUNT")
            if master not in (None, "") and master not in self._by_login:
                raise ApiError(statuses.UNKNOWN_MASTER_ACCOUNT)

    def callback(self, login):
        """(URL or None, format) of the account's callbacks."""
        with self._lock:
            account = self.get(login)
            return account.callback_url, account.callback_format

    def set_callback_url(self, login, url, callback_format=None):
        """Set (or with None or "" remove) the account's callback URL; return callback_settings.

        `callback_format` is "form", "json", "xml" or "get"; None keeps the current one. Raises
        ValueError for a URL that is not absolute http(s) or an unknown format.
        """
        url = _callback_url(url)
        if callback_format is not None and callback_format not in FORMATS:
            raise ValueError(f"callback format must be one of {', '.join(FORMATS)}")
        with self._lock:
            account = self.get(login)
            account.callback_url = url
            if callback_format is not None:
                account.callback_format = callback_format
            return self.callback_settings(login)

    def callback_settings(self, login):
        """{"url": str or None, "format": "form" | "json" | "xml" | "get"} of the account."""
        url, callback_format = self.callback(login)
        return {"url": url, "format": callback_format}


def _callback_url(url):
    if url is None or url == "":
        return None
    if not isinstance(url, str):
        raise ValueError("the callback URL must be text")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the callback URL must be an absolute http:// or https:// URL")
    return url.strip()


def _build_account(login, spec):
    api_key, credits = spec.get("api_key"), spec.get("credits")
    if not isinstance(api_key, str) or not api_key:
        raise ValueError(f"account {login!r}: api_key must be a non-empty string")
    if type(credits) is not int or credits < 0:
        raise ValueError(f"account {login!r}: credits must be a whole number >= 0")
    return Account(
        login=login,
        api_key=api_key,
        credits=credits,
        first_name=spec.get("first_name", "Demo"),
        last_name=spec.get("last_name", "User"),
        society=spec.get("society", "AllMySMS Sandbox"),
        email=spec.get("email", f"{login}@example.com"),
    )

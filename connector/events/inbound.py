"""The URL AllMySMS pushes receipts and replies to: store each event once, answer fast, deliver later.

A callback is answered 200 only once it is kept: stored in the database, or, while the database is away, in
the local journal (journal.py), from which it is stored the same way when the database answers again. When
neither can take it (the disk is full) the answer is 503 with Retry-After, never 200 and never 500."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from connector.errors import StorageUnavailable
from connector.events import callbacks as events
from connector.observe import metrics
from connector.observe.logs import fingerprint
from connector.sending.messages import Rules
from connector.storage import journal, outage
from connector.storage.journal import Journal, Replayer
from connector.storage.store import Store

log = logging.getLogger(__name__)

PATH = "/v1/inbound/allmysms/<token>"


def url(base: str, token: str) -> str:
    """The inbound URL of the account whose token this is, on a service reachable at ``base``."""
    return base.rstrip("/") + PATH.replace("<token>", token)


@dataclass(frozen=True)
class Callback:
    """One request AllMySMS made to an inbound URL, as received: what the journal keeps when the database
    cannot take it, and replays later exactly as if it had just arrived."""

    token: str
    method: str
    content_type: str
    query: bytes
    body: bytes
    received_at: float

    def entry(self) -> journal.Entry:
        return journal.Entry(
            KIND,
            {
                "token": self.token,
                "method": self.method,
                "content_type": self.content_type,
                "query": journal.encode(self.query),
                "body": journal.encode(self.body),
                "received_at": self.received_at,
            },
        )

    @classmethod
    def of(cls, data: dict[str, Any]) -> Callback:
        return cls(
            data["token"],
            data["method"],
            data["content_type"],
            journal.decode(data["query"]),
            journal.decode(data["body"]),
            data["received_at"],
        )


class Refused(Exception):
    """A callback with no usable record: ``kind`` says why (unreadable, invalid_records), ``refused`` lists
    each record's reason."""

    def __init__(self, reason: str, kind: str, refused: list[dict[str, Any]] | None = None):
        super().__init__(reason)
        self.kind = kind
        self.refused = refused or []


class _Tokens(Protocol):
    def by_token(self, token: str) -> tuple[int, str] | None: ...


class Services(Protocol):
    """What callbacks need of the services built at start-up (connector.services.Services, which is built on
    this module: named here by shape, not imported)."""

    @property
    def rules(self) -> Rules: ...
    @property
    def store(self) -> Store: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def replayer(self) -> Replayer: ...
    @property
    def accounts(self) -> _Tokens: ...


#: The journal entries this module writes.
KIND = "callback"
#: A token looked up while the database was away: whether it is an account's is found out on replay.
UNRESOLVED = (None, "-")


def read(services: Services, callback: Callback, login: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The events of a callback, and the records refused (index, reason); Refused when none is usable. Needs
    no database."""
    try:
        # The raw query string and body, not werkzeug's reading of them: that one assumes UTF-8, and
        # AllMySMS may write Latin-1.
        records = events.read_callback(callback.method, callback.content_type, callback.query, {}, callback.body)
    except events.CallbackRejected as rejected:
        raise Refused(str(rejected), "unreadable") from None
    accepted: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []

    received = datetime.fromtimestamp(callback.received_at, UTC)
    for index, record in enumerate(records):
        try:
            event = events.normalise(
                record, account=login, zone=services.rules.zone, region=services.rules.region, received_now=received
            )
        except events.CallbackRejected as rejected:
            refused.append({"index": index, "reason": str(rejected)})
            continue
        accepted.append({**event.as_json(), "raw": event.raw})
    if not accepted:
        reason = refused[0]["reason"] if len(refused) == 1 else f"none of the {len(refused)} records is usable"
        raise Refused(reason, "invalid_records", refused)
    return accepted, refused


def store(
    services: Services,
    callback: Callback,
    account_id: int,
    accepted: list[dict[str, Any]],
    refused: list[dict[str, Any]],
) -> list[bool]:
    """Store a callback's events (and note its refused records): per event, whether it was new."""
    fresh = services.store.events.add(account_id, accepted, callback.received_at)
    for item in refused:
        note_rejection(
            services,
            account_id,
            callback.method,
            callback.content_type,
            f"record {item['index']}: {item['reason']}",
            callback.body,
            callback.received_at,
        )
    return fresh


def keep(services: Services, callback: Callback) -> None:
    """Put a callback in the journal, to be stored once the database answers; 503 when even that fails."""
    try:
        services.journal.append(callback.entry())
    except journal.JournalUnavailable:
        metrics.callback("journal_unavailable")  # logged once per episode, by the journal
        raise StorageUnavailable(
            "The callback could not be stored now; send it again later.", log_detail=None, retry_after=30
        ) from None
    services.replayer.wake()


def replay(services: Services, callback: Callback) -> None:
    """Store a journalled callback as it would have been stored when it arrived. Raises when the database is
    away (the journal keeps it); anything else about it is settled here, as it would have been then."""
    found = services.accounts.by_token(callback.token)
    if found is None:
        unknown_token(callback.token, journalled=True)
        return
    account_id, login = found
    try:
        accepted, refused = read(services, callback, login)
    except Refused as rejected:  # its login only now known: refused as it would have been then
        note_rejection(
            services,
            account_id,
            callback.method,
            callback.content_type,
            str(rejected),
            callback.body,
            callback.received_at,
        )
        return
    store(services, callback, account_id, accepted, refused)


def unknown_token(token: str, journalled: bool = False) -> None:
    # Only a fingerprint of the token is logged: the token itself is a credential.
    log.warning(
        "%s callback for an unknown token (%s)", "a journalled" if journalled else "inbound", fingerprint(token)
    )
    metrics.callback("unknown_token")


def note_rejection(
    services: Services, account_id: int | None, method: str, content_type: str, reason: str, body: bytes, now: float
) -> None:
    """Keep a refused callback for the account to see; skipped when the database is away (the refusal is
    still answered, and counted)."""
    if account_id is None:
        return
    try:
        services.store.events.reject(account_id, method, content_type, reason, body, now)
    except Exception as error:
        if not outage.unavailable(error):
            raise

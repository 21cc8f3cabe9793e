"""What the journal's entries mean when they are replayed into the database once it answers again."""

from __future__ import annotations

import logging

from connector.events import inbound
from connector.observe import metrics
from connector.storage.journal import Entry, JournalUnavailable

log = logging.getLogger(__name__)

#: Idempotency-key outcomes that could not be written when their action ended (see api._idempotent).
KEY = "idempotency_key"
#: Claims of keys whose INSERT may have been written when the database went away (nothing ran under them).
CLAIM = "idempotency_claim"
#: Accounts AllMySMS accepted while the database was away: made before their callbacks are replayed, which
#: would otherwise find no account at their inbound URL.
ACCOUNT = "account"


def keep(services, entry: Entry) -> bool:
    """Journal ``entry`` and have it replayed; False when the journal cannot take it (which the journal logs
    once for as long as it lasts, whatever it was asked to keep)."""
    try:
        services.journal.append(entry)
    except JournalUnavailable:
        return False
    services.replayer.wake()
    return True


def key_entry(
    login: str, key: str, state: str | None, status_code: int | None, response: str | None, at: float
) -> Entry:
    """A key's outcome to write later: ``state`` None lets the key go (nothing was sent)."""
    return Entry(
        KEY, {"login": login, "key": key, "state": state, "status_code": status_code, "response": response, "at": at}
    )


def apply(services, batch: list[Entry]) -> None:
    """Store a batch of entries, in order. Raises when the database is away: the batch is then replayed again,
    which stores nothing twice (events by their id, keys by their login and key)."""
    for entry in batch:
        if entry.kind == inbound.KIND:
            inbound.replay(services, inbound.Callback.of(entry.data))
        elif entry.kind == CLAIM:
            data = entry.data
            services.store.keys.undo_claim(data["login"], data["key"], data["owner"], data["created_at"])
        elif entry.kind == ACCOUNT:
            services.accounts.remember(entry.data["login"])
        elif entry.kind == KEY:
            data = entry.data
            if data["state"] is None:
                services.store.keys.release(data["login"], data["key"])
            else:
                services.store.keys.settle(
                    data["login"], data["key"], data["state"], data["status_code"], data["response"], data["at"]
                )
        else:  # written by a newer version: left for it, rather than guessed at
            log.error("a journal entry of kind %r is not known to this version; skipped", entry.kind)
    metrics.journal_replayed(len(batch))

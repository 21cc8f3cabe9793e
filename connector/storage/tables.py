"""The tables, their row states and ids: what every repository of the store reads and writes.

Times are Unix seconds (floats).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Row numbers that may pass two thousand million over the years on PostgreSQL; on SQLite the primary key
# must be spelled INTEGER to be the table's rowid.
Seq = BigInteger().with_variant(Integer, "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(255), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("timestamp", String(32), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("data", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Index("events_by_account_type", "account_id", "type", "seq"),
    Index("events_by_received_at", "received_at"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("trigger", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("target_url", Text, nullable=False),
    # Empty: the signing secret is derived from the service's secret key (signing.derived_secret). Only
    # subscriptions made before secrets were derived keep theirs here, until they are deleted.
    Column("secret", String(80), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("status_reason", Text),
    Column("failing_since", Float),
    Column("last_attempt_at", Float),
    Column("last_status_code", Integer),
    Index("subscriptions_by_account_type", "account_id", "event_type", "status"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("event_seq", Seq, ForeignKey("events.seq", ondelete="CASCADE"), nullable=False),
    Column("subscription_id", String(40), ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),
    Column("lease_until", Float),
    Column("lease", String(40)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    UniqueConstraint("event_seq", "subscription_id", name="one_delivery_per_event_and_subscription"),
    # In the order workers claim them (outbox.py): a claim reads the first rows, never sorts the backlog.
    Index("deliveries_due_in_order", "status", "next_attempt_at", "seq"),
    Index("deliveries_by_subscription", "subscription_id", "seq"),
)

# Events stored but not yet turned into deliveries: written with the event, emptied by a worker.
fanout = Table(
    "fanout",
    metadata,
    Column("event_seq", Seq, ForeignKey("events.seq", ondelete="CASCADE"), primary_key=True),
    Column("account_id", Integer, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("received_at", Float, nullable=False),
)

attempts = Table(
    "attempts",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("delivery_seq", Seq, ForeignKey("deliveries.seq", ondelete="CASCADE"), nullable=False),
    Column("attempted_at", Float, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text),
    Index("attempts_by_delivery", "delivery_seq", "seq"),
)

rejected_callbacks = Table(
    "rejected_callbacks",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("account_id", Integer, ForeignKey("accounts.id")),
    Column("received_at", Float, nullable=False),
    Column("method", String(8), nullable=False),
    Column("content_type", String(200)),
    Column("reason", Text, nullable=False),
    Column("body_excerpt", Text),
)

# Results of actions sent with an Idempotency-Key, so that a retry gets the first answer instead of a
# second send. state: running (the first call is still out), done (its answer is kept), unknown (it
# ended without an answer: it may have sent).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("login", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("action", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("status_code", Integer),
    Column("response", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("owner", String(120)),  # the process running the first call (connector/observe/processes.py)
    Index("idempotency_keys_by_age", "created_at"),
)

credit_watch = Table(
    "credit_watch",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
    Column("threshold", Integer, primary_key=True),
    Column("below", Integer, nullable=False),
    Column("crossings", Integer, nullable=False),
)

# The campaigns each account's sends made, so that their receipts can be read from AllMySMS (getAcks) when a
# platform polls: ``messages`` maps each E.164 number to its SMS id (getAcks names the number, not the SMS);
# ``settled`` is 1 once every SMS has a final receipt, after which the campaign is not read again.
campaigns = Table(
    "campaigns",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
    Column("campaign_id", String(64), primary_key=True),
    Column("sent_at", Float, nullable=False),
    Column("read_at", Float),
    Column("settled", Integer, nullable=False, default=0),
    Column("messages", Text, nullable=False),
    Index("campaigns_by_account_age", "account_id", "sent_at"),
)

# When each account's receipts and replies were last read from AllMySMS (``source``: receipts, replies):
# however many processes and platforms poll, AllMySMS is asked at most once an interval per account.
upstream_reads = Table(
    "upstream_reads",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
    Column("source", String(16), primary_key=True),
    Column("read_at", Float, nullable=False),
)

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
ACTIVE, DISABLED = "active", "disabled"


@dataclass(frozen=True)
class Due:
    """A delivery claimed by a worker, with what it needs to send it."""

    seq: int
    id: str
    lease: str
    attempts: int
    event_id: str
    event_type: str
    event_timestamp: str
    event_data: str
    subscription_id: str
    target_url: str
    secret: str
    due_at: float | None = None  # when this attempt was due: the delivery lag is measured from it
    account_id: int | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def delivery_id(event_id: str, subscription_id: str) -> str:
    """The id of the one delivery of an event to a subscription (its webhook-id), derived rather than drawn:
    a worker's commit that a database crash undoes (workers commit without waiting for the disk) makes the
    same deliveries again when it is redone, and a receiver that already has them must see the same ids."""
    digest = hashlib.sha256(f"{event_id}\0{subscription_id}".encode()).hexdigest()
    return f"msg_{digest[:24]}"


def iso(epoch: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC, as every API answer writes times."""
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))

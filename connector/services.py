"""Everything a process of the service shares, built once from the checked settings: the web app, the delivery
worker, the console and `connector migrate` all start here, so that a setting is turned into an object in one
place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine

from connector.description import manifest as manifest_module
from connector.events.delivery import Worker
from connector.events.policy import Policy
from connector.events.targets import AllowList
from connector.sending.actions import Context
from connector.sending.messages import Rules
from connector.sending.prices import Prices
from connector.sending.ratelimit import RateLimit, Refusals
from connector.sending.upstream import AllMySMS, Credentials, Transport
from connector.storage import recovery, schema
from connector.storage.database import data_folder, default_url, engine_url
from connector.storage.journal import Journal, Replayer, folder_of
from connector.storage.store import Store
from connector.web import addresses
from connector.web.accounts import Accounts, secret_key


@dataclass(frozen=True)
class Services:
    """What request handlers and workers share, built once at start-up."""

    settings: Mapping[str, Any]
    manifest: manifest_module.Manifest
    upstream: AllMySMS
    rules: Rules
    feed_format: str
    recipients_per_feed: int
    credits_per_sms_fr: int
    store: Store
    accounts: Accounts
    allowed_targets: AllowList
    policy: Policy
    rate_limit: RateLimit
    refusals: Refusals
    replay_limit: RateLimit
    journal: Journal
    replayer: Replayer
    prices: Prices = field(default_factory=Prices)
    concurrent_feeds: int = 1

    def context(self, credentials: Credentials) -> Context:
        """What an action handler needs, for these credentials."""
        return Context(
            upstream=self.upstream,
            credentials=credentials,
            rules=self.rules,
            feed_format=self.feed_format,
            recipients_per_feed=self.recipients_per_feed,
            credits_per_sms_fr=self.credits_per_sms_fr,
            concurrent_feeds=self.concurrent_feeds,
            prices=self.prices,
        )

    def delivery_worker(self) -> Worker:
        """A delivery worker over this store (not started)."""
        settings = self.settings
        return Worker(
            self.store,
            policy=self.policy,
            allowed=self.allowed_targets,
            concurrency=settings["CONNECTOR_DELIVERY_CONCURRENCY"],
            lease_seconds=settings["CONNECTOR_LEASE_SECONDS"],
            retention_seconds=settings["CONNECTOR_EVENT_RETENTION_DAYS"] * 86400,
            keys_kept_for=settings["CONNECTOR_IDEMPOTENCY_HOURS"] * 3600,
        )


def build(settings: Mapping[str, Any], *, store: Store | None = None, replayable: bool = False) -> Services:
    """The services for these settings, over ``store`` or a store of their own (``replayable`` for a delivery
    worker, see open_store). Nothing is started: no thread, no connection yet."""
    # A delivery worker or `connector migrate` never calls AllMySMS: they run without its URL.
    upstream = AllMySMS(
        settings["ALLMYSMS_BASE_URL"] or "",
        transport=Transport(settings["ALLMYSMS_BASE_URL"] or "", settings["CONNECTOR_THREADS"] * 2),
        connect_timeout=settings["ALLMYSMS_CONNECT_TIMEOUT"],
        read_timeout=settings["ALLMYSMS_READ_TIMEOUT"],
        connect_retries=settings["ALLMYSMS_CONNECT_RETRIES"],
        max_reply_bytes=settings["ALLMYSMS_MAX_REPLY_BYTES"],
        max_concurrent=settings["ALLMYSMS_MAX_CONCURRENT_CALLS"],
    )
    store = store or open_store(settings, replayable=replayable)
    journal = Journal(folder_of(settings["CONNECTOR_DATA_DIR"]), settings["CONNECTOR_JOURNAL_MAX_BYTES"])
    built: list[Services] = []
    # Entries are replayed through the same services as live requests: the replayer is made before them.
    replayer = Replayer(journal, apply=lambda batch: recovery.apply(built[0], batch))
    trusted = addresses.trusted_networks(settings["CONNECTOR_TRUSTED_PROXIES"])
    built.append(
        Services(
            settings=settings,
            manifest=manifest_module.load(),
            upstream=upstream,
            rules=Rules(
                region=settings["CONNECTOR_DEFAULT_COUNTRY"],
                zone=settings["ALLMYSMS_TIMEZONE"],
                stop_mention=settings["CONNECTOR_STOP_MENTION"],
                max_recipients=settings["CONNECTOR_MAX_RECIPIENTS"],
            ),
            feed_format=settings["ALLMYSMS_FEED_FORMAT"],
            recipients_per_feed=settings["ALLMYSMS_RECIPIENTS_PER_FEED"],
            credits_per_sms_fr=settings["ALLMYSMS_CREDITS_PER_SMS_FR"],
            store=store,
            accounts=Accounts(
                store, upstream, secret_key(settings["CONNECTOR_SECRET_KEY"], settings["CONNECTOR_DATA_DIR"])
            ),
            allowed_targets=AllowList(settings["CONNECTOR_ALLOWED_TARGETS"]),
            policy=policy(settings),
            rate_limit=RateLimit(settings["CONNECTOR_ACTIONS_PER_MINUTE"]),
            replay_limit=RateLimit(settings["CONNECTOR_REPLAYS_PER_MINUTE"]),
            # Who a request comes from, believing X-Forwarded-For only from CONNECTOR_TRUSTED_PROXIES.
            refusals=Refusals(
                settings["CONNECTOR_AUTH_FAILURES_PER_MINUTE"],
                settings["CONNECTOR_LOGIN_FAILURES_PER_MINUTE"],
                address_of=lambda peer, forwarded: addresses.client_address(peer, forwarded, trusted),
            ),
            journal=journal,
            replayer=replayer,
            concurrent_feeds=settings["ALLMYSMS_CONCURRENT_FEEDS"],
        )
    )
    return built[0]


def policy(settings: Mapping[str, Any]) -> Policy:
    schedule = tuple(float(part) for part in settings["CONNECTOR_RETRY_SCHEDULE"].split(","))
    return Policy(
        schedule=schedule,
        timeout=settings["CONNECTOR_DELIVERY_TIMEOUT"],
        disable_after=settings["CONNECTOR_DISABLE_AFTER_HOURS"] * 3600,
        per_host=settings["CONNECTOR_DELIVERIES_PER_HOST"],
    )


def database_url(settings: Mapping[str, Any]) -> str:
    """The database's SQLAlchemy URL: DATABASE_URL, or SQLite in the data folder."""
    return engine_url(settings["DATABASE_URL"] or default_url(settings["CONNECTOR_DATA_DIR"]))


def open_store(settings: Mapping[str, Any], replayable: bool = False) -> Store:
    """The store; ``replayable`` for a delivery worker, whose writes may be lost to a power cut (see Store).
    It derives signing secrets from the secret key, kept in the data folder (made 0700 first) when not set."""
    data_folder(settings["CONNECTOR_DATA_DIR"])
    return Store(
        database_url(settings),
        replayable=replayable,
        secret_key=secret_key(settings["CONNECTOR_SECRET_KEY"], settings["CONNECTOR_DATA_DIR"]),
    )


def migrate(settings: Mapping[str, Any]) -> tuple[str | None, str]:
    """Bring the database's schema to this version's (`connector migrate`): the revisions before and after."""
    engine = create_engine(database_url(settings))
    try:
        return schema.migrate(engine)
    finally:
        engine.dispose()

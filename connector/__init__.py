"""AllMySMS connector: a Flask service between no-code platforms and AllMySMS."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, g

from connector.web import addresses, api, health, triggers
from connector import config, errors
from connector.events import inbound
from connector.description import manifest as manifest_module
from connector.observe import metrics
from connector.storage import recovery
from connector import console
from connector.web.accounts import Accounts, secret_key
from connector.sending.actions import HANDLERS
from connector.events.delivery import Policy
from connector.errors import ConfigError
from connector.storage.journal import Journal, Replayer, folder_of
from connector.sending.messages import Rules
from connector.storage.store import Store, data_folder, default_url
from connector.events.targets import AllowList
from connector.sending.ratelimit import RateLimit, Refusals
from connector.sending.upstream import AllMySMS, new_session


#: Blueprints of routes for the operator, not for platforms: they stay out of the OpenAPI document that
#: platforms import as the connector's description.
OPERATOR_BLUEPRINTS = frozenset({"metrics", "console"})


@dataclass(frozen=True)
class Services:
    """What request handlers share, built once at start-up."""

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


def policy(settings: dict) -> Policy:
    schedule = tuple(float(part) for part in settings["CONNECTOR_RETRY_SCHEDULE"].split(","))
    return Policy(schedule=schedule, timeout=settings["CONNECTOR_DELIVERY_TIMEOUT"],
                  disable_after=settings["CONNECTOR_DISABLE_AFTER_HOURS"] * 3600,
                  per_host=settings["CONNECTOR_DELIVERIES_PER_HOST"])


def open_store(settings: dict, replayable: bool = False) -> Store:
    """The store; ``replayable`` for a delivery worker, whose writes may be lost to a power cut (see Store).
    It derives signing secrets from the secret key, kept in the data folder (made 0700 first) when not set."""
    data_folder(settings["CONNECTOR_DATA_DIR"])
    return Store(settings["DATABASE_URL"] or default_url(settings["CONNECTOR_DATA_DIR"]), replayable=replayable,
                 secret_key=secret_key(settings["CONNECTOR_SECRET_KEY"], settings["CONNECTOR_DATA_DIR"]))


def _client_address(settings: dict):
    """Who a request comes from, believing X-Forwarded-For only from CONNECTOR_TRUSTED_PROXIES (as the console)."""
    trusted = addresses.trusted_networks(settings["CONNECTOR_TRUSTED_PROXIES"])
    return lambda peer, forwarded_for: addresses.client_address(peer, forwarded_for, trusted)


def create_app(test_config: dict | None = None) -> Flask:
    """Config, then manifest, then services, then blueprints, then error handlers."""
    settings = config.load(overrides=test_config)
    if not settings["ALLMYSMS_BASE_URL"]:
        raise ConfigError("The configuration is not complete", [
            "ALLMYSMS_BASE_URL is not set. `connector serve` starts the built-in sandbox and sets it; "
            "to send real messages set it to https://api.allmysms.com"])
    manifest = manifest_module.load()
    problems = manifest_module.check_handlers(manifest, HANDLERS)
    if problems:
        raise ConfigError("The manifest and the code disagree", problems)

    app = Flask(__name__, static_folder=None)  # no static files: every route comes from the manifest
    app.config.update(settings, MAX_CONTENT_LENGTH=settings["CONNECTOR_MAX_BODY_BYTES"])
    logging.getLogger("connector").setLevel(settings["CONNECTOR_LOG_LEVEL"])
    upstream = AllMySMS(settings["ALLMYSMS_BASE_URL"], session=new_session(settings["CONNECTOR_THREADS"] * 2),
                        connect_timeout=settings["ALLMYSMS_CONNECT_TIMEOUT"],
                        read_timeout=settings["ALLMYSMS_READ_TIMEOUT"],
                        connect_retries=settings["ALLMYSMS_CONNECT_RETRIES"],
                        max_reply_bytes=settings["ALLMYSMS_MAX_REPLY_BYTES"],
                        max_concurrent=settings["ALLMYSMS_MAX_CONCURRENT_CALLS"])
    store = open_store(settings)
    journal = Journal(folder_of(settings["CONNECTOR_DATA_DIR"]), settings["CONNECTOR_JOURNAL_MAX_BYTES"])
    replayer = Replayer(journal, apply=lambda batch: recovery.apply(services, batch))
    services = app.extensions["connector"] = Services(
        manifest=manifest,
        upstream=upstream,
        rules=Rules(region=settings["CONNECTOR_DEFAULT_COUNTRY"], zone=settings["ALLMYSMS_TIMEZONE"],
                    stop_mention=settings["CONNECTOR_STOP_MENTION"],
                    max_recipients=settings["CONNECTOR_MAX_RECIPIENTS"]),
        feed_format=settings["ALLMYSMS_FEED_FORMAT"],
        recipients_per_feed=settings["ALLMYSMS_RECIPIENTS_PER_FEED"],
        credits_per_sms_fr=settings["ALLMYSMS_CREDITS_PER_SMS_FR"],
        store=store,
        accounts=Accounts(store, upstream, secret_key(settings["CONNECTOR_SECRET_KEY"],
                                                      settings["CONNECTOR_DATA_DIR"])),
        allowed_targets=AllowList(settings["CONNECTOR_ALLOWED_TARGETS"]),
        policy=policy(settings),
        rate_limit=RateLimit(settings["CONNECTOR_ACTIONS_PER_MINUTE"]),
        replay_limit=RateLimit(settings["CONNECTOR_REPLAYS_PER_MINUTE"]),
        refusals=Refusals(settings["CONNECTOR_AUTH_FAILURES_PER_MINUTE"], settings["CONNECTOR_LOGIN_FAILURES_PER_MINUTE"],
                          address_of=_client_address(settings)),
        journal=journal,
        replayer=replayer,
    )
    replay_found = []

    @app.before_request
    def _replay_what_an_earlier_process_left():
        # At the first request, not at start-up: `connector serve` builds an app in the master process too,
        # which must not start threads before it forks the workers.
        if not replay_found:
            replay_found.append(True)
            if journal.files():
                replayer.wake()

    @app.before_request
    def _request_id():
        g.request_id = api.new_request_id()

    @app.after_request
    def _echo_request_id(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    app.register_blueprint(api.blueprint(manifest, HANDLERS))
    app.register_blueprint(inbound.blueprint())
    app.register_blueprint(health.blueprint())
    app.register_blueprint(metrics.blueprint())
    app.register_blueprint(triggers.blueprint(manifest, api.verified_account))
    app.register_blueprint(console.blueprint(settings))
    errors.register(app)
    return app

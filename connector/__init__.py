"""AllMySMS connector: a Flask service between no-code platforms and AllMySMS."""

from __future__ import annotations

import logging

from flask import Flask, g

from connector import config, console, errors
from connector import services as services_module
from connector.description import manifest as manifest_module
from connector.errors import ConfigError
from connector.observe import metrics
from connector.sending.actions import HANDLERS
from connector.sending.options import OPTIONS
from connector.sending.searches import SEARCHES
from connector.web import actions, auth, bodies, callbacks, health, operations, options, searches, triggers

#: Blueprints of routes for the operator, not for platforms: they stay out of the OpenAPI document that
#: platforms import as the connector's description.
OPERATOR_BLUEPRINTS = frozenset({"metrics", "console"})


def create_app(test_config: dict | None = None) -> Flask:
    """Config, then services (the manifest among them), then blueprints, then error handlers."""
    settings = config.load(overrides=test_config)
    if not settings["ALLMYSMS_BASE_URL"]:
        raise ConfigError(
            "The configuration is not complete",
            [
                "ALLMYSMS_BASE_URL is not set. `connector serve` starts the built-in sandbox and sets it; "
                "to send real messages set it to https://api.allmysms.com"
            ],
        )
    services = services_module.build(settings)
    manifest = services.manifest
    problems = manifest_module.check_handlers(manifest, HANDLERS)
    problems += manifest_module.check_handlers(manifest, SEARCHES, kind="search")
    if problems:
        raise ConfigError("The manifest and the code disagree", problems)

    app = Flask(__name__, static_folder=None)  # no static files: every route comes from the manifest
    app.config.update(settings, MAX_CONTENT_LENGTH=settings["CONNECTOR_MAX_BODY_BYTES"])
    logging.getLogger("connector").setLevel(settings["CONNECTOR_LOG_LEVEL"])
    app.extensions["connector"] = services
    replay_found: list[bool] = []

    @app.before_request
    def _replay_what_an_earlier_process_left():
        # At the first request, not at start-up: `connector serve` builds an app in the master process too,
        # which must not start threads before it forks the workers.
        if not replay_found:
            replay_found.append(True)
            if services.journal.files():
                services.replayer.wake()

    @app.before_request
    def _request_id():
        g.request_id = actions.new_request_id()

    @app.after_request
    def _settle(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        auth.count_refusal(response)
        bodies.drain_unread()
        return response

    table, routed = operations.table(manifest), set[str]()
    app.register_blueprint(actions.blueprint(manifest, HANDLERS, table, routed))
    app.register_blueprint(callbacks.blueprint(table, routed))
    app.register_blueprint(health.blueprint(table, routed))
    app.register_blueprint(options.blueprint(OPTIONS, table, routed))
    app.register_blueprint(searches.blueprint(manifest, SEARCHES, table, routed))
    app.register_blueprint(triggers.blueprint(table, routed))
    operations.check_routed(table, routed)
    app.register_blueprint(metrics.blueprint())
    app.register_blueprint(console.blueprint(settings))
    errors.register(app)
    # Plain callbacks are answered before Flask (web/callbacks.py), once the first request has been Flask's.
    app.wsgi_app = callbacks.Lane(  # type: ignore[method-assign]
        app.wsgi_app, table, services, settings, app.json.dumps, ready=lambda: bool(replay_found)
    )
    return app

"""The sandbox's Flask application factory: state, limits, the two APIs, and JSON error pages."""

import logging
import secrets

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import controls, http_api, rest_api
from .replies import JSON_MIMETYPE, to_json
from .state import EXTENSION_KEY, SandboxState

# A 100,000-recipient feed is about 5 MB form-encoded; Flask's default form limit is 500 kB.
MAX_REQUEST_BYTES = 64 * 1024 * 1024

FEED_PATH_PREFIX = "/http/"

log = logging.getLogger(__name__)


def create_sandbox_app(state=None, *, accounts=None):
    """Build a sandbox app on `state`, or on a new SandboxState holding `accounts`.

    `accounts` maps login -> {"api_key": ..., "credits": ...}; without it the demo accounts of
    state.DEMO_ACCOUNTS are used. The state is at `app.extensions["allmysms_sandbox"]`; its
    receipt thread starts with the first send, and `state.close()` stops it.
    """
    if state is not None and accounts is not None:
        raise TypeError("pass either a state or accounts, not both")
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES)
    app.extensions[EXTENSION_KEY] = state if state is not None else SandboxState(accounts)
    app.register_blueprint(http_api.blueprint)
    app.register_blueprint(rest_api.blueprint)
    app.register_blueprint(controls.blueprint)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _http_error(error):
    return _error_response(error.code, error.name)


def _unexpected_error(error):
    # The id ties the client's answer to the log line; the exception text stays in the log.
    request_id = secrets.token_hex(8)
    log.error("sandbox request %s failed", request_id, exc_info=error)
    return _error_response(500, f"Internal sandbox error (request id {request_id})")


def _error_response(http_status, text):
    # Feed clients read `status`/`statusText`, REST clients `code`/`description`.
    if request.path.startswith(FEED_PATH_PREFIX):
        payload = {"status": http_status, "statusText": text}
    else:
        payload = {"code": http_status, "description": text}
    return Response(to_json(payload), status=http_status, mimetype=JSON_MIMETYPE)

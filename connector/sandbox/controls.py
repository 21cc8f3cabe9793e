"""The sandbox's own endpoints under /sandbox/: what the customer area and the phones would do.

- `GET|POST /sandbox/accounts/<login>/callback` plays the AllMySMS customer area, where a
  customer sets the one callback URL of their account. POST takes form fields or a JSON object:
  `url` (required; null or "" removes it) and `format` ("form", "json", "xml" or "get"; omitted keeps
  the current one). Both answer {"url": ..., "format": ...}.
- `POST /sandbox/replies` plays a phone answering an SMS: `phone_number`, `message`, optional
  `sms_id` (else the latest SMS the account sent to that number). The reply is kept for
  getPulls, pushed to the callback URL, and answered 201 with the pushed fields.
- `GET /sandbox/accounts/<login>/campaigns` plays the customer area's list of sends: every
  campaign the account launched, oldest first, as {"campaigns": [{"id", "client_reference",
  "kind", "status", "recipients", "created_at"}]}, without numbers or texts. Read-only; it lets a
  test count what really went out, e.g. sends per client reference.

All three authenticate like the REST API: HTTP Basic with login:apiKey. Errors answer
{"code": ..., "description": ...}; a bad login or key is 401 with code 102, as in rest_api.py.
"""

import logging

from flask import Blueprint, Response, current_app, request

from . import statuses
from .ledger import paris_timestamp
from .replies import JSON_MIMETYPE, to_json
from .state import EXTENSION_KEY

log = logging.getLogger(__name__)
blueprint = Blueprint("sandbox_controls", __name__, url_prefix="/sandbox")


class _Refused(Exception):
    def __init__(self, http_status, description, code=None):
        super().__init__(description)
        self.http_status = http_status
        self.code = http_status if code is None else code
        self.description = description


@blueprint.errorhandler(_Refused)
def _refused(error):
    response = _json(error.http_status, {"code": error.code, "description": error.description})
    if error.http_status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="AllMySMS sandbox"'
    return response


@blueprint.route("/accounts/<login>/callback", methods=["GET", "POST"])
def callback(login):
    state = current_app.extensions[EXTENSION_KEY]
    if _authenticated_login(state) != login:
        raise _Refused(403, "These credentials belong to another account")
    if request.method == "GET":
        return _json(200, state.callback_settings(login))
    body = _body()
    if "url" not in body:
        raise _Refused(400, "Give the callback URL in 'url' (null or empty to remove it)")
    try:
        # An empty format field (a blank form input) keeps the current format.
        settings = state.set_callback_url(login, body["url"], body.get("format") or None)
    except ValueError as error:
        raise _Refused(400, str(error)) from None
    # Not the URL itself: it carries the account's token.
    log.info("sandbox callback %s (format %s)", "set" if settings["url"] else "removed", settings["format"])
    return _json(200, settings)


@blueprint.get("/accounts/<login>/campaigns")
def campaigns(login):
    state = current_app.extensions[EXTENSION_KEY]
    if _authenticated_login(state) != login:
        raise _Refused(403, "These credentials belong to another account")
    listed = [
        {
            "id": c.id,
            "client_reference": c.client_msg_id,
            "kind": c.kind,
            "status": c.status,
            "recipients": len(c.numbers),
            "created_at": paris_timestamp(c.created_at),
        }
        for c in state.campaigns(login)
    ]
    return _json(200, {"campaigns": listed})


@blueprint.post("/replies")
def reply():
    state = current_app.extensions[EXTENSION_KEY]
    login = _authenticated_login(state)
    body = _body()
    sms_id = body.get("sms_id") or None
    if sms_id is not None and not isinstance(sms_id, str):
        raise _Refused(400, "'sms_id' must be text")
    try:
        fields = state.receive_reply(login, body.get("phone_number"), body.get("message"), sms_id)
    except ValueError as error:
        raise _Refused(400, f"{error} ('phone_number' and 'message' are required)") from None
    except LookupError as error:
        raise _Refused(404, str(error)) from None
    log.info("sandbox reply received")
    return _json(201, fields)


def _authenticated_login(state):
    auth = request.authorization
    login = auth.username if auth is not None and auth.type == "basic" else None
    if login is None or auth is None or not state.authenticate(login, auth.password):
        code = statuses.BAD_CREDENTIALS
        raise _Refused(401, statuses.STATUS_TEXTS[code], code)
    return login


def _body():
    """The request's JSON object or form fields, as a plain dict."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise _Refused(400, "The body must be a JSON object")
        return body
    return request.form.to_dict()


def _json(http_status, payload):
    return Response(to_json(payload), status=http_status, mimetype=JSON_MIMETYPE)

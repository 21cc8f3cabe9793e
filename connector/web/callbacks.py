"""The inbound URL's route: what AllMySMS pushes to an account's URL, read, kept once, answered at once (the
reading and keeping are events/inbound.py's).

Callbacks are the service's busiest requests, and most are plain: a known token, a body read whole, events
stored. :class:`Lane` answers those before Flask, which spent more on each (request context, routing, hooks,
response object) than reading and storing its events; it hands any other to the Flask route, the body as it
read it, and the route answers as if the lane were not there.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from connector.errors import MalformedRequest, NotFound
from connector.events import inbound
from connector.observe import metrics
from connector.storage import outage
from connector.web import current_services, operations
from connector.web.actions import request_id
from connector.web.operations import Operation


def blueprint(table: tuple[Operation, ...], routed: set[str]) -> Blueprint:
    """The inbound URL's routes (``callback`` operations of the table, web/operations.py)."""
    return operations.route(Blueprint("inbound", __name__), table, {"callback": lambda _: receive}, routed)


def receive(token: str) -> ResponseReturnValue:
    """What AllMySMS pushes to an account's inbound URL: kept once, answered at once, delivered later."""
    services = current_services()
    with services.store.events.arriving():
        return _receive(services, token)


def _receive(services: inbound.Services, token: str) -> ResponseReturnValue:
    found: tuple[int | None, str] | None
    try:
        found = services.accounts.by_token(token)
    except Exception as error:
        if not outage.unavailable(error):
            raise
        found = inbound.UNRESOLVED
    if found is None:
        inbound.unknown_token(token)
        raise NotFound("There is no account at this inbound URL. Copy the URL again from GET /v1/me.")
    account_id, login = found
    now = time.time()
    request.max_content_length = current_app.config["CONNECTOR_MAX_CALLBACK_BYTES"]
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        inbound.note_rejection(
            services,
            account_id,
            request.method,
            request.content_type or "",
            "larger than the callback size limit",
            b"",
            now,
        )
        metrics.callback("too_large")
        raise
    callback = inbound.Callback(token, request.method, request.content_type or "", request.query_string, body, now)
    try:
        return jsonify(_kept(services, callback, account_id, login)), 200
    except inbound.Refused as rejected:
        inbound.note_rejection(services, account_id, callback.method, callback.content_type, str(rejected), body, now)
        metrics.callback(rejected.kind, refused=len(rejected.refused))
        raise MalformedRequest(
            f"The callback was refused: {rejected}",
            code="callback_rejected",
            extra={"rejected": rejected.refused} if rejected.refused else None,
        ) from None


def _kept(services: inbound.Services, callback: inbound.Callback, account_id: int | None, login: str) -> dict[str, Any]:
    """The callback read, its events stored (or the callback journalled), counted: the answer's body.
    Raises inbound.Refused when none of its records is usable."""
    accepted, refused = inbound.read(services, callback, login)
    if account_id is not None and not services.journal.backlog:
        try:
            fresh = inbound.store(services, callback, account_id, accepted, refused)
        except Exception as error:
            if not outage.unavailable(error):
                raise
        else:
            metrics.callback(new=sum(fresh), duplicates=len(fresh) - sum(fresh), refused=len(refused))
            return {"accepted": sum(fresh), "duplicates": len(fresh) - sum(fresh), "rejected": refused}
    inbound.keep(services, callback)
    metrics.callback(new=len(accepted), refused=len(refused), journalled=True)
    return {"accepted": len(accepted), "duplicates": 0, "rejected": refused, "journalled": True}


Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class Lane:
    """WSGI middleware before the Flask app (``app.wsgi_app``): answers a callback whose events are stored
    (or journalled) without a hitch, with the route's answer; hands any other request on. ``ready()`` says
    whether the app has begun serving (until then every request goes to it, its first-request work
    included)."""

    def __init__(
        self,
        app: WSGIApp,
        table: tuple[Operation, ...],
        services: inbound.Services,
        settings: dict[str, Any],
        dumps: Callable[..., str],
        ready: Callable[[], bool],
    ):
        self._app = app
        self._services = services
        self._limit = settings["CONNECTOR_MAX_CALLBACK_BYTES"]
        self._dumps = dumps  # the app's JSON, so the body is the route's to the byte
        self._ready = ready
        # The route's own path and methods (the ``callback`` operations of the table, web/operations.py).
        routes = [op for op in table if op.view == "callback"]
        (path,) = {op.path for op in routes}
        self._methods = frozenset(op.method for op in routes)
        self._prefix, _, after = path.partition("<token>")
        if after or "<" in self._prefix:
            raise ValueError(f"the inbound path must end with its token: {path}")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(self._prefix) or not self._ready():
            return self._app(environ, start_response)
        answer = self._answer(environ, path[len(self._prefix) :])
        if answer is None:
            return self._app(environ, start_response)
        body = (self._dumps(answer, separators=(",", ":")) + "\n").encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("X-Request-Id", request_id(environ.get("HTTP_X_REQUEST_ID", ""))),
            ],
        )
        return [body]

    def _answer(self, environ: Environ, token: str) -> dict[str, Any] | None:
        """The answer's body; None for the route to answer (and ``environ`` made ready for it)."""
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method not in self._methods or not token or "/" in token or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not 0 <= length <= self._limit:
            return None
        services = self._services
        with services.store.events.arriving():
            try:
                found = services.accounts.by_token(token)
            except Exception:
                return None  # the route answers while the database is away
            if found is None:
                return None
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)  # whoever reads next reads it whole
            if len(body) != length:
                return None  # cut short: the route says so
            query = environ.get("QUERY_STRING", "").encode("latin-1")
            callback = inbound.Callback(token, method, environ.get("CONTENT_TYPE", ""), query, body, time.time())
            try:
                return _kept(services, callback, *found)
            except Exception:
                # Refused, or the events could be neither stored nor journalled: the route does it again, and
                # answers why. Storing twice keeps each event once (its id decides).
                return None

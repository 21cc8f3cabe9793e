"""The inbound URL's route: what AllMySMS pushes to an account's URL, read, kept once, answered at once (the
reading and keeping are events/inbound.py's)."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from connector.errors import MalformedRequest, NotFound
from connector.events import inbound
from connector.observe import metrics
from connector.storage import outage
from connector.web import current_services, operations
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
        accepted, refused = inbound.read(services, callback, login)
    except inbound.Refused as rejected:
        inbound.note_rejection(services, account_id, callback.method, callback.content_type, str(rejected), body, now)
        metrics.callback(rejected.kind, refused=len(rejected.refused))
        raise MalformedRequest(
            f"The callback was refused: {rejected}",
            code="callback_rejected",
            extra={"rejected": rejected.refused} if rejected.refused else None,
        ) from None
    if account_id is not None and not services.journal.backlog:
        try:
            fresh = inbound.store(services, callback, account_id, accepted, refused)
        except Exception as error:
            if not outage.unavailable(error):
                raise
        else:
            metrics.callback(new=sum(fresh), duplicates=len(fresh) - sum(fresh), refused=len(refused))
            return jsonify({"accepted": sum(fresh), "duplicates": len(fresh) - sum(fresh), "rejected": refused}), 200
    inbound.keep(services, callback)
    metrics.callback(new=len(accepted), refused=len(refused), journalled=True)
    return jsonify({"accepted": len(accepted), "duplicates": 0, "rejected": refused, "journalled": True}), 200

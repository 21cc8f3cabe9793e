"""The URL AllMySMS pushes receipts and replies to: store each event once, answer fast, deliver later."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import events, metrics
from .errors import MalformedRequest, NotFound

log = logging.getLogger(__name__)

PATH = "/v1/inbound/allmysms/<token>"


def url(base: str, token: str) -> str:
    """The inbound URL of the account whose token this is, on a service reachable at ``base``."""
    return base.rstrip("/") + PATH.replace("<token>", token)


_PATH_TOKEN = re.compile(re.escape(PATH.replace("<token>", "")) + r"([^/?#\s\"]+)")


def fingerprint(token: str) -> str:
    """What logs show of a token (a credential): the start of its SHA-256."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def masked(text: str) -> str:
    """``text`` (a path, a request line, a URL) with any inbound token replaced by its fingerprint. A
    fingerprint is left as it is (no token holds ':'): text masked twice reads the same."""
    return _PATH_TOKEN.sub(lambda m: m.group(0) if m.group(1).startswith("sha256:") else
                           PATH.replace("<token>", fingerprint(m.group(1))), text)


def blueprint() -> Blueprint:
    bp = Blueprint("inbound", __name__)

    @bp.route(PATH, methods=["GET", "POST"])
    def receive(token: str):
        services = current_app.extensions["connector"]
        found = services.accounts.by_token(token)
        if found is None:
            # Only a fingerprint of the token is logged: the token itself is a credential.
            log.warning("inbound callback for an unknown token (%s)", fingerprint(token))
            metrics.callback("unknown_token")
            raise NotFound("There is no account at this inbound URL. Copy the URL again from GET /v1/me.")
        account_id, login = found
        now = time.time()
        request.max_content_length = current_app.config["CONNECTOR_MAX_CALLBACK_BYTES"]
        try:
            body = request.get_data(cache=True)
        except RequestEntityTooLarge:
            services.store.reject_callback(account_id, request.method, request.content_type or "",
                                           "larger than the callback size limit", b"", now)
            metrics.callback("too_large")
            raise
        content_type = request.content_type or ""
        try:
            # The raw query string and body, not werkzeug's reading of them: that one assumes UTF-8, and
            # AllMySMS may write Latin-1.
            records = events.read_callback(request.method, content_type, request.query_string, {}, body)
        except events.CallbackRejected as rejected:
            return _reject(services, account_id, str(rejected), body, kind="unreadable")
        accepted, refused = [], []
        received_now = datetime.fromtimestamp(now, timezone.utc)
        for index, record in enumerate(records):
            try:
                event = events.normalise(record, account=login, zone=services.rules.zone,
                                         region=services.rules.region, received_now=received_now)
            except events.CallbackRejected as rejected:
                refused.append({"index": index, "reason": str(rejected)})
                continue
            accepted.append({**event.as_json(), "raw": event.raw})
        if not accepted:
            reason = refused[0]["reason"] if len(refused) == 1 else f"none of the {len(refused)} records is usable"
            return _reject(services, account_id, reason, body, refused, kind="invalid_records")
        fresh = services.store.add_events(account_id, accepted, now)
        for item in refused:
            services.store.reject_callback(account_id, request.method, content_type,
                                           f"record {item['index']}: {item['reason']}", body, now)
        metrics.callback(new=sum(fresh), duplicates=len(fresh) - sum(fresh), refused=len(refused))
        return jsonify({"accepted": sum(fresh), "duplicates": len(fresh) - sum(fresh), "rejected": refused}), 200

    return bp


def _reject(services, account_id: int, reason: str, body: bytes, refused=None, *, kind: str):
    services.store.reject_callback(account_id, request.method, request.content_type or "", reason, body, time.time())
    metrics.callback(kind, refused=len(refused or ()))
    error = MalformedRequest(f"The callback was refused: {reason}", code="callback_rejected",
                             extra={"rejected": refused} if refused else None)
    raise error

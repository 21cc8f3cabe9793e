"""The HTTP API, built by looping over the manifest: one route per action, plus /v1/me and /v1/manifest."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import time

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from connector import errors
from connector.sending import feeds, idempotency, messages, phones
from connector.events import inbound
from connector.observe import metrics
from connector.storage import outage, recovery
from connector.sending.actions import Context
from connector.errors import AuthenticationFailed, ConnectorError, FieldError, MalformedRequest, NotFound, Throttled
from connector.description.manifest import Action, Manifest
from connector.sending.upstream import Credentials
from connector.description.validation import invalid_input

log = logging.getLogger(__name__)

_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")

#: A body up to this size is read before the caller is verified; a larger one only for a caller AllMySMS
#: accepted (remembered a few minutes), so that nobody makes the service parse megabytes with a wrong key.
READ_BEFORE_VERIFYING = 64 * 1024


def blueprint(manifest: Manifest, handlers: dict) -> Blueprint:
    bp = Blueprint("api", __name__)
    described = manifest.describe()

    for action in manifest.actions:
        bp.add_url_rule(action.path, endpoint=f"action_{action.key}",
                        view_func=_action_view(manifest, action, handlers[action.key]), methods=["POST"])

    @bp.get("/v1/me")
    def me():
        ctx = _context()
        account = feeds.account_result(ctx.credentials.login, ctx.upstream.account(ctx.credentials),
                                       ctx.credits_per_sms_fr)
        account["label"] = manifest.auth["connection_label"].format(**account)
        known = _verified(ctx.credentials)
        account["inbound_url"] = inbound_url(known.token)
        return jsonify(account)

    @bp.get("/v1/manifest")
    def manifest_view():
        return jsonify(described)

    built: list[dict] = []  # one document: requests differ only in the address of the server

    @bp.get("/openapi.json")
    def openapi_view():
        base = (current_app.config["CONNECTOR_PUBLIC_URL"] or request.host_url).rstrip("/")
        if not built:
            from connector.exports import openapi
            built[:] = [openapi.document(manifest, "/")]
        return jsonify({**built[0], "servers": [{"url": base}]})

    @bp.after_app_request
    def _settle(response):
        _count_refusal(response)
        _drain_unread_body()
        return response

    @bp.post("/v1/sandbox/replies")
    def sandbox_reply():
        if not current_app.config["ALLMYSMS_SANDBOX"]:
            raise NotFound("Replies can be simulated only when the service runs on the built-in sandbox.")
        ctx = _context()
        return jsonify(simulate_reply(ctx, json_body())), 201

    return bp


def simulate_reply(ctx: Context, body: dict) -> dict:
    """The built-in sandbox only: a phone answers an SMS (for this route and the console's sandbox page)."""
    allowed = {k: body[k] for k in ("phone_number", "message", "sms_id") if isinstance(body.get(k), str)}
    e164, reason = phones.parse(allowed.get("phone_number", ""), ctx.rules.region)
    if reason:
        raise invalid_input([FieldError("phone_number", f"The number answering is {reason}.")])
    allowed["phone_number"] = phones.upstream(e164)
    return ctx.upstream.sandbox_reply(ctx.credentials, allowed)


def checked(manifest: Manifest, action: Action, payload):
    """``payload`` when it is a valid input of ``action``, else InvalidInput listing every problem."""
    problems = manifest.catalog.check(action.input, payload)
    if problems:
        raise invalid_input(problems)
    return payload


def perform(manifest: Manifest, action: Action, handle, ctx: Context, payload: dict) -> dict:
    """Run a checked action as every caller does (the API's routes, the console's sandbox form): the
    handler, what the service learns from it, and the output check when asked for.

    The handler owns ``payload``: no reference is kept here, so that a 100,000-recipient body (some 45 MB
    of dicts) is let go as soon as the handler has read it into a request."""
    handed = [payload]
    del payload
    started = time.perf_counter()
    result = handle(ctx, handed.pop())
    # AllMySMS just accepted these credentials: receipts for this send can find the account.
    services = current_app.extensions["connector"]
    try:
        services.accounts.remember(ctx.credentials.login)
    except Exception as error:
        # The action is done (maybe sent): a database away must not turn its answer into an error, which a
        # platform would retry. The account is made from the journal, before the callbacks of this send.
        if not outage.unavailable(error):
            raise
        if services.accounts.unremembered(ctx.credentials.login):
            recovery.keep(services, recovery.Entry(recovery.ACCOUNT, {"login": ctx.credentials.login}))
    services.refusals.accepted(ctx.credentials.login, ctx.credentials.api_key)
    log.info("action %s done in %.0f ms", action.key, (time.perf_counter() - started) * 1000)
    if current_app.config["CONNECTOR_VALIDATE_OUTPUT"]:
        errors = [f"{e.json_path}: {e.message}" for e in manifest.catalog.validator(action.output).iter_errors(result)]
        if errors:
            raise RuntimeError(f"{action.key} result does not match {action.output}: {errors[:5]}")
    return result


def _action_view(manifest: Manifest, action: Action, handle):
    # Compiled at start-up, not on the first request.
    screen = manifest.catalog.fast_validator(action.input)
    manifest.catalog.validator(action.output)

    def checked_body(ctx):
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if chunked or (request.content_length or 0) > READ_BEFORE_VERIFYING:
            _verified(ctx.credentials)
        payload = json_body()
        if not screen.is_valid(payload):
            # Explaining what is wrong costs far more than screening: only for a caller AllMySMS accepts.
            _verified(ctx.credentials)
            checked(manifest, action, payload)
        return payload

    def run(ctx, payload):
        handed = [payload]
        del payload
        return perform(manifest, action, handle, ctx, handed.pop())

    def view():
        started, outcome = time.perf_counter(), "internal_error"
        try:
            response = answer()
            replayed = getattr(response, "headers", {}).get("Idempotent-Replayed")
            outcome = "replayed" if replayed else "ok"
            return response
        except Exception as error:
            outcome = errors.code_of(error)
            raise
        finally:
            metrics.action(action.key, outcome, time.perf_counter() - started)

    def answer():
        ctx = _context()
        wait = current_app.extensions["connector"].rate_limit.wait_for(ctx.credentials.login,
                                                                       ctx.credentials.api_key)
        if wait:
            limit = current_app.config["CONNECTOR_ACTIONS_PER_MINUTE"]
            raise Throttled(f"Too many actions from this account: at most {limit} a minute. Nothing was sent; "
                            f"try again in {wait} s.", retry_after=wait)
        key = idempotency.read_key(request.headers.get(idempotency.HEADER))
        run_names = idempotency.run_names(request.headers)
        if key is None and run_names is None:
            return jsonify(run(ctx, checked_body(ctx))), 200  # the body is not kept here: the handler frees it
        return _idempotent(ctx, key, run_names, checked_body(ctx), run)

    def _idempotent(ctx, key: str | None, run_names, payload: dict, run_action):
        request_hash = idempotency.fingerprint(action.key, payload)
        key = key or idempotency.derived_key(run_names, request_hash)
        store = current_app.extensions["connector"].store
        # Only a caller AllMySMS accepts as this login may see what was answered under its keys.
        _verified(ctx.credentials)
        login = ctx.credentials.login
        try:
            replay = idempotency.begin(
                store, login, key, action.key, request_hash,
                # A first call still "running" long after any answer could come has ended without one.
                stale_after=current_app.config["ALLMYSMS_READ_TIMEOUT"] * 4 + 60,
                kept_for=current_app.config["CONNECTOR_IDEMPOTENCY_HOURS"] * 3600)
        except idempotency.ClaimUnsure as unsure:
            recovery.keep(current_app.extensions["connector"],
                          recovery.Entry(recovery.CLAIM, {"login": login, "key": key, "owner": unsure.owner,
                                                          "created_at": unsure.created_at}))
            raise unsure.__cause__ from None
        if replay is not None:
            response = current_app.response_class(replay.body, status=replay.status_code,
                                                  mimetype="application/json")
            response.headers["Idempotent-Replayed"] = "true"
            return response
        handed, payload = [payload], None  # the handler frees a large body once read: keep no reference
        try:
            result = run_action(ctx, handed.pop())
        except ConnectorError as error:
            if idempotency.keep(error):
                # Replayed as first answered, request id included: the one to quote about this send.
                _settle(login, key, "done", error.status, json.dumps(error.as_json(g.get("request_id"))))
            else:
                _settle(login, key, None)
            raise
        except Exception:
            _settle(login, key, "unknown")
            raise
        body = jsonify(result)
        _settle(login, key, "done", 200, body.get_data(as_text=True))
        return body, 200

    view.__name__ = f"action_{action.key}"
    return view


def _settle(login: str, key: str, state: str | None, status_code: int | None = None, response: str | None = None):
    """Write how a keyed action ended (``state`` None: let the key go). The action has run by now: if the
    database is away, the outcome goes to the journal and the caller still gets the action's own answer; until
    it is replayed, a retry with the key finds it running and waits (409), so it never sends twice."""
    services = current_app.extensions["connector"]
    now = time.time()
    try:
        if state is None:
            services.store.release_key(login, key)
        else:
            services.store.settle_key(login, key, state, status_code, response, now)
        return
    except Exception as error:
        if not outage.unavailable(error):
            raise
    # Should the journal fail too, still safe: the key stays "running" under this process, so a retry waits,
    # and once this process is gone it is answered "may have been sent".
    recovery.keep(services, recovery.key_entry(login, key, state, status_code, response, now))


def inbound_url(token: str) -> str:
    return inbound.url(current_app.config["CONNECTOR_PUBLIC_URL"] or request.host_url, token)


def verified_account():
    """The caller's account, its credentials checked with AllMySMS (401 otherwise)."""
    return _verified(credentials())


def _verified(given: Credentials):
    services = current_app.extensions["connector"]
    account = services.accounts.verified(given)
    services.refusals.accepted(given.login, given.api_key)
    return account


def _context() -> Context:
    return context_for(credentials())


def context_for(given: Credentials) -> Context:
    """What an action handler needs, for these credentials."""
    services = current_app.extensions["connector"]
    return Context(upstream=services.upstream, credentials=given, rules=services.rules,
                   feed_format=services.feed_format, recipients_per_feed=services.recipients_per_feed,
                   credits_per_sms_fr=services.credits_per_sms_fr)


def credentials() -> Credentials:
    """The caller's AllMySMS login and API key, from HTTP Basic authentication: 401 when unusable or when
    AllMySMS refused this very pair a moment ago, 429 when this address or login failed too often lately.
    Every 401 of a request that asked for them counts as a failure (see _count_refusal)."""
    known = g.get("credentials")
    if known is not None:
        return known
    refusals = current_app.extensions["connector"].refusals
    address = refusals.address_of(request.remote_addr, request.headers.get("X-Forwarded-For"))
    g.caller = (address, None, None)
    given = _read_credentials()
    g.caller = (address, given.login, given.api_key)
    wait = refusals.wait_for(address, given.login, given.api_key)
    if wait:
        raise Throttled(f"Too many failed logins from this address or for this login. Nothing was done; check the "
                        f"login and API key of the connection, and try again in {wait} s.", retry_after=wait,
                        code="too_many_failures")
    if refusals.refused_before(given.login, given.api_key):
        g.caller = (address, given.login, None)  # already counted: the memory is not made to last longer
        raise AuthenticationFailed("AllMySMS refused this login and API key a moment ago. Check them in the "
                                   "connection (the API key is in the AllMySMS customer area).")
    g.credentials = given
    return given


def _count_refusal(response) -> None:
    caller = g.pop("caller", None)
    if caller is not None and response.status_code == 401:
        current_app.extensions["connector"].refusals.failed(*caller)


def _drain_unread_body() -> None:
    """Read and drop what is left of a body nobody read (an unknown address, a refusal before the body was
    needed), up to the largest body accepted: the connection can then carry the client's next request.
    Left there, gunicorn drops the connection without saying so, and that next request fails."""
    length = request.content_length
    if not length or length > (current_app.config["MAX_CONTENT_LENGTH"] or 0):
        return
    try:
        stream = request.stream
        while stream.read(1 << 16):
            pass
    except (OSError, HTTPException):
        pass  # the client went away: nothing to keep alive


def _read_credentials() -> Credentials:
    header = request.headers.get("Authorization", "")
    if not header:
        raise AuthenticationFailed("Connect with your AllMySMS login and API key (HTTP Basic authentication: "
                                   "the login as user name, the API key as password).", code="missing_credentials")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed("Use HTTP Basic authentication: the AllMySMS login as user name and the API key "
                                   "as password.", code="unsupported_authentication")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("The Authorization header could not be read: it must be 'Basic ' followed by "
                                   "base64 of login:apiKey.", code="malformed_credentials") from None
    login, colon, api_key = text.partition(":")
    if not colon or not login.strip() or not api_key.strip():
        raise AuthenticationFailed("Both the AllMySMS login and the API key are needed.", code="missing_credentials")
    return Credentials(login.strip(), api_key.strip())


def json_body():
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    mimetype = request.mimetype or ""
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise MalformedRequest(f"The body must be JSON (Content-Type: application/json), not {mimetype}.",
                               code="unsupported_media_type", status=415)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"The body is not valid UTF-8 (byte {exc.start + 1}).") from None
    del raw  # a large send's body need not stay in memory twice while it is parsed
    try:
        payload = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") \
            from None
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"The body cannot be accepted: {_short(exc)}") from None
    if not isinstance(payload, dict):
        raise MalformedRequest("The body must be a JSON object ({...}) with the action's fields.")
    # Valid UTF-8 cannot hold half of a UTF-16 pair; only a JSON escape can, so the (rare) walk of the whole
    # document is needed only when the text holds one.
    if _ESCAPED_SURROGATE.search(text):
        problems = messages.lone_surrogates(payload)
        if problems:
            raise invalid_input(problems)
    return payload


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the field {key!r} appears twice")
        seen[key] = value
    return seen


def _no_constants(name):
    raise ValueError(f"{name} is not a number JSON allows")


def _short(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "it is nested too deeply."
    text = str(exc)
    if "digits" in text and "limit" in text:
        return "a number is too large."
    return text if len(text) < 200 else "a value is too large."


def new_request_id() -> str:
    incoming = request.headers.get("X-Request-Id", "")
    if 8 <= len(incoming) <= 64 and incoming.replace("-", "").isalnum():
        return incoming
    return secrets.token_hex(8)


__all__ = ["blueprint", "new_request_id", "ConnectorError"]

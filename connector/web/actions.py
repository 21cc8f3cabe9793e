"""The actions' routes, one per action of the manifest, with what every action shares: credentials checked,
the body screened then explained, limits per account, Idempotency-Key; and /v1/me, /v1/manifest, /openapi.json."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, cast

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from connector import errors
from connector.description.manifest import Action, Manifest
from connector.description.validation import invalid_input
from connector.errors import ConnectorError, FieldError, NotFound, Throttled
from connector.events import inbound, polling
from connector.observe import metrics
from connector.sending import feeds, idempotency, phones
from connector.sending.actions import Context, Handler
from connector.storage import outage, recovery
from connector.web import bodies, current_services, operations
from connector.web.auth import credentials, verified
from connector.web.operations import Operation, View

if TYPE_CHECKING:  # services builds on web's modules
    from connector.services import Services

log = logging.getLogger(__name__)

#: A body up to this size is read before the caller is verified; a larger one only for a caller AllMySMS
#: accepted (remembered a few minutes), so that nobody makes the service parse megabytes with a wrong key.
READ_BEFORE_VERIFYING = 64 * 1024


def blueprint(
    manifest: Manifest, handlers: dict[str, Any], table: tuple[Operation, ...], routed: set[str]
) -> Blueprint:
    described = manifest.describe()
    built: list[dict[str, Any]] = []  # one OpenAPI document: requests differ only in the address of the server

    def me(_: Operation) -> View:
        def view() -> ResponseReturnValue:
            ctx = _context()
            account = feeds.account_result(
                ctx.credentials.login, ctx.upstream.account(ctx.credentials), ctx.credits_per_sms_fr
            )
            account["label"] = manifest.auth["connection_label"].format(**account)
            known = verified(ctx.credentials)
            account["inbound_url"] = inbound_url(known.token)
            return jsonify(account)

        return view

    def manifest_view(_: Operation) -> View:
        return lambda: jsonify(described)

    def openapi_view(_: Operation) -> View:
        def view() -> ResponseReturnValue:
            base = (current_app.config["CONNECTOR_PUBLIC_URL"] or request.host_url).rstrip("/")
            if not built:
                from connector.exports import openapi  # the exports are loaded only when asked for

                built[:] = [openapi.document(manifest, "/", table)]
            return jsonify({**built[0], "servers": [{"url": base}]})

        return view

    def sandbox_reply(operation: Operation) -> View:
        def view() -> ResponseReturnValue:
            if not current_app.config["ALLMYSMS_SANDBOX"]:
                raise NotFound("Replies can be simulated only when the service runs on the built-in sandbox.")
            ctx = _context()
            return jsonify(simulate_reply(ctx, bodies.read(operation))), 201

        return view

    return operations.route(
        Blueprint("actions", __name__),
        table,
        {
            "action": lambda op: _action_view(manifest, _action(op), handlers[_action(op).key]),
            "me": me,
            "manifest": manifest_view,
            "openapi": openapi_view,
            "sandbox_reply": sandbox_reply,
        },
        routed,
    )


def _action(operation: Operation) -> Action:
    if operation.action is None:  # never: the table makes action operations with their action
        raise ValueError(f"operation {operation.key!r} answers no action")
    return operation.action


def simulate_reply(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """The built-in sandbox only: a phone answers an SMS (for this route and the console's sandbox page)."""
    allowed: dict[str, Any] = {k: body[k] for k in ("phone_number", "message", "sms_id") if k in body}
    e164, reason = phones.parse(allowed.get("phone_number", ""), ctx.rules.region)
    if reason:
        raise invalid_input([FieldError("phone_number", f"The number answering is {reason}.")])
    allowed["phone_number"] = phones.upstream(cast(str, e164))  # parse gives a number whenever it gives no reason
    return ctx.upstream.sandbox_reply(ctx.credentials, allowed)


def checked(manifest: Manifest, action: Action, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` when it is a valid input of ``action``, else InvalidInput listing every problem."""
    problems = manifest.catalog.check(action.input, payload)
    if problems:
        raise invalid_input(problems)
    return payload


def perform(
    manifest: Manifest, action: Action, handle: Handler, ctx: Context, payload: dict[str, Any]
) -> dict[str, Any]:
    """Run a checked action as every caller does (the API's routes, the console's sandbox form): the
    handler, what the service learns from it, and the output check when asked for.

    The handler owns ``payload``: no reference is kept here, so that a 100,000-recipient body (some 45 MB
    of dicts) is let go as soon as the handler has read it into a request."""
    handed = [payload]
    del payload
    started = time.perf_counter()
    services = current_services()
    sent: list[tuple[str, list[dict[str, Any]]]] = []
    try:
        result = handle(
            dataclasses.replace(ctx, sent=lambda campaign, messages: sent.append((campaign, messages))), handed.pop()
        )
    except ConnectorError:
        _keep_campaigns(services, ctx.credentials.login, sent)  # a send that failed half-way sent these
        raise
    # AllMySMS just accepted these credentials: receipts for this send can find the account.
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
    _keep_campaigns(services, ctx.credentials.login, sent or _campaigns_of(result))
    # At DEBUG: the access log already has a line per request, with its path and time (a second line per
    # action cost a send some 30 CPU-µs under load).
    log.debug("action %s done in %.0f ms", action.key, (time.perf_counter() - started) * 1000)
    if current_app.config["CONNECTOR_VALIDATE_OUTPUT"]:
        errors = [f"{e.json_path}: {e.message}" for e in manifest.catalog.validator(action.output).iter_errors(result)]
        if errors:
            raise RuntimeError(f"{action.key} result does not match {action.output}: {errors[:5]}")
    return result


def _campaigns_of(result: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The campaign of a send whose handler did not tell of it as it went: one campaign, its messages."""
    ids, messages = result.get("campaign_ids"), result.get("sms_ids")
    if isinstance(ids, list) and len(ids) == 1 and isinstance(messages, list) and messages:
        return [(str(ids[0]), [m for m in messages if isinstance(m, dict) and "phone_number" in m and "sms_id" in m])]
    return []


def _keep_campaigns(services: Services, login: str, sent: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """Keep the campaigns a send made, so their receipts can be read when a platform polls for them."""
    if not sent:
        return
    try:
        account_id = services.accounts.id_of(login)
    except Exception as error:
        if not outage.unavailable(error):
            raise
        account_id = None
    if account_id is not None:
        polling.record_sends(services, account_id, sent, time.time())


def _action_view(manifest: Manifest, action: Action, handle: Handler) -> View:
    # Compiled at start-up, not on the first request.
    screen = manifest.catalog.fast_validator(action.input)
    manifest.catalog.validator(action.output)

    def checked_body(ctx: Context) -> dict[str, Any]:
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if chunked or (request.content_length or 0) > READ_BEFORE_VERIFYING:
            verified(ctx.credentials)
        payload = bodies.json_body()
        if not screen.is_valid(payload):
            # Explaining what is wrong costs far more than screening: only for a caller AllMySMS accepts.
            verified(ctx.credentials)
            checked(manifest, action, payload)
        return payload

    def run(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        handed = [payload]
        del payload
        return perform(manifest, action, handle, ctx, handed.pop())

    def view() -> ResponseReturnValue:
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

    def answer() -> ResponseReturnValue:
        ctx = _context()
        wait = current_services().rate_limit.wait_for(ctx.credentials.login, ctx.credentials.api_key)
        if wait:
            limit = current_app.config["CONNECTOR_ACTIONS_PER_MINUTE"]
            raise Throttled(
                f"Too many actions from this account: at most {limit} a minute. Nothing was sent; "
                f"try again in {wait} s.",
                retry_after=wait,
            )
        key = idempotency.read_key(request.headers.get(idempotency.HEADER))
        run_names = idempotency.run_names(request.headers)
        if key is None and run_names is None:
            return jsonify(run(ctx, checked_body(ctx))), 200  # the body is not kept here: the handler frees it
        return _idempotent(ctx, key, run_names, checked_body(ctx), run)

    def _idempotent(
        ctx: Context, key: str | None, run_names: tuple[str, ...] | None, payload: dict[str, Any], run_action: Handler
    ) -> ResponseReturnValue:
        request_hash = idempotency.fingerprint(action.key, payload)
        # Asked for only with a key or with run names.
        key = key or idempotency.derived_key(cast(tuple[str, ...], run_names), request_hash)
        store = current_services().store
        # Only a caller AllMySMS accepts as this login may see what was answered under its keys.
        verified(ctx.credentials)
        login = ctx.credentials.login
        try:
            replay = idempotency.begin(
                store,
                login,
                key,
                action.key,
                request_hash,
                # A first call still "running" long after any answer could come has ended without one.
                stale_after=current_app.config["ALLMYSMS_READ_TIMEOUT"] * 4 + 60,
                kept_for=current_app.config["CONNECTOR_IDEMPOTENCY_HOURS"] * 3600,
            )
        except idempotency.ClaimUnsure as unsure:
            recovery.keep(
                current_services(),
                recovery.Entry(
                    recovery.CLAIM, {"login": login, "key": key, "owner": unsure.owner, "created_at": unsure.created_at}
                ),
            )
            cause = unsure.__cause__
            raise (cause if cause is not None else unsure) from None
        if replay is not None:
            response = current_app.response_class(replay.body, status=replay.status_code, mimetype="application/json")
            response.headers["Idempotent-Replayed"] = "true"
            return response
        handed = [payload]  # the handler frees a large body once read: keep no reference
        del payload
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


def _settle(
    login: str, key: str, state: str | None, status_code: int | None = None, response: str | None = None
) -> None:
    """Write how a keyed action ended (``state`` None: let the key go). The action has run by now: if the
    database is away, the outcome goes to the journal and the caller still gets the action's own answer; until
    it is replayed, a retry with the key finds it running and waits (409), so it never sends twice."""
    services = current_services()
    now = time.time()
    try:
        if state is None:
            services.store.keys.release(login, key)
        else:
            services.store.keys.settle(login, key, state, status_code, response, now)
        return
    except Exception as error:
        if not outage.unavailable(error):
            raise
    # Should the journal fail too, still safe: the key stays "running" under this process, so a retry waits,
    # and once this process is gone it is answered "may have been sent".
    recovery.keep(services, recovery.key_entry(login, key, state, status_code, response, now))


def inbound_url(token: str) -> str:
    return inbound.url(current_app.config["CONNECTOR_PUBLIC_URL"] or request.host_url, token)


def _context() -> Context:
    return current_services().context(credentials())


def new_request_id() -> str:
    return request_id(request.headers.get("X-Request-Id", ""))


def request_id(incoming: str) -> str:
    """A request's id: the caller's own X-Request-Id when it is a sensible one, else a new one."""
    if 8 <= len(incoming) <= 64 and incoming.replace("-", "").isalnum():
        return incoming
    return secrets.token_hex(8)

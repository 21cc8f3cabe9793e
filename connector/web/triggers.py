"""Triggers as platforms use them: REST hook subscriptions, newest-first event lists, replay and logs.

Their routes are the operation table's (web/operations.py); this module answers them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for
from flask.typing import ResponseReturnValue

from connector.description.manifest import Trigger
from connector.description.validation import invalid_input
from connector.errors import FieldError, InvalidInput, NotFound, Throttled, TooManySubscriptions
from connector.events import callbacks as events
from connector.events import polling, targets
from connector.sending import feeds
from connector.storage.store import Store
from connector.storage.subscriptions import SubscriptionLimit
from connector.storage.tables import iso
from connector.web import bodies, current_services, operations
from connector.web.accounts import Account
from connector.web.auth import credentials, verified_account
from connector.web.operations import DEFAULT_LIMIT, MAX_LIMIT, Operation, View


def blueprint(table: tuple[Operation, ...], routed: set[str]) -> Blueprint:
    def replay_event(_: Operation) -> View:
        def view(event_id: str) -> ResponseReturnValue:
            account = verified_account()
            bodies.json_body()  # nothing is read from it, but a body is still JSON or refused
            _may_replay(account)
            # At most one delivery per subscription of the event's type, and those are capped per trigger.
            count = _store().history.replay(account.id, event_id, time.time())
            if count < 0:
                raise NotFound("No event of this account has this id.")
            return jsonify({"event_id": event_id, "subscriptions": count}), 202

        return view

    def rejected(_: Operation) -> View:
        def view() -> ResponseReturnValue:
            account = verified_account()
            items = _store().events.rejected(account.id, _limit())
            for item in items:
                item["received_at"] = iso(item["received_at"])
            return jsonify(items)

        return view

    return operations.route(
        Blueprint("triggers", __name__),
        table,
        {
            "trigger_events": _events_view,
            "subscribe": _subscribe_view,
            "subscriptions": _list_view,
            "subscription": _one_view,
            "unsubscribe": _unsubscribe_view,
            "deliveries": _deliveries_view,
            "replay_failed": _replay_failed_view,
            "replay_event": replay_event,
            "rejected_callbacks": rejected,
        },
        routed,
    )


def _store() -> Store:
    return current_services().store


def _may_replay(account: Account) -> None:
    """Replays are limited per account: each makes deliveries to targets the caller chose."""
    wait = current_services().replay_limit.wait_for(account.login, "replays")
    if wait:
        per_minute = current_app.config["CONNECTOR_REPLAYS_PER_MINUTE"]
        raise Throttled(
            f"Too many replays from this account: at most {per_minute} a minute. Nothing was replayed; "
            f"try again in {wait} s.",
            retry_after=wait,
        )


def _limit() -> int:
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(
            f"limit must be a whole number from 1 to {MAX_LIMIT}.",
            fields=[FieldError("limit", f"Give a whole number from 1 to {MAX_LIMIT}.")],
        )
    return int(raw)


def _events_view(operation: Operation) -> View:
    trigger = _trigger(operation)
    source = POLLED.get(trigger.key)
    if trigger.delivery == "poll" and source is None:
        raise ValueError(f"trigger {trigger.key!r} is polled but nothing reads its events")

    def view() -> ResponseReturnValue:
        account = verified_account()
        limit = _limit()
        if source:
            items = source(account, _trigger_input(trigger), limit)
        else:
            fetch = FETCHED.get(trigger.event_type)
            if fetch is not None:
                fetch(current_services(), credentials(), account, time.time())
            items = _store().events.recent(account.id, trigger.event_type, limit)
        if not items and request.args.get("sample") in ("1", "true", "yes"):
            items = [trigger.sample]
        return jsonify(items)

    return view


def _trigger_input(trigger: Trigger) -> dict[str, Any]:
    """The trigger's options, from the query string, checked against its input schema."""
    if not trigger.input:
        return {}
    catalog = current_services().manifest.catalog
    properties = catalog.resolved(trigger.input).get("properties", {})
    values: dict[str, Any] = {}
    for name, prop in properties.items():
        if name in request.args:
            raw = request.args[name]
            values[name] = int(raw) if prop.get("type") == "integer" and raw.lstrip("-").isdigit() else raw
    problems = catalog.check(trigger.input, values)
    if problems:
        raise invalid_input(problems)
    return values


# Triggers AllMySMS cannot push: read from AllMySMS with the caller's credentials at each poll.


def _opt_outs(account: Account, options: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    services = current_services()
    reply = services.upstream.blacklist(credentials())
    # Read as one list: an entry's id depends on the entries it shares its number and time with.
    found = [
        event.as_json()
        for event in events.opt_outs(
            feeds.as_list(reply.get("blacklist")),
            account=account.login,
            zone=services.rules.zone,
            region=services.rules.region,
        )
    ]
    found.sort(key=lambda e: (e["timestamp"], e["id"]), reverse=True)
    return found[:limit]


def _credits_low(account: Account, options: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    services = current_services()
    threshold = options["threshold"]
    credits = feeds.integer(services.upstream.account(credentials()).get("credits"))
    crossing = services.store.accounts.watch_credits(account.id, threshold, credits)
    if crossing:
        event = events.credits_low(
            account=account.login, threshold=threshold, credits=credits, crossing=crossing, now=datetime.now(UTC)
        )
        services.store.events.add(account.id, [{**event.as_json(), "raw": {}}], time.time())
    recent = services.store.events.recent(account.id, events.CREDITS_LOW, MAX_LIMIT)
    return [e for e in recent if e["data"]["threshold"] == threshold][:limit]


POLLED = {"opt_out_received": _opt_outs, "credits_low": _credits_low}
#: Events AllMySMS pushes to the inbound URL, also read from it at each poll (at most once an interval per
#: account), for accounts whose inbound URL it does not call: stored as the pushed ones are, under the same ids.
FETCHED = {events.RECEIPT: polling.receipts, events.REPLY: polling.replies}


def _trigger(operation: Operation) -> Trigger:
    if operation.trigger is None:  # never: the table makes trigger operations with their trigger
        raise ValueError(f"operation {operation.key!r} answers no trigger")
    return operation.trigger


def _subscribe_view(operation: Operation) -> View:
    trigger = _trigger(operation)

    def view() -> ResponseReturnValue:
        account = verified_account()
        target_url = bodies.read(operation)["target_url"].strip()
        try:
            # First: it also refuses characters no URL has (NUL, controls, half surrogates), which the
            # database would choke on.
            targets.check(target_url, current_services().allowed_targets)
        except targets.TargetRefused as refused:
            raise InvalidInput(f"target_url: {refused}", fields=[FieldError("target_url", str(refused))]) from None
        limit = current_app.config["CONNECTOR_MAX_SUBSCRIPTIONS"]
        try:
            row, created = _store().subscriptions.add(
                account.id, trigger.key, trigger.event_type, target_url, time.time(), limit=limit
            )
        except SubscriptionLimit:
            raise TooManySubscriptions(
                f"This account already has {limit} subscriptions to the trigger {trigger.key}, the most it may have. "
                f"Delete those it no longer uses (GET {trigger.subscriptions_path} lists them, DELETE "
                "on one removes it), then subscribe again.",
                extra={"limit": limit},
            ) from None
        response = jsonify(_public(row, with_secret=True))
        # The same target again is the subscription already there (200), with the same secret: platforms
        # subscribe again when a flow is turned back on.
        response.status_code = 201 if created else 200
        response.headers["Location"] = url_for(
            f"triggers.{trigger.key}_subscription", subscription_id=row["id"], _external=True
        )
        return response

    return view


def _list_view(operation: Operation) -> View:
    def view() -> ResponseReturnValue:
        account = verified_account()
        rows = _store().subscriptions.of_account(account.id, _trigger(operation).key)
        return jsonify([_public(row) for row in rows])

    return view


def _one_view(operation: Operation) -> View:
    def view(subscription_id: str) -> ResponseReturnValue:
        account = verified_account()
        return jsonify(_public(_owned(account, _trigger(operation), subscription_id)))

    return view


def _unsubscribe_view(_: Operation) -> View:
    def view(subscription_id: str) -> ResponseReturnValue:
        account = verified_account()
        # Unsubscribing twice is not an error worth failing a platform's clean-up for: 404 says it is gone.
        if not _store().subscriptions.remove(account.id, subscription_id):
            raise NotFound("This subscription does not exist (or was already removed).")
        return "", 204

    return view


def _deliveries_view(operation: Operation) -> View:
    def view(subscription_id: str) -> ResponseReturnValue:
        account = verified_account()
        _owned(account, _trigger(operation), subscription_id)
        return jsonify(_store().history.log(subscription_id, _limit()))

    return view


def _replay_failed_view(operation: Operation) -> View:
    def view(subscription_id: str) -> ResponseReturnValue:
        account = verified_account()
        _owned(account, _trigger(operation), subscription_id)
        since_text = bodies.read(operation).get("since")
        since = 0.0
        if since_text:
            try:
                moment = datetime.fromisoformat(str(since_text))
            except ValueError:
                raise InvalidInput(
                    "since: not an ISO 8601 date and time.",
                    fields=[FieldError("since", "Give an ISO 8601 time, e.g. 2026-12-01T08:00:00Z.")],
                ) from None
            since = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        _may_replay(account)
        count, more = _store().history.replay_failed(
            subscription_id, since, time.time(), current_app.config["CONNECTOR_REPLAY_LIMIT"]
        )
        # The oldest first; what is left waits for another call, which "more" asks for.
        return jsonify({"subscription_id": subscription_id, "replayed": count, "more": more}), 202

    return view


def _owned(account: Account, trigger: Trigger, subscription_id: str) -> dict[str, Any]:
    row = _store().subscriptions.get(account.id, subscription_id)
    if row is None or row["trigger"] != trigger.key:
        raise NotFound("This subscription does not exist.")
    return row


def _public(row: dict[str, Any], with_secret: bool = False) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "trigger": row["trigger"],
        "event": row["event_type"],
        "target_url": row["target_url"],
        "status": row["status"],
        "created_at": iso(row["created_at"]),
    }
    if row.get("status_reason"):
        out["status_reason"] = row["status_reason"]
    if "last_status_code" in row:
        out.update(
            last_attempt_at=iso(row.get("last_attempt_at")),
            last_status_code=row.get("last_status_code"),
            failing_since=iso(row.get("failing_since")),
        )
    if with_secret:
        out["secret"] = row["secret"]
    return out

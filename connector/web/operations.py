"""The one table of the service's HTTP operations, read from the manifest: Flask's routes, the check of each
request body and the OpenAPI document are all derived from it, so that no path or body shape is written twice.

An operation's ``view`` names the kind of handler that answers it; each web module routes the kinds it
answers (``route``), and the app refuses to start if an operation is left without one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Blueprint
from flask.typing import ResponseReturnValue

from connector.description.manifest import Action, Manifest, Search, Trigger
from connector.errors import ConfigError
from connector.events import inbound

#: Query parameters an operation may take, by name; exports and OpenAPI describe them from here.
LIMIT, SAMPLE, TRIGGER_OPTIONS, IDEMPOTENCY_KEY = "limit", "sample", "trigger_options", "idempotency_key"
#: The schema keyword of a field whose values come from the account, and where its choices are answered.
OPTIONS_KEYWORD, OPTIONS_PATH = "x-options", "/v1/options"
#: Items a list answers at most, and by default.
MAX_LIMIT, DEFAULT_LIMIT = 100, 50
#: What answers an operation's route: a Flask view function.
View = Callable[..., ResponseReturnValue]


_FLASK_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


@dataclass(frozen=True)
class Operation:
    key: str  # the OpenAPI operationId, and the Flask endpoint
    method: str
    path: str  # in Flask's syntax: /v1/events/<event_id>/replay
    view: str
    summary: str
    description: str = ""
    ok: int = 200
    output: str | None = None  # the schema of the answer
    many: bool = False  # the answer is a list of ``output``
    body: str | None = None  # the schema the request body is checked against
    body_required: bool = True
    query: tuple[str, ...] = ()
    auth: bool = True
    tag: str | None = None
    sample: object = None
    action: Action | None = None
    trigger: Trigger | None = None
    search: Search | None = None
    options: str | None = None  # the kind of choice it answers, as the schemas' ``x-options`` name it

    @property
    def path_parameters(self) -> tuple[str, ...]:
        return tuple(_FLASK_PARAMETER.findall(self.path))

    def templated(self, style: str = "{%s}") -> str:
        """The path with each parameter written as ``style`` makes it (OpenAPI's ``{name}`` by default)."""
        return _FLASK_PARAMETER.sub(lambda m: style % m.group(1), self.path)


def table(manifest: Manifest) -> tuple[Operation, ...]:
    """Every operation, in the order the OpenAPI document lists them."""
    ops = [
        Operation(
            "me",
            "GET",
            "/v1/me",
            "me",
            "Connection test",
            "The account behind the credentials: identity, "
            "credits, and the inbound URL to paste in the AllMySMS customer area.",
            output="api/me.json",
        ),
        Operation(
            "manifest",
            "GET",
            "/v1/manifest",
            "manifest",
            "The connector's description",
            "manifest.yaml with every schema inlined.",
            auth=False,
        ),
        Operation("openapi", "GET", "/openapi.json", "openapi", "This document", auth=False),
        Operation(
            "healthz",
            "GET",
            "/healthz",
            "healthz",
            "Liveness",
            "The process answers.",
            output="api/health.json",
            auth=False,
        ),
        Operation(
            "readyz",
            "GET",
            "/readyz",
            "readyz",
            "Readiness",
            "The database answers and its schema is the one this version needs; 503 otherwise.",
            output="api/health.json",
            auth=False,
        ),
    ]
    ops += [
        Operation(
            action.key,
            "POST",
            action.path,
            "action",
            action.label,
            action.description,
            output=action.output,
            body=action.input,
            query=(IDEMPOTENCY_KEY,),
            tag="actions",
            sample=action.sample,
            action=action,
        )
        for action in manifest.actions
    ]
    ops += [
        Operation(
            search.key,
            "POST",
            search.path,
            "search",
            search.label,
            search.description,
            output=search.output,
            many=True,
            body=search.input,
            tag="searches",
            sample=[search.sample],
            search=search,
        )
        for search in manifest.searches
    ]
    for trigger in manifest.triggers:
        ops += trigger_operations(trigger)
    ops += [
        Operation(
            name,
            "GET",
            f"{OPTIONS_PATH}/{name}",
            "options",
            f"Choices: {name.replace('_', ' ')}",
            f"The account's {name.replace('_', ' ')}, each as the value to send and the label to show: what "
            "the dropdown of a field taking one of them offers.",
            output="api/option.json",
            many=True,
            tag="options",
            options=name,
        )
        for name in option_names(manifest)
    ]
    ops += [
        Operation(
            "replay_event",
            "POST",
            "/v1/events/<event_id>/replay",
            "replay_event",
            "Deliver an event again",
            "To every active subscription of its type, with the same webhook-id.",
            ok=202,
            output="api/replay.json",
            tag="triggers",
        ),
        Operation(
            "rejected_callbacks",
            "GET",
            "/v1/inbound/rejected",
            "rejected_callbacks",
            "Rejected callbacks",
            "Callbacks from AllMySMS that could not be used, newest first, with the reason.",
            output="api/rejected_callback.json",
            many=True,
            query=(LIMIT,),
            tag="triggers",
        ),
    ]
    ops += [
        Operation(
            f"receive_callback_{method.lower()}",
            method,
            inbound.PATH,
            "callback",
            "Receipts and replies from AllMySMS",
            "The account's inbound URL (GET /v1/me gives it): query string, form, JSON or a JSON batch.",
            output="api/callback.json",
            auth=False,
            tag="triggers",
        )
        for method in ("GET", "POST")
    ]
    ops.append(
        Operation(
            "sandbox_reply",
            "POST",
            "/v1/sandbox/replies",
            "sandbox_reply",
            "Simulate a reply (sandbox only)",
            "A recipient answering an SMS, pushed to the inbound URL as AllMySMS would.",
            ok=201,
            body="api/sandbox_reply.json",
        )
    )
    return tuple(ops)


def option_names(manifest: Manifest) -> list[str]:
    """Every kind of choice a field of the manifest's inputs takes from the account, in the manifest's order."""
    inputs = [a.input for a in manifest.actions] + [s.input for s in manifest.searches]
    inputs += [t.input for t in manifest.triggers if t.input]
    names: list[str] = []
    for name in inputs:
        for prop in manifest.catalog.resolved(name).get("properties", {}).values():
            kind = prop.get(OPTIONS_KEYWORD)
            if kind and kind not in names:
                names.append(kind)
    return names


def trigger_operations(trigger: Trigger) -> list[Operation]:
    """A trigger's operations: its event list, and for one AllMySMS pushes, its REST hook subscriptions."""
    label, one = trigger.label, f"{trigger.subscriptions_path}/<subscription_id>"
    events = Operation(
        f"{trigger.key}_events",
        "GET",
        trigger.events_path,
        "trigger_events",
        f"{label}: recent events",
        f"{trigger.description} Newest first, each with a stable id.",
        output=trigger.event,
        many=True,
        query=(LIMIT, SAMPLE) + ((TRIGGER_OPTIONS,) if trigger.input else ()),
        tag="triggers",
        sample=[trigger.sample],
        trigger=trigger,
    )
    if trigger.delivery != "push":
        return [events]
    return [
        events,
        *(
            Operation(
                f"{trigger.key}_{name}",
                method,
                path,
                name,
                f"{label}: {summary}",
                description,
                tag="triggers",
                trigger=trigger,
                **more,
            )
            for name, method, path, summary, description, more in (
                (
                    "subscribe",
                    "POST",
                    trigger.subscriptions_path,
                    "subscribe",
                    "Events will be POSTed to target_url. Answers 201 with a Location header (200 with the existing "
                    "one for a target_url already subscribed); DELETE that location to unsubscribe.",
                    {"ok": 201, "output": "api/subscription.json", "body": "api/subscribe.json"},
                ),
                (
                    "subscriptions",
                    "GET",
                    trigger.subscriptions_path,
                    "subscriptions",
                    "The account's own.",
                    {"output": "api/subscription.json", "many": True},
                ),
                ("subscription", "GET", one, "one subscription", "", {"output": "api/subscription.json"}),
                ("unsubscribe", "DELETE", one, "unsubscribe", "204, and 404 once it is gone.", {"ok": 204}),
                (
                    "deliveries",
                    "GET",
                    f"{one}/deliveries",
                    "delivery log",
                    "Each delivery with its attempts.",
                    {"output": "api/delivery.json", "many": True, "query": (LIMIT,)},
                ),
                (
                    "replay_failed",
                    "POST",
                    f"{one}/replay",
                    "replay failed deliveries",
                    "Every failed delivery of the subscription created since `since` is due again.",
                    {"ok": 202, "output": "api/replay.json", "body": "api/replay_failed.json", "body_required": False},
                ),
            )
        ),
    ]


def route(
    bp: Blueprint, operations: Iterable[Operation], views: dict[str, Callable[[Operation], View]], routed: set[str]
) -> Blueprint:
    """Add to ``bp`` a rule for each operation whose kind ``views`` answers (``views[kind](operation)`` makes
    the view function), noting each in ``routed``."""
    for operation in operations:
        make = views.get(operation.view)
        if make is None:
            continue
        bp.add_url_rule(operation.path, operation.key, make(operation), methods=[operation.method])
        routed.add(operation.key)
    return bp


def unrouted(operations: Iterable[Operation], routed: set[str]) -> list[str]:
    """The operations no module answers: the app refuses to start with any."""
    return [
        f"{op.method} {op.path} ({op.key}): no view answers the kind {op.view!r}"
        for op in operations
        if op.key not in routed
    ]


def check_routed(operations: Iterable[Operation], routed: set[str]) -> None:
    problems = unrouted(operations, routed)
    if problems:
        raise ConfigError("Operations without a route", problems)

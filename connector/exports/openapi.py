"""OpenAPI 3.1: every route of the service, its schemas taken from schemas/, and the webhooks it sends."""

from __future__ import annotations

import copy

from connector import errors
from connector.sending import idempotency
from connector.events import inbound
from connector.description.manifest import Manifest
from . import as_json

VERSION = "3.1.0"
# Keywords of our schemas that only our own checks read.
_PRIVATE_KEYWORDS = ("$schema", "$id", "x-counterexamples")
_SIGNATURE_HEADERS = {
    "webhook-id": "Identifies the event for this subscription: the same on every retry (deduplicate on it).",
    "webhook-timestamp": "Unix seconds of this attempt.",
    "webhook-signature": "`v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` with the "
                         "subscription's secret (Standard Webhooks).",
}


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    return {"openapi.json": as_json(document(manifest, base_url))}


def document(manifest: Manifest, base_url: str) -> dict:
    builder = _Builder(manifest)
    return builder.build(base_url)


class _Builder:
    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self.schemas: dict[str, dict] = {}

    def schema(self, name: str) -> dict:
        """A reference to schema file ``name``, added to components once."""
        key = name.removesuffix(".json").replace("/", "_").replace(".", "_")
        if key not in self.schemas:
            self.schemas[key] = _public(self.manifest.catalog.resolved(name))
        return {"$ref": f"#/components/schemas/{key}"}

    def build(self, base_url: str) -> dict:
        connector = self.manifest.connector
        paths: dict[str, dict] = {
            "/v1/me": {"get": self.operation(
                "me", "Connection test", "The account behind the credentials: identity, credits, and the "
                "inbound URL to paste in the AllMySMS customer area.", ok=(200, "api/me.json"))},
            "/v1/manifest": {"get": self.operation(
                "manifest", "The connector's description", "manifest.yaml with every schema inlined.",
                ok=(200, None), auth=False)},
            "/openapi.json": {"get": self.operation(
                "openapi", "This document", "", ok=(200, None), auth=False)},
            "/healthz": {"get": self.operation(
                "healthz", "Liveness", "The process answers.", ok=(200, "api/health.json"), auth=False)},
            "/readyz": {"get": self.operation(
                "readyz", "Readiness", "The database answers and its schema is the one this version needs; "
                "503 otherwise.", ok=(200, "api/health.json"), auth=False)},
        }
        for action in self.manifest.actions:
            paths[action.path] = {"post": self.operation(
                action.key, action.label, action.description, ok=(200, action.output), body=action.input,
                sample=action.sample, tag="actions", parameters=[_IDEMPOTENCY_KEY])}
        for trigger in self.manifest.triggers:
            paths.update(self.trigger_paths(trigger))
        paths["/v1/events/{event_id}/replay"] = {"post": self.operation(
            "replay_event", "Deliver an event again", "To every active subscription of its type, with the "
            "same webhook-id.", ok=(202, "api/replay.json"), parameters=[_path("event_id")], tag="triggers")}
        paths["/v1/inbound/rejected"] = {"get": self.operation(
            "rejected_callbacks", "Rejected callbacks", "Callbacks from AllMySMS that could not be used, newest "
            "first, with the reason.", ok=(200, "api/rejected_callback.json"), many=True,
            parameters=[_limit()], tag="triggers")}
        paths[inbound.PATH.replace("<token>", "{token}")] = self.callback_paths()
        paths["/v1/sandbox/replies"] = {"post": self.operation(
            "sandbox_reply", "Simulate a reply (sandbox only)", "A recipient answering an SMS, pushed to the "
            "inbound URL as AllMySMS would.", ok=(201, None), body_schema={
                "type": "object", "properties": {"phone_number": {"type": "string"}, "message": {"type": "string"},
                                                 "sms_id": {"type": "string"}},
                "required": ["phone_number", "message"]})}
        return {
            "openapi": VERSION,
            "info": {"title": f"{connector['name']} connector", "version": connector["version"],
                     "description": connector["description"]},
            "servers": [{"url": base_url}],
            "security": [{"basic": []}],
            "tags": [{"name": "actions", "description": "Send, schedule, cancel, estimate, read the account."},
                     {"name": "triggers", "description": "REST hooks, event lists, replay and delivery logs."}],
            "paths": paths,
            "webhooks": self.webhooks(),
            "components": {
                "securitySchemes": {"basic": {
                    "type": "http", "scheme": "basic",
                    "description": self.manifest.auth["description"] + " User name: the AllMySMS login; "
                                   "password: the API key."}},
                "schemas": dict(sorted(self.schemas.items())),
            },
        }

    def operation(self, operation_id: str, summary: str, description: str, *, ok: tuple[int, str | None],
                  body: str | None = None, body_schema: dict | None = None, sample=None, many: bool = False,
                  parameters: list | None = None, auth: bool = True, tag: str | None = None) -> dict:
        status, output = ok
        content_schema = self.schema(output) if output else {"type": "object"}
        if many:
            content_schema = {"type": "array", "items": content_schema}
        answer: dict = {"description": summary, "content": {"application/json": {"schema": content_schema}}}
        if sample is not None:
            answer["content"]["application/json"]["example"] = sample
        operation: dict = {"operationId": operation_id, "summary": summary}
        if description:
            operation["description"] = description
        if tag:
            operation["tags"] = [tag]
        if parameters:
            operation["parameters"] = parameters
        if body or body_schema:
            request_schema = self.schema(body) if body else body_schema
            content: dict = {"schema": request_schema}
            examples = self.manifest.catalog.resolved(body).get("examples") if body else None
            if examples:
                content["example"] = examples[0]
            operation["requestBody"] = {"required": True, "content": {"application/json": content}}
        operation["responses"] = {str(status): answer, **self.errors()}
        if not auth:
            operation["security"] = []
        return operation

    def errors(self) -> dict:
        """Every error status the service answers, from the error classes themselves."""
        by_status: dict[int, list[str]] = {}
        for kind in _subclasses(errors.ConnectorError):
            doc = (kind.__doc__ or kind.__name__).strip().splitlines()[0]
            by_status.setdefault(kind.status, []).append(doc)
        by_status.setdefault(413, ["The body is larger than allowed."])
        error = self.schema("api/error.json")
        return {str(status): {"description": " / ".join(sorted(set(docs))),
                              "content": {"application/json": {"schema": error}}}
                for status, docs in sorted(by_status.items())}

    def trigger_paths(self, trigger) -> dict:
        base = f"/v1/triggers/{trigger.key}"
        parameters = [_limit(), {"name": "sample", "in": "query", "required": False,
                                 "description": "1: with no events yet, answer the trigger's sample instead.",
                                 "schema": {"enum": ["0", "1"]}}]
        if trigger.input:
            for name, prop in self.manifest.catalog.resolved(trigger.input).get("properties", {}).items():
                parameters.append({"name": name, "in": "query", "required": True,
                                   "description": prop.get("description", ""), "schema": _public(prop)})
        paths = {f"{base}/events": {"get": self.operation(
            f"{trigger.key}_events", f"{trigger.label}: recent events",
            f"{trigger.description} Newest first, each with a stable id.", ok=(200, trigger.event), many=True,
            sample=[trigger.sample], parameters=parameters, tag="triggers")}}
        if trigger.delivery != "push":
            return paths
        subscription = [_path("subscription_id")]
        paths[f"{base}/subscriptions"] = {
            "post": self.operation(
                f"{trigger.key}_subscribe", f"{trigger.label}: subscribe", "Events will be POSTed to target_url. "
                "Answers 201 with a Location header (200 with the existing one for a target_url already "
                "subscribed); DELETE that location to unsubscribe.",
                ok=(201, "api/subscription.json"), body="api/subscribe.json", tag="triggers"),
            "get": self.operation(
                f"{trigger.key}_subscriptions", f"{trigger.label}: subscriptions", "The account's own.",
                ok=(200, "api/subscription.json"), many=True, tag="triggers"),
        }
        answers = paths[f"{base}/subscriptions"]["post"]["responses"]
        # Platforms subscribe again when a flow is turned back on: the same target is the same subscription.
        answers["200"] = {**answers["201"], "description": "The same target_url was already subscribed: that "
                          "subscription, with its secret (turned back on if it was disabled)."}
        created = answers["201"]
        created["headers"] = {"Location": {"description": "The new subscription's URL.", "schema": {"type": "string"}}}
        # What a client (or a test generator) can do next with the new subscription's id.
        created["links"] = {
            name: {"operationId": f"{trigger.key}_{name}", "parameters": {"subscription_id": "$response.body#/id"}}
            for name in ("subscription", "deliveries", "replay_failed", "unsubscribe")}
        paths[f"{base}/subscriptions/{{subscription_id}}"] = {
            "get": self.operation(f"{trigger.key}_subscription", f"{trigger.label}: one subscription", "",
                                  ok=(200, "api/subscription.json"), parameters=subscription, tag="triggers"),
            "delete": self.operation(f"{trigger.key}_unsubscribe", f"{trigger.label}: unsubscribe",
                                     "204, and 404 once it is gone.", ok=(204, None), parameters=subscription,
                                     tag="triggers"),
        }
        del paths[f"{base}/subscriptions/{{subscription_id}}"]["delete"]["responses"]["204"]["content"]
        paths[f"{base}/subscriptions/{{subscription_id}}/deliveries"] = {"get": self.operation(
            f"{trigger.key}_deliveries", f"{trigger.label}: delivery log", "Each delivery with its attempts.",
            ok=(200, "api/delivery.json"), many=True, parameters=[*subscription, _limit()], tag="triggers")}
        paths[f"{base}/subscriptions/{{subscription_id}}/replay"] = {"post": self.operation(
            f"{trigger.key}_replay_failed", f"{trigger.label}: replay failed deliveries",
            "Every failed delivery of the subscription created since `since` is due again.",
            ok=(202, "api/replay.json"), parameters=subscription, tag="triggers", body_schema={
                "type": "object", "properties": {"since": {"type": "string", "format": "date-time"}}})}
        paths[f"{base}/subscriptions/{{subscription_id}}/replay"]["post"]["requestBody"]["required"] = False
        return paths

    def callback_paths(self) -> dict:
        def receive(method: str) -> dict:
            operation = self.operation(
                f"receive_callback_{method}", "Receipts and replies from AllMySMS",
                "The account's inbound URL (GET /v1/me gives it): query string, form, JSON or a JSON batch.",
                ok=(200, "api/callback.json"), parameters=[_path("token")], auth=False, tag="triggers")
            if method == "post":
                operation["requestBody"] = {"required": False, "content": {
                    "application/json": {"schema": {}},
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
            return operation
        return {"get": receive("get"), "post": receive("post")}

    def webhooks(self) -> dict:
        hooks = {}
        for trigger in self.manifest.triggers:
            if trigger.delivery != "push":
                continue
            hooks[trigger.event_type] = {"post": {
                "operationId": f"{trigger.key}_webhook",
                "summary": trigger.label,
                "description": f"{trigger.description} POSTed to every subscription's target_url. 2xx within "
                               "15 s is success; 410 Gone removes the subscription; 429 and 503 may send "
                               "Retry-After; anything else is retried.",
                "parameters": [{"name": name, "in": "header", "required": True, "description": text,
                                "schema": {"type": "string"}} for name, text in _SIGNATURE_HEADERS.items()],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": self.schema(trigger.event), "example": trigger.sample}}},
                "responses": {"2XX": {"description": "Received."},
                              "410": {"description": "Gone: the subscription is removed."}},
                "security": [],
            }}
        return hooks


def _public(schema: dict) -> dict:
    cleaned = copy.deepcopy(schema)

    def strip(node):
        if isinstance(node, dict):
            for key in _PRIVATE_KEYWORDS:
                node.pop(key, None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)
    strip(cleaned)
    return cleaned


_IDEMPOTENCY_KEY = {
    "name": idempotency.HEADER, "in": "header", "required": False,
    "description": "Retrying with the same key and body within 24 h returns the first answer (header "
                   "Idempotent-Replayed: true) instead of sending again; while the first call runs, 409. The "
                   "same key for another request: 422. Scoped to the AllMySMS login. Empty counts as absent. "
                   f"Absent, a call that carries the Logic Apps headers {' and '.join(idempotency.RUN_HEADERS)} "
                   "gets a key derived from them, from those of its workflow that come with them "
                   f"({', '.join(idempotency.WORKFLOW_HEADERS)}) and from the request.",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}


def _path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _limit() -> dict:
    from connector.web.triggers import MAX_LIMIT
    return {"name": "limit", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}}


def _subclasses(kind: type) -> list[type]:
    found = []
    for sub in kind.__subclasses__():
        found.append(sub)
        found += _subclasses(sub)
    return sorted(set(found), key=lambda k: k.__name__)

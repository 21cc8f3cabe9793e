"""OpenAPI 3.1: every route of the service, its schemas taken from schemas/, and the webhooks it sends."""

from __future__ import annotations

import copy
from typing import cast

from connector import errors
from connector.description.manifest import Manifest, Trigger
from connector.exports.files import as_json
from connector.sending import idempotency
from connector.web import operations
from connector.web.operations import Operation

VERSION = "3.1.0"
# Keywords of our schemas that only our own checks read.
_PRIVATE_KEYWORDS = ("$schema", "$id", "x-counterexamples", "x-aliases", operations.OPTIONS_KEYWORD)
_SIGNATURE_HEADERS = {
    "webhook-id": "Identifies the event for this subscription: the same on every retry (deduplicate on it).",
    "webhook-timestamp": "Unix seconds of this attempt.",
    "webhook-signature": "`v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` with the "
    "subscription's secret (Standard Webhooks).",
}


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    return {"openapi.json": as_json(document(manifest, base_url))}


def document(manifest: Manifest, base_url: str, table: tuple[Operation, ...] | None = None) -> dict:
    """The document of every operation of ``table`` (the manifest's own by default)."""
    return _Builder(manifest).build(base_url, table or operations.table(manifest))


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

    def build(self, base_url: str, table: tuple[Operation, ...]) -> dict:
        connector = self.manifest.connector
        paths: dict[str, dict] = {}
        for op in table:
            paths.setdefault(op.templated(), {})[op.method.lower()] = self.described(op)
        return {
            "openapi": VERSION,
            "info": {
                "title": f"{connector['name']} connector",
                "version": connector["version"],
                "description": connector["description"],
            },
            "servers": [{"url": base_url}],
            "security": [{"basic": []}],
            "tags": [
                {"name": "actions", "description": "Send, schedule, cancel, estimate, read the account."},
                {"name": "triggers", "description": "REST hooks, event lists, replay and delivery logs."},
                {
                    "name": "searches",
                    "description": "Look up receipts and replies: a list, empty when nothing is found.",
                },
                {"name": "options", "description": "The account's choices for a field's dropdown."},
            ],
            "paths": paths,
            "webhooks": self.webhooks(),
            "components": {
                "securitySchemes": {
                    "basic": {
                        "type": "http",
                        "scheme": "basic",
                        "description": self.manifest.auth["description"] + " User name: the AllMySMS login; "
                        "password: the API key.",
                    }
                },
                "schemas": dict(sorted(self.schemas.items())),
            },
        }

    def operation(
        self,
        operation_id: str,
        summary: str,
        description: str,
        *,
        ok: tuple[int, str | None],
        body: str | None = None,
        body_required: bool = True,
        sample=None,
        many: bool = False,
        parameters: list | None = None,
        auth: bool = True,
        tag: str | None = None,
    ) -> dict:
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
        if body:
            content: dict = {"schema": self.schema(body)}
            examples = self.manifest.catalog.resolved(body).get("examples")
            if examples:
                content["example"] = examples[0]
            operation["requestBody"] = {"required": body_required, "content": {"application/json": content}}
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
        return {
            str(status): {
                "description": " / ".join(sorted(set(docs))),
                "content": {"application/json": {"schema": error}},
            }
            for status, docs in sorted(by_status.items())
        }

    def described(self, op: Operation) -> dict:
        """The OpenAPI operation of one entry of the operation table."""
        parameters = [_path(name) for name in op.path_parameters]
        for name in op.query:
            parameters += self.query(name, op)
        operation = self.operation(
            op.key,
            op.summary,
            op.description,
            ok=(op.ok, op.output),
            body=op.body,
            body_required=op.body_required,
            sample=op.sample,
            many=op.many,
            parameters=parameters,
            auth=op.auth,
            tag=op.tag,
        )
        answers = operation["responses"]
        if op.ok == 204:
            del answers["204"]["content"]
        if op.view == "subscribe":
            # Platforms subscribe again when a flow is turned back on: the same target is the same subscription.
            answers["200"] = {
                **answers["201"],
                "description": "The same target_url was already subscribed: that "
                "subscription, with its secret (turned back on if it was disabled).",
            }
            created = answers["201"]
            created["headers"] = {
                "Location": {"description": "The new subscription's URL.", "schema": {"type": "string"}}
            }
            # What a client (or a test generator) can do next with the new subscription's id.
            created["links"] = {
                name: {
                    "operationId": f"{cast(Trigger, op.trigger).key}_{name}",  # a subscription's operation has one
                    "parameters": {"subscription_id": "$response.body#/id"},
                }
                for name in ("subscription", "deliveries", "replay_failed", "unsubscribe")
            }
        if op.view == "callback" and op.method == "POST":
            operation["requestBody"] = {
                "required": False,
                "content": {
                    "application/json": {"schema": {}},
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                },
            }
        return operation

    def query(self, name: str, op: Operation) -> list[dict]:
        if name == operations.LIMIT:
            return [_limit()]
        if name == operations.SAMPLE:
            return [
                {
                    "name": "sample",
                    "in": "query",
                    "required": False,
                    "description": "1: with no events yet, answer the trigger's sample instead.",
                    "schema": {"enum": ["0", "1"]},
                }
            ]
        if name == operations.IDEMPOTENCY_KEY:
            return [_IDEMPOTENCY_KEY]
        # The trigger's options: asked for by the operation of a trigger that takes options.
        options = self.manifest.catalog.resolved(cast(str, cast(Trigger, op.trigger).input))
        return [
            {
                "name": key,
                "in": "query",
                "required": True,
                "description": prop.get("description", ""),
                "schema": _public(prop),
            }
            for key, prop in options.get("properties", {}).items()
        ]

    def webhooks(self) -> dict:
        hooks = {}
        for trigger in self.manifest.triggers:
            if trigger.delivery != "push":
                continue
            hooks[trigger.event_type] = {
                "post": {
                    "operationId": f"{trigger.key}_webhook",
                    "summary": trigger.label,
                    "description": f"{trigger.description} POSTed to every subscription's target_url. 2xx within "
                    "15 s is success; 410 Gone removes the subscription; 429 and 503 may send "
                    "Retry-After; anything else is retried.",
                    "parameters": [
                        {
                            "name": name,
                            "in": "header",
                            "required": True,
                            "description": text,
                            "schema": {"type": "string"},
                        }
                        for name, text in _SIGNATURE_HEADERS.items()
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": self.schema(trigger.event), "example": trigger.sample}
                        },
                    },
                    "responses": {
                        "2XX": {"description": "Received."},
                        "410": {"description": "Gone: the subscription is removed."},
                    },
                    "security": [],
                }
            }
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
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
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
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": operations.MAX_LIMIT,
            "default": operations.DEFAULT_LIMIT,
        },
    }


def _subclasses(kind: type[errors.ConnectorError]) -> list[type[errors.ConnectorError]]:
    found: list[type[errors.ConnectorError]] = []
    for sub in kind.__subclasses__():
        found.append(sub)
        found += _subclasses(sub)
    return sorted(set(found), key=lambda k: k.__name__)

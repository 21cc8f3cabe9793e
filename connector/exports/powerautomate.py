"""Power Automate (and Logic Apps) custom connector: OpenAPI 2.0 with Microsoft's x-ms extensions.

Instant triggers are webhook triggers: the subscribe operation carries `x-ms-trigger`, its body a
property marked `x-ms-notification-url` (the flow's callback URL), and the service answers 201 with a
`Location` header that the platform DELETEs when the flow is removed. Swagger 2.0 knows no `oneOf`,
`null` types or `const`: schemas are narrowed to what it can say (the same reading as every platform's
fields: a value that may be a text or a list is a list).

Searches are actions that answer an array: an empty array is a flow's "nothing found" (an Apply to each
over it runs no step).
"""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit

from connector.description.manifest import Manifest
from connector.exports.fields import narrow
from connector.exports.files import as_json
from connector.exports.retries import KEY_FIELD, KeySource, key_field
from connector.sending import idempotency
from connector.web import operations
from connector.web.operations import DEFAULT_LIMIT, Operation

KEY_SOURCE = KeySource(
    platform="Power Automate / Logic Apps",
    key="derived by the service when the call brings none: `logicapps-` + SHA-256 of the headers "
    + ", ".join(f"`{h}`" for h in idempotency.RUN_HEADERS)
    + ", those of "
    + ", ".join(f"`{h}`" for h in idempotency.WORKFLOW_HEADERS)
    + " that are sent, and the request. A run id is named only within its workflow "
    "(`…/workflows/{name}/runs/{run id}` in the Logic Apps management API): the workflow and subscription "
    "keep another workflow's run from getting this one's answer. Or the optional **"
    + KEY_FIELD.label
    + "** parameter, as given",
    retries="yes: a retry by the action's retry policy is the same action of the same run. Microsoft's Logic "
    "Apps request-history samples (azure-rest-api-specs, `WorkflowRunActionRepetitionsRequestHistories_List`) "
    "show all these headers on a workflow's HTTP calls; that the custom connector runtime forwards them "
    "too is not documented",
    fallback="run or action header absent and parameter empty: no key; a workflow header absent: the key holds "
    "within the workflow only. A resubmitted run has a new run id and sends again; the same body twice "
    "in one run from one action (a loop) is sent once",
)


# Power Automate runs no code of ours, so nothing in a flow can check `webhook-signature`: the users must know
# what protects the trigger instead.
_UNSIGNED = (
    "Power Automate cannot verify the webhook-signature header of the events; what protects this "
    "trigger is its callback URL, which Power Automate makes unguessable (it carries its own sig= "
    "token): do not share that URL."
)


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    return {
        "apiDefinition.swagger.json": as_json(document(manifest, base_url)),
        "apiProperties.json": as_json(_properties(manifest)),
    }


def document(manifest: Manifest, base_url: str) -> dict:
    parts = urlsplit(base_url)
    connector = manifest.connector
    catalog = manifest.catalog
    choosing = [op for op in operations.table(manifest) if op.options]
    # Each kind of choice, and the operation that lists it.
    dropdowns = {cast(str, op.options): _operation_id(op.key) for op in choosing}
    paths: dict = {
        manifest.auth["test"]["path"]: {
            "get": {
                "operationId": "TestConnection",
                "summary": "Test the connection",
                "x-ms-visibility": "internal",
                "description": "Reads the account the login and API key belong to: Power Automate calls it to check "
                "a new connection.",
                "responses": {
                    "200": {"description": "The account", "schema": _schema(catalog.resolved("api/me.json"))},
                    "401": {"description": "Wrong login or API key"},
                },
            }
        },
    }
    for action in manifest.actions:
        paths[action.path] = {
            "post": {
                "operationId": _operation_id(action.key),
                "summary": _summary(action.label),
                "description": action.description,
                "x-ms-visibility": "important",
                "parameters": [
                    {
                        "name": "body",
                        "in": "body",
                        "required": True,
                        "x-ms-summary": action.label,
                        "schema": _input_schema(catalog.resolved(action.input), dropdowns),
                    },
                    _key_parameter(catalog.resolved(action.input)),
                ],
                "responses": {
                    "200": {"description": action.label, "schema": _schema(catalog.resolved(action.output))},
                    "default": {
                        "description": "An error, with a message to act on",
                        "schema": _schema(catalog.resolved("api/error.json")),
                    },
                },
            }
        }
    for search in manifest.searches:
        paths[search.path] = {
            "post": {
                "operationId": _operation_id(search.key),
                "summary": _summary(search.label),
                "description": search.description,
                "x-ms-visibility": "important",
                "parameters": [
                    {
                        "name": "body",
                        "in": "body",
                        "required": True,
                        "x-ms-summary": search.label,
                        "schema": _input_schema(catalog.resolved(search.input), dropdowns),
                    }
                ],
                "responses": {
                    "200": {
                        "description": f"{search.label}: the items found, none when nothing is found",
                        "schema": {"type": "array", "items": _schema(catalog.resolved(search.output))},
                    },
                    "default": {
                        "description": "An error, with a message to act on",
                        "schema": _schema(catalog.resolved("api/error.json")),
                    },
                },
            }
        }
    for trigger in manifest.triggers:
        event = _schema(catalog.resolved(trigger.event))
        if trigger.delivery == "push":
            # Microsoft's connector schema wants the event schema on the path item, beside `post`.
            paths[trigger.subscriptions_path] = {
                "x-ms-notification-content": {"description": trigger.label, "schema": event},
                "post": {
                    "operationId": _operation_id(f"when_{trigger.key}"),
                    "summary": _summary(f"When {trigger.label}"),
                    "description": f"{trigger.description} {_UNSIGNED}",
                    "x-ms-trigger": "single",
                    "x-ms-visibility": "important",
                    "parameters": [
                        {
                            "name": "body",
                            "in": "body",
                            "required": True,
                            "x-ms-summary": "Subscription",
                            "schema": {
                                "type": "object",
                                "required": ["target_url"],
                                "properties": {
                                    "target_url": {
                                        "type": "string",
                                        "description": "The flow's callback URL",
                                        "x-ms-notification-url": True,
                                        "x-ms-visibility": "internal",
                                    }
                                },
                            },
                        }
                    ],
                    "responses": {
                        "201": {
                            "description": "Subscribed; DELETE the Location to unsubscribe.",
                            "headers": {"Location": {"type": "string"}},
                        }
                    },
                },
            }
            paths[f"{trigger.subscriptions_path}/{{subscription_id}}"] = {
                "delete": {
                    "operationId": _operation_id(f"unsubscribe_{trigger.key}"),
                    "summary": _summary(f"Stop {trigger.label} notifications"),
                    "description": "Deletes the subscription: Power Automate calls it on the subscription's Location "
                    "when the flow is removed.",
                    "x-ms-visibility": "internal",
                    "parameters": [
                        {
                            "name": "subscription_id",
                            "in": "path",
                            "required": True,
                            "type": "string",
                            "x-ms-summary": "Subscription ID",
                            "x-ms-url-encoding": "single",
                            "description": "The id the subscribe answer gave.",
                        }
                    ],
                    "responses": {"204": {"description": "Removed"}, "404": {"description": "Already removed"}},
                }
            }
        else:
            parameters = [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "type": "integer",
                    "default": DEFAULT_LIMIT,
                    "x-ms-visibility": "advanced",
                    "x-ms-summary": "Maximum number of events",
                    "description": "How many of the newest events to return.",
                }
            ]
            if trigger.input:
                for name, prop in catalog.resolved(trigger.input).get("properties", {}).items():
                    parameters.append(
                        {
                            "name": name,
                            "in": "query",
                            "required": True,
                            "type": _single_type(prop),
                            "description": prop.get("description", ""),
                            "x-ms-summary": prop.get("title", name),
                        }
                    )
            paths[trigger.events_path] = {
                "get": {
                    "operationId": _operation_id(f"list_{trigger.key}"),
                    "summary": _summary(f"List {trigger.label} events"),
                    "description": f"{trigger.description} Newest first; run it on a recurrence.",
                    "x-ms-visibility": "advanced",
                    "parameters": parameters,
                    "responses": {"200": {"description": trigger.label, "schema": {"type": "array", "items": event}}},
                }
            }
    for op in choosing:
        paths[op.templated()] = {op.method.lower(): _options_operation(manifest, op)}
    return {
        "swagger": "2.0",
        "info": {"title": connector["name"], "description": connector["description"], "version": connector["version"]},
        "host": parts.netloc,
        "basePath": parts.path or "/",
        "schemes": [parts.scheme],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {"basic_auth": {"type": "basic"}},
        "security": [{"basic_auth": []}],
        "x-ms-capabilities": {"testConnection": {"operationId": "TestConnection", "parameters": {}}},
        "paths": paths,
    }


def _properties(manifest: Manifest) -> dict:
    """The connection dialog: Basic auth, user name = login, password = API key."""
    fields = {f["key"]: f for f in manifest.auth["fields"]}
    return {
        "properties": {
            "connectionParameters": {
                "username": {
                    "type": "securestring",
                    "uiDefinition": {
                        "displayName": fields["login"]["label"],
                        "description": fields["login"].get("help", ""),
                        "tooltip": fields["login"].get("help", ""),
                        "constraints": {"required": "true"},
                    },
                },
                "password": {
                    "type": "securestring",
                    "uiDefinition": {
                        "displayName": fields["apiKey"]["label"],
                        "description": fields["apiKey"].get("help", ""),
                        "tooltip": fields["apiKey"].get("help", ""),
                        "constraints": {"required": "true"},
                    },
                },
            },
            "iconBrandColor": "#007ee5",
            "capabilities": ["actions", "triggers"],
            "publisher": manifest.connector["name"],
            "stackOwner": manifest.connector["name"],
        }
    }


def _options_operation(manifest: Manifest, op: Operation) -> dict:
    """An operation that fills a dropdown: internal, as flows never run it as a step."""
    return {
        "operationId": _operation_id(op.key),
        "summary": _summary(op.summary),
        "description": op.description,
        "x-ms-visibility": "internal",
        "responses": {
            "200": {
                "description": op.summary,
                "schema": {"type": "array", "items": _schema(manifest.catalog.resolved(cast(str, op.output)))},
            }
        },
    }


def _input_schema(schema: dict, dropdowns: dict[str, str]) -> dict:
    """A body's schema, each field whose values come from the account given Power Automate's dropdown:
    filled by the operation answering that kind of choice, each item's value sent, its label shown."""
    narrowed = _schema(schema)
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get(operations.OPTIONS_KEYWORD)
        if kind:
            narrowed["properties"][name]["x-ms-dynamic-values"] = {
                "operationId": dropdowns[kind],
                "value-path": "value",
                "value-title": "label",
            }
    return narrowed


def _key_parameter(schema: dict) -> dict:
    field = key_field(schema)
    return {
        "name": idempotency.HEADER,
        "in": "header",
        "required": False,
        "type": "string",
        "x-ms-summary": field.label,
        "x-ms-visibility": "advanced",
        "description": f"{field.help} Without it the connector derives one from the flow, its run and the action.",
    }


def _summary(label: str) -> str:
    """Microsoft's string guidelines: sentence case, ending in a letter or digit. A word with a capital
    after its first letter (SMS, AllMySMS, ID) is an acronym or a name and keeps its case; brackets go,
    as a summary may not end in one."""
    words = label.replace("(", "").replace(")", "").split()
    words = [w if any(c.isupper() for c in w[1:]) else w.lower() for w in words]
    words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words).rstrip(" .:;,!?-")


def _operation_id(key: str) -> str:
    return "".join(part.capitalize() for part in key.split("_"))


def _single_type(prop: dict) -> str:
    declared = prop.get("type", "string")
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), "string")
    return declared


def _schema(schema: dict) -> dict:
    return narrow(schema, title_key="x-ms-summary", nullable_key="x-nullable")

"""An elastic.io component: component.json, thin JavaScript modules that call the service, credentials
checked by verifyCredentials.js, and tests that run each module with node against a live service.

Schemas go to elastic.io's older dialect: draft-4 types and `required: true` on each property. Pushed
triggers come twice: as `webhook` triggers (subscribe the flow's webhook URL in `startup`, keep the
subscription's secret as startup data, pass on only events whose signature it verifies, unsubscribe in
`shutdown`) and as `polling` triggers that emit what is new since the last run (a snapshot of ids).
Searches are actions that emit one message per item found, and none when nothing is found.
The JavaScript is in templates/elasticio/, as real files.
"""

from __future__ import annotations

import json

from connector.description.manifest import Manifest
from connector.events import signing
from connector.exports.fields import narrow, options_method
from connector.exports.files import as_json, template
from connector.exports.retries import KeySource
from connector.exports.testkit import action_examples, firing_input, search_examples
from connector.web import operations

KEY_SOURCE = KeySource(
    platform="elastic.io",
    key="`elasticio-` + SHA-256 of the flow id, the step id (`ELASTICIO_FLOW_ID`, `ELASTICIO_STEP_ID`) and the "
    "incoming message's `msg.id`. A new message gets a random UUID as its id (elasticio-node "
    "`newMessageWithBody`; this component's own triggers too), which differs across flows, tenants and "
    "installations by itself; the flow and step ids tell apart two steps given the same message. A "
    "component upstream that sets repeating `id`s of its own would repeat keys: sailor-nodejs passes the "
    "`id` a step emitted on unchanged",
    retries="yes: a rebound republishes the message's content unchanged, `id` included (sailor-nodejs "
    "`lib/amqp.js` `sendRebound`); each new message has a new `id` (elasticio-node `newMessageWithBody`)",
    fallback="a message without an `id`: no key",
)

SAILOR_VERSION = "2.7.8"


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    connector = manifest.connector
    out = {
        "component.json": as_json(component(manifest)),
        "package.json": as_json(
            {
                "name": f"{connector['key']}-elasticio",
                "version": connector["version"],
                "description": connector["description"],
                "private": True,
                "engines": {"node": ">=18"},
                # A directory argument finds nothing on Node 22; plain `node --test` finds test/*.test.js on 20 to 24.
                "scripts": {"test": "node --test"},
                "dependencies": {"elasticio-sailor-nodejs": SAILOR_VERSION},
            }
        ),
        "lib/service.js": template(
            "elasticio/lib/service.js", base_url=json.dumps(base_url), verify=template("shared/signature.js")
        ),
        "verifyCredentials.js": template(
            "elasticio/verifyCredentials.js", test_path=json.dumps(manifest.auth["test"]["path"])
        ),
        "test/component.test.js": _tests(manifest),
    }
    for action in manifest.actions:
        out[f"lib/actions/{action.key}.js"] = template(
            "elasticio/lib/actions/action.js",
            path=json.dumps(action.path),
            dropdowns=json.dumps(_dropdowns(manifest, action.input), indent=2, ensure_ascii=False),
        )
    for search in manifest.searches:
        out[f"lib/actions/{search.key}.js"] = template("elasticio/lib/actions/search.js", path=json.dumps(search.path))
    for trigger in manifest.triggers:
        if trigger.delivery == "push":
            subscriptions = json.dumps(trigger.subscriptions_path)
            out[f"lib/triggers/{trigger.key}.js"] = template(
                "elasticio/lib/triggers/webhook.js", subscriptions=subscriptions
            )
        out[f"lib/triggers/{trigger.key}_polling.js"] = template(
            "elasticio/lib/triggers/polling.js",
            events=json.dumps(trigger.events_path),
            fields=json.dumps(sorted(_trigger_fields(manifest, trigger))),
        )
    return out


def component(manifest: Manifest) -> dict:
    catalog = manifest.catalog
    connector = manifest.connector
    credentials = {
        f["key"]: {
            "label": f["label"],
            "required": bool(f.get("required")),
            "viewClass": "PasswordFieldView" if f.get("secret") else "TextFieldView",
            "note": f.get("help", ""),
        }
        for f in manifest.auth["fields"]
    }
    actions = {
        a.key: {
            "main": f"./lib/actions/{a.key}.js",
            "title": a.label,
            "description": a.description,
            **_select_fields(manifest, a.input),
            "metadata": {"in": _action_input(manifest, a.input), "out": _dialect(catalog.resolved(a.output))},
        }
        for a in manifest.actions
    }
    actions.update(
        {
            s.key: {
                "main": f"./lib/actions/{s.key}.js",
                "title": s.label,
                "description": f"{s.description} Emits one message per item found.",
                "metadata": {"in": _dialect(catalog.resolved(s.input)), "out": _dialect(catalog.resolved(s.output))},
            }
            for s in manifest.searches
        }
    )
    triggers = {}
    for trigger in manifest.triggers:
        out = _dialect(catalog.resolved(trigger.event))
        fields = {
            name: {
                "label": field["title"],
                "required": field["required"],
                "viewClass": "TextFieldView",
                "note": field.get("note", ""),
            }
            for name, field in _trigger_fields(manifest, trigger).items()
        }
        if trigger.delivery == "push":
            triggers[trigger.key] = {
                "main": f"./lib/triggers/{trigger.key}.js",
                "type": "webhook",
                "title": trigger.label,
                "description": trigger.description,
                "metadata": {"out": out},
            }
        triggers[f"{trigger.key}_polling"] = {
            "main": f"./lib/triggers/{trigger.key}_polling.js",
            "type": "polling",
            "title": f"{trigger.label} (polling)" if trigger.delivery == "push" else trigger.label,
            "description": f"{trigger.description} Checked on the flow's schedule.",
            **({"fields": fields} if fields else {}),
            "metadata": {"out": out},
        }
    return {
        "title": connector["name"],
        "description": connector["description"],
        "docsUrl": connector["homepage"],
        "credentials": {"fields": credentials},
        "triggers": triggers,
        "actions": actions,
    }


def _dropdowns(manifest: Manifest, schema_name: str) -> dict[str, dict[str, str]]:
    """The fields of an input whose values come from the account: each with the select model that lists
    them (contact_lists: getContactLists) and the route that answers them."""
    paths = {op.options: op.path for op in operations.table(manifest) if op.options}
    return {
        name: {"model": options_method(kind), "path": paths[kind]}
        for name, prop in manifest.catalog.resolved(schema_name).get("properties", {}).items()
        if (kind := prop.get(operations.OPTIONS_KEYWORD))
    }


def _select_fields(manifest: Manifest, schema_name: str) -> dict:
    """elastic.io's select models, as configuration fields of the step: chosen when the step is set up."""
    props = manifest.catalog.resolved(schema_name).get("properties", {})
    fields = {
        name: {
            "label": props[name].get("title", name),
            "required": False,
            "viewClass": "SelectView",
            "model": dropdown["model"],
            "prompt": "Choose from the account's",
            "note": f"{props[name].get('description', '')} Or map it in the message.".strip(),
        }
        for name, dropdown in _dropdowns(manifest, schema_name).items()
    }
    return {"fields": fields} if fields else {}


def _action_input(manifest: Manifest, schema_name: str) -> dict:
    """An action's message metadata: a field that may be chosen at set-up instead is not required in it."""
    metadata = _dialect(manifest.catalog.resolved(schema_name))
    for name in _dropdowns(manifest, schema_name):
        metadata["properties"][name]["required"] = False
    return metadata


def _trigger_fields(manifest: Manifest, trigger) -> dict:
    if not trigger.input:
        return {}
    schema = manifest.catalog.resolved(trigger.input)
    required = set(schema.get("required", ()))
    return {
        name: {"title": prop.get("title", name), "required": name in required, "note": prop.get("description", "")}
        for name, prop in schema.get("properties", {}).items()
    }


def _dialect(schema: dict) -> dict:
    """elastic.io's metadata: draft-4 types, `required: true` on each property instead of a list."""

    def per_property(node: dict) -> dict:
        node = dict(node)
        required = set(node.pop("required", ()))
        if "properties" in node:
            node["properties"] = {
                name: {**per_property(prop), "required": name in required} for name, prop in node["properties"].items()
            }
        if "items" in node:
            node["items"] = per_property(node["items"])
        return node

    return per_property(narrow(schema))


def _tests(manifest: Manifest) -> str:
    pushed = [t.key for t in manifest.triggers if t.delivery == "push"]
    polled = [{"key": f"{t.key}_polling", "cfg": firing_input(manifest, t)} for t in manifest.triggers]
    return template(
        "elasticio/test/component.test.js",
        creates=action_examples(manifest),
        searches=search_examples(manifest),
        pushed=json.dumps(pushed),
        polled=json.dumps(polled, indent=2),
        vector=json.dumps(_signed_vector(), indent=2, ensure_ascii=False),
        helpers=template("shared/testkit.js"),
    )


def _signed_vector() -> dict:
    """A fixed event signed by the connector's own signing code, over the bytes its delivery worker sends
    (compact JSON, non-ASCII unescaped: delivery.body_of), for the component to verify from the parsed body."""
    secret = signing.PREFIX + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    event = {
        "id": "evt_2Vx7golden",
        "type": "sms.reply_received",
        "timestamp": "2026-01-02T03:04:05Z",
        "data": {"message": 'Réponse « oui » ✓ "cité"\n', "sender": "+33611111111", "parts": 1},
    }
    raw = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return {"secret": secret, "raw": raw, "headers": signing.headers(secret, "msg_golden", 1767323045, raw.encode())}

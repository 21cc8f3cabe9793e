"""Make (formerly Integromat) custom app: base, connection, one module per action, search and trigger, and an
attached webhook per pushed trigger, in Make's JSON (IML expressions in double braces).

Search modules iterate the list the service answers, one bundle per item: an empty list outputs no bundle,
which is how Make says nothing was found.

Instant triggers attach by subscribing the webhook's URL and keep the subscription id as
`externalHookId`, which detaching deletes; polling triggers read the newest-first event list and let
Make deduplicate on `id`.
"""

from __future__ import annotations

from connector.description.manifest import Manifest
from connector.exports.fields import Field, input_fields, output_fields
from connector.exports.files import as_json
from connector.exports.retries import KEY_FIELD, KeySource, key_field
from connector.web import operations

KEY_SOURCE = KeySource(
    platform="Make",
    key=f"none of Make's own: a custom app's IML variables name no execution id (Make developer docs, "
    f'"Available IML variables"); the value of the optional **{KEY_FIELD.label}** parameter, as given',
    retries="yes if it maps the bundle's own data (such as the trigger item's ID) together with the system "
    'variable Scenario URL, which names the Make zone and the scenario (Make help, "Variables"): two '
    "scenarios on the same AllMySMS login can see the same item, and scenario IDs alone may repeat "
    "across zones. An incomplete execution is retried from the failed module with the bundles stored "
    'for it (Make help, "Incomplete executions"). Mapping the system variable Execution ID is not '
    "enough: one run passes many bundles, and whether a retry keeps it is not documented",
    fallback="parameter left empty: no key, every run sends",
)

_TYPES = {
    "string": "text",
    "text": "text",
    "integer": "uinteger",
    "number": "number",
    "boolean": "boolean",
    "datetime": "date",
}


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    return {"app.json": as_json(app(manifest, base_url))}


def app(manifest: Manifest, base_url: str) -> dict:
    catalog = manifest.catalog
    connector = manifest.connector
    fields = {f["key"]: f for f in manifest.auth["fields"]}
    connection_name = connector["key"]
    modules, webhooks = [], []
    for action in manifest.actions:
        schema = catalog.resolved(action.input)
        key = key_field(schema)
        modules.append(
            {
                "name": action.key,
                "label": action.label,
                "description": action.description,
                "typeOf": "action",
                "connection": connection_name,
                # The key goes as a header, never in the body (the service refuses fields it does not know).
                "communication": {
                    "url": action.path,
                    "method": "POST",
                    "headers": {"Idempotency-Key": f"{{{{parameters.{key.key}}}}}"},
                    "body": f"{{{{omit(parameters, '{key.key}')}}}}",
                    "response": {"output": "{{body}}"},
                },
                "mappableParameters": [_parameter(f) for f in [*input_fields(schema), key]],
                "interface": _interface(catalog.resolved(action.output)),
                "samples": action.sample,
            }
        )
    modules += [_search(manifest, search, connection_name) for search in manifest.searches]
    for trigger in manifest.triggers:
        interface = _interface(catalog.resolved(trigger.event))
        if trigger.delivery == "push":
            hook = f"{trigger.key}_hook"
            webhooks.append(
                {
                    "name": hook,
                    "label": trigger.label,
                    "type": "web",
                    "connection": connection_name,
                    "attach": {
                        "url": trigger.subscriptions_path,
                        "method": "POST",
                        "body": {"target_url": "{{webhook.url}}"},
                        "response": {"data": {"externalHookId": "{{body.id}}"}},
                    },
                    "detach": {
                        "url": f"{trigger.subscriptions_path}/{{{{webhook.externalHookId}}}}",
                        "method": "DELETE",
                    },
                    # Each delivery is one event: the module outputs it as it came.
                    "communication": {"output": "{{body}}"},
                }
            )
            modules.append(
                {
                    "name": f"watch_{trigger.key}",
                    "label": f"Watch: {trigger.label}",
                    "description": trigger.description,
                    "typeOf": "instant_trigger",
                    "webhook": hook,
                    "interface": interface,
                    "samples": trigger.sample,
                }
            )
        else:
            qs = {"limit": "{{parameters.limit}}"}
            parameters = [
                {
                    "name": "limit",
                    "type": "uinteger",
                    "label": "Maximum number of events",
                    "default": 50,
                    "required": False,
                }
            ]
            if trigger.input:
                for f in input_fields(catalog.resolved(trigger.input)):
                    parameters.append(_parameter(f))
                    qs[f.key] = f"{{{{parameters.{f.key}}}}}"
            modules.append(
                {
                    "name": f"watch_{trigger.key}",
                    "label": f"Watch: {trigger.label}",
                    "description": trigger.description,
                    "typeOf": "trigger",
                    "connection": connection_name,
                    "communication": {
                        "url": trigger.events_path,
                        "method": "GET",
                        "qs": qs,
                        "response": {
                            "iterate": "{{body}}",
                            "output": "{{item}}",
                            "trigger": {"type": "id", "order": "desc", "id": "{{item.id}}"},
                            "limit": "{{parameters.limit}}",
                        },
                    },
                    "parameters": parameters,
                    "interface": interface,
                    "samples": trigger.sample,
                }
            )
    return {
        "name": connector["key"],
        "label": connector["name"],
        "description": connector["description"],
        "version": connector["version"],
        "base": {
            "baseUrl": base_url,
            "headers": {"authorization": "Basic {{base64(connection.login + ':' + connection.apiKey)}}"},
            # The service's errors carry a message a person can act on; 429 is Make's rate-limit error.
            "response": {
                "error": {
                    "message": "[{{statusCode}}] {{body.error.message}}",
                    "type": "{{if(statusCode == 429, 'RateLimitError', if(statusCode == 401, "
                    "'InvalidAccessTokenError', if(statusCode < 500, 'DataError', 'ConnectionError')))}}",
                }
            },
        },
        "connections": [
            {
                "name": connection_name,
                "label": f"{connector['name']} account",
                "type": "basic",
                "parameters": [
                    {
                        "name": key,
                        "label": f["label"],
                        "type": "password" if f.get("secret") else "text",
                        "required": bool(f.get("required")),
                        "help": f.get("help", ""),
                    }
                    for key, f in fields.items()
                ],
                # Make checks a new connection with this call.
                "communication": {
                    "url": f"{base_url}{manifest.auth['test']['path']}",
                    "method": "GET",
                    "headers": {"authorization": "Basic {{base64(parameters.login + ':' + parameters.apiKey)}}"},
                    "response": {"metadata": {"type": "text", "value": "{{body.label}}"}},
                },
            }
        ],
        "modules": modules,
        "rpcs": _rpcs(manifest, connection_name),
        "webhooks": webhooks,
    }


#: Make's own parameter capping how many bundles a search outputs; it is not sent to the service.
_SEARCH_LIMIT = {
    "name": "limit",
    "type": "uinteger",
    "label": "Maximum number of results",
    "default": 100,
    "required": False,
}


def _search(manifest: Manifest, search, connection_name: str) -> dict:
    return {
        "name": search.key,
        "label": search.label,
        "description": search.description,
        "typeOf": "search",
        "connection": connection_name,
        "communication": {
            "url": search.path,
            "method": "POST",
            "body": f"{{{{omit(parameters, '{_SEARCH_LIMIT['name']}')}}}}",
            "response": {"iterate": "{{body}}", "output": "{{item}}", "limit": "{{parameters.limit}}"},
        },
        "parameters": [_SEARCH_LIMIT],
        "mappableParameters": [_parameter(f) for f in input_fields(manifest.catalog.resolved(search.input))],
        "interface": _interface(manifest.catalog.resolved(search.output)),
        "samples": search.sample,
    }


def _parameter(f: Field) -> dict:
    parameter: dict = {"name": f.key, "type": _TYPES[f.type], "label": f.label, "required": f.required}
    if f.help:
        parameter["help"] = f.help
    if f.options:
        # Filled when the module is set up, by the RPC of that kind (a mapped value is taken as well).
        parameter["type"] = "select"
        parameter["options"] = f"rpc://{_rpc_name(f.options)}"
    elif f.choices:
        parameter["type"] = "select"
        parameter["options"] = [{"label": c, "value": c} for c in f.choices]
    if f.list:
        parameter = {
            "name": f.key,
            "type": "array",
            "label": f.label,
            "required": f.required,
            "help": f.help,
            "spec": {"type": _TYPES[f.type], "label": f.label},
        }
    if f.default is not None and not f.list:
        parameter["default"] = f.default
    return parameter


def _rpc_name(kind: str) -> str:
    """Make's name of the RPC answering a kind of choice: contact_lists is contactLists."""
    first, *rest = kind.split("_")
    return first + "".join(word.capitalize() for word in rest)


def _rpcs(manifest: Manifest, connection_name: str) -> list[dict]:
    """One RPC per operation answering a field's choices: Make lists them as the select's options."""
    return [
        {
            "name": _rpc_name(op.key),
            "label": op.summary,
            "connection": connection_name,
            "communication": {
                "url": op.path,
                "method": op.method,
                "response": {"iterate": "{{body}}", "output": {"label": "{{item.label}}", "value": "{{item.value}}"}},
            },
        }
        for op in operations.table(manifest)
        if op.options
    ]


def _interface(schema: dict) -> list[dict]:
    """Output fields, nested as Make shows them (collections for objects)."""
    interface = []
    for key, prop in schema.get("properties", {}).items():
        label = prop.get("title") or key.replace("_", " ").capitalize()
        if "properties" in prop:
            interface.append({"name": key, "label": label, "type": "collection", "spec": _interface(prop)})
            continue
        kinds = {f.type for f in output_fields({"properties": {key: prop}}) if not f.list}
        kind = _TYPES.get(next(iter(kinds), "string"), "text") if kinds else "array"
        interface.append({"name": key, "label": label, "type": kind})
    return interface

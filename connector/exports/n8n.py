"""An n8n community-node package in TypeScript: credentials with a test request, a declarative action node
(one resource per noun, one operation per action and per search, optional fields under "Additional
Fields"; a search's answer is a list, which n8n outputs as one item per element, none when nothing is
found), and a
trigger node whose webhookMethods subscribe the workflow's URL and remember the subscription's id and signing
secret in the workflow's static data, and whose webhook starts the workflow only for an event signed with
that secret (Standard Webhooks, five minutes of tolerance). Compiled with tsc against n8n-workflow's types;
clean for n8n's community-package scanner (tests/platforms/test_n8n.py runs it). The TypeScript is in
templates/n8n/, as real files.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from connector.description.manifest import Action, Manifest, Search
from connector.events.signing import DEFAULT_TOLERANCE, PREFIX, VERSION
from connector.exports.fields import Field, input_fields, options_method
from connector.exports.files import as_json, template
from connector.exports.retries import KeySource
from connector.web.operations import OPTIONS_PATH, option_names

N8N_WORKFLOW_VERSION = "2.41.0"
TYPESCRIPT_VERSION = "5.9.3"
# Node's own types, for the trigger's signature check (crypto, Buffer): the version n8n 1.x runs on.
TYPES_NODE_VERSION = "22.20.7"
# A light and a dark variant: n8n shows the one that suits its theme (its scanner asks for both).
_ICONS = {"light": "allmysms.svg", "dark": "allmysms.dark.svg"}
_ICON_JS = "{ light: 'file:" + _ICONS["light"] + "', dark: 'file:" + _ICONS["dark"] + "' }"
_CREDENTIAL = "allMySmsApi"
# What n8n's linter asks a dropdown filled from the account to say.
_DYNAMIC_DESCRIPTION = (
    'Choose from the list, or specify an ID using an <a href="https://docs.n8n.io/code/expressions/">expression</a>.'
)
# Stands for the key's preSend function in the JSON written for each operation.
_KEY_HOOK = "__idempotencyKey__"
# Stands for the icon's object literal, likewise.
_ICON_MARK = "__icon__"

KEY_SOURCE = KeySource(
    platform="n8n",
    key="`n8n:<instance id>:<workflow id>:<execution id>:<node id>:<run index>:<item index>:<random>` "
    "(`getInstanceId()`, `getWorkflow().id`, `getExecutionId()`, `getNode().id`, `$thisRunIndex`, "
    "`getItemIndex()`; 64 random bits kept in `getContext('node')` for the execution). Execution ids start "
    "at 1 on every instance and an imported workflow keeps its ids (n8n `import.service.ts`); the instance "
    "id is a hash of the encryption key (n8n `instance-settings.ts`), which instances may share: the random "
    "part still tells those apart. `getInstanceId()` is in n8n-workflow 1.14's types, not in 1.8's: on an "
    "older n8n that part is empty",
    retries="yes for the node's **Retry On Fail**: n8n runs the node again with the same run index in the same "
    "execution, whose context keeps the random part (n8n `workflow-execute.ts`, `NodeHelpers.getContext`); "
    "no for **Retry** of a failed execution, which starts a new execution with a new id (n8n "
    "`execution.service.ts`, `retryOf`)",
    fallback="no execution id: no key",
)


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    key = manifest.connector["key"]
    # The package belongs to whoever runs the connector at base_url (it is generated for that deployment):
    # n8n's scanner wants an author with a name and an e-mail, and a homepage, and the manifest describes
    # AllMySMS, not its publisher. The address is the one RFC 2142 expects every web host to answer.
    host = urlsplit(base_url).hostname or "localhost"
    publisher = {
        "name": f"{manifest.connector['name']} connector at {base_url}",
        "email": f"webmaster@{host}",
        "url": base_url,
    }
    # tsc copies no icons: n8n resolves `file:` icons beside the compiled .js files.
    copy_icons = (
        "node -e \"for (const d of ['nodes/AllMySms', 'credentials']) for (const f of "
        f"['{_ICONS['light']}', '{_ICONS['dark']}']) "
        "require('fs').copyFileSync(d + '/' + f, 'dist/' + d + '/' + f)\""
    )
    return {
        "package.json": as_json(
            {
                "name": f"n8n-nodes-{key}",
                "version": manifest.connector["version"],
                "description": manifest.connector["description"],
                "keywords": ["n8n-community-node-package"],
                "license": "MIT",
                "author": publisher,
                "homepage": base_url,
                "main": "index.js",
                "scripts": {"build": f"tsc -p tsconfig.json && {copy_icons}"},
                "files": ["dist"],
                "n8n": {
                    "n8nNodesApiVersion": 1,
                    "credentials": ["dist/credentials/AllMySmsApi.credentials.js"],
                    "nodes": ["dist/nodes/AllMySms/AllMySms.node.js", "dist/nodes/AllMySms/AllMySmsTrigger.node.js"],
                },
                "devDependencies": {
                    "@types/node": TYPES_NODE_VERSION,
                    "n8n-workflow": N8N_WORKFLOW_VERSION,
                    "typescript": TYPESCRIPT_VERSION,
                },
                "peerDependencies": {"n8n-workflow": "*"},
            }
        ),
        "tsconfig.json": as_json(
            {
                "compilerOptions": {
                    "strict": True,
                    "module": "commonjs",
                    "target": "es2021",
                    "lib": ["es2021"],
                    "outDir": "dist",
                    "rootDir": ".",
                    "esModuleInterop": True,
                    "skipLibCheck": True,
                    "types": ["node"],
                },
                "include": ["credentials/**/*.ts", "nodes/**/*.ts"],
            }
        ),
        "index.js": "module.exports = {};\n",
        "credentials/AllMySmsApi.credentials.ts": _credentials(manifest, base_url),
        "nodes/AllMySms/AllMySms.node.ts": _action_node(manifest),
        "nodes/AllMySms/AllMySmsTrigger.node.ts": _trigger_node(manifest),
        **{
            f"{folder}/{_ICONS[theme]}": _icon(theme)
            for folder in ("nodes/AllMySms", "credentials")
            for theme in _ICONS
        },
        "README.md": f"# n8n-nodes-{key}\n\nGenerated by `connector export n8n --base-url {base_url}` from the "
        "connector's manifest: do not edit.\n\n    npm install --ignore-scripts\n    npm run build\n\n"
        "Then install the package in n8n (Settings → Community nodes) or copy `dist/` into "
        "`~/.n8n/custom/`. n8n 1.x runs on Node 22 (Node 20 cannot build its `isolated-vm`), "
        "n8n 2.x on Node 24; building this package needs Node 20 or newer.\n\n"
        "The trigger runs a workflow only for events signed with its subscription's secret "
        "(`webhook-signature`, Standard Webhooks) at most five minutes old: others get 401.\n",
    }


def _ts(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _credentials(manifest: Manifest, base_url: str) -> str:
    fields = {f["key"]: f for f in manifest.auth["fields"]}
    properties = [
        {
            "displayName": fields["login"]["label"],
            "name": "login",
            "type": "string",
            "default": "",
            "required": True,
            "description": fields["login"].get("help", ""),
        },
        {
            "displayName": fields["apiKey"]["label"],
            "name": "apiKey",
            "type": "string",
            "typeOptions": {"password": True},
            "default": "",
            "required": True,
            "description": fields["apiKey"].get("help", ""),
        },
        {
            "displayName": "Connector URL",
            "name": "baseUrl",
            "type": "string",
            "default": base_url,
            "description": "Where the AllMySMS connector runs.",
        },
    ]
    return template(
        "n8n/credentials/AllMySmsApi.credentials.ts",
        **_icon_names(),
        credential=_CREDENTIAL,
        display_name=_ts(manifest.connector["name"] + " API"),
        documentation_url=_ts(manifest.connector["homepage"]),
        properties=_ts(properties),
        test_path=_ts(manifest.auth["test"]["path"]),
    )


_TYPES = {
    "string": "string",
    "text": "string",
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "datetime": "dateTime",
}


def _property(f: Field, operation: str | None) -> dict:
    prop: dict = {
        "displayName": f.label,
        "name": f.key,
        "type": _TYPES[f.type],
        "default": False if f.type == "boolean" else 0 if f.type in ("integer", "number") else "",
        "description": f.help + (" Several values: separate them with commas or new lines." if f.list else ""),
        "routing": {"send": {"type": "body", "property": f.key}},
    }
    if f.type == "text":
        prop["typeOptions"] = {"rows": 4}
    if f.options:
        # n8n's own wording for a dropdown filled from the account (its linter asks for both).
        prop["displayName"] = f"{f.label.removesuffix(' name')} Name or ID"
        prop["type"] = "options"
        prop["typeOptions"] = {"loadOptionsMethod": options_method(f.options)}
        prop["description"] = f"{f.help} {_DYNAMIC_DESCRIPTION}".strip()
    elif f.choices:
        prop["type"] = "options"
        prop["options"] = [{"name": c, "value": c} for c in f.choices]
        prop["default"] = f.default if f.default is not None else f.choices[0]
    elif f.default is not None and not f.list:
        prop["default"] = f.default
    if operation is not None:
        prop["required"] = True
        prop["displayOptions"] = {"show": {"operation": [operation]}}
    return prop


def _load_options(manifest: Manifest) -> str:
    """The node's loadOptions methods, one per kind of choice, each asking the connector's options route."""
    return "\n".join(
        f"      async {options_method(kind)}(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {{\n"
        f"        return choices(this, {_ts(f'{OPTIONS_PATH}/{kind}')});\n"
        "      },"
        for kind in option_names(manifest)
    )


def _action_node(manifest: Manifest) -> str:
    resources: dict[str, list] = {}
    searches = {s.key for s in manifest.searches}
    operations: list[Action | Search] = [*manifest.actions, *manifest.searches]
    for action in operations:
        resources.setdefault(action.noun, []).append(action)
    properties: list[dict] = [
        {
            "displayName": "Resource",
            "name": "resource",
            "type": "options",
            "noDataExpression": True,
            "options": [{"name": noun, "value": _slug(noun)} for noun in resources],
            "default": _slug(next(iter(resources))),
        }
    ]
    for noun, actions in resources.items():
        properties.append(
            {
                "displayName": "Operation",
                "name": "operation",
                "type": "options",
                "noDataExpression": True,
                "displayOptions": {"show": {"resource": [_slug(noun)]}},
                "options": [
                    {
                        "name": a.label,
                        "value": a.key,
                        "action": a.label,
                        "description": a.description,
                        "routing": {"request": {"method": "POST", "url": a.path}}
                        if a.key in searches
                        else {"request": {"method": "POST", "url": a.path}, "send": {"preSend": [_KEY_HOOK]}},
                    }
                    for a in actions
                ],
                "default": actions[0].key,
            }
        )
    for action in operations:
        fields = input_fields(manifest.catalog.resolved(action.input))
        properties += [_property(f, action.key) for f in fields if f.required]
        optional = [f for f in fields if not f.required]
        if optional:
            properties.append(
                {
                    "displayName": "Additional Fields",
                    "name": "additionalFields",
                    "type": "collection",
                    "placeholder": "Add Field",
                    "default": {},
                    "displayOptions": {"show": {"operation": [action.key]}},
                    "options": [_property(f, None) for f in optional],
                }
            )
    description = {
        "displayName": manifest.connector["name"],
        "name": "allMySms",
        "icon": _ICON_MARK,
        "group": ["output"],
        "version": 1,
        "usableAsTool": True,
        "subtitle": '={{$parameter["operation"]}}',
        "description": manifest.connector["description"],
        "defaults": {"name": manifest.connector["name"]},
        "credentials": [{"name": _CREDENTIAL, "required": True}],
        "requestDefaults": {
            "baseURL": "={{$credentials.baseUrl}}",
            "headers": {"Accept": "application/json", "Content-Type": "application/json"},
        },
        "properties": properties,
    }
    entries = "\n".join(f"    {key}: {_ts(value)}," for key, value in description.items())
    entries = entries.replace(json.dumps(_KEY_HOOK), "idempotencyKey").replace(json.dumps(_ICON_MARK), _ICON_JS)
    return template(
        "n8n/nodes/AllMySms/AllMySms.node.ts",
        description=entries,
        credential=_CREDENTIAL,
        load_options=_load_options(manifest),
    )


def _trigger_node(manifest: Manifest) -> str:
    pushed = [t for t in manifest.triggers if t.delivery == "push"]
    # Plain object literals: n8n's linter reads the options' values only from unquoted keys. n8n writes an
    # option's description without a final period.
    options = "\n".join(
        f"        {{ name: {_ts(t.label)}, value: {_ts(t.key)}, description: {_ts(t.description.rstrip('.'))} }},"
        for t in pushed
    )
    return template(
        "n8n/nodes/AllMySms/AllMySmsTrigger.node.ts",
        **_icon_names(),
        credential=_CREDENTIAL,
        tolerance=str(DEFAULT_TOLERANCE),
        secret_prefix=PREFIX,
        secret_prefix_length=str(len(PREFIX)),
        # a signature reads "<version>,<base64>"
        signature_version=VERSION,
        signature_offset=str(len(VERSION) + 1),
        display_name=_ts(manifest.connector["name"] + " Trigger"),
        default_event=_ts(pushed[0].key),
        events=options,
        subscriptions=json.dumps({t.key: t.subscriptions_path for t in pushed}),
    )


def _icon_names() -> dict[str, str]:
    return {"icon_light": _ICONS["light"], "icon_dark": _ICONS["dark"]}


def _icon(theme: str) -> str:
    """A speech bubble with three dots, drawn here so that the package carries no borrowed artwork."""
    bubble, dot = ("#1f6fd1", "#ffffff") if theme == "light" else ("#8cb8f0", "#10233d")
    dots = "".join(f'<circle cx="{x}" cy="27" r="4" fill="{dot}"/>' for x in (20, 32, 44))
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        '<path d="M12 8h40a8 8 0 0 1 8 8v22a8 8 0 0 1-8 8H28l-12 10v-10h-4a8 8 0 0 1-8-8V16a8 8 0 0 1 8-8z" '
        f'fill="{bubble}"/>{dots}</svg>\n'
    )


def _slug(noun: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in noun.lower()).strip("_")

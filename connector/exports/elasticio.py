"""An elastic.io component: component.json, thin JavaScript modules that call the service, credentials
checked by verifyCredentials.js, and tests that run each module with node against a live service.

Schemas go to elastic.io's older dialect: draft-4 types and `required: true` on each property. Pushed
triggers come twice: as `webhook` triggers (subscribe the flow's webhook URL in `startup`, keep the
subscription's secret as startup data, pass on only events whose signature it verifies, unsubscribe in
`shutdown`) and as `polling` triggers that emit what is new since the last run (a snapshot of ids).
"""

from __future__ import annotations

import json

from connector.events import signing
from connector.description.manifest import Manifest
from .signature import VERIFY_JS
from . import as_json
from .fields import narrow
from .retries import KeySource
from .testkit import NODE_HELPERS, action_examples, firing_input

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
    fallback="a message without an `id`: no key")

SAILOR_VERSION = "2.7.8"


def files(manifest: Manifest, base_url: str) -> dict[str, str]:
    connector = manifest.connector
    out = {
        "component.json": as_json(component(manifest)),
        "package.json": as_json({
            "name": f"{connector['key']}-elasticio",
            "version": connector["version"],
            "description": connector["description"],
            "private": True,
            "engines": {"node": ">=18"},
            # A directory argument finds nothing on Node 22; plain `node --test` finds test/*.test.js on 20 to 24.
            "scripts": {"test": "node --test"},
            "dependencies": {"elasticio-sailor-nodejs": SAILOR_VERSION},
        }),
        "lib/service.js": _SERVICE.replace("__BASE_URL__", json.dumps(base_url)),
        "verifyCredentials.js": _VERIFY.replace("__TEST_PATH__", json.dumps(manifest.auth["test"]["path"])),
        "test/component.test.js": _tests(manifest),
    }
    for action in manifest.actions:
        out[f"lib/actions/{action.key}.js"] = _ACTION.replace("__PATH__", json.dumps(action.path))
    for trigger in manifest.triggers:
        events = json.dumps(f"/v1/triggers/{trigger.key}/events")
        fields = json.dumps(sorted(_trigger_fields(manifest, trigger)))
        if trigger.delivery == "push":
            out[f"lib/triggers/{trigger.key}.js"] = _WEBHOOK.replace(
                "__SUBSCRIPTIONS__", json.dumps(f"/v1/triggers/{trigger.key}/subscriptions"))
        out[f"lib/triggers/{trigger.key}_polling.js"] = _POLLING.replace("__EVENTS__", events) \
            .replace("__FIELDS__", fields)
    return out


def component(manifest: Manifest) -> dict:
    catalog = manifest.catalog
    connector = manifest.connector
    credentials = {f["key"]: {"label": f["label"], "required": bool(f.get("required")),
                              "viewClass": "PasswordFieldView" if f.get("secret") else "TextFieldView",
                              "note": f.get("help", "")}
                   for f in manifest.auth["fields"]}
    actions = {a.key: {"main": f"./lib/actions/{a.key}.js", "title": a.label, "description": a.description,
                       "metadata": {"in": _dialect(catalog.resolved(a.input)),
                                    "out": _dialect(catalog.resolved(a.output))}}
               for a in manifest.actions}
    triggers = {}
    for trigger in manifest.triggers:
        out = _dialect(catalog.resolved(trigger.event))
        fields = {name: {"label": field["title"], "required": field["required"], "viewClass": "TextFieldView",
                         "note": field.get("note", "")}
                  for name, field in _trigger_fields(manifest, trigger).items()}
        if trigger.delivery == "push":
            triggers[trigger.key] = {"main": f"./lib/triggers/{trigger.key}.js", "type": "webhook",
                                     "title": trigger.label, "description": trigger.description,
                                     "metadata": {"out": out}}
        triggers[f"{trigger.key}_polling"] = {
            "main": f"./lib/triggers/{trigger.key}_polling.js", "type": "polling",
            "title": f"{trigger.label} (polling)" if trigger.delivery == "push" else trigger.label,
            "description": f"{trigger.description} Checked on the flow's schedule.",
            **({"fields": fields} if fields else {}), "metadata": {"out": out}}
    return {"title": connector["name"], "description": connector["description"], "docsUrl": connector["homepage"],
            "credentials": {"fields": credentials}, "triggers": triggers, "actions": actions}


def _trigger_fields(manifest: Manifest, trigger) -> dict:
    if not trigger.input:
        return {}
    schema = manifest.catalog.resolved(trigger.input)
    required = set(schema.get("required", ()))
    return {name: {"title": prop.get("title", name), "required": name in required,
                   "note": prop.get("description", "")}
            for name, prop in schema.get("properties", {}).items()}


def _dialect(schema: dict) -> dict:
    """elastic.io's metadata: draft-4 types, `required: true` on each property instead of a list."""
    def per_property(node: dict) -> dict:
        node = dict(node)
        required = set(node.pop("required", ()))
        if "properties" in node:
            node["properties"] = {name: {**per_property(prop), "required": name in required}
                                  for name, prop in node["properties"].items()}
        if "items" in node:
            node["items"] = per_property(node["items"])
        return node
    return per_property(narrow(schema))


def _tests(manifest: Manifest) -> str:
    pushed = [t.key for t in manifest.triggers if t.delivery == "push"]
    polled = [{"key": f"{t.key}_polling", "cfg": firing_input(manifest, t)} for t in manifest.triggers]
    return _TESTS.replace("__HELPERS__", NODE_HELPERS).replace("__CREATES__", action_examples(manifest)) \
        .replace("__PUSHED__", json.dumps(pushed)).replace("__POLLED__", json.dumps(polled, indent=2)) \
        .replace("__VECTOR__", json.dumps(_signed_vector(), indent=2, ensure_ascii=False))


def _signed_vector() -> dict:
    """A fixed event signed by the connector's own signing code, over the bytes its delivery worker sends
    (compact JSON, non-ASCII unescaped: delivery.body_of), for the component to verify from the parsed body."""
    secret = signing.PREFIX + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    event = {"id": "evt_2Vx7golden", "type": "sms.reply_received", "timestamp": "2026-01-02T03:04:05Z",
             "data": {"message": "Réponse « oui » ✓ \"cité\"\n", "sender": "+33611111111", "parts": 1}}
    raw = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return {"secret": secret, "raw": raw,
            "headers": signing.headers(secret, "msg_golden", 1767323045, raw.encode())}


_SERVICE = """'use strict';
// Generated by `connector export elasticio`: do not edit. Calls the connector; errors keep its message.
const crypto = require('node:crypto');

const BASE_URL = (process.env.ALLMYSMS_CONNECTOR_URL || __BASE_URL__).replace(/\\/+$/, '');

async function call(cfg, method, path, body, headers = {}) {
  const response = await fetch(BASE_URL + path, {
    method,
    headers: {
      ...headers,
      Authorization: 'Basic ' + Buffer.from(`${cfg.login}:${cfg.apiKey}`).toString('base64'),
      'Content-Type': 'application/json',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    const error = new Error((data && data.error && data.error.message) || `The connector answered HTTP ${response.status}.`);
    error.status = response.status;
    error.retryAfter = response.headers.get('retry-after');
    throw error;
  }
  return { status: response.status, headers: response.headers, data };
}

// An elastic.io message, as elasticio-node's messages.newMessageWithBody makes it.
const message = (body) => ({ id: crypto.randomUUID(), body, attachments: {}, headers: {} });

// The incoming message's id stays the same when the platform delivers it again (a rebound republishes it
// as it was) and is new for each new message; the flow and step make it this step's own.
const idempotencyHeaders = (msg) => {
  if (!msg || !msg.id) {
    return {};
  }
  const parts = [process.env.ELASTICIO_FLOW_ID || '', process.env.ELASTICIO_STEP_ID || '', String(msg.id)];
  const digest = crypto.createHash('sha256').update(parts.join('\\n')).digest('hex');
  return { 'Idempotency-Key': `elasticio-${digest}` };
};

""" + VERIFY_JS + """
// elastic.io's name for the tolerance, kept for the component's own code and tests.
const TOLERANCE = TOLERANCE_SECONDS;

// elastic.io hands a webhook step the parsed JSON body, not its bytes: the connector sends compact JSON,
// keys in its own order, non-ASCII unescaped, which JSON.stringify of the parsed body gives back byte for
// byte; a string body is taken as the bytes themselves. Throws InvalidSignature, saying it was refused.
function verifyEvent(secret, headers, body, now = Math.floor(Date.now() / 1000)) {
  try {
    verify({ secret, headers, content: typeof body === 'string' ? body : JSON.stringify(body), now });
  } catch (error) {
    if (error instanceof InvalidSignature) {
      throw new InvalidSignature(`The event was refused: ${error.message}.`);
    }
    throw error;
  }
}

// What a webhook step's startup returned, as the sailor keeps it for the flow (it hands it to shutdown
// only): read back from the platform's API when this process did not run startup itself (a restart).
async function startupData() {
  const api = process.env.ELASTICIO_API_URI;
  if (!api || !process.env.ELASTICIO_FLOW_ID) {
    return {};
  }
  const auth = Buffer.from(`${process.env.ELASTICIO_API_USERNAME}:${process.env.ELASTICIO_API_KEY}`).toString('base64');
  const flow = encodeURIComponent(process.env.ELASTICIO_FLOW_ID);
  const response = await fetch(`${api.replace(/\\/+$/, '')}/sailor-support/hooks/task/${flow}/startup/data`,
    { headers: { Authorization: `Basic ${auth}` } });
  return response.ok ? (await response.json()) || {} : {};
}

module.exports = { BASE_URL, InvalidSignature, TOLERANCE, call, idempotencyHeaders, message, startupData, verifyEvent };
"""

_VERIFY = """'use strict';
// Generated by `connector export elasticio`: the credentials are good when the connector accepts them.
const { call } = require('./lib/service');

module.exports = async function verifyCredentials(credentials) {
  try {
    await call(credentials, 'GET', __TEST_PATH__);
    return { verified: true };
  } catch (error) {
    if (error.status === 401) {
      return { verified: false, reason: error.message };
    }
    throw error;
  }
};
"""

_ACTION = """'use strict';
// Generated by `connector export elasticio`: do not edit.
const { call, idempotencyHeaders, message } = require('../service');

exports.process = async function process(msg, cfg) {
  const { data } = await call(cfg, 'POST', __PATH__, msg.body || {}, idempotencyHeaders(msg));
  await this.emit('data', message(data));
};
"""

_WEBHOOK = """'use strict';
// Generated by `connector export elasticio`: do not edit. Subscribes the flow's webhook URL when the flow
// starts, unsubscribes it when the flow stops; each event POSTed to the flow is passed on when its
// signature proves it came from the connector, and refused (an error, no data) otherwise.
const { InvalidSignature, call, message, startupData, verifyEvent } = require('../service');

const SUBSCRIPTIONS = __SUBSCRIPTIONS__;

// The subscription's signing secret, once startup made it or the platform's startup data gave it back.
let signingSecret = null;

exports.startup = async function startup(cfg) {
  const { data } = await call(cfg, 'POST', SUBSCRIPTIONS, { target_url: process.env.ELASTICIO_FLOW_WEBHOOK_URI });
  signingSecret = data.secret;
  // The platform keeps what startup returns for the flow: the secret survives a restart of this step.
  return { subscriptionId: data.id, secret: data.secret };
};

exports.shutdown = async function shutdown(cfg, startData) {
  if (!startData || !startData.subscriptionId) {
    return;
  }
  try {
    await call(cfg, 'DELETE', `${SUBSCRIPTIONS}/${encodeURIComponent(startData.subscriptionId)}`);
  } catch (error) {
    if (error.status !== 404) {
      throw error;  // already gone is as good as removed
    }
  }
};

exports.process = async function process(msg) {
  if (!signingSecret) {
    signingSecret = (await startupData()).secret || null;
  }
  try {
    verifyEvent(signingSecret, msg.headers, msg.body);
  } catch (error) {
    if (error instanceof InvalidSignature) {
      await this.emit('error', error);
      return;
    }
    throw error;
  }
  await this.emit('data', message(msg.body));
};
"""

_POLLING = """'use strict';
// Generated by `connector export elasticio`: do not edit. Emits the events not seen at the last run,
// oldest first; the snapshot keeps the ids of the newest ones.
const { call, message } = require('../service');

const EVENTS = __EVENTS__;
const FIELDS = __FIELDS__;

exports.process = async function process(msg, cfg, snapshot) {
  const params = new URLSearchParams({ limit: '100' });
  for (const field of FIELDS) {
    if (cfg[field] !== undefined && cfg[field] !== '') {
      params.set(field, String(cfg[field]));
    }
  }
  const { data } = await call(cfg, 'GET', `${EVENTS}?${params}`);
  const seen = new Set((snapshot && snapshot.seen) || []);
  for (const item of data.filter((event) => !seen.has(event.id)).reverse()) {
    await this.emit('data', message(item));
  }
  await this.emit('snapshot', { seen: data.map((event) => event.id) });
};
"""

_TESTS = """'use strict';
// Generated by `connector export elasticio`: each module run as the platform runs it (process with a
// message and the configuration; emitted messages collected), against a live connector on its sandbox.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const path = require('node:path');

const CREATES = __CREATES__;
const PUSHED = __PUSHED__;
const POLLED = __POLLED__;
const VECTOR = __VECTOR__;
const component = require('../component.json');
const { InvalidSignature, TOLERANCE, verifyEvent } = require('../lib/service');

__HELPERS__
const CFG = CREDENTIALS;
const load = (main) => require(path.join(__dirname, '..', main));
const run = async (module, msg, cfg, snapshot) => {
  const emitted = [];
  const context = { emit: async (kind, value) => { emitted.push({ kind, value }); } };
  await module.process.call(context, msg, cfg, snapshot);
  return emitted;
};

// The flow's webhook URL, played by a local server.
const received = [];
let receiver;
before(async () => {
  const started = await startReceiver(received);
  receiver = started.server;
  process.env.ELASTICIO_FLOW_WEBHOOK_URI = `${started.url}/flow`;
});
after(() => receiver.close());

test('an event signed by the connector verifies from its parsed body; a bad, missing or stale one is refused', () => {
  const body = JSON.parse(VECTOR.raw);
  const now = Number(VECTOR.headers['webhook-timestamp']);
  const signature = VECTOR.headers['webhook-signature'];
  verifyEvent(VECTOR.secret, VECTOR.headers, body, now);
  verifyEvent(VECTOR.secret, { ...VECTOR.headers, 'webhook-signature': `v1,${'A'.repeat(44)} ${signature}` }, body,
    now + TOLERANCE);
  const wrong = Buffer.alloc(32, 7).toString('base64');
  const refused = [
    [VECTOR.secret, { ...VECTOR.headers, 'webhook-signature': `v1,${wrong}` }, body, now],
    [VECTOR.secret, VECTOR.headers, { ...body, type: 'sms.delivery_receipt' }, now],
    [`whsec_${wrong}`, VECTOR.headers, body, now],
    [VECTOR.secret, { ...VECTOR.headers, 'webhook-signature': undefined }, body, now],
    [VECTOR.secret, {}, body, now],
    [VECTOR.secret, VECTOR.headers, body, now + TOLERANCE + 1],
    [VECTOR.secret, VECTOR.headers, body, now - TOLERANCE - 1],
    [undefined, VECTOR.headers, body, now],
  ];
  for (const [secret, headers, event, at] of refused) {
    assert.throws(() => verifyEvent(secret, headers, event, at), InvalidSignature);
  }
});

test('verifyCredentials accepts good credentials and refuses bad ones', async () => {
  const verify = require('../verifyCredentials');
  assert.deepStrictEqual(await verify(CFG), { verified: true });
  const refused = await verify({ login: CFG.login, apiKey: 'wrong' });
  assert.strictEqual(refused.verified, false);
});

test('every action emits the result of its example', async () => {
  let campaignId;
  for (const create of CREATES) {
    const body = { ...create.input };
    if (create.needsCampaign && campaignId) body.campaign_id = campaignId;
    const emitted = await run(load(component.actions[create.key].main), { body }, CFG);
    assert.strictEqual(emitted.length, 1, create.key);
    assert.strictEqual(emitted[0].kind, 'data');
    assert.ok(emitted[0].value.body.id !== undefined, `${create.key} answers an id`);
    if (emitted[0].value.body.campaign_id) campaignId = emitted[0].value.body.campaign_id;
  }
});

test('a message delivered again (same msg.id) sends once; a new message sends again', async () => {
  const create = CREATES.find((c) => !c.needsCampaign);
  const action = load(component.actions[create.key].main);
  const msg = { id: `msg-${process.pid}-${Date.now()}`, body: { ...create.input } };
  const [first] = await run(action, msg, CFG);
  const [again] = await run(action, { ...msg, body: { ...msg.body } }, CFG);
  assert.deepStrictEqual(again.value.body, first.value.body, 'the redelivery gets the first answer');
  const [next] = await run(action, { ...msg, id: `${msg.id}-next` }, CFG);
  assert.notStrictEqual(next.value.body.id, first.value.body.id, 'a new message sends again');
});

test('a refused action fails with the service message', async () => {
  await assert.rejects(run(load(component.actions.send_sms.main), { body: { message: 'Hi' } }, CFG),
    (error) => /recipients/.test(error.message) && error.status === 422);
});

for (const key of PUSHED) {
  test(`webhook trigger ${key}: startup subscribes, events arrive, shutdown unsubscribes`, async () => {
    const trigger = load(component.triggers[key].main);
    const startData = await trigger.startup(CFG);
    assert.ok(startData.subscriptionId);
    try {
      const before = received.length;
      await run(load(component.actions.send_sms.main), { body: { message: 'elastic.io test', recipients: ['+33611111111'] } }, CFG);
      if (key === 'reply_received') {
        await until(() => simulateReply('Yes'), 'the simulated reply');
      }
      const types = component.triggers[key].metadata.out.properties.type.enum;
      const delivery = await until(() => received.slice(before).find((r) => types.includes(r.body.type)),
        `a ${key} event`);
      const event = delivery.body;
      const emitted = await run(trigger, { body: event, headers: delivery.headers }, CFG);
      assert.deepStrictEqual(emitted.map((e) => [e.kind, e.value.body.id]), [['data', event.id]]);
      const forged = await run(trigger, { body: { ...event, id: 'forged' }, headers: delivery.headers }, CFG);
      assert.deepStrictEqual(forged.map((e) => [e.kind, e.value instanceof InvalidSignature]), [['error', true]]);
    } finally {
      await trigger.shutdown(CFG, startData);
      await trigger.shutdown(CFG, startData);  // again: already gone is fine
    }
  });
}

for (const polled of POLLED) {
  test(`polling trigger ${polled.key}: new events once, then nothing new`, async () => {
    await run(load(component.actions.send_sms.main), { body: { message: 'Polling test', recipients: ['+33611111111'] } }, CFG);
    await until(() => simulateReply('STOP'), 'a STOP reply');
    const trigger = load(component.triggers[polled.key].main);
    const cfg = { ...CFG, ...polled.cfg };
    const first = await until(async () => {
      const emitted = await run(trigger, {}, cfg, {});
      return emitted.some((e) => e.kind === 'data') ? emitted : null;
    }, `events of ${polled.key}`);
    const snapshot = first.find((e) => e.kind === 'snapshot').value;
    assert.ok(first.filter((e) => e.kind === 'data').every((e) => e.value.body.id));
    const second = await run(trigger, {}, cfg, snapshot);
    const seenAgain = second.filter((e) => e.kind === 'data' && snapshot.seen.includes(e.value.body.id));
    assert.deepStrictEqual(seenAgain, [], 'nothing emitted twice');
  });
}
"""

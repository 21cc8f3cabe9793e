"""An elastic.io component: component.json, thin JavaScript modules that call the service, credentials
checked by verifyCredentials.js, and tests that run each module with node against a live service.

Schemas go to elastic.io's older dialect: draft-4 types and `required: true` on each property. Pushed
triggers come twice: as `webhook` triggers (subscribe the flow's webhook URL in `startup`, unsubscribe
in `shutdown`) and as `polling` triggers that emit what is new since the last run (a snapshot of ids).
"""

from __future__ import annotations

import json

from ..manifest import Manifest
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
            "scripts": {"test": "node --test test/"},
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
        .replace("__PUSHED__", json.dumps(pushed)).replace("__POLLED__", json.dumps(polled, indent=2))


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

module.exports = { BASE_URL, call, idempotencyHeaders, message };
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
// starts, unsubscribes it when the flow stops; each event POSTed to the flow is passed on as it came.
const { call, message } = require('../service');

const SUBSCRIPTIONS = __SUBSCRIPTIONS__;

exports.startup = async function startup(cfg) {
  const { data } = await call(cfg, 'POST', SUBSCRIPTIONS, { target_url: process.env.ELASTICIO_FLOW_WEBHOOK_URI });
  return { subscriptionId: data.id };
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
const component = require('../component.json');

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
      const event = await until(() => received.slice(before).map((r) => r.body).find((e) => types.includes(e.type)),
        `a ${key} event`);
      const emitted = await run(trigger, { body: event }, CFG);
      assert.deepStrictEqual(emitted.map((e) => e.value.body.id), [event.id]);
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

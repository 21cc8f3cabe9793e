"""The elastic.io component run by elastic.io's own sailor (elasticio-sailor-nodejs) on the local RabbitMQ,
against the live connector: credentials verified, a send, an MMS, a contact list, a polling trigger, and a
webhook trigger that subscribes at startup, passes on only signed events and unsubscribes at shutdown.

The sailor needs what the platform gives a step's container: environment variables (lib/settings.js of
the sailor), a REST API for the step's data and the flow's startup data (played here by `_PlatformApi`), and
queues. Messages go in and out encrypted as the sailor does it; a small node script (`_BUS`) speaks AMQP
with the sailor's own amqplib and Encryptor, so this test needs nothing beyond what the sailor installs.
"""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from connector import exports
from connector.description import manifest as manifest_module
from tests.conftest import DEMO, LoopbackServer, require, wait_for
from tests.platforms.conftest import installed, node_env

SAILOR = "2.7.8"
NODE = 20
AMQP = "amqp://guest:guest@127.0.0.1:5672"
CREDENTIALS = {"login": DEMO[0], "apiKey": DEMO[1]}

_BUS = r"""'use strict';
// Publishes a message to the step's queue, or drains what the step published, as the platform does.
const amqp = require('amqplib');
const Encryptor = require('elasticio-sailor-nodejs/lib/encryptor.js');

const env = process.env;
const encryptor = new Encryptor(env.ELASTICIO_MESSAGE_CRYPTO_PASSWORD, env.ELASTICIO_MESSAGE_CRYPTO_IV);
const OUT = `${env.ELASTICIO_LISTEN_MESSAGES_ON}.out`;
const EXPIRES = { arguments: { 'x-expires': 600000 } };  // queues of a killed run go away by themselves

(async () => {
  const connection = await amqp.connect(env.ELASTICIO_AMQP_URI);
  const channel = await connection.createChannel();
  const [command, argument] = process.argv.slice(2);
  if (command === 'setup') {
    await channel.assertExchange(env.ELASTICIO_PUBLISH_MESSAGES_TO, 'topic', { durable: false, autoDelete: false });
    await channel.assertQueue(env.ELASTICIO_LISTEN_MESSAGES_ON, EXPIRES);
    await channel.assertQueue(OUT, EXPIRES);
    await channel.bindQueue(OUT, env.ELASTICIO_PUBLISH_MESSAGES_TO, '#');
  } else if (command === 'publish') {
    const message = JSON.parse(argument);
    channel.sendToQueue(env.ELASTICIO_LISTEN_MESSAGES_ON, encryptor.encryptMessageContent(message, 'base64'),
      { headers: { messageId: message.id, protocolVersion: 1, taskId: env.ELASTICIO_FLOW_ID } });
  } else if (command === 'drain') {
    const out = [];
    for (let got = await channel.get(OUT, { noAck: true }); got; got = await channel.get(OUT, { noAck: true })) {
      const key = got.fields.routingKey;
      let content;
      if (key === env.ELASTICIO_ERROR_ROUTING_KEY) {
        content = encryptor.decryptMessageContent(Buffer.from(JSON.parse(got.content.toString()).error), 'base64');
      } else if (key === env.ELASTICIO_SNAPSHOT_ROUTING_KEY) {
        content = JSON.parse(got.content.toString());
      } else {
        content = encryptor.decryptMessageContent(got.content, 'base64');
      }
      out.push({ key, content });
    }
    process.stdout.write(JSON.stringify(out));
  } else if (command === 'teardown') {
    await channel.deleteQueue(env.ELASTICIO_LISTEN_MESSAGES_ON);
    await channel.deleteQueue(OUT);
    await channel.deleteExchange(env.ELASTICIO_PUBLISH_MESSAGES_TO);
  }
  await channel.close();
  await connection.close();
})().catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture(scope="module")
def sailor_home() -> Path:
    """The sailor installed once (kept in the platform cache), with the machine's Node 20."""
    return (
        installed(
            "elasticio-sailor",
            {"name": "elasticio-sailor-check", "private": True, "dependencies": {"elasticio-sailor-nodejs": SAILOR}},
            NODE,
        )
        / "node_modules"
        / "elasticio-sailor-nodejs"
    )


@pytest.fixture(scope="module")
def manifest():
    return manifest_module.load()


@pytest.fixture(scope="module")
def rabbitmq():
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as error:
        require(f"RabbitMQ is needed on 127.0.0.1:5672 (guest/guest) for the elastic.io sailor: {error}")


class _PlatformApi:
    """elastic.io's REST API as a sailor calls it: the step's data, the flow's startup data, service results."""

    def __init__(self, steps: dict):
        self.steps = steps
        self.startup: dict[str, dict] = {}
        self.results: list[dict] = []
        self.server = LoopbackServer(self._wsgi)
        self.url = self.server.url

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        parts = request.path.strip("/").split("/")
        status, body = 404, {"error": "not here"}
        if "steps" in parts and parts[-1] in self.steps:
            status, body = 200, self.steps[parts[-1]]
        elif parts[:3] == ["sailor-support", "hooks", "task"] and parts[-2:] == ["startup", "data"]:
            flow = parts[3]
            if request.method == "POST" and flow in self.startup:
                status, body = 409, {"error": "startup data already exists"}
            elif request.method == "POST":
                self.startup[flow] = request.get_json()
                status, body = 201, self.startup[flow]
            elif flow not in self.startup:
                status, body = 404, {"error": "no startup data"}
            elif request.method == "GET":
                status, body = 200, self.startup[flow]
            else:
                status, body = 204, self.startup.pop(flow)
        elif parts == ["result"]:
            self.results.append(request.get_json())
            status, body = 200, {}
        return Response(json.dumps(body), status=status, content_type="application/json")(environ, start_response)


class _Step:
    """One step of a flow: its component function, queues and environment, and the sailor processes run
    for it (each stopped at the end)."""

    def __init__(
        self, home: Path, component: Path, api: _PlatformApi, function: str, service_url: str, logs: Path, **extra
    ):
        self.home, self.component, self.api, self.logs = home, component, api, logs
        self.flow, self.step = f"flow-{uuid.uuid4().hex[:12]}", f"step-{uuid.uuid4().hex[:8]}"
        api.steps[self.step] = {
            "id": self.step,
            "comp_id": "allmysms",
            "function": function,
            "config": CREDENTIALS,
            "snapshot": {},
            "is_passthrough": False,
        }
        prefix = f"allmysms-test.{self.flow}"
        self.env = node_env(
            NODE,
            NODE_PATH=str(home.parent),
            ALLMYSMS_CONNECTOR_URL=service_url,
            ELASTICIO_FLOW_ID=self.flow,
            ELASTICIO_STEP_ID=self.step,
            ELASTICIO_EXEC_ID=uuid.uuid4().hex,
            ELASTICIO_CONTAINER_ID="local",
            ELASTICIO_WORKSPACE_ID="local",
            ELASTICIO_USER_ID="local",
            ELASTICIO_COMP_ID="allmysms",
            ELASTICIO_FUNCTION=function,
            ELASTICIO_API_URI=api.url,
            ELASTICIO_API_USERNAME="sailor@local",
            ELASTICIO_API_KEY="local-key",
            ELASTICIO_AMQP_URI=AMQP,
            ELASTICIO_LISTEN_MESSAGES_ON=f"{prefix}.in",
            ELASTICIO_PUBLISH_MESSAGES_TO=f"{prefix}.exchange",
            ELASTICIO_DATA_ROUTING_KEY=f"{prefix}.data",
            ELASTICIO_ERROR_ROUTING_KEY=f"{prefix}.error",
            ELASTICIO_REBOUND_ROUTING_KEY=f"{prefix}.rebound",
            ELASTICIO_SNAPSHOT_ROUTING_KEY=f"{prefix}.snapshot",
            ELASTICIO_MESSAGE_CRYPTO_IV="0123456789abcdef",
            ELASTICIO_MESSAGE_CRYPTO_PASSWORD=uuid.uuid4().hex,
            ELASTICIO_RABBITMQ_PREFETCH_SAILOR="1",
            **extra,
        )
        self.bus = logs / f"bus-{self.step}.js"
        self.bus.write_text(_BUS)
        self.processes: list[subprocess.Popen] = []
        self.out: list[dict] = []
        self._bus("setup")

    def _bus(self, *args: str) -> str:
        done = subprocess.run(["node", str(self.bus), *args], env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def start(self, **extra) -> subprocess.Popen:
        log = open(self.logs / f"sailor-{self.step}-{len(self.processes)}.log", "w")
        with log:
            # The sailor reads the component from its working directory, as in the platform's container.
            process = subprocess.Popen(
                ["node", str(self.home / "run.js")],
                env={**self.env, **extra},
                cwd=self.component,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def publish(self, body: dict, **fields) -> str:
        message_id = str(uuid.uuid4())
        self._bus("publish", json.dumps({"id": message_id, "body": body, "attachments": {}, "headers": {}, **fields}))
        return message_id

    def emitted(self, key: str) -> list:
        """What the step published under this routing key so far (data, error or snapshot)."""
        self.out.extend(json.loads(self._bus("drain")))
        return [m["content"] for m in self.out if m["key"] == self.env[f"ELASTICIO_{key.upper()}_ROUTING_KEY"]]

    def log(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.logs.glob(f"sailor-{self.step}-*.log")))

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._bus("teardown")


def _stop(process: subprocess.Popen):
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def platform(sailor_home, rabbitmq, manifest, live_service, tmp_path):
    """A function making steps of the exported component, run by the real sailor against live_service."""
    component = tmp_path / "component"
    exports.write("elasticio", manifest, component, live_service.url)
    api = _PlatformApi({})
    steps: list[_Step] = []

    def step(function: str, **extra) -> _Step:
        made = _Step(sailor_home, component, api, function, live_service.url, tmp_path, **extra)
        steps.append(made)
        return made

    step.api, step.component = api, component
    try:
        yield step
    finally:
        for made in steps:
            made.stop()
        api.server.stop()


def _verify(sailor_home: Path, component: Path, api: _PlatformApi, credentials: dict, service_url: str) -> dict:
    before = len(api.results)
    done = subprocess.run(
        ["node", str(sailor_home / "runService.js"), "verifyCredentials"],
        timeout=120,
        cwd=component,
        capture_output=True,
        text=True,
        env=node_env(
            NODE,
            ALLMYSMS_CONNECTOR_URL=service_url,
            ELASTICIO_POST_RESULT_URL=f"{api.url}/result",
            ELASTICIO_CFG=json.dumps(credentials),
            ELASTICIO_API_URI=api.url,
            ELASTICIO_API_USERNAME="sailor@local",
            ELASTICIO_API_KEY="local-key",
        ),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(api.results) == before + 1, done.stdout[-2000:]
    return api.results[-1]


def test_the_sailor_verifies_good_credentials_and_refuses_bad_ones(platform, sailor_home, live_service):
    good = _verify(sailor_home, platform.component, platform.api, CREDENTIALS, live_service.url)
    assert good == {"status": "success", "data": {"verified": True}}
    bad = _verify(sailor_home, platform.component, platform.api, {**CREDENTIALS, "apiKey": "wrong"}, live_service.url)
    assert bad["status"] == "success" and bad["data"]["verified"] is False


def test_a_send_sms_message_through_the_sailor_sends_a_campaign(platform, sandbox):
    step = platform("send_sms")
    step.start()
    before = len(sandbox.state.campaigns("demo"))
    step.publish({"message": "Hello from elastic.io", "recipients": ["+33611111111"]})
    [result] = wait_for(lambda: step.emitted("data"), 60, f"the send's result\n{step.log()}")
    assert result["body"]["id"]
    campaigns = sandbox.state.campaigns("demo")
    assert len(campaigns) == before + 1
    assert step.emitted("error") == []


def _reply(live_service, text: str):
    live_service.session.post(
        f"{live_service.url}/v1/actions/send_sms",
        timeout=30,
        json={"message": "Question?", "recipients": ["+33611111111"]},
    ).raise_for_status()
    wait_for(
        lambda: (
            live_service.session.post(
                f"{live_service.url}/v1/sandbox/replies",
                timeout=30,
                json={"phone_number": "+33611111111", "message": text},
            ).status_code
            == 201
        ),
        30,
        "a simulated reply",
    )


def test_a_polling_trigger_emits_the_newest_events_and_then_nothing_new(platform, live_service):
    _reply(live_service, "Yes please")
    newest = wait_for(lambda: live_service.get("/v1/triggers/reply_received/events").json(), 30, "a reply event")
    step = platform("reply_received_polling")
    step.start()
    step.publish({})  # the platform's scheduler: one message per poll
    wait_for(lambda: step.emitted("snapshot"), 60, f"the first poll's snapshot\n{step.log()}")
    first = [m["body"]["id"] for m in step.emitted("data")]
    assert first and first[-1] == newest[0]["id"], "the newest event comes last, as it happened"
    assert sorted(first) == sorted(e["id"] for e in newest)
    step.publish({})
    wait_for(lambda: len(step.emitted("snapshot")) == 2, 60, f"the second poll's snapshot\n{step.log()}")
    assert [m["body"]["id"] for m in step.emitted("data")] == first, "nothing emitted twice"


def test_a_webhook_trigger_subscribes_passes_on_signed_events_only_and_unsubscribes(platform, live_service, subscriber):
    listed = lambda: live_service.get("/v1/triggers/reply_received/subscriptions").json()  # noqa: E731
    before = {s["id"] for s in listed()}
    target = subscriber.target("/flow")
    step = platform("reply_received", ELASTICIO_FLOW_WEBHOOK_URI=target)
    step.start(ELASTICIO_STARTUP_REQUIRED="1")
    [subscription] = wait_for(
        lambda: [s for s in listed() if s["id"] not in before], 60, f"the startup hook's subscription\n{step.log()}"
    )
    assert subscription["target_url"] == target
    kept = wait_for(lambda: platform.api.startup.get(step.flow), 30, f"the startup data kept\n{step.log()}")
    assert kept["subscriptionId"] == subscription["id"] and kept["secret"].startswith("whsec_")

    _reply(live_service, "Oui, merci ✓")
    [delivery] = wait_for(lambda: subscriber.deliveries("/flow"), 30, "the connector's delivery")
    # What elastic.io's webhook receiver hands the step: the parsed body and the request's headers.
    headers = {name.lower(): value for name, value in delivery["headers"].items()}
    event = json.loads(delivery["body"])
    step.publish(event, headers=headers, method="POST", url="/flow")
    [emitted] = wait_for(lambda: step.emitted("data"), 60, f"the event passed on\n{step.log()}")
    assert emitted["body"] == event

    step.publish({**event, "data": {**event["data"], "text": "forged"}}, headers=headers)
    step.publish(event, headers={k: v for k, v in headers.items() if k != "webhook-signature"})
    errors = wait_for(
        lambda: len(step.emitted("error")) == 2 and step.emitted("error"), 60, f"two refusals\n{step.log()}"
    )
    assert all("refused" in e["message"] for e in errors)
    assert len(step.emitted("data")) == 1, "a forged or unsigned event is not passed on"

    # A restarted container runs no startup: the secret comes back from the flow's startup data.
    _stop(step.processes[-1])
    step.start()
    step.publish(event, headers=headers)
    wait_for(lambda: len(step.emitted("data")) == 2, 60, f"the event passed on after a restart\n{step.log()}")

    # The flow stopped: its step's container goes, then the platform runs the shutdown hook on its own.
    _stop(step.processes[-1])
    step.start(ELASTICIO_HOOK_SHUTDOWN="1")
    wait_for(
        lambda: subscription["id"] not in {s["id"] for s in listed()},
        60,
        f"the shutdown hook's unsubscribe\n{step.log()}",
    )
    wait_for(lambda: step.flow not in platform.api.startup, 30, "the startup data removed")


def test_a_send_mms_message_through_the_sailor_sends_an_mms_campaign(platform, sandbox):
    step = platform("send_mms")
    step.start()
    step.publish(
        {
            "recipients": ["+33611111111"],
            "kind": "picture",
            "media_url": "https://example.com/offer.jpg",
            "message": "Our new collection is in store (elastic.io)",
        }
    )
    [result] = wait_for(lambda: step.emitted("data"), 60, f"the MMS's result\n{step.log()}")
    [campaign] = [c for c in sandbox.state.campaigns("demo") if c.id == result["body"]["campaign_id"]]
    assert campaign.kind == "mms" and campaign.numbers == ("33611111111",)
    assert result["body"]["status"] == "sent" and result["body"]["recipients"] == 1
    assert step.emitted("error") == []


def test_a_create_list_message_through_the_sailor_creates_the_list(platform, sandbox):
    step = platform("create_list")
    step.start()
    step.publish({"name": "Shop 12 (elastic.io)", "fields": "Firstname; City"})
    [result] = wait_for(lambda: step.emitted("data"), 60, f"the list's result\n{step.log()}")
    assert result["body"]["name"] == "Shop 12 (elastic.io)" and result["body"]["fields"] == ["Firstname", "City"]
    assert [found["listName"] for found in sandbox.state.contact_lists.all("demo")] == ["Shop 12 (elastic.io)"]
    assert step.emitted("error") == []

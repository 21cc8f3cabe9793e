"""The n8n package in n8n's own software: n8n's community-package scanner on the package and its sources, then
n8n 1.123 (the last 1.x, on Node 22) loading it as a custom node, with credentials and a workflow imported
from files and executed against the live connector: an SMS sent, the account read, a contact list created, an
SMS's receipt found."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import pytest
import requests

from connector import exports
from connector.description import manifest as manifest_module
from tests.conftest import DEMO, wait_for
from tests.platforms.conftest import installed, node_env

NODE = 22
N8N_VERSION = "1.123.81"
SCANNER_VERSION = "0.32.0"
# n8n-nodes-base 1.x names xlsx by a URL outside the registry; this is the last release on the registry.
N8N_OVERRIDES = {"xlsx": "0.18.5"}

SCAN = """
// n8n's own community-package scanner on local folders: the published files, and the sources they were built
// from, as it scans a package fetched from the registry and the source checkout its provenance names.
const [scanner, published, sources] = process.argv.slice(2);
const { analyzePackage, SOURCE_FILE_PATTERNS } = await import(scanner);
const report = async (folder, patterns) => {
  const result = await analyzePackage(folder, patterns);
  return { passed: result.passed, message: result.message ?? '', details: result.details ?? '' };
};
console.log(JSON.stringify({
  published: await report(published),
  sources: await report(sources, SOURCE_FILE_PATTERNS),
}));
"""


def _run(args, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _build_dependencies() -> Path:
    """The export's devDependencies (TypeScript, n8n-workflow's types), installed with Node 22 once, kept."""
    dev = json.loads(exports.render("n8n", manifest_module.load())["package.json"])["devDependencies"]
    return installed(
        "n8n-build", {"name": "n8n-build", "private": True, "dependencies": dev}, NODE, flags=("--ignore-scripts",)
    )


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The export built with Node 22 (its devDependencies installed once, kept) and packed as npm would
    publish it: ``(sources, published)``."""
    sources = tmp_path_factory.mktemp("n8n-export")
    exports.write("n8n", manifest_module.load(), sources, "http://127.0.0.1:8080")
    (sources / "node_modules").symlink_to(_build_dependencies() / "node_modules")
    env = node_env(NODE)
    _run(["npm", "run", "--silent", "build"], sources, env)
    packed = tmp_path_factory.mktemp("n8n-packed")
    tarball = _run(["npm", "pack", "--silent", "--pack-destination", str(packed)], sources, env).stdout.split()[-1]
    published = packed / "package"
    _run(["tar", "xzf", tarball], packed, env)
    (sources / "node_modules").unlink()  # the scanner lints what it finds; the sources are what matters
    return sources, published


@pytest.fixture(scope="module")
def n8n():
    """n8n's install folder (holding node_modules/.bin/n8n)."""
    return installed(
        "n8n",
        {
            "name": "n8n-platform-check",
            "private": True,
            "dependencies": {"n8n": N8N_VERSION},
            "overrides": N8N_OVERRIDES,
        },
        NODE,
    )


PARSE = """
// The TypeScript compiler's parser on each file: syntax only, as the templates are, before any value is in place.
const [compiler, ...paths] = process.argv.slice(2);
const ts = require(compiler);
const fs = require('fs');
const problems = [];
for (const path of paths) {
  const { diagnostics } = ts.transpileModule(fs.readFileSync(path, 'utf8'), {
    fileName: path, reportDiagnostics: true,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2021 } });
  for (const d of diagnostics) problems.push(`${path}: ${ts.flattenDiagnosticMessageText(d.messageText, '\\n')}`);
}
console.log(JSON.stringify({ parsed: paths.length, problems }));
"""


def test_the_typescript_templates_parse_as_they_are(tmp_path):
    """The package's own compile (the ``package`` fixture: ``tsc -p tsconfig.json``, strict) type-checks what is
    rendered; this parses the templates themselves, whose marks stand in for values not yet given."""
    templates = Path(str(resources.files("connector.exports").joinpath("templates", "n8n")))
    paths = sorted(str(p) for p in templates.rglob("*.ts"))
    assert paths
    script = tmp_path / "parse.js"
    script.write_text(PARSE, encoding="utf-8")
    compiler = _build_dependencies() / "node_modules" / "typescript"
    ran = _run(["node", str(script), str(compiler), *paths], tmp_path, node_env(NODE))
    assert json.loads(ran.stdout.strip().splitlines()[-1]) == {"parsed": len(paths), "problems": []}


def test_n8ns_own_scanner_finds_nothing_to_report_in_the_package_or_its_sources(package, tmp_path):
    sources, published = package
    scanner = installed(
        "n8n-scanner",
        {
            "name": "n8n-scanner-check",
            "private": True,
            "dependencies": {"@n8n/scan-community-package": SCANNER_VERSION},
        },
        NODE,
        # eslint-plugin-n8n-nodes-base's install script refuses any manager but pnpm
        flags=("--ignore-scripts",),
    )
    script = tmp_path / "scan.mjs"
    script.write_text(SCAN, encoding="utf-8")
    entry = scanner / "node_modules" / "@n8n" / "scan-community-package" / "scanner" / "scanner.mjs"
    ran = _run(["node", str(script), str(entry), str(published), str(sources)], tmp_path, node_env(NODE))
    reports = json.loads(ran.stdout.strip().splitlines()[-1])
    for leg, report in reports.items():
        # "No files found" also passes: what was linted must have been there.
        assert report == {"passed": True, "message": "", "details": ""}, f"{leg}: {report}"
    assert (published / "dist" / "nodes" / "AllMySms" / "AllMySmsTrigger.node.js").is_file()
    assert sorted(p.name for p in (published / "dist" / "credentials").iterdir()) == [
        "AllMySmsApi.credentials.js",
        "allmysms.dark.svg",
        "allmysms.svg",
    ]


def _n8n_env(scratch: Path, extensions: Path) -> dict:
    return node_env(
        NODE,
        HOME=str(scratch),
        N8N_USER_FOLDER=str(scratch),
        N8N_CUSTOM_EXTENSIONS=str(extensions),
        N8N_ENCRYPTION_KEY="platform-check-only-key",
        N8N_DIAGNOSTICS_ENABLED="false",
        N8N_VERSION_NOTIFICATIONS_ENABLED="false",
        N8N_TEMPLATES_ENABLED="false",
        N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS="false",
        N8N_RUNNERS_ENABLED="false",
        N8N_LOG_LEVEL="info",
        DB_SQLITE_POOL_SIZE="1",
    )


def _custom_node(package, n8n, scratch: Path) -> Path:
    """The published package where n8n looks for custom nodes, n8n-workflow resolved to n8n's own: a peer
    dependency, as an installed community package finds it."""
    _, published = package
    extensions = scratch / "custom"
    target = extensions / "n8n-nodes-allmysms"
    shutil.copytree(published, target)
    (target / "node_modules").mkdir()
    (target / "node_modules" / "n8n-workflow").symlink_to(n8n / "node_modules" / "n8n-workflow")
    return extensions


CREDENTIAL = {"id": "amsDemoCredential", "name": "AllMySMS demo"}


def _credentials(service_url: str) -> list:
    login, api_key = DEMO
    return [{**CREDENTIAL, "type": "allMySmsApi", "data": {"login": login, "apiKey": api_key, "baseUrl": service_url}}]


LIST_NAME = "Platform check customers"


def _send_and_read_workflow(recipient: str, message: str, sms_id: str) -> dict:
    """Send, read the account, create a list, find the receipt of ``sms_id`` (an SMS sent before the run, so
    that its receipt is there), then look for replies to the send."""
    credentials = {"allMySmsApi": CREDENTIAL}
    return {
        "id": "amsSendAndRead01",
        "name": "Send an SMS, read the account, create a list, find a receipt",
        "active": False,
        "settings": {},
        "nodes": [
            {
                "id": "0b5f1c1e-1d0a-4f4e-8a0e-5c1f0d2a3b41",
                "name": "Start",
                "type": "n8n-nodes-base.manualTrigger",
                "typeVersion": 1,
                "position": [0, 0],
                "parameters": {},
            },
            {
                "id": "0b5f1c1e-1d0a-4f4e-8a0e-5c1f0d2a3b42",
                "name": "Send",
                "type": "CUSTOM.allMySms",
                "typeVersion": 1,
                "position": [220, 0],
                "credentials": credentials,
                "parameters": {"resource": "sms", "operation": "send_sms", "message": message, "recipients": recipient},
            },
            {
                "id": "0b5f1c1e-1d0a-4f4e-8a0e-5c1f0d2a3b43",
                "name": "Account",
                "type": "CUSTOM.allMySms",
                "typeVersion": 1,
                "position": [440, 0],
                "credentials": credentials,
                "parameters": {"resource": "account", "operation": "get_account"},
            },
            {
                "id": "0b5f1c1e-1d0a-4f4e-8a0e-5c1f0d2a3b45",
                "name": "List",
                "type": "CUSTOM.allMySms",
                "typeVersion": 1,
                "position": [660, 0],
                "credentials": credentials,
                "parameters": {
                    "resource": "contact_list",
                    "operation": "create_list",
                    "name": LIST_NAME,
                    "additionalFields": {"fields": "Firstname, City"},
                },
            },
            {
                "id": "0b5f1c1e-1d0a-4f4e-8a0e-5c1f0d2a3b46",
                "name": "Status",
                "type": "CUSTOM.allMySms",
                "typeVersion": 1,
                "position": [880, 0],
                "credentials": credentials,
                "parameters": {"resource": "sms_status", "operation": "find_sms_status", "sms_id": sms_id},
            },
            {
                # A search nobody answered: its empty list is no item, how n8n says "nothing found".
                "id": "0b5f1c1e-1d0a-4f4e-8a0e-5c1f0d2a3b44",
                "name": "Replies",
                "type": "CUSTOM.allMySms",
                "typeVersion": 1,
                "position": [1100, 0],
                "credentials": credentials,
                "parameters": {
                    "resource": "reply",
                    "operation": "find_replies",
                    "campaign_id": "={{ $('Send').first().json.campaign_id }}",
                },
            },
        ],
        "connections": {
            "Start": {"main": [[{"node": "Send", "type": "main", "index": 0}]]},
            "Send": {"main": [[{"node": "Account", "type": "main", "index": 0}]]},
            "Account": {"main": [[{"node": "List", "type": "main", "index": 0}]]},
            "List": {"main": [[{"node": "Status", "type": "main", "index": 0}]]},
            # Last: a search that finds nothing gives no item, and the nodes after it would not run.
            "Status": {"main": [[{"node": "Replies", "type": "main", "index": 0}]]},
        },
    }


def _outputs(stdout: str) -> dict:
    """Each node's output items, from what `n8n execute --rawOutput` prints (the run data as JSON, logged at
    level info among other lines)."""
    start = stdout.index("\n{\n") + 1 if not stdout.startswith("{") else 0
    run, _ = json.JSONDecoder().raw_decode(stdout[start:])
    data = run["data"]
    nodes = data["resultData"]["runData"]
    return {name: [item["json"] for item in runs[-1]["data"]["main"][0]] for name, runs in nodes.items()}


def test_a_workflow_in_n8n_sends_reads_the_account_creates_a_list_and_finds_a_receipt_through_the_connector(
    package, n8n, live_service, sandbox, tmp_path
):
    env = _n8n_env(tmp_path, _custom_node(package, n8n, tmp_path))
    binary = str(n8n / "node_modules" / ".bin" / "n8n")
    (tmp_path / "credentials.json").write_text(json.dumps(_credentials(live_service.url)))
    # A number ending in 98 is never delivered in the sandbox: a receipt known in advance.
    earlier = live_service.action("send_sms", {"message": "Earlier send", "recipients": ["+33611111198"]}).json()
    sms_id = earlier["sms_ids"][0]["sms_id"]
    receipt = wait_for(lambda: sandbox.state.sms_ack("demo", sms_id), what="the earlier SMS's receipt")
    message = "Parcel ready at the front desk (n8n platform check)"
    workflow = _send_and_read_workflow("+33611111111", message, sms_id)
    (tmp_path / "workflow.json").write_text(json.dumps([workflow]))
    _run([binary, "import:credentials", f"--input={tmp_path / 'credentials.json'}"], tmp_path, env)
    _run([binary, "import:workflow", f"--input={tmp_path / 'workflow.json'}"], tmp_path, env)
    ran = _run([binary, "execute", "--id=amsSendAndRead01", "--rawOutput"], tmp_path, env)

    sent = [c for c in sandbox.state.campaigns("demo") if c.message == message]
    assert len(sent) == 1 and sent[0].numbers == ("33611111111",), sent
    outputs = _outputs(ran.stdout)
    assert outputs["Send"][0]["campaign_id"] == sent[0].id
    account = outputs["Account"][0]
    assert account["login"] == "demo" and account["credits"] == sandbox.state.credits("demo")
    assert outputs["List"] == [
        {
            "id": LIST_NAME,
            "name": LIST_NAME,
            "fields": ["Firstname", "City"],
            "locked": False,
            "status_text": outputs["List"][0]["status_text"],
        }
    ]
    assert [(found["listName"], found["locked"]) for found in sandbox.state.contact_lists.all("demo")] == [
        (LIST_NAME, "0")
    ]
    assert [(found["sms_id"], found["phone_number"], found["status_code"]) for found in outputs["Status"]] == [
        (sms_id, "+33611111198", int(receipt["statut"]))
    ]
    assert outputs["Status"][0]["status_code"] == 2
    assert outputs["Replies"] == []


REPLIES_WORKFLOW = "amsOnReply00001"
WEBHOOK_ID = "5d2c8f0e-7a41-4b6e-9c3d-1f0a2b4c6d8e"


def _reply_workflow() -> dict:
    return {
        "id": REPLIES_WORKFLOW,
        "name": "On an SMS reply",
        "active": False,
        "settings": {},
        "nodes": [
            {
                "id": "0b5f1c1e-1d0a-4f4e-8a0e-5c1f0d2a3b44",
                "name": "Reply",
                "type": "CUSTOM.allMySmsTrigger",
                "typeVersion": 1,
                "position": [0, 0],
                "webhookId": WEBHOOK_ID,
                "credentials": {"allMySmsApi": CREDENTIAL},
                "parameters": {"event": "reply_received"},
            }
        ],
        "connections": {},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _running_n8n(binary: str, env: dict, folder: Path, port: int):
    """``n8n start`` on loopback, stopped (with whatever it started) on the way out."""
    log = open(folder / "n8n.log", "w")
    process = subprocess.Popen(
        [binary, "start"],
        cwd=folder,
        env={
            **env,
            "N8N_PORT": str(port),
            "N8N_LISTEN_ADDRESS": "127.0.0.1",
            "WEBHOOK_URL": f"http://127.0.0.1:{port}/",
            "N8N_SECURE_COOKIE": "false",
            "N8N_PERSONALIZATION_ENABLED": "false",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def ready():
            said = (folder / "n8n.log").read_text()
            assert process.poll() is None, said[-3000:]
            # Its last word on start-up: /healthz and even /rest answer while the rest is still being set up.
            return "Editor is now accessible" in said

        wait_for(ready, timeout=180, what="n8n to start")
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        log.close()


def test_an_n8n_trigger_subscribes_on_activation_runs_on_a_signed_reply_only_and_unsubscribes(
    package, n8n, live_service, sandbox, tmp_path
):
    env = _n8n_env(tmp_path, _custom_node(package, n8n, tmp_path))
    binary = str(n8n / "node_modules" / ".bin" / "n8n")
    (tmp_path / "credentials.json").write_text(json.dumps(_credentials(live_service.url)))
    (tmp_path / "workflow.json").write_text(json.dumps([_reply_workflow()]))
    _run([binary, "import:credentials", f"--input={tmp_path / 'credentials.json'}"], tmp_path, env)
    _run([binary, "import:workflow", f"--input={tmp_path / 'workflow.json'}"], tmp_path, env)
    subscriptions = lambda: live_service.get("/v1/triggers/reply_received/subscriptions").json()  # noqa: E731
    port = _free_port()
    rest = f"http://127.0.0.1:{port}/rest"
    with _running_n8n(binary, env, tmp_path, port):
        user = requests.Session()
        user.headers["browser-id"] = "platform-check"
        owner = user.post(
            f"{rest}/owner/setup",
            timeout=30,
            json={
                "email": "owner@example.com",
                "firstName": "Platform",
                "lastName": "Check",
                "password": "Pl4tform-check",
            },
        )
        assert owner.status_code == 200, owner.text
        version = user.get(f"{rest}/workflows/{REPLIES_WORKFLOW}", timeout=30).json()["data"]["versionId"]
        activated = user.post(f"{rest}/workflows/{REPLIES_WORKFLOW}/activate", json={"versionId": version}, timeout=60)
        assert activated.status_code == 200, activated.text

        subscribed = wait_for(subscriptions, timeout=30, what="the trigger's subscription")
        assert [s["target_url"] for s in subscribed] == [f"http://127.0.0.1:{port}/webhook/{WEBHOOK_ID}/webhook"]

        def executions():
            found = user.get(
                f"{rest}/executions", timeout=30, params={"filter": json.dumps({"workflowId": REPLIES_WORKFLOW})}
            ).json()["data"]
            return found["results"]

        # Anyone who learns the URL can post to it: without the secret n8n answers 401 and runs nothing.
        forged = requests.post(
            subscribed[0]["target_url"],
            timeout=30,
            json={"type": "sms.reply_received"},
            headers={
                "webhook-id": "msg_forged",
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
            },
        )
        assert forged.status_code == 401 and "signature" in forged.json()["error"]

        live_service.action("send_sms", {"message": "Table for two at 8?", "recipients": ["+33622222222"]})
        sandbox.state.receive_reply("demo", "+33622222222", "Yes, see you at 8")
        ran = wait_for(
            lambda: [e for e in executions() if e["status"] == "success"],
            timeout=60,
            what="n8n's execution of the reply",
        )
        assert len(executions()) == 1, "the forged event started an execution"
        detail = user.get(f"{rest}/executions/{ran[0]['id']}", timeout=30).json()["data"]
        assert "Yes, see you at 8" in detail["data"] and "sms.reply_received" in detail["data"]

        deactivated = user.post(f"{rest}/workflows/{REPLIES_WORKFLOW}/deactivate", timeout=60)
        assert deactivated.status_code == 200, deactivated.text
        assert subscriptions() == []

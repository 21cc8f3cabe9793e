"""Platform exports: generated from the manifest, deterministic, snapshot-tested, and proven by each
platform's own tooling where it runs offline (OpenAPI validator; Zapier's schema and app tester)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate as validate_openapi

from connector import OPERATOR_BLUEPRINTS, create_app, exports
from connector.description import manifest as manifest_module
from connector.events import signing
from connector.exports import openapi
from tests.conftest import connector_settings, require

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).parent / "golden" / "exports"
BASE_URL = "https://connector.example.com"


@pytest.fixture(scope="module")
def manifest():
    return manifest_module.load()


@pytest.mark.parametrize("platform", sorted(exports.platforms()))
def test_each_export_matches_its_snapshot(manifest, platform):
    """UPDATE_SNAPSHOTS=1 rewrites them after a deliberate change (then read the diff)."""
    rendered = exports.render(platform, manifest, BASE_URL)
    folder = SNAPSHOTS / platform
    if os.environ.get("UPDATE_SNAPSHOTS"):
        shutil.rmtree(folder, ignore_errors=True)
        exports.write(platform, manifest, folder, BASE_URL)
    on_disk = {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    assert sorted(on_disk) == sorted(rendered), "files differ: run UPDATE_SNAPSHOTS=1 pytest tests/test_exports.py"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{platform}/{name} changed: run UPDATE_SNAPSHOTS=1 pytest tests/test_exports.py"


@pytest.mark.parametrize("platform", sorted(exports.platforms()))
def test_exports_are_the_same_bytes_every_time(manifest, platform, tmp_path):
    first = exports.write(platform, manifest, tmp_path / "a", BASE_URL)
    second = exports.write(platform, manifest_module.load(), tmp_path / "b", BASE_URL)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_a_change_to_the_manifest_reaches_every_export_with_no_other_edit(tmp_path):
    raw = yaml.safe_load((ROOT / "manifest.yaml").read_text(encoding="utf-8"))
    raw["actions"][0]["label"] = "Send a Text Message Right Now"
    changed = tmp_path / "manifest.yaml"
    changed.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    edited = manifest_module.load(changed, ROOT / "schemas")
    for platform in exports.platforms():
        text = "".join(exports.render(platform, edited, BASE_URL).values())
        assert "Send a Text Message Right Now" in text, platform


def test_the_base_url_is_an_option_of_every_export(manifest):
    for platform in exports.platforms():
        text = "".join(exports.render(platform, manifest, "https://sms.acme.test").values())
        # Swagger 2.0 (Power Automate) splits it into scheme and host.
        assert "sms.acme.test" in text and "connector.example.com" not in text, platform


def test_the_cli_lists_platforms_and_writes_one(tmp_path):
    listed = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "connector"), "export", "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ALLMYSMS_BASE_URL": "http://127.0.0.1:1"},
    )
    if listed.returncode == 127 or not (ROOT / ".venv" / "bin" / "connector").exists():
        require("the connector command is not installed in .venv")
    assert listed.returncode == 0 and "zapier" in listed.stdout and "openapi" in listed.stdout
    wrote = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "connector"),
            "export",
            "openapi",
            str(tmp_path),
            "--base-url",
            "https://sms.acme.test",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrote.returncode == 0, wrote.stderr
    assert json.loads((tmp_path / "openapi.json").read_text())["servers"] == [{"url": "https://sms.acme.test"}]


# --- OpenAPI ---------------------------------------------------------------------------------------


def test_the_openapi_document_is_valid_openapi_3_1(manifest):
    document = openapi.document(manifest, BASE_URL)
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)


def test_every_route_of_the_service_is_in_the_openapi_document_and_nothing_else(app, manifest):
    document = openapi.document(manifest, BASE_URL)
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.partition(".")[0] in OPERATOR_BLUEPRINTS:
            continue  # for the operator (Prometheus, the console), not for platforms
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((method.lower(), path))
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert described == served


def test_openapi_json_is_served_with_the_callers_base_url(api, manifest):
    answer = api.session.get(f"{api.url}/openapi.json", auth=None, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == json.loads(json.dumps(openapi.document(manifest, api.url)))


def test_the_webhooks_section_describes_each_pushed_event_with_its_signature_headers(manifest):
    document = openapi.document(manifest, BASE_URL)
    pushed = {t.event_type for t in manifest.triggers if t.delivery == "push"}
    assert set(document["webhooks"]) == pushed
    for hook in document["webhooks"].values():
        headers = {p["name"] for p in hook["post"]["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}


# --- Zapier: its own schema and app tester, against the live service ---------------------------------


@pytest.fixture(scope="module")
def zapier_app(tmp_path_factory, manifest):
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        require("node and npm are needed to check the Zapier export (Node.js 18 or newer)")
    folder = tmp_path_factory.mktemp("zapier")
    exports.write("zapier", manifest, folder, BASE_URL)
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, f"npm install failed:\n{installed.stdout}\n{installed.stderr}"
    return folder


def test_the_zapier_app_passes_zapiers_own_schema_with_zero_errors(zapier_app):
    checked = subprocess.run(["node", "validate.js"], cwd=zapier_app, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and checked.stdout.strip() == "0 errors", checked.stdout + checked.stderr


def run_node_tests(
    folder: Path, service_url: str, command=("node", "--test", "test/"), env: dict | None = None
) -> subprocess.CompletedProcess:
    """The export's own node tests against ``service_url``; ``command`` as its package.json runs them (a
    folder argument finds no test on Node 22: the Zapier export runs plain `node --test` through `npm test`)."""
    return subprocess.run(
        list(command),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env={**(env or os.environ), "NODE_ENV": "test", "ALLMYSMS_CONNECTOR_URL": service_url},
    )


def test_the_zapier_apps_own_tests_pass_against_the_live_service(zapier_app, live_service):
    ran = run_node_tests(zapier_app, live_service.url, command=("npm", "test"))
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    # 12 against the service, 6 of the hook's signature check.
    assert "# fail 0" in ran.stdout and "# pass 18" in ran.stdout, ran.stdout[-2000:]


# --- dropdowns filled from the account -----------------------------------------------------------------


def test_every_export_offers_the_accounts_contact_lists_as_a_dropdown_for_the_list_name(manifest):
    zapier = exports.render("zapier", manifest, BASE_URL)
    assert '"dynamic": "contact_lists.value.label"' in zapier["creates/add_contact.js"]
    assert (
        '"hidden": true' in zapier["triggers/contact_lists.js"]
        and "/v1/options/contact_lists" in (zapier["triggers/contact_lists.js"])
    )
    assert "require('./triggers/contact_lists')" in zapier["index.js"]

    node = exports.render("n8n", manifest, BASE_URL)["nodes/AllMySms/AllMySms.node.ts"]
    assert node.count('"loadOptionsMethod": "getContactLists"') == 2  # Add or Update Contact, Remove Contact
    assert "async getContactLists(this: ILoadOptionsFunctions)" in node and '"/v1/options/contact_lists"' in node

    make = json.loads(exports.render("make", manifest, BASE_URL)["app.json"])
    rpc = next(r for r in make["rpcs"] if r["name"] == "contactLists")
    assert rpc["communication"]["url"] == "/v1/options/contact_lists"
    for key in ("add_contact", "remove_contact"):
        module = next(m for m in make["modules"] if m["name"] == key)
        parameter = next(p for p in module["mappableParameters"] if p["name"] == "list_name")
        assert parameter["type"] == "select" and parameter["options"] == "rpc://contactLists"

    swagger = json.loads(exports.render("powerautomate", manifest, BASE_URL)["apiDefinition.swagger.json"])
    listing = swagger["paths"]["/v1/options/contact_lists"]["get"]
    assert listing["operationId"] == "ContactLists" and listing["x-ms-visibility"] == "internal"
    body = swagger["paths"]["/v1/actions/add_contact"]["post"]["parameters"][0]["schema"]
    assert body["properties"]["list_name"]["x-ms-dynamic-values"] == {
        "operationId": "ContactLists",
        "value-path": "value",
        "value-title": "label",
    }

    elasticio = exports.render("elasticio", manifest, BASE_URL)
    field = json.loads(elasticio["component.json"])["actions"]["add_contact"]["fields"]["list_name"]
    assert field["viewClass"] == "SelectView" and field["model"] == "getContactLists"
    assert '"model": "getContactLists"' in elasticio["lib/actions/add_contact.js"]

    guide = exports.render("guide", manifest, BASE_URL)["GUIDE.md"]
    assert f"`GET {BASE_URL}/v1/options/contact_lists`" in guide


def test_the_openapi_document_lists_the_choices_and_keeps_the_mark_to_itself(manifest):
    document = openapi.document(manifest, BASE_URL)
    listing = document["paths"]["/v1/options/contact_lists"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert "x-options" not in json.dumps(document["components"]["schemas"])


# --- elastic.io ------------------------------------------------------------------------------------------


def test_the_elasticio_component_describes_credentials_actions_and_both_kinds_of_trigger(manifest):
    from connector.exports import elasticio

    component = elasticio.component(manifest)
    fields = component["credentials"]["fields"]
    assert fields["apiKey"]["viewClass"] == "PasswordFieldView" and fields["login"]["viewClass"] == "TextFieldView"
    for action in manifest.actions:
        described = component["actions"][action.key]
        assert described["main"] == f"./lib/actions/{action.key}.js"
        # A field chosen from a select model at set-up may be left out of the message.
        required = set(manifest.catalog.resolved(action.input).get("required", ())) - set(described.get("fields", {}))
        properties = described["metadata"]["in"]["properties"]
        assert {name for name, prop in properties.items() if prop["required"] is True} == required
        assert "oneOf" not in json.dumps(described["metadata"])
    for trigger in manifest.triggers:
        assert component["triggers"][f"{trigger.key}_polling"]["type"] == "polling"
        if trigger.delivery == "push":
            assert component["triggers"][trigger.key]["type"] == "webhook"
    rendered = exports.render("elasticio", manifest, BASE_URL)
    mains = {t["main"] for t in component["triggers"].values()} | {a["main"] for a in component["actions"].values()}
    assert {m.removeprefix("./") for m in mains} <= set(rendered)
    assert "verifyCredentials.js" in rendered


def test_the_elasticio_modules_run_against_the_live_service(manifest, live_service, tmp_path):
    if not shutil.which("node"):
        require("node is needed to run the elastic.io modules (Node.js 18 or newer)")
    exports.write("elasticio", manifest, tmp_path, BASE_URL)
    ran = run_node_tests(tmp_path, live_service.url)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert "# fail 0" in ran.stdout and "# pass 13" in ran.stdout, ran.stdout[-2000:]


# --- Power Automate ----------------------------------------------------------------------------------


def test_the_power_automate_connector_is_valid_swagger_2_with_webhook_triggers(manifest):
    from openapi_spec_validator.validation import OpenAPIV2SpecValidator

    from connector.exports import powerautomate

    document = powerautomate.document(manifest, BASE_URL)
    validate_openapi(document, cls=OpenAPIV2SpecValidator)
    operations = {
        op["operationId"]: op
        for item in document["paths"].values()
        for key, op in item.items()
        if not key.startswith("x-")
    }
    assert document["x-ms-capabilities"]["testConnection"]["operationId"] in operations
    triggers = {
        path: item["post"] for path, item in document["paths"].items() if "x-ms-trigger" in item.get("post", {})
    }
    assert len(triggers) == len([t for t in manifest.triggers if t.delivery == "push"])
    for path, trigger in triggers.items():
        body = trigger["parameters"][0]["schema"]["properties"]
        assert [name for name, prop in body.items() if prop.get("x-ms-notification-url")] == ["target_url"]
        # beside `post`, as Microsoft's connector schema places it
        assert document["paths"][path]["x-ms-notification-content"]["schema"]["properties"]["data"]["type"] == "object"
        assert "Location" in trigger["responses"]["201"]["headers"]


def test_a_power_automate_subscription_is_removed_by_a_delete_on_its_location(manifest, wired_api):
    from connector.exports import powerautomate

    document = powerautomate.document(manifest, wired_api.url)
    path = next(p for p, item in document["paths"].items() if "x-ms-trigger" in item.get("post", {}))
    created = wired_api.session.post(wired_api.url + path, json={"target_url": "http://127.0.0.1:9/flow"}, timeout=10)
    assert created.status_code == 201
    location = created.headers["Location"]
    assert wired_api.session.delete(location, timeout=10).status_code == 204
    assert wired_api.session.delete(location, timeout=10).status_code == 404


@pytest.fixture
def wired_api(sandbox, serve):
    return serve(create_app(connector_settings(sandbox.url, CONNECTOR_ALLOWED_TARGETS="127.0.0.1")))


# --- Make, Zoho Flow and Blendr.io ---------------------------------------------------------------------


def test_the_make_app_has_a_module_per_action_and_trigger_in_makes_shapes(manifest):
    from connector.exports import make
    from connector.exports.fields import input_fields

    app = make.app(manifest, BASE_URL)
    modules = {m["name"]: m for m in app["modules"]}
    for action in manifest.actions:
        module = modules[action.key]
        assert module["typeOf"] == "action"
        assert (module["communication"]["url"], module["communication"]["method"]) == (action.path, "POST")
        required = {f.key for f in input_fields(manifest.catalog.resolved(action.input)) if f.required}
        assert {p["name"] for p in module["mappableParameters"] if p["required"]} == required
        assert all({"name", "type", "label"} <= set(p) for p in module["mappableParameters"])
    hooks = {h["name"]: h for h in app["webhooks"]}
    for trigger in manifest.triggers:
        module = modules[f"watch_{trigger.key}"]
        if trigger.delivery == "push":
            assert module["typeOf"] == "instant_trigger"
            hook = hooks[module["webhook"]]
            assert hook["attach"]["body"] == {"target_url": "{{webhook.url}}"}
            assert hook["attach"]["response"]["data"]["externalHookId"] == "{{body.id}}"
            assert hook["detach"]["method"] == "DELETE"
            assert hook["detach"]["url"].endswith("/{{webhook.externalHookId}}")
        else:
            assert module["typeOf"] == "trigger"
            assert module["communication"]["response"]["trigger"] == {
                "type": "id",
                "order": "desc",
                "id": "{{item.id}}",
            }
    assert app["base"]["baseUrl"] == BASE_URL


def test_only_actions_send_an_idempotency_key_on_make_and_power_automate(manifest):
    from connector.exports import make, powerautomate

    modules = {m["name"]: m for m in make.app(manifest, BASE_URL)["modules"]}
    keyed = {name for name, m in modules.items() if "Idempotency-Key" in m.get("communication", {}).get("headers", {})}
    assert keyed == {a.key for a in manifest.actions}
    for name in keyed:  # the key goes as a header, never in the body
        assert "idempotency_key" in modules[name]["communication"]["body"]
    document = powerautomate.document(manifest, BASE_URL)
    keyed = {
        op["operationId"]
        for item in document["paths"].values()
        for key, op in item.items()
        if not key.startswith("x-") and any(p["name"] == "Idempotency-Key" for p in op.get("parameters", []))
    }
    assert keyed == {powerautomate._operation_id(a.key) for a in manifest.actions}


def test_the_guide_says_for_every_platform_where_the_idempotency_key_comes_from(manifest):
    guide = exports.render("guide", manifest, BASE_URL)["GUIDE.md"]
    for platform in ("Zapier", "Make", "n8n", "elastic.io", "Power Automate", "Zoho Flow", "Blendr.io"):
        assert f"\n| {platform}" in guide, platform


def test_the_guide_gives_every_endpoint_and_ships_the_openapi_document(manifest):
    rendered = exports.render("guide", manifest, BASE_URL)
    guide = rendered["GUIDE.md"]
    for action in manifest.actions:
        assert f"POST {BASE_URL}{action.path}" in guide
    for trigger in manifest.triggers:
        assert f"{BASE_URL}/v1/triggers/{trigger.key}/events" in guide
    assert json.loads(rendered["openapi.json"]) == json.loads(json.dumps(openapi.document(manifest, BASE_URL)))


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_documented_schemas(live_service, tmp_path):
    """Generated requests for every operation of /openapi.json, against the live service: no 500, every
    status code, content type and body as documented. SCHEMATHESIS_EXAMPLES raises the count per operation."""
    tool = ROOT / ".venv" / "bin" / "schemathesis"
    if not tool.exists():
        tool = shutil.which("schemathesis")
    if not tool:
        require("schemathesis is not installed (pip install -e '.[test]')")
    examples = os.environ.get("SCHEMATHESIS_EXAMPLES", "15")
    ran = subprocess.run(
        [
            str(tool),
            "run",
            f"{live_service.url}/openapi.json",
            "--auth",
            "demo:demo-api-key",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,response_headers_conformance",
            "--max-examples",
            examples,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--workers",
            "1",
            "--seed",
            "20261129",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = ran.stdout[-3000:]
    assert ran.returncode == 0, summary + ran.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary.split("Test cases:")[-1], summary


# --- n8n -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def n8n_package(tmp_path_factory, manifest):
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        require("node and npm are needed to compile the n8n package (Node.js 18 or newer)")
    folder = tmp_path_factory.mktemp("n8n")
    exports.write("n8n", manifest, folder, BASE_URL)
    # Types are all the build needs: no native add-on of n8n-workflow's dependencies is built.
    installed = subprocess.run(
        [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    built = subprocess.run([npm, "run", "--silent", "build"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return folder


def test_the_n8n_package_compiles_against_n8n_workflow_types_and_lists_what_it_built(n8n_package, manifest):
    declared = json.loads((n8n_package / "package.json").read_text())["n8n"]
    for path in declared["credentials"] + declared["nodes"]:
        assert (n8n_package / path).is_file(), path
    shown = subprocess.run(
        [
            "node",
            "-e",
            """
        const { AllMySms } = require('./dist/nodes/AllMySms/AllMySms.node.js');
        const { AllMySmsTrigger } = require('./dist/nodes/AllMySms/AllMySmsTrigger.node.js');
        const { AllMySmsApi } = require('./dist/credentials/AllMySmsApi.credentials.js');
        const operations = new AllMySms().description.properties.filter((p) => p.name === 'operation')
          .flatMap((p) => p.options.map((o) => [o.value, o.routing.request.method, o.routing.request.url]));
        const events = new AllMySmsTrigger().description.properties[0].options.map((o) => o.value);
        console.log(JSON.stringify({ operations, events, test: new AllMySmsApi().test.request.url }));
    """,
        ],
        cwd=n8n_package,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    described = json.loads(shown.stdout)
    operations = (*manifest.actions, *manifest.searches)
    assert sorted(described["operations"]) == sorted([a.key, "POST", a.path] for a in operations)
    assert described["events"] == [t.key for t in manifest.triggers if t.delivery == "push"]
    assert described["test"] == manifest.auth["test"]["path"]


N8N_KEYS = """
// n8n's side of a declarative request, played here: the preSend hook of each operation, called as n8n's
// routing calls it, for one item of one run of the node in one execution. `store` plays the execution's
// context data: n8n keeps one per execution, and Retry On Fail runs the node again with the same one.
const { AllMySms } = require('./dist/nodes/AllMySms/AllMySms.node.js');
// Searches send no key: only operations with a preSend hook.
const operations = new AllMySms().description.properties.filter((p) => p.name === 'operation')
  .flatMap((p) => p.options).filter((o) => o.routing.send);
const execution = (over = {}) => ({ instance: 'a'.repeat(64), workflow: 'Wf7kLq2ZpR9xYb3N', id: '1041', run: 0,
  item: 0, store: {}, ...over });
const keyFor = async (operation, e) => {
  const context = {
    getExecutionId: () => e.id,
    getWorkflow: () => ({ id: e.workflow, name: 'SMS on new order', active: true }),
    getNode: () => ({ id: '6f1c2b9e-0d4a-4c1e-9a57-2b8f0c3d1e6a', name: 'AllMySMS' }),
    getItemIndex: () => e.item,
    getWorkflowDataProxy: () => ({ $thisRunIndex: e.run }),
    getContext: (type) => {
      if (type !== 'node') throw new Error(`unexpected context ${type}`);
      e.store.node = e.store.node || {};
      return e.store.node;
    },
  };
  if (e.instance !== undefined) context.getInstanceId = () => e.instance;  // n8n 1.0 to 1.13 have none
  let options = { headers: { Accept: 'application/json' } };
  for (const hook of operation.routing.send.preSend) options = await hook.call(context, options);
  return options.headers['Idempotency-Key'] || null;
};
(async () => {
  const keys = {};
  for (const operation of operations) {
    const first = execution();
    const old = execution({ instance: undefined });
    keys[operation.value] = {
      first: await keyFor(operation, first),
      retried: await keyFor(operation, { ...first }),  // Retry On Fail: the same execution and context
      otherInstance: await keyFor(operation, execution({ instance: 'b'.repeat(64) })),
      otherWorkflow: await keyFor(operation, execution({ workflow: 'Hq4TmW8cVn1sJd6E' })),
      // Another instance with the same encryption key (so the same instance id), the same workflow
      // imported, its execution counter at the same number: only the execution's own context differs.
      sameIdsElsewhere: await keyFor(operation, execution()),
      nextExecution: await keyFor(operation, execution({ id: '1042' })),
      nextRun: await keyFor(operation, { ...first, run: 1 }),
      nextItem: await keyFor(operation, { ...first, item: 1 }),
      withoutExecution: await keyFor(operation, execution({ id: '' })),
      oldN8n: await keyFor(operation, old),
      oldN8nRetried: await keyFor(operation, { ...old }),
      oldN8nElsewhere: await keyFor(operation, execution({ instance: undefined })),
    };
  }
  console.log(JSON.stringify(keys));
})().catch((error) => { console.error(error); process.exit(1); });
"""


def test_the_n8n_key_names_instance_workflow_and_execution_and_is_kept_by_retry_on_fail(n8n_package, manifest):
    """Two n8n instances running the same imported workflow count executions from 1 each: their keys must
    differ (instance id, workflow id, and a random part per execution), or the second would be answered
    with the first one's campaign and send nothing."""
    script = n8n_package / "keys.js"
    script.write_text(N8N_KEYS, encoding="utf-8")
    ran = subprocess.run(["node", str(script)], cwd=n8n_package, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr[-3000:]
    keys = json.loads(ran.stdout)
    assert sorted(keys) == sorted(a.key for a in manifest.actions)
    node = "6f1c2b9e-0d4a-4c1e-9a57-2b8f0c3d1e6a"
    for k in keys.values():
        assert re.fullmatch(rf"n8n:{'a' * 64}:Wf7kLq2ZpR9xYb3N:1041:{node}:0:0:[0-9a-f]{{16}}", k["first"]), k["first"]
        assert k["retried"] == k["first"] and k["oldN8nRetried"] == k["oldN8n"]
        different = [
            k[name]
            for name in (
                "first",
                "otherInstance",
                "otherWorkflow",
                "sameIdsElsewhere",
                "nextExecution",
                "nextRun",
                "nextItem",
                "oldN8n",
                "oldN8nElsewhere",
            )
        ]
        assert len(set(different)) == len(different), different
        assert re.fullmatch(rf"n8n::Wf7kLq2ZpR9xYb3N:1041:{node}:0:0:[0-9a-f]{{16}}", k["oldN8n"]), k["oldN8n"]
        assert k["withoutExecution"] is None
        assert all(re.fullmatch(r"[\x21-\x7e]{1,255}", key) for key in different)


N8N_HOOKS = """
// n8n's side of a trigger node, played here: static data, parameters, the webhook URL, and
// httpRequestWithAuthentication sending Basic auth as the credentials' authenticate block says.
const { AllMySmsTrigger } = require('./dist/nodes/AllMySms/AllMySmsTrigger.node.js');
const staticData = {};
const credentials = { login: 'demo', apiKey: 'demo-api-key', baseUrl: process.env.SERVICE };
const context = {
  getWorkflowStaticData: () => staticData,
  getNodeParameter: () => 'delivery_receipt',
  getNodeWebhookUrl: () => 'http://127.0.0.1:9/n8n-webhook',
  getCredentials: async () => credentials,
  helpers: {
    httpRequestWithAuthentication: async function (name, options) {
      const response = await fetch(options.baseURL + options.url, {
        method: options.method,
        headers: { 'Content-Type': 'application/json',
                   Authorization: 'Basic ' + Buffer.from(`${credentials.login}:${credentials.apiKey}`).toString('base64') },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
      if (!response.ok) {  // as n8n's NodeApiError carries it
        const error = new Error(`HTTP ${response.status}`);
        error.httpCode = String(response.status);
        throw error;
      }
      return response.status === 204 ? {} : response.json();
    },
  },
};
(async () => {
  const hooks = new AllMySmsTrigger().webhookMethods.default;
  const steps = [await hooks.checkExists.call(context)];
  steps.push(await hooks.create.call(context), staticData.subscriptionId, staticData.secret);
  steps.push(await hooks.checkExists.call(context));
  steps.push(await hooks.delete.call(context), staticData.subscriptionId === undefined && staticData.secret === undefined);
  Object.assign(staticData, { subscriptionId: steps[2], secret: steps[3] });
  steps.push(await hooks.checkExists.call(context), staticData.subscriptionId === undefined);
  // Gone upstream already: delete says done (404 is what was asked for) and forgets it.
  Object.assign(staticData, { subscriptionId: steps[2], secret: steps[3] });
  steps.push(await hooks.delete.call(context), staticData.subscriptionId === undefined);
  console.log(JSON.stringify(steps));
})().catch((error) => { console.error(error); process.exit(1); });
"""  # noqa: E501 (JavaScript run as it is)


N8N_LOAD_OPTIONS = """
// n8n's side of a dropdown, played here: the credentials, and httpRequestWithAuthentication with Basic auth.
const { AllMySms } = require('./dist/nodes/AllMySms/AllMySms.node.js');
const credentials = { login: 'demo', apiKey: 'demo-api-key', baseUrl: process.env.SERVICE };
const context = {
  getCredentials: async () => credentials,
  helpers: {
    httpRequestWithAuthentication: async function (name, options) {
      const response = await fetch(options.baseURL + options.url, {
        method: options.method,
        headers: { Authorization: 'Basic ' + Buffer.from(`${credentials.login}:${credentials.apiKey}`).toString('base64') },
      });
      return response.json();
    },
  },
};
(async () => {
  console.log(JSON.stringify(await new AllMySms().methods.loadOptions.getContactLists.call(context)));
})().catch((error) => { console.error(error); process.exit(1); });
"""  # noqa: E501 (JavaScript run as it is)


def test_the_n8n_list_name_dropdown_loads_the_accounts_lists_from_the_live_service(n8n_package, live_service):
    assert live_service.action("create_list", {"name": "Clients"}).status_code == 200
    script = n8n_package / "load_options.js"
    script.write_text(N8N_LOAD_OPTIONS, encoding="utf-8")
    ran = subprocess.run(
        ["node", str(script)],
        cwd=n8n_package,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SERVICE": live_service.url},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert {"name": "Clients (0 contacts)", "value": "Clients"} in json.loads(ran.stdout)


def test_the_n8n_trigger_subscribes_checks_and_unsubscribes_against_the_live_service(n8n_package, live_service):
    script = n8n_package / "hooks.js"
    script.write_text(N8N_HOOKS, encoding="utf-8")
    ran = subprocess.run(
        ["node", str(script)],
        cwd=n8n_package,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SERVICE": live_service.url},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    (
        before,
        created,
        subscription_id,
        secret,
        exists,
        deleted,
        forgotten,
        exists_after,
        forgotten_after,
        deleted_again,
        forgotten_again,
    ) = json.loads(ran.stdout)
    assert (before, created, exists, deleted, forgotten) == (False, True, True, True, True)
    assert subscription_id.startswith("sub_") and secret.startswith("whsec_")
    assert (deleted_again, forgotten_again) == (True, True)
    assert (exists_after, forgotten_after) == (False, True)  # gone upstream: checkExists says so and forgets it
    assert live_service.get("/v1/triggers/delivery_receipt/subscriptions").json() == []


N8N_WEBHOOK = """
// n8n's side of a webhook call, played here: the node's static data holds the secret create() stored, the
// request carries the raw body n8n keeps beside the parsed one, and the response object records a refusal.
const { AllMySmsTrigger } = require('./dist/nodes/AllMySms/AllMySmsTrigger.node.js');
(async () => {
  const answers = [];
  for (const c of JSON.parse(require('fs').readFileSync(0, 'utf8'))) {
    const refused = {};
    const context = {
      getWorkflowStaticData: () => (c.secret === null ? {} : { subscriptionId: 'sub_1', secret: c.secret }),
      getRequestObject: () => ({ headers: c.headers, rawBody: Buffer.from(c.body, 'utf8') }),
      getResponseObject: () => ({ status(code) { refused.status = code; return this; },
                                  json(body) { refused.body = body; return this; } }),
      getBodyData: () => JSON.parse(c.body),
      helpers: { returnJsonArray: (data) => [{ json: data }] },
    };
    const result = await new AllMySmsTrigger().webhook.call(context);
    answers.push({ started: result.workflowData ? result.workflowData[0].map((i) => i.json) : null,
                   noWebhookResponse: result.noWebhookResponse === true, refused });
  }
  console.log(JSON.stringify(answers));
})().catch((error) => { console.error(error); process.exit(1); });
"""


def test_the_n8n_trigger_starts_only_on_an_event_signed_with_its_secret_within_five_minutes(n8n_package):
    secret, other = signing.new_secret(), signing.new_secret()
    body = json.dumps({"type": "sms.reply", "timestamp": "2026-11-29T22:00:00Z", "data": {"text": "STOP"}})
    now = int(time.time())

    def signed(key=secret, stamp=now, content=body, message="msg_1"):
        return signing.headers(key, message, stamp, content.encode())

    rotated = signed()
    rotated["webhook-signature"] = f"{signed(other)['webhook-signature']} {rotated['webhook-signature']}"
    cases = {
        "good": (secret, signed(), body),
        "rotation, one of two signatures good": (secret, rotated, body),
        "signed with another secret": (secret, signed(other), body),
        "body changed after signing": (secret, signed(), body.replace("STOP", "YES")),
        "stale by more than five minutes": (secret, signed(stamp=now - 360), body),
        "from the future by more than five minutes": (secret, signed(stamp=now + 360), body),
        "no signature header": (secret, {k: v for k, v in signed().items() if k != "webhook-signature"}, body),
        "no secret stored": (None, signed(), body),
    }
    script = n8n_package / "webhook.js"
    script.write_text(N8N_WEBHOOK, encoding="utf-8")
    ran = subprocess.run(
        ["node", str(script)],
        cwd=n8n_package,
        capture_output=True,
        text=True,
        timeout=60,
        input=json.dumps([{"secret": k, "headers": h, "body": b} for k, h, b in cases.values()]),
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    answers = dict(zip(cases, json.loads(ran.stdout)))
    for name in ("good", "rotation, one of two signatures good"):
        assert answers[name] == {"started": [json.loads(body)], "noWebhookResponse": False, "refused": {}}, name
    for name, answer in answers.items():
        if name.startswith(("good", "rotation")):
            continue
        assert answer["started"] is None and answer["noWebhookResponse"], name
        assert answer["refused"]["status"] == 401 and answer["refused"]["body"]["error"], name
        assert secret not in json.dumps(answer), name  # the refusal says why without showing the secret

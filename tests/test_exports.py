"""Platform exports: generated from the manifest, deterministic, snapshot-tested, and proven by each
platform's own tooling where it runs offline (OpenAPI validator; Zapier's schema and app tester)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate as validate_openapi

from connector import create_app, exports, manifest as manifest_module
from connector.exports import openapi
from connector.serving import worker_for
from tests.conftest import connector_settings

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
    on_disk = {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
               for p in sorted(folder.rglob("*")) if p.is_file()}
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
        assert "https://sms.acme.test" in text and BASE_URL not in text, platform


def test_the_cli_lists_platforms_and_writes_one(tmp_path):
    listed = subprocess.run([str(ROOT / ".venv" / "bin" / "connector"), "export", "--list"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "ALLMYSMS_BASE_URL": "http://127.0.0.1:1"})
    if listed.returncode == 127 or not (ROOT / ".venv" / "bin" / "connector").exists():
        pytest.skip("the connector command is not installed in .venv")
    assert listed.returncode == 0 and "zapier" in listed.stdout and "openapi" in listed.stdout
    wrote = subprocess.run([str(ROOT / ".venv" / "bin" / "connector"), "export", "openapi", str(tmp_path),
                            "--base-url", "https://sms.acme.test"], capture_output=True, text=True, timeout=60)
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
        pytest.skip("node and npm are needed to check the Zapier export (Node.js 18 or newer)")
    folder = tmp_path_factory.mktemp("zapier")
    exports.write("zapier", manifest, folder, BASE_URL)
    installed = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder,
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, f"npm install failed:\n{installed.stdout}\n{installed.stderr}"
    return folder


def test_the_zapier_app_passes_zapiers_own_schema_with_zero_errors(zapier_app):
    checked = subprocess.run(["node", "validate.js"], cwd=zapier_app, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and checked.stdout.strip() == "0 errors", checked.stdout + checked.stderr


def test_the_zapier_apps_own_tests_pass_against_the_live_service(zapier_app, sandbox, serve):
    app = create_app(connector_settings(sandbox.url, ALLMYSMS_SANDBOX=True, CONNECTOR_ALLOWED_TARGETS="127.0.0.1",
                                        CONNECTOR_RETRY_SCHEDULE="0,0.2,0.2"))
    worker = worker_for(app.config, app.extensions["connector"].store)
    worker.poll_interval = 0.01
    worker.start()
    try:
        api = serve(app)
        sandbox.state.set_callback_url("demo", api.get("/v1/me").json()["inbound_url"])
        ran = subprocess.run(["node", "--test", "test/"], cwd=zapier_app, capture_output=True, text=True,
                             timeout=300, env={**os.environ, "NODE_ENV": "test", "ALLMYSMS_CONNECTOR_URL": api.url})
    finally:
        worker.stop()
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert "# fail 0" in ran.stdout and "# pass 8" in ran.stdout, ran.stdout[-2000:]

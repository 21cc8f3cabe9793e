"""The Zapier export in Zapier's own CLI (zapier-platform-cli, on the Node it requires): `validate
--without-style` and `build` succeed with no login and no Zapier server, and the app's own tests pass under
`npm test` against the live connector."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from connector import exports
from connector.description import manifest as manifest_module
from connector.exports import zapier
from connector.web import operations
from tests.platforms.conftest import installed, node_env
from tests.test_exports import run_node_tests

BASE_URL = "https://connector.example.com"
CLI = {"name": "allmysms-zapier-cli", "private": True, "dependencies": {"zapier-platform-cli": zapier.CLI_VERSION}}


@pytest.fixture(scope="module")
def manifest():
    return manifest_module.load()


@pytest.fixture(scope="module")
def app(tmp_path_factory, manifest):
    """The export, its dependencies in place (installed once per package.json, then copied)."""
    folder = tmp_path_factory.mktemp("zapier-app")
    exports.write("zapier", manifest, folder, BASE_URL)
    dependencies = installed("zapier-app", json.loads((folder / "package.json").read_text()), zapier.NODE_MAJOR)
    shutil.copytree(dependencies / "node_modules", folder / "node_modules", symlinks=True)
    shutil.copy(dependencies / "package-lock.json", folder / "package-lock.json")
    return folder


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Runs the CLI in the app's folder, as a user without a Zapier login would (a HOME with no
    ~/.zapierrc), with every call to Zapier's servers pointed at a closed port on 127.0.0.1."""
    home = tmp_path_factory.mktemp("home")
    binary = installed("zapier-cli", CLI, zapier.NODE_MAJOR) / "node_modules" / ".bin" / "zapier-platform"
    env = node_env(
        zapier.NODE_MAJOR, HOME=str(home), DISABLE_ZAPIER_ANALYTICS="1", ZAPIER_BASE_ENDPOINT="http://127.0.0.1:9"
    )
    env.pop("ZAPIER_DEPLOY_KEY", None)

    def run(folder: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(binary), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300)

    return run


def test_zapiers_cli_finds_the_app_structurally_sound(app, cli):
    checked = cli(app, "validate", "--without-style")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "structurally sound" in checked.stdout, checked.stdout[-3000:]


def test_zapiers_cli_builds_the_app_with_its_files_and_dependencies_only(app, cli, manifest):
    # Without --skip-validation the build asks Zapier's server for style checks: the validate test above
    # is the same schema check, offline. The dependencies are the ones installed above.
    built = cli(app, "build", "--skip-dep-install", "--skip-validation")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    with zipfile.ZipFile(app / "build" / "build.zip") as archive:
        names = set(archive.namelist())
        definition = json.loads(archive.read("definition.json"))
    own = {name for name in names if not name.startswith("node_modules/")}
    expected = (
        {
            "index.js",
            "package.json",
            "definition.json",
            "zapierwrapper.js",
            "lib/authentication.js",
            "lib/service.js",
            "lib/signature.js",
        }
        | {f"creates/{action.key}.js" for action in manifest.actions}
        | {f"searches/{search.key}.js" for search in manifest.searches}
        | {f"triggers/{trigger.key}.js" for trigger in manifest.triggers}
        | {f"triggers/{op.key}.js" for op in operations.table(manifest) if op.options}  # hidden: dropdowns
    )
    assert own == expected
    # The file the CLI misses on Node >= 22.12 unless .zapierapprc names it.
    assert any(name.endswith("/require.mjs") for name in names)
    assert "node_modules/zapier-platform-core/package.json" in names
    assert set(definition["creates"]) == {action.key for action in manifest.actions}
    assert set(definition["searches"]) == {search.key for search in manifest.searches}
    dropdowns = {op.key for op in operations.table(manifest) if op.options}
    assert set(definition["triggers"]) == {trigger.key for trigger in manifest.triggers} | dropdowns
    assert all(definition["triggers"][key]["display"]["hidden"] for key in dropdowns)
    with zipfile.ZipFile(app / "build" / "source.zip") as source:
        sources = set(source.namelist())
    assert "index.js" in sources and "test/signature.test.js" in sources
    assert not any(name.startswith(("node_modules/", "build/")) for name in sources), ".gitignore keeps them out"


def test_the_apps_own_tests_pass_under_npm_test_on_node_22(app, live_service):
    ran = run_node_tests(app, live_service.url, command=("npm", "test"), env=node_env(zapier.NODE_MAJOR))
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    # 12 against the service (the hook's signature among them), 6 of the signature check alone.
    assert "# fail 0" in ran.stdout and "# pass 18" in ran.stdout, ran.stdout[-2000:]
    assert (
        f"v{zapier.NODE_MAJOR}."
        in subprocess.run(["node", "--version"], env=node_env(zapier.NODE_MAJOR), capture_output=True, text=True).stdout
    )

"""The exporters' template files (connector/exports/templates/): real JavaScript that Node parses as it is,
before and after rendering, filled through named marks only. TypeScript templates are parsed by the
TypeScript compiler in the platform check (tests/platforms/test_n8n.py), which also compiles the package."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from connector import exports
from connector.description import manifest as manifest_module
from connector.exports import files
from tests.conftest import require

TEMPLATES = Path(str(resources.files("connector.exports").joinpath("templates")))
BASE_URL = "https://connector.example.com"


@pytest.fixture(scope="module")
def manifest():
    return manifest_module.load()


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if not found:
        require("node is needed to parse the exports' JavaScript (Node.js 18 or newer)")
    return found


def _template_paths(suffix: str) -> list[str]:
    return sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob(f"*{suffix}"))


def _unparsable(node: str, paths: list[Path]) -> list[str]:
    """What `node --check` says of each file it cannot parse."""
    problems = []
    for path in paths:
        checked = subprocess.run([node, "--check", str(path)], capture_output=True, text=True, timeout=60)
        if checked.returncode != 0:
            problems.append(f"{path}:\n{checked.stderr.strip()}")
    return problems


def test_there_are_javascript_and_typescript_templates_to_check():
    assert "zapier/lib/service.js" in _template_paths(".js")
    assert "elasticio/lib/service.js" in _template_paths(".js")
    assert "n8n/nodes/AllMySms/AllMySmsTrigger.node.ts" in _template_paths(".ts")


def test_every_javascript_template_parses_with_node_as_it_is(node):
    assert _unparsable(node, [TEMPLATES / path for path in _template_paths(".js")]) == []


@pytest.mark.parametrize("platform", ["zapier", "elasticio", "n8n"])
def test_every_javascript_file_of_a_rendered_export_parses_with_node(node, manifest, platform, tmp_path):
    written = [p for p in exports.write(platform, manifest, tmp_path, BASE_URL) if p.suffix == ".js"]
    assert written
    assert _unparsable(node, written) == []


def test_every_template_is_used_by_an_export_and_no_mark_survives_rendering(manifest, monkeypatch):
    read = set()
    original = files.source
    monkeypatch.setattr(files, "source", lambda path: read.add(path) or original(path))
    for platform in exports.platforms():
        for name, text in exports.render(platform, manifest, BASE_URL).items():
            assert "/*= " not in text, f"{platform}/{name}"
    assert sorted(read) == sorted(_template_paths(".js") + _template_paths(".ts"))


def test_a_mark_in_code_takes_its_value_in_place_of_its_stand_in():
    assert files.names("elasticio/lib/actions/action.js") == ["dropdowns", "path"]
    text = files.template("elasticio/lib/actions/action.js", dropdowns="{}", path='"/v1/actions/send_sms"')
    assert "const DROPDOWNS = {};" in text
    assert "call(cfg, 'POST', \"/v1/actions/send_sms\"" in text


def test_a_mark_inside_a_string_takes_its_value_as_text():
    text = files.template("zapier/lib/authentication.js", fields="[]", test_path="/v1/account")
    assert "url: `${BASE_URL}/v1/account`" in text


def test_a_template_refuses_a_missing_value_and_a_value_it_does_not_take():
    with pytest.raises(ValueError, match=r"missing \['path'\]"):
        files.template("elasticio/lib/actions/search.js")
    with pytest.raises(ValueError, match=r"does not take \['paht'\]"):
        files.template("elasticio/lib/actions/search.js", path='"/v1"', paht='"/v1"')

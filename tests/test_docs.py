"""The reference in docs/: built by MkDocs in strict mode, every page present, and the README's links into it
pointing at pages that exist."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
# Markdown links and images, with an optional #anchor: [text](target#anchor)
_LINK = re.compile(r"\]\(([^)\s#]+)(#[^)\s]*)?\)")


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _mkdocs_config() -> dict:
    # mkdocs.yml holds no custom YAML tags, so the plain loader reads it.
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as `mkdocs build --strict` writes it: (its directory, the build's output)."""
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        require("the docs test needs mkdocs and mkdocs-material (pip install -e '.[test]')", module=True)
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stdout[-4000:]
    return out, built.stdout


def test_the_docs_build_in_strict_mode_with_nothing_to_warn_about(site):
    _, output = site
    assert "WARNING" not in output, output


def test_every_page_of_docs_is_in_the_nav_and_in_the_built_site(site):
    out, _ = site
    pages = _nav_pages(_mkdocs_config()["nav"])
    assert sorted(pages) == sorted(path.name for path in (ROOT / "docs").glob("*.md"))
    for page in pages:
        built = out / ("index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html")
        assert built.is_file(), f"{page} was not built"
        assert "<h1" in built.read_text(encoding="utf-8"), f"{page} has no title"


def test_the_security_page_carries_security_md(site):
    out, _ = site
    page = (out / "security" / "index.html").read_text(encoding="utf-8")
    assert "Rotating secrets" in page and "--8&lt;--" not in page and "--8<--" not in page


def test_the_generated_sections_are_in_the_site(site):
    out, _ = site
    assert "POST /v1/actions/send_sms" in (out / "actions" / "index.html").read_text(encoding="utf-8")
    assert "CONNECTOR_ALLOWED_TARGETS" in (out / "configuration" / "index.html").read_text(encoding="utf-8")
    assert "delivery.py" in (out / "layout" / "index.html").read_text(encoding="utf-8")


def test_every_relative_link_of_the_readme_and_bench_results_points_at_a_file_that_exists():
    for document in (ROOT / "README.md", ROOT / "bench" / "RESULTS.md"):
        text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.S)
        targets = [m.group(1) for m in _LINK.finditer(text) if not m.group(1).startswith(("http:", "https:"))]
        missing = [t for t in targets if not (document.parent / t).exists()]
        assert not missing, f"{document.name} links to files that do not exist: {missing}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/index.md" in readme and "bench/RESULTS.md" in readme and "SECURITY.md" in readme


def test_the_readme_anchors_into_docs_exist_in_the_pages(site):
    out, _ = site
    readme = re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    for match in _LINK.finditer(readme):
        target, anchor = match.groups()
        if target.startswith("docs/") and anchor:
            page = Path(target).stem
            html = (out / ("" if page == "index" else page) / "index.html").read_text(encoding="utf-8")
            assert f'id="{anchor[1:]}"' in html, f"README links to {target}{anchor}, which has no such anchor"

"""The generated sections of README.md and docs/*.md, rendered from the manifest, the schemas, the settings
schema, the exporters and the code's own docstrings."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from connector import config
from connector.description.manifest import Action, Manifest, Search

_SECTION = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# The order a request takes through the packages; a package missing here is listed after them.
_PACKAGE_ORDER = (
    "description",
    "web",
    "sending",
    "events",
    "storage",
    "observe",
    "console",
    "exports",
    "ops",
    "sandbox",
)


def documents(root: Path) -> list[Path]:
    """The files that may hold generated sections: README.md and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def update_all(root: Path, manifest: Manifest) -> list[Path]:
    """Rewrite the generated sections of every document under ``root``; the files that changed."""
    changed = []
    for path in documents(root):
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        updated = update_text(text, manifest)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


def update_text(text: str, manifest: Manifest) -> str:
    """``text`` with every generated section rewritten; the rest is left as it is."""
    renderers = {
        "actions": lambda: actions(manifest),
        "searches": lambda: searches(manifest),
        "config": config.markdown_table,
        "retries": retries,
        "packages": packages,
        "modules": modules,
    }

    def replace(match):
        name = match.group(2)
        if name not in renderers:
            raise ValueError(f"a generated section {name!r} that nothing generates")
        return f"{match.group(1)}{renderers[name]().rstrip()}\n{match.group(4)}"

    return _SECTION.sub(replace, text)


def section_names(text: str) -> list[str]:
    """The names of the generated sections in ``text``, in order."""
    return [match.group(2) for match in _SECTION.finditer(text)]


def retries() -> str:
    """Where each platform export takes its Idempotency-Key from, as each exporter states it."""
    from connector.exports import guide
    from connector.exports import retries as key_sources

    return "\n".join(key_sources.table(guide.key_sources()))


def packages() -> str:
    """Each package of ``connector/`` with what its docstring says it holds."""
    out = ["| Package | What it holds |", "|---|---|"]
    for package in _packages():
        out.append(f"| `connector/{package.name}/` | {_summary(package / '__init__.py')} |")
    return "\n".join(out)


def modules() -> str:
    """Every module of ``connector/``, package by package, with the first paragraph of its docstring."""
    out = ["## `connector/`", "", "| Module | What it is for |", "|---|---|"]
    out += [f"| `{path.name}` | {_summary(path)} |" for path in sorted(_PACKAGE_ROOT.glob("*.py"))]
    for package in _packages():
        out += [
            "",
            f"## `connector/{package.name}/`",
            "",
            _summary(package / "__init__.py"),
            "",
            "| Module | What it is for |",
            "|---|---|",
        ]
        out += [
            f"| `{path.name}` | {_summary(path)} |"
            for path in sorted(package.glob("*.py"))
            if path.name != "__init__.py"
        ]
    return "\n".join(out)


def _packages() -> list[Path]:
    found = {path.parent.name: path.parent for path in _PACKAGE_ROOT.glob("*/__init__.py")}
    ordered = [name for name in _PACKAGE_ORDER if name in found]
    return [found[name] for name in ordered + sorted(set(found) - set(ordered))]


def _summary(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(docstring.split("\n\n")[0].split())
    return first.replace("|", "\\|") or "(no docstring)"


def actions(manifest: Manifest) -> str:
    return _requests(manifest, manifest.actions, "Result (sample)", lambda action: action.sample)


def searches(manifest: Manifest) -> str:
    """Each search like an action, its sample shown as the list it answers."""
    return _requests(manifest, manifest.searches, "Items found (sample; `[]` when nothing is found)", _found)


def _found(search: Search) -> list[dict[str, Any]]:
    return [search.sample]


def _requests(
    manifest: Manifest,
    described: Sequence[Action | Search],
    answered: str,
    sample_of: Callable[[Any], object],
) -> str:
    """Each action or search of ``described``: its route, description, fields, a curl example and a sample."""
    out = []
    for action in described:
        schema = manifest.catalog.resolved(action.input)
        example = (manifest.catalog.documents[action.input].get("examples") or [{}])[0]
        out += [f"## {action.label} — `POST {action.path}`", "", action.description.strip(), ""]
        fields = schema.get("properties", {})
        if fields:
            required = set(schema.get("required", []))
            out += ["| Field | Type | Required | Description |", "|---|---|---|---|"]
            for name, prop in fields.items():
                text = (prop.get("description") or prop.get("title") or "").replace("|", "\\|").replace("\n", " ")
                if "enum" in prop:
                    text += " One of: " + ", ".join(f"`{v}`" for v in prop["enum"]) + "."
                out.append(f"| `{name}` | {_type(prop)} | {'yes' if name in required else 'no'} | {text} |")
            out.append("")
        body = json.dumps(example, ensure_ascii=False)
        out += [
            "```sh",
            "curl -s -u demo:demo-api-key -H 'Content-Type: application/json' \\",
            f"  -d '{body}' \\",
            f"  http://127.0.0.1:8000{action.path}",
            "```",
            "",
            f"{answered}:",
            "",
            "```json",
            json.dumps(sample_of(action), indent=2, ensure_ascii=False),
            "```",
            "",
        ]
    return "\n".join(out)


def _type(prop: dict) -> str:
    if "oneOf" in prop:
        return " or ".join(dict.fromkeys(_type(p) for p in prop["oneOf"]))
    kind = prop.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        inner = _type(prop.get("items", {}))
        return f"list of ({inner})" if " or " in inner else f"list of {inner}"
    return kind

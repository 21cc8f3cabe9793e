"""The README's reference sections, generated from the manifest, the schemas and the settings schema."""

from __future__ import annotations

import json
import re

from connector import config
from connector.description.manifest import Manifest

_SECTION = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


def update_readme(text: str, manifest: Manifest) -> str:
    """``text`` with every generated section rewritten; the rest is left as it is."""
    renderers = {"actions": lambda: actions(manifest), "config": config.markdown_table,
                 "retries": retries}

    def replace(match):
        name = match.group(2)
        if name not in renderers:
            raise ValueError(f"README has a generated section {name!r} that nothing generates")
        return f"{match.group(1)}{renderers[name]().rstrip()}\n{match.group(4)}"

    return _SECTION.sub(replace, text)


def retries() -> str:
    """Where each platform export takes its Idempotency-Key from, as each exporter states it."""
    from connector.exports import guide, retries as key_sources
    return "\n".join(key_sources.table(guide.key_sources()))


def actions(manifest: Manifest) -> str:
    out = []
    for action in manifest.actions:
        schema = manifest.catalog.resolved(action.input)
        example = (manifest.catalog.documents[action.input].get("examples") or [{}])[0]
        out += [f"### {action.label} — `POST {action.path}`", "", action.description.strip(), ""]
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
        out += ["```sh", f"curl -s -u demo:demo-api-key -H 'Content-Type: application/json' \\",
                f"  -d '{body}' \\", f"  http://127.0.0.1:8000{action.path}", "```", "",
                "Result (sample):", "", "```json", json.dumps(action.sample, indent=2, ensure_ascii=False), "```", ""]
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

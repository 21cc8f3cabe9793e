"""The JSON Schemas under schemas/: loaded once, cross-referenced, and served as validators."""

from __future__ import annotations

import copy
import json
from functools import cached_property
from pathlib import Path
from urllib.parse import urljoin

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE_URI = "https://allmysms-connector.example/schemas/"


class Catalog:
    """Every schema file keyed by its path relative to schemas/ (e.g. ``actions/send_sms.input.json``)."""

    def __init__(self, root: Path):
        self.root = root
        self.documents: dict[str, dict] = {}
        self.problems: list[str] = []
        for path in sorted(root.rglob("*.json")):
            name = path.relative_to(root).as_posix()
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                self.problems.append(f"schemas/{name}: not readable JSON ({exc})")
                continue
            if document.get("$id") != BASE_URI + name:
                self.problems.append(f"schemas/{name}: $id must be {BASE_URI + name!r}, found {document.get('$id')!r}")
            try:
                Draft202012Validator.check_schema(document)
            except SchemaError as exc:
                self.problems.append(f"schemas/{name}: not a valid JSON Schema: {exc.message}")
                continue
            self.documents[name] = document
        self.registry = Registry().with_resources(
            (BASE_URI + name, Resource(contents=doc, specification=DRAFT202012)) for name, doc in self.documents.items()
        )
        self._validators: dict[str, Draft202012Validator] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.documents

    def validator(self, name: str) -> Draft202012Validator:
        if name not in self._validators:
            self._validators[name] = Draft202012Validator(self.documents[name], registry=self.registry)
        return self._validators[name]

    def resolved(self, name: str) -> dict:
        """The schema with every $ref inlined and sibling keywords merged: what exports and docs read."""
        return _inline(self.documents[name], BASE_URI + name, self.registry)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(self.documents)


_NOT_MERGED = {"$schema", "$id", "$defs", "examples", "x-counterexamples"}


def _inline(node, base_uri: str, registry: Registry, depth: int = 0):
    if depth > 30:
        raise ValueError(f"schema references nest too deeply at {base_uri}")
    if isinstance(node, list):
        return [_inline(item, base_uri, registry, depth) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$id" in node:
        base_uri = node["$id"]
    merged: dict = {}
    if "$ref" in node:
        ref = node.pop("$ref")
        resolved = registry.resolver(base_uri=base_uri).lookup(ref)
        # The target's own refs are relative to the document it lives in.
        target_base = urljoin(base_uri, ref.partition("#")[0]) if not ref.startswith("#") else base_uri
        merged = _inline(copy.deepcopy(resolved.contents), target_base, registry, depth + 1)
        merged = {k: v for k, v in merged.items() if k not in _NOT_MERGED}
    for key, value in node.items():
        if key in ("$schema", "$defs"):
            continue
        value = _inline(value, base_uri, registry, depth)
        if key == "properties" and isinstance(merged.get("properties"), dict):
            merged["properties"] = {**merged["properties"], **value}
        elif key == "required" and isinstance(merged.get("required"), list):
            merged["required"] = merged["required"] + [r for r in value if r not in merged["required"]]
        else:
            merged[key] = value
    merged.pop("$id", None)
    return merged

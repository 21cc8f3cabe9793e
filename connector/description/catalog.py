"""The JSON Schemas under schemas/: loaded once, cross-referenced, and served as validators."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jsonschema_rs
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from connector.description.validation import MAX_EXPLAINED_ITEMS, UNEXPLAINED, check, field_path, shown
from connector.errors import FieldError

BASE_URI = "https://allmysms-connector.example/schemas/"


def _ecma_pattern(
    validator: Draft202012Validator, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    # JSON Schema patterns are ECMA-262, where '$' is the very end; Python's '$' also matches before a
    # final new line, which would let "Shop\n" through as a sender.
    if not validator.is_type(instance, "string"):
        return
    python_pattern = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    if not re.search(python_pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12 with ECMA-262 pattern anchors: the validator that explains errors.
Validator: type[Draft202012Validator] = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


class Catalog:
    """Every schema file keyed by its path relative to schemas/ (e.g. ``actions/send_sms.input.json``)."""

    def __init__(self, root: Path):
        self.root = root
        self.documents: dict[str, dict[str, Any]] = {}
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
                continue  # its references would be read from the wrong place
            try:
                Draft202012Validator.check_schema(document)
            except SchemaError as exc:
                self.problems.append(f"schemas/{name}: not a valid JSON Schema: {exc.message}")
                continue
            self.documents[name] = document
        self.registry = Registry().with_resources(
            (BASE_URI + name, DRAFT202012.create_resource(doc)) for name, doc in self.documents.items()
        )
        self._validators: dict[str, Draft202012Validator] = {}
        self._fast: dict[str, jsonschema_rs.Validator] = {}
        self._resolved: dict[str, dict[str, Any]] = {}
        self._fast_registry = jsonschema_rs.Registry([(BASE_URI + n, d) for n, d in self.documents.items()])
        # Where each list-item schema lives, so that items can be screened by jsonschema-rs one by one.
        self._item_schemas: dict[int, str] = {}
        for name, document in self.documents.items():
            _find_item_schemas(document, BASE_URI + name + "#", self._item_schemas)
        self._item_screens: dict[int, jsonschema_rs.Validator] = {}
        self._Validator: type[Draft202012Validator] = validators.extend(
            Validator, {"items": self._screened_items, "type": _type}
        )

    def __contains__(self, name: str) -> bool:
        return name in self.documents

    def validator(self, name: str) -> Draft202012Validator:
        if name not in self._validators:
            self._validators[name] = self._Validator(self.documents[name], registry=self.registry)
        return self._validators[name]

    def _screened_items(
        self, validator: Draft202012Validator, items: Any, instance: Any, schema: dict[str, Any]
    ) -> Iterator[ValidationError]:
        """``items``, but each item is screened by jsonschema-rs first and only the first MAX_EXPLAINED_ITEMS
        bad ones are explained; the rest are counted, in one error of keyword UNEXPLAINED."""
        screen = self._item_screen(items)
        if screen is None or "prefixItems" in schema or not validator.is_type(instance, "array"):
            yield from _ITEMS(validator, items, instance, schema)
            return
        explained = 0
        for index, item in enumerate(instance):
            if screen.is_valid(item):
                continue
            if explained == MAX_EXPLAINED_ITEMS:
                rest = sum(1 for later in instance[index:] if not screen.is_valid(later))
                yield ValidationError(f"{rest} more items are not valid", validator=UNEXPLAINED, validator_value=rest)
                return
            explained += 1
            yield from validator.descend(item, items, path=index)

    def _item_screen(self, items: Any) -> jsonschema_rs.Validator | None:
        if not isinstance(items, dict) or id(items) not in self._item_schemas:
            return None  # not one of the catalog's schemas
        if id(items) not in self._item_screens:
            self._item_screens[id(items)] = jsonschema_rs.validator_for(
                {"$ref": self._item_schemas[id(items)]}, registry=self._fast_registry, validate_formats=False
            )
        return self._item_screens[id(items)]

    def fast_validator(self, name: str) -> jsonschema_rs.Validator:
        """The same schema compiled by jsonschema-rs: about a hundred times faster, but its errors are
        not the ones we show, so it only answers whether a document is valid."""
        if name not in self._fast:
            self._fast[name] = jsonschema_rs.validator_for(
                self.documents[name], registry=self._fast_registry, validate_formats=False
            )
        return self._fast[name]

    def check(self, name: str, document: Any) -> list[FieldError]:
        """Every problem of ``document`` against schema ``name`` as field errors (none when valid)."""
        fast = self.fast_validator(name)
        if fast.is_valid(document):
            return []
        problems = check(self.validator(name), document, self.resolved(name))
        # Should the two validators ever disagree, the stricter one wins, in its own words (which quote the
        # value: cut).
        return problems or [
            FieldError(field_path(e.instance_path), shown(e.message, 200)) for e in fast.iter_errors(document)
        ]

    def resolved(self, name: str) -> dict[str, Any]:
        """The schema with every $ref inlined and sibling keywords merged: what exports and docs read.

        Inlined once and kept: explaining a bad request and reading trigger options ask for it often.
        Callers must not change what they get.
        """
        if name not in self._resolved:
            self._resolved[name] = _inline(self.documents[name], BASE_URI + name, self.registry)
        return self._resolved[name]

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(self.documents)


_ITEMS = Draft202012Validator.VALIDATORS["items"]


def _type(
    validator: Draft202012Validator, types: str | list[str], instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    # jsonschema's own quotes the value, and a 20,000-item list took longer to quote than to check.
    types = types if isinstance(types, list) else [types]
    if not any(validator.is_type(instance, kind) for kind in types):
        yield ValidationError(f"not of type {', '.join(map(repr, types))}")


def _find_item_schemas(node: Any, pointer: str, found: dict[int, str]) -> None:
    """Every schema under an ``items`` keyword of ``node``, by object id, as a URI with a JSON pointer."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            _find_item_schemas(item, f"{pointer}/{index}", found)
    elif isinstance(node, dict):
        for key, value in node.items():
            here = f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}"
            if key == "items" and isinstance(value, dict):
                found[id(value)] = here
            if key not in ("examples", "x-counterexamples", "const", "enum", "default"):
                _find_item_schemas(value, here, found)


_NOT_MERGED = {"$schema", "$id", "$defs", "examples", "x-counterexamples"}


def _inline(node: Any, base_uri: str, registry: Registry[Any], depth: int = 0) -> Any:
    if depth > 30:
        raise ValueError(f"schema references nest too deeply at {base_uri}")
    if isinstance(node, list):
        return [_inline(item, base_uri, registry, depth) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$id" in node:
        base_uri = node["$id"]
    merged: dict[str, Any] = {}
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

"""The connector description: manifest.yaml and schemas/, loaded, checked and frozen at start-up."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from connector.description.catalog import Catalog, Validator
from connector.description.validation import check
from connector.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
META_SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


@dataclass(frozen=True)
class Action:
    key: str
    noun: str
    label: str
    description: str
    input: str
    output: str
    sample: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/v1/actions/{self.key}"


@dataclass(frozen=True)
class Trigger:
    key: str
    noun: str
    label: str
    description: str
    event_type: str
    delivery: str
    event: str
    sample: dict[str, Any]
    input: str | None = None

    @property
    def path(self) -> str:
        return f"/v1/triggers/{self.key}"

    @property
    def events_path(self) -> str:
        """Newest events first: what polling platforms read."""
        return f"{self.path}/events"

    @property
    def subscriptions_path(self) -> str:
        """REST hooks: POST a target_url here; a subscription's own URL is this one followed by its id."""
        return f"{self.path}/subscriptions"


@dataclass(frozen=True)
class Search:
    """A look-up at AllMySMS: its input is checked like an action's, and it answers a list of ``output``
    items, empty when nothing is found."""

    key: str
    noun: str
    label: str
    description: str
    input: str
    output: str  # the schema of one item
    sample: dict[str, Any]  # one item

    @property
    def path(self) -> str:
        return f"/v1/searches/{self.key}"


@dataclass(frozen=True)
class Manifest:
    connector: MappingProxyType[str, Any]
    auth: MappingProxyType[str, Any]
    actions: tuple[Action, ...]
    triggers: tuple[Trigger, ...]
    catalog: Catalog = field(repr=False, compare=False)
    searches: tuple[Search, ...] = ()

    def action(self, key: str) -> Action:
        return next(a for a in self.actions if a.key == key)

    @property
    def secret_fields(self) -> tuple[str, ...]:
        return tuple(f["key"] for f in self.auth["fields"] if f.get("secret"))

    def describe(self) -> dict[str, Any]:
        """The resolved description served at /v1/manifest: every schema inlined, samples included."""
        return {
            "connector": dict(self.connector),
            "auth": {k: v for k, v in self.auth.items()},
            "actions": [
                {
                    "key": a.key,
                    "noun": a.noun,
                    "label": a.label,
                    "description": a.description,
                    "request": {"method": "POST", "path": a.path},
                    "input": self.catalog.resolved(a.input),
                    "output": self.catalog.resolved(a.output),
                    "sample": a.sample,
                }
                for a in self.actions
            ],
            "triggers": [
                {
                    "key": t.key,
                    "noun": t.noun,
                    "label": t.label,
                    "description": t.description,
                    "event_type": t.event_type,
                    "delivery": t.delivery,
                    "request": (
                        {"method": "GET", "path": t.events_path}
                        if t.delivery == "poll"
                        else {"method": "POST", "path": t.subscriptions_path}
                    ),
                    "input": self.catalog.resolved(t.input) if t.input else None,
                    "event": self.catalog.resolved(t.event),
                    "sample": t.sample,
                }
                for t in self.triggers
            ],
            "searches": [
                {
                    "key": s.key,
                    "noun": s.noun,
                    "label": s.label,
                    "description": s.description,
                    "request": {"method": "POST", "path": s.path},
                    "input": self.catalog.resolved(s.input),
                    "output": {"type": "array", "items": self.catalog.resolved(s.output)},
                    "sample": s.sample,
                }
                for s in self.searches
            ],
        }


def load(path: Path | None = None, schemas: Path | None = None) -> Manifest:
    """Read, check and freeze the manifest; a ConfigError lists every problem found."""
    path = path or ROOT / "manifest.yaml"
    schemas = schemas or ROOT / "schemas"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"The manifest {path} cannot be read", [str(exc)]) from None
    meta = json.loads(META_SCHEMA_PATH.read_text(encoding="utf-8"))
    problems = [f"manifest.yaml {f.path}: {f.message}" for f in check(Validator(meta), raw, meta)]
    if problems:
        raise ConfigError("The manifest is not valid", problems)
    catalog = Catalog(schemas)
    problems = list(catalog.problems)
    for rule in CHECKS:
        problems += rule(raw, catalog)
    if problems:
        raise ConfigError("The manifest is not valid", problems)
    return Manifest(
        connector=MappingProxyType(raw["connector"]),
        auth=MappingProxyType(raw["auth"]),
        actions=tuple(Action(**a) for a in raw["actions"]),
        triggers=tuple(Trigger(**t) for t in raw["triggers"]),
        catalog=catalog,
        searches=tuple(Search(**s) for s in raw.get("searches", [])),
    )


# Rules JSON Schema cannot express; each returns a list of problems.


def _described(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Every action, trigger and search of the raw manifest."""
    return list(raw["actions"]) + list(raw["triggers"]) + list(raw.get("searches", []))


def keys_are_unique(raw: dict[str, Any], catalog: Catalog) -> list[str]:
    keys = [item["key"] for item in _described(raw)]
    return [f"key {k!r} is used more than once" for k in sorted({k for k in keys if keys.count(k) > 1})]


def schema_files_exist(raw: dict[str, Any], catalog: Catalog) -> list[str]:
    problems = []
    for item in _described(raw):
        for role in ("input", "output", "event"):
            name = item.get(role)
            if name and name not in catalog:
                problems.append(f"{item['key']}: {role} schema schemas/{name} does not exist")
    return problems


def samples_match_schemas(raw: dict[str, Any], catalog: Catalog) -> list[str]:
    problems = []
    for item in _described(raw):
        name = item.get("output") or item.get("event")
        if not isinstance(name, str) or name not in catalog:
            continue
        for f in check(catalog.validator(name), item["sample"], catalog.resolved(name)):
            problems.append(f"{item['key']}: sample {f.path}: {f.message}")
    return problems


def trigger_samples_carry_their_type(raw: dict[str, Any], catalog: Catalog) -> list[str]:
    return [
        f"{t['key']}: sample type is {t['sample'].get('type')!r}, expected {t['event_type']!r}"
        for t in raw["triggers"]
        if t["sample"].get("type") != t["event_type"]
    ]


def schema_examples_hold(raw: dict[str, Any], catalog: Catalog) -> list[str]:
    """Every schema's `examples` validate and every `x-counterexamples` entry does not, for both the
    validator that explains errors and the fast one that screens requests."""
    problems = []
    for name in catalog.names:
        document = catalog.documents[name]
        validators = (catalog.validator(name), catalog.fast_validator(name))
        for i, example in enumerate(document.get("examples", [])):
            if not all(v.is_valid(example) for v in validators):
                problems.append(f"schemas/{name}: examples[{i}] does not validate")
        for i, counter in enumerate(document.get("x-counterexamples", [])):
            if any(v.is_valid(counter) for v in validators):
                problems.append(f"schemas/{name}: x-counterexamples[{i}] validates but should not")
    return problems


CHECKS = (
    keys_are_unique,
    schema_files_exist,
    samples_match_schemas,
    trigger_samples_carry_their_type,
    schema_examples_hold,
)


def check_handlers(manifest: Manifest, handlers: Collection[str], kind: str = "action") -> list[str]:
    """Every action (or every search, with ``kind`` "search") has a handler and every handler is described
    in the manifest."""
    described = {a.key for a in (manifest.searches if kind == "search" else manifest.actions)}
    named = "handler" if kind == "action" else f"{kind} handler"
    return [f"{kind} {k!r} has no handler" for k in sorted(described - set(handlers))] + [
        f"{named} {k!r} is not described in the manifest" for k in sorted(set(handlers) - described)
    ]

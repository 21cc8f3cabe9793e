"""Settings from environment variables, checked against config.schema.json at start-up."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from connector.description.catalog import Validator
from connector.description.validation import check
from connector.errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("config.schema.json")


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def load(environ: Mapping[str, str] | None = None, overrides: Mapping | None = None) -> dict:
    """Every setting with its default filled in; raises ConfigError listing every problem at once.

    ``environ`` values are text and are converted by the schema's type; ``overrides`` (tests,
    the CLI) are already typed.
    """
    spec = schema()
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    values: dict = {}
    for name, prop in spec["properties"].items():
        if overrides and name in overrides:
            values[name] = overrides[name]
        elif environ.get(name, "") != "":
            try:
                values[name] = _convert(environ[name], prop)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        else:
            values[name] = prop["default"]
    unknown = sorted(set(overrides or {}) - set(spec["properties"]))
    problems += [f"{name}: not a setting this service knows" for name in unknown]
    problems += [f"{f.path}: {f.message}" for f in check(Validator(spec), values, spec)]
    problems += _check_timezone(values) + _check_country(values)
    if problems:
        raise ConfigError("The configuration is not valid", problems)
    return values


def _convert(text: str, prop: dict):
    kinds = prop.get("type", "string")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "boolean" in kinds:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if "integer" in kinds:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
    if "number" in kinds:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    return text


def _check_timezone(values: dict) -> list[str]:
    name: Any = values.get("ALLMYSMS_TIMEZONE")  # whatever was configured: a wrong type is reported below
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return [f"ALLMYSMS_TIMEZONE: {name!r} is not a known time zone (use an IANA name such as Europe/Paris)"]
    return []


def _check_country(values: dict) -> list[str]:
    code = values.get("CONNECTOR_DEFAULT_COUNTRY")
    if code not in phonenumbers.SUPPORTED_REGIONS:
        return [f"CONNECTOR_DEFAULT_COUNTRY: {code!r} is not a country code phone numbers can be read in"]
    return []


def markdown_table() -> str:
    """The settings as a Markdown table, for the README (a test keeps the README current)."""
    rows = ["| Setting | Default | What it does |", "|---|---|---|"]
    for name, prop in schema()["properties"].items():
        default = prop["default"]
        shown = "(unset)" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        rows.append(f"| `{name}` | `{shown}` | {prop['description']} |")
    return "\n".join(rows)

"""JSON Schema failures turned into field errors that say which field, what is wrong, what is accepted."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from connector.errors import FieldError, InvalidInput

#: How many field errors one answer lists; the rest are counted, not listed.
MAX_LISTED = 100
#: How many bad items of one list are explained; the others are only counted. Explaining an item costs a
#: thousand times what screening it does, and 20,000 bad items took 20 s to explain, for nobody to read.
MAX_EXPLAINED_ITEMS = 20
#: The keyword of the error that stands for the bad items of a list left unexplained (its value: how many).
UNEXPLAINED = "x-unexplained-items"
#: The most characters of a caller's value (a field name, a text) an error message quotes.
MAX_QUOTED = 100

_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


class Problems(list[FieldError]):
    """Field errors, and how many bad list items were counted but not explained."""

    unexplained = 0


def shown(value: object, limit: int = MAX_QUOTED) -> str:
    """``value`` as an error message may quote it: cut, so that a 100,000-character field name or text is
    not sent back (several times) in the answer that refuses it."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def field_path(parts: Iterable[str | int]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{shown(part)}" if path else shown(part))
    return path or "(body)"


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _expected_types(schema_type: str | list[str]) -> str:
    types = schema_type if isinstance(schema_type, list) else [schema_type]
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types)


def _describe(error: ValidationError, resolved: dict[str, Any]) -> list[FieldError]:
    hint = error.schema.get("x-error") if isinstance(error.schema, dict) else None
    path = list(error.absolute_path)
    keyword = error.validator
    value: Any = error.instance
    if keyword == UNEXPLAINED:
        count = cast(int, error.validator_value)  # set by the catalog's screened items: always a count
        return [_Unexplained(field_path(path), f"{count} more items are not valid.", count)]
    if keyword == "required":
        missing = _quoted(error.message)
        return [FieldError(field_path(path + [missing[0] if missing else "?"]), "This field is required.")]
    if keyword in ("additionalProperties", "unevaluatedProperties"):
        allowed = _allowed_fields(resolved, path)
        accepted = f" Accepted fields: {', '.join(allowed)}." if allowed else ""
        extras = (
            [k for k in value if k not in allowed] if isinstance(value, dict) and allowed else _quoted(error.message)
        )
        return [FieldError(field_path(path + [name]), f"Unknown field '{shown(name)}'.{accepted}") for name in extras]
    if keyword in ("oneOf", "anyOf") and error.context:
        branch = _branch_of_same_type(error)
        if branch is not None:
            return [f for e in branch for f in _describe(e, resolved)]
    if hint:
        return [FieldError(field_path(path), hint)]
    return [_describe_simple(error)]


def _describe_simple(error: ValidationError) -> FieldError:
    path = list(error.absolute_path)
    keyword = error.validator
    value: Any = error.instance
    # Set for every error a keyword raised, which are the only ones described here.
    expected: Any = error.validator_value
    if keyword == "type":
        return FieldError(field_path(path), f"Expected {_expected_types(expected)}, got {_kind(value)}.")
    if keyword == "minLength":
        return FieldError(
            field_path(path),
            "This field is empty." if expected == 1 else f"Must be at least {expected} characters long.",
        )
    if keyword == "maxLength":
        return FieldError(field_path(path), f"Must be at most {expected} characters long (this one has {len(value)}).")
    if keyword == "minItems":
        return FieldError(
            field_path(path),
            "The list is empty." if expected == 1 else f"Give at least {expected} items.",
        )
    if keyword == "maxItems":
        return FieldError(field_path(path), f"Give at most {expected} items (this list has {len(value)}).")
    if keyword in ("enum", "const"):
        choices = expected if keyword == "enum" else [expected]
        return FieldError(field_path(path), "Must be one of: " + ", ".join(map(str, choices)) + ".")
    if keyword in ("minimum", "maximum"):
        word = "at least" if keyword == "minimum" else "at most"
        return FieldError(field_path(path), f"Must be {word} {expected}.")
    if keyword in ("oneOf", "anyOf") and error.context:
        return _describe_simple(best_match(e for e in error.context if e.validator != UNEXPLAINED))
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    return FieldError(field_path(path), f"Not a valid {title.lower() if title else 'value'}.")


@dataclass(frozen=True)
class _Unexplained(FieldError):
    """Stands for bad list items that were counted, not explained: added to the count, never listed."""

    count: int = 0


def check(validator: Draft202012Validator, document: Any, resolved: dict[str, Any]) -> Problems:
    """Every problem with ``document``, at most one per field path, in document order; in a long list, the
    first MAX_EXPLAINED_ITEMS bad items when the validator screens items (the catalog's do), the others
    counted in ``unexplained``.

    ``resolved`` is the same schema with references inlined; it tells which fields are accepted.
    """
    seen: dict[str, FieldError] = {}
    problems = Problems()
    for error in validator.iter_errors(document):
        for problem in _describe(error, resolved):
            if isinstance(problem, _Unexplained):
                problems.unexplained += problem.count
            else:
                seen.setdefault(problem.path, problem)
    problems.extend(sorted(seen.values(), key=lambda f: _sort_key(f.path)))
    return problems


def _quoted(message: str) -> list[str]:
    return re.findall(r"'([^']*)'", message)


def _branch_of_same_type(error: ValidationError) -> list[ValidationError] | None:
    """The errors of the one oneOf/anyOf branch whose type fits the value, when exactly one does.

    A list of recipients with one bad item should blame that item, not the whole list.
    """
    branches: dict[str | int, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    depth = len(error.absolute_path)
    fitting = [
        errors
        for errors in branches.values()
        if not any(e.validator == "type" and len(e.absolute_path) == depth for e in errors)
    ]
    return fitting[0] if len(fitting) == 1 else None


def _allowed_fields(resolved: dict[str, Any], path: list[Any]) -> list[str]:
    node = resolved
    for part in path:
        node = _object_branch(node)
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = (node.get("properties") or {}).get(part, {})
    node = _object_branch(node)
    return list((node.get("properties") or {}).keys())


def _object_branch(node: dict[str, Any]) -> dict[str, Any]:
    branch: dict[str, Any]
    for branch in node.get("oneOf", []) + node.get("anyOf", []):
        if branch.get("type") in ("object", "array"):
            return branch
    return node


def _sort_key(path: str) -> list[tuple[int, int, str]]:
    # recipients[10] after recipients[9]: compare numbers as numbers.
    # Every part of the key is a (kind, value) pair so numbers and names never meet in a comparison.
    return [(0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(re.split(r"\[(\d+)\]", path))]


def invalid_input(problems: list[FieldError]) -> InvalidInput:
    """One error for all the problems found: a summary sentence, then each field (the first MAX_LISTED).
    Bad list items counted but not explained count as one problem each: at least that many."""
    listed = problems[:MAX_LISTED]
    first = listed[0]
    unexplained = getattr(problems, "unexplained", 0)
    total = len(problems) + unexplained
    summary = (
        f"{first.path}: {first.message}"
        if total == 1
        else (
            f"{'At least ' if unexplained else ''}{total} problems with the input, the first: {first.path}: "
            f"{first.message}"
        )
    )
    more = total - len(listed)
    return InvalidInput(summary, fields=listed, extra={"more_fields": more} if more else {})

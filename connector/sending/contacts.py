"""Pure: contact list actions' input read, written as the createList feeds (listData, populateData, deleteData),
and AllMySMS's answers read into results.

The feeds are those of the one public client: ``{"DATA": {"LISTNAME", "LOCKED", "STRUCTURE": [{"FIELDNAME",
"FILTER", "MAILING"}]}}`` to create a list, ``{"DATA": {"LISTNAME", "CONTACTS": [{"MOBILEPHONE", <field>: value}]}}``
to fill or empty one. That client writes them in JSON only, so no XML form is guessed here. What FILTER and
MAILING do is not documented: they are written 0, as that client writes them by default.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from connector.description.validation import invalid_input
from connector.errors import FieldError, InvalidInput
from connector.sending import feeds, phones
from connector.sending.messages import Rules

MAX_FIELDS = 30
# The phone number is every list's own column: a field of that name would clash with it.
_RESERVED = "MOBILEPHONE"
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 _-]{0,49}")
_SEPARATORS = re.compile(r"[,;\r\n]+")
# XML and the customer area cannot carry control characters (tabs aside) in a name or a value.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ufffe\uffff]")
# Lists named in an error: enough to find the right one, not a page of them.
_NAMES_SHOWN = 20


@dataclass(frozen=True)
class NewList:
    name: str
    fields: tuple[str, ...] = ()
    locked: bool = False


@dataclass(frozen=True)
class Contact:
    list_name: str
    e164: str
    #: The contact's values, by field name, in the order given.
    fields: tuple[tuple[str, str], ...] = ()


def new_list(payload: dict[str, Any]) -> NewList:
    """Raises InvalidInput listing every problem; ``payload`` already matches its JSON Schema."""
    problems = _name_problems("name", payload["name"])
    given = payload.get("fields", [])
    if isinstance(given, str):
        names = [part.strip() for part in _SEPARATORS.split(given) if part.strip()]
        paths = ["fields"] * len(names)
    else:
        names = [name.strip() for name in given]
        paths = [f"fields[{index}]" for index in range(len(names))]
    seen: set[str] = set()
    for path, name in zip(paths, names, strict=True):
        problems += _field_name_problems(path, name, seen)
    if len(names) > MAX_FIELDS:
        problems.append(
            FieldError("fields", f"{len(names)} fields is more than the {MAX_FIELDS} a list may have here.")
        )
    if problems:
        raise invalid_input(problems)
    return NewList(payload["name"].strip(), tuple(names), bool(payload.get("locked", False)))


def contact(payload: dict[str, Any], rules: Rules) -> Contact:
    """The list and contact of Add Contact (with its fields) or Remove Contact; raises InvalidInput."""
    problems = _name_problems("list_name", payload["list_name"])
    e164, reason = phones.parse(payload["phone_number"], rules.region)
    if reason:
        problems.append(FieldError("phone_number", f"{payload['phone_number']!r} is {reason}."))
    values, field_problems = _contact_fields(payload.get("fields", {}))
    problems += field_problems
    if problems or e164 is None:
        raise invalid_input(problems)
    return Contact(payload["list_name"].strip(), e164, values)


def unknown_list(name: str, names: list[str]) -> InvalidInput:
    """The error for a list the account does not have, naming those it has."""
    if not names:
        return invalid_input(
            [
                FieldError(
                    "list_name", f"There is no list {name!r}: this account has no contact list yet. Create one first."
                )
            ]
        )
    close = [known for known in names if known.casefold() == name.casefold()]
    hint = f" Did you mean {close[0]!r}? List names are matched exactly." if close else ""
    shown = ", ".join(repr(known) for known in names[:_NAMES_SHOWN])
    more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    return invalid_input(
        [FieldError("list_name", f"There is no list {name!r}.{hint} This account's lists: {shown}{more}.")]
    )


def taken_name(name: str) -> InvalidInput:
    return invalid_input([FieldError("name", f"A list named {name!r} already exists; choose another name.")])


def list_data(request: NewList) -> str:
    structure = [{"FIELDNAME": name, "FILTER": 0, "MAILING": 0} for name in request.fields]
    data = {"LISTNAME": request.name, "LOCKED": "1" if request.locked else "0", "STRUCTURE": structure}
    return _json(data)


def populate_data(request: Contact) -> str:
    return _json(
        {
            "LISTNAME": request.list_name,
            "CONTACTS": [{"MOBILEPHONE": phones.upstream(request.e164), **dict(request.fields)}],
        }
    )


def delete_data(request: Contact) -> str:
    return _json({"LISTNAME": request.list_name, "CONTACTS": [{"MOBILEPHONE": phones.upstream(request.e164)}]})


def created(request: NewList, reply: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": request.name,
        "name": request.name,
        "fields": list(request.fields),
        "locked": request.locked,
        "status_text": str(reply.get("statusText", "")),
    }


def changed(request: Contact, reply: dict[str, Any]) -> dict[str, Any]:
    """What AllMySMS did with the one contact it was given (feeds.list_change)."""
    return {
        "id": request.list_name,
        "list_name": request.list_name,
        "phone_number": request.e164,
        **feeds.list_change(reply),
    }


def _json(data: dict[str, Any]) -> str:
    return json.dumps({"DATA": data}, ensure_ascii=False, separators=(",", ":"))


def _name_problems(path: str, name: str) -> list[FieldError]:
    if not name.strip():
        return [FieldError(path, "Give the list's name.")]
    return _character_problems(path, name)


def _field_name_problems(path: str, name: str, seen: set[str]) -> list[FieldError]:
    if name.upper() == _RESERVED:
        return [FieldError(path, f"{name!r} is the phone number, which every list has already: leave it out.")]
    if not _FIELD_NAME.fullmatch(name):
        return [
            FieldError(
                path,
                f"{name!r} is not a field name this service accepts: up to 50 letters, digits, spaces, _ or -, "
                "starting with a letter (no accents).",
            )
        ]
    if name.casefold() in seen:
        return [FieldError(path, f"{name!r} is given twice.")]
    seen.add(name.casefold())
    return []


def _contact_fields(given: str | dict[str, Any]) -> tuple[tuple[tuple[str, str], ...], list[FieldError]]:
    """A contact's values: ``Name=value`` lines, or an object; a name is a list field's name."""
    problems: list[FieldError] = []
    pairs: list[tuple[str, str, str]] = []  # (path, name, value)
    if isinstance(given, str):
        for number, line in enumerate(given.splitlines(), start=1):
            if not line.strip():
                continue
            name, equals, value = line.partition("=")
            if not equals:
                problems.append(
                    FieldError(
                        "fields", f"Line {number} has no '=': write each field as Name=value, e.g. Firstname=Ann."
                    )
                )
                continue
            pairs.append(("fields", name.strip(), value.strip()))
    else:
        pairs = [(f"fields.{name}", name.strip(), _text(value)) for name, value in given.items()]
    seen: set[str] = set()
    for path, name, value in pairs:
        problems += _field_name_problems(path, name, seen)
        problems += _character_problems(path, value)
    if len(pairs) > MAX_FIELDS:
        problems.append(
            FieldError("fields", f"{len(pairs)} fields is more than the {MAX_FIELDS} a list may have here.")
        )
    return tuple((name, value) for _, name, value in pairs), problems


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _character_problems(path: str, text: str) -> list[FieldError]:
    bad = _FORBIDDEN.search(text)
    if bad is None:
        return []
    return [
        FieldError(path, f"Contains the character U+{ord(bad.group()):04X} at position {bad.start() + 1}; remove it.")
    ]

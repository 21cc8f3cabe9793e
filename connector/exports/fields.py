"""JSON Schema properties as the input and output fields automation platforms show: one reading of our
schemas that every platform export shares, so a field looks the same on each of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from connector.web.operations import OPTIONS_KEYWORD


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    type: str  # string, text, integer, number, boolean, datetime
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    list: bool = False
    default: object = None
    children: tuple[Field, ...] = field(default=())
    options: str = ""  # the kind of choice the account offers for it (``x-options``): a dropdown filled live


# Longer than this, a text is given a multi-line box.
_LONG_TEXT = 160


def input_fields(schema: dict) -> list[Field]:
    """The fields of an object schema (already resolved: no $ref), in the schema's order."""
    required = set(schema.get("required", ()))
    return [_field(key, prop, key in required) for key, prop in schema.get("properties", {}).items()]


def _field(key: str, prop: dict, required: bool) -> Field:
    label = prop.get("title") or key.replace("_", " ").capitalize()
    help_text = prop.get("description", "")
    kind, is_list = _kind(prop)
    choices = tuple(str(c) for c in prop.get("enum", ()) if c is not None)
    return Field(
        key=key,
        label=label,
        type=kind,
        required=required,
        help=help_text,
        choices=choices,
        list=is_list,
        default=prop.get("default"),
        options=prop.get(OPTIONS_KEYWORD, ""),
    )


def options_method(kind: str) -> str:
    """The name of the platform function that lists a kind of choice: contact_lists is getContactLists."""
    return "get" + "".join(word.capitalize() for word in kind.split("_"))


def _kind(prop: dict) -> tuple[str, bool]:
    """The platform type of a property, and whether it is a list of them."""
    variants = prop.get("oneOf") or prop.get("anyOf")
    if variants:
        # Where a value may be written several ways (one text, or a list), platforms get the list of
        # plain values: the form that maps onto their list fields.
        lists = [v for v in variants if _types(v) == {"array"}]
        if lists:
            return _item_kind(lists[0].get("items", {})), True
        return _kind(variants[0])
    types = _types(prop) - {"null"}
    if types == {"array"}:
        return _item_kind(prop.get("items", {})), True
    if "boolean" in types and len(types) == 1:
        return "boolean", False
    if types == {"integer"}:
        return "integer", False
    if types <= {"integer", "number"} and types:
        return "number", False
    if prop.get("format") == "date-time":
        return "datetime", False
    if prop.get("maxLength", 0) > _LONG_TEXT and "format" not in prop:
        return "text", False
    return "string", False


def _item_kind(items: dict) -> str:
    variants = items.get("oneOf") or items.get("anyOf")
    if variants:
        plain = [v for v in variants if _types(v) & {"string", "integer", "number"}]
        return _kind(plain[0] if plain else variants[0])[0]
    return _kind(items)[0]


def _types(prop: dict) -> set[str]:
    declared = prop.get("type")
    if isinstance(declared, list):
        return set(declared)
    if declared:
        return {declared}
    if "enum" in prop:
        return {"string"}
    if "const" in prop:
        return {"string"}
    return set()


def output_fields(schema: dict, prefix: str = "", label_prefix: str = "") -> list[Field]:
    """Every scalar a result or event carries, nested keys joined with ``__`` (as Zapier flattens them)."""
    found = []
    for key, prop in schema.get("properties", {}).items():
        label = prop.get("title") or key.replace("_", " ").capitalize()
        types = _types(prop) - {"null"}
        if types == {"object"} or ("properties" in prop and not types - {"object"}):
            found += output_fields(prop, f"{prefix}{key}__", f"{label_prefix}{label}: ")
            continue
        if "array" in types and _types(prop.get("items", {})) & {"object", "array"}:
            continue  # a list of records: platforms show it whole, not as fields
        kind, is_list = _kind(prop)
        found.append(Field(key=f"{prefix}{key}", label=f"{label_prefix}{label}", type=kind, list=is_list))
    return found


def narrow(schema: dict, *, title_key: str = "title", nullable_key: str | None = None) -> dict:
    """A resolved JSON Schema narrowed to the draft-4 subset that older platforms read (Swagger 2.0,
    elastic.io): one type per value, no oneOf, const or null types. A value that may be written several
    ways keeps its list form, as the fields above read it."""
    schema = dict(schema)
    variants = [v for v in (schema.pop("oneOf", None) or schema.pop("anyOf", None) or ()) if "type" in v]
    # Alternatives that only constrain (give this field or that one) cannot be said here: the
    # description says it, and the service checks it.
    if variants:
        chosen = next((v for v in variants if v.get("type") == "array"), variants[0])
        schema = {**schema, **chosen}
    out: dict = {}
    declared = schema.get("type")
    if isinstance(declared, list):
        concrete = [t for t in declared if t != "null"]
        out["type"] = concrete[0] if concrete else "string"
        if "null" in declared and nullable_key:
            out[nullable_key] = True
    elif declared:
        out["type"] = declared
    if "const" in schema:
        out.setdefault("type", "string")
        out["enum"] = [schema["const"]]
    if "enum" in schema:
        out["enum"] = [v for v in schema["enum"] if v is not None]
        out.setdefault("type", "string")
    if schema.get("title"):
        out[title_key] = schema["title"]
    for key in (
        "description",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "default",
    ):
        if key in schema:
            out[key] = schema[key]
    if "properties" in schema:
        out["type"] = "object"
        out["properties"] = {
            name: narrow(prop, title_key=title_key, nullable_key=nullable_key)
            for name, prop in schema["properties"].items()
        }
        required = [r for r in schema.get("required", []) if r in schema["properties"]]
        if required:
            out["required"] = required
    if "items" in schema:
        out["items"] = narrow(schema["items"], title_key=title_key, nullable_key=nullable_key)
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {"type": "string"}
    if "type" not in out:
        out["type"] = "string"
    return out

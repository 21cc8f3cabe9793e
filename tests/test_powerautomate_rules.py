"""Our own check of the rules Microsoft's connector schemas and string guidelines state for a Power Automate
custom connector (their schema files are not ours to ship), plus a Swagger 2.0 structural validation.

Each rule is a small named function returning a list of problems; every rule is shown to pass on the export
and to catch a document that breaks it.
"""

from __future__ import annotations

import copy
import re

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

from connector.description import manifest as manifest_module
from connector.exports import powerautomate

BASE_URL = "https://connector.example.com"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch"}
VISIBILITIES = {"important", "advanced", "internal"}
#: Words a summary may keep capitalised after its first word: acronyms and names.
_KEPT_CASE = re.compile(r"^(?:[A-Z0-9]{2,}s?|[A-Za-z]+[A-Z][A-Za-z]*)$")


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _parameters(document: dict):
    for path, method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            yield f"{method.upper()} {path} {parameter['name']}", parameter


def notification_content_on_the_path_item(document: dict) -> list[str]:
    problems = [
        f"{m.upper()} {p}: x-ms-notification-content inside an operation"
        for p, m, op in _operations(document)
        if "x-ms-notification-content" in op
    ]
    for path, item in document["paths"].items():
        content = item.get("x-ms-notification-content")
        if content is None:
            continue
        if "x-ms-trigger" not in item.get("post", {}):
            problems.append(f"{path}: x-ms-notification-content beside no webhook trigger post")
        if not isinstance(content, dict) or "schema" not in content or set(content) - {"description", "schema"}:
            problems.append(f"{path}: x-ms-notification-content is not {{description, schema}}")
    return problems


def trigger_only_on_trigger_operations(document: dict) -> list[str]:
    problems = []
    for path, method, operation in _operations(document):
        trigger = operation.get("x-ms-trigger")
        if trigger is None:
            continue
        if trigger not in {"single", "batch"}:
            problems.append(f"{method.upper()} {path}: x-ms-trigger {trigger!r} is not single or batch")
        if method != "post":
            problems.append(f"{method.upper()} {path}: a webhook trigger subscribes with post")
            continue
        if "x-ms-notification-content" not in document["paths"][path]:
            problems.append(f"POST {path}: a trigger without x-ms-notification-content on its path item")
        bodies = [p.get("schema", {}) for p in operation.get("parameters", []) if p.get("in") == "body"]
        urls = [
            name
            for body in bodies
            for name, prop in body.get("properties", {}).items()
            if prop.get("x-ms-notification-url") is True
        ]
        if len(urls) != 1:
            problems.append(f"POST {path}: a trigger needs exactly one body property with x-ms-notification-url")
        if "Location" not in operation.get("responses", {}).get("201", {}).get("headers", {}):
            problems.append(f"POST {path}: a trigger answers 201 with a Location header")
    return problems


def unique_operation_ids(document: dict) -> list[str]:
    seen, problems = set(), []
    for path, method, operation in _operations(document):
        operation_id = operation.get("operationId")
        if not operation_id:
            problems.append(f"{method.upper()} {path}: no operationId")
        elif operation_id in seen:
            problems.append(f"{method.upper()} {path}: operationId {operation_id} used twice")
        seen.add(operation_id)
    return problems


def summaries_short_sentence_case_ending_in_a_letter_or_digit(document: dict) -> list[str]:
    problems = []
    for path, method, operation in _operations(document):
        where, summary = f"{method.upper()} {path}", operation.get("summary", "")
        if not summary:
            problems.append(f"{where}: no summary")
            continue
        if len(summary) > 80:
            problems.append(f"{where}: summary longer than 80 characters")
        if not summary[-1].isalnum():
            problems.append(f"{where}: summary {summary!r} ends in {summary[-1]!r}")
        words = summary.split()
        if not words[0][0].isupper():
            problems.append(f"{where}: summary {summary!r} does not start with a capital")
        capitalised = [w for w in words[1:] if w[0].isupper() and not _KEPT_CASE.match(w)]
        if capitalised:
            problems.append(f"{where}: summary {summary!r} is not sentence case ({', '.join(capitalised)})")
    return problems


def every_operation_has_a_description(document: dict) -> list[str]:
    return [
        f"{m.upper()} {p}: no description"
        for p, m, op in _operations(document)
        if not op.get("description", "").strip()
    ]


def every_parameter_has_a_summary(document: dict) -> list[str]:
    return [
        f"{where}: no x-ms-summary"
        for where, parameter in _parameters(document)
        if not parameter.get("x-ms-summary", "").strip()
    ]


def path_parameters_encoded_once(document: dict) -> list[str]:
    return [
        f'{where}: a path parameter needs x-ms-url-encoding "single"'
        for where, parameter in _parameters(document)
        if parameter.get("in") == "path" and parameter.get("x-ms-url-encoding") != "single"
    ]


def visibilities_are_known(document: dict) -> list[str]:
    found = [(f"{m.upper()} {p}", op.get("x-ms-visibility")) for p, m, op in _operations(document)]
    found += [(where, parameter.get("x-ms-visibility")) for where, parameter in _parameters(document)]
    return [f"{where}: x-ms-visibility {v!r}" for where, v in found if v is not None and v not in VISIBILITIES]


def title_short_without_api_or_connector(document: dict) -> list[str]:
    title = document.get("info", {}).get("title", "")
    problems = [] if title.strip() else ["no title"]
    if len(title) > 30:
        problems.append(f"title {title!r} is longer than 30 characters")
    if re.search(r"\b(api|connector)\b", title, re.IGNORECASE):
        problems.append(f"title {title!r} says API or Connector")
    return problems


def connection_test_names_an_operation(document: dict) -> list[str]:
    named = document.get("x-ms-capabilities", {}).get("testConnection", {}).get("operationId")
    ids = {op.get("operationId") for _, _, op in _operations(document)}
    return [] if named in ids else [f"testConnection names {named!r}, no operation of the document"]


def dynamic_values_name_an_operation_of_the_document(document: dict) -> list[str]:
    ids = {op.get("operationId") for _, _, op in _operations(document)}
    problems = []
    for where, parameter in _parameters(document):
        for name, prop in parameter.get("schema", {}).get("properties", {}).items():
            dynamic = prop.get("x-ms-dynamic-values")
            if dynamic is None:
                continue
            if dynamic.get("operationId") not in ids:
                problems.append(
                    f"{where}.{name}: x-ms-dynamic-values names {dynamic.get('operationId')!r}, no operation"
                )
            if not dynamic.get("value-path") or not dynamic.get("value-title"):
                problems.append(f"{where}.{name}: x-ms-dynamic-values without value-path and value-title")
    return problems


def _dynamic_values(d) -> dict:
    return next(
        prop["x-ms-dynamic-values"]
        for _, parameter in _parameters(d)
        for prop in parameter.get("schema", {}).get("properties", {}).values()
        if "x-ms-dynamic-values" in prop
    )


RULES = [
    notification_content_on_the_path_item,
    trigger_only_on_trigger_operations,
    unique_operation_ids,
    summaries_short_sentence_case_ending_in_a_letter_or_digit,
    every_operation_has_a_description,
    every_parameter_has_a_summary,
    path_parameters_encoded_once,
    visibilities_are_known,
    title_short_without_api_or_connector,
    connection_test_names_an_operation,
    dynamic_values_name_an_operation_of_the_document,
]


@pytest.fixture(scope="module")
def document():
    return powerautomate.document(manifest_module.load(), BASE_URL)


def _first(document: dict, wanted) -> dict:
    return next(op for _, _, op in _operations(document) if wanted(op))


def _move_content_into_post(d):
    path = next(p for p, item in d["paths"].items() if "x-ms-notification-content" in item)
    d["paths"][path]["post"]["x-ms-notification-content"] = d["paths"][path].pop("x-ms-notification-content")


def _duplicate_id(d):
    ops = [op for _, _, op in _operations(d)]
    ops[1]["operationId"] = ops[0]["operationId"]


def _unencoded_path_parameter(d):
    parameter = next(p for _, p in _parameters(d) if p["in"] == "path")
    del parameter["x-ms-url-encoding"]


#: One document breaking each rule: the rule must see it (anti-examples, as Zapier's schema keeps them).
BREAKS = {
    notification_content_on_the_path_item: _move_content_into_post,
    trigger_only_on_trigger_operations: lambda d: _first(d, lambda op: "x-ms-trigger" not in op).update(
        {"x-ms-trigger": "single"}
    ),
    unique_operation_ids: _duplicate_id,
    summaries_short_sentence_case_ending_in_a_letter_or_digit: lambda d: _first(d, lambda op: True).update(
        {"summary": "New Opt-out (STOP)"}
    ),
    every_operation_has_a_description: lambda d: _first(d, lambda op: "description" in op).pop("description"),
    every_parameter_has_a_summary: lambda d: next(p for _, p in _parameters(d) if "x-ms-summary" in p).pop(
        "x-ms-summary"
    ),
    path_parameters_encoded_once: _unencoded_path_parameter,
    visibilities_are_known: lambda d: _first(d, lambda op: True).update({"x-ms-visibility": "hidden"}),
    title_short_without_api_or_connector: lambda d: d["info"].update({"title": "AllMySMS API Connector"}),
    connection_test_names_an_operation: lambda d: d["x-ms-capabilities"]["testConnection"].update(
        {"operationId": "Nowhere"}
    ),
    dynamic_values_name_an_operation_of_the_document: lambda d: _dynamic_values(d).update({"operationId": "Nowhere"}),
}


def test_the_power_automate_export_is_valid_swagger_2(document):
    validate(document, cls=OpenAPIV2SpecValidator)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_the_power_automate_export_keeps_each_of_microsofts_rules(document, rule):
    assert rule(document) == []


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_each_rule_catches_a_document_that_breaks_it(document, rule):
    broken = copy.deepcopy(document)
    BREAKS[rule](broken)
    assert rule(broken), f"{rule.__name__} saw nothing wrong"


@pytest.mark.parametrize(
    "summary, sentence",
    [
        ("Send SMS", True),
        ("Get AllMySMS account ID", True),
        ("When reply received", True),
        ("Estimate SMS Cost", False),
        ("New opt-out (STOP)", False),
        ("send SMS", False),
        ("List events:", False),
    ],
)
def test_the_summary_rule_accepts_sentence_case_and_refuses_title_case(summary, sentence):
    document = {"paths": {"/x": {"get": {"summary": summary}}}}
    assert (summaries_short_sentence_case_ending_in_a_letter_or_digit(document) == []) is sentence


def test_a_manifest_label_becomes_a_sentence_case_summary_keeping_acronyms():
    labels = {
        "New Opt-out (STOP)": "New opt-out STOP",
        "Estimate SMS Cost": "Estimate SMS cost",
        "Get Account Credits": "Get account credits",
        "Check AllMySMS ID.": "Check AllMySMS ID",
    }
    assert {label: powerautomate._summary(label) for label in labels} == labels


def test_each_webhook_trigger_tells_the_user_that_its_callback_url_is_what_protects_it(document):
    for _, _, operation in _operations(document):
        if "x-ms-trigger" in operation:
            assert "cannot verify the webhook-signature" in operation["description"]
            assert "sig=" in operation["description"]

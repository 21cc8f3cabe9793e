"""Tests for connector.description.validation: JSON Schema failures read as field errors a person can act on."""

import pytest
from jsonschema import Draft202012Validator

from connector.description import manifest
from connector.description.catalog import BASE_URI
from connector.description.validation import MAX_LISTED, check, field_path, invalid_input
from connector.errors import FieldError, InvalidInput

CATALOG = manifest.load().catalog
SEND = "actions/send_sms.input.json"
SCHEDULE = "actions/schedule_sms.input.json"
VOICE = "actions/send_voice.input.json"
CANCEL = "actions/cancel_scheduled.input.json"
SMS_FIELDS = [
    "message",
    "recipients",
    "sender",
    "campaign_name",
    "add_stop_mention",
    "flash",
    "client_reference",
    "invalid_numbers",
]


def _problems(name: str, document) -> dict[str, str]:
    return {f.path: f.message for f in check(CATALOG.validator(name), document, CATALOG.resolved(name))}


def _sms(**fields) -> dict:
    return {"message": "Hi", "recipients": ["0611111111"], **fields}


# --- one message per kind of problem --------------------------------------------------------


def test_a_valid_document_has_no_problem():
    assert _problems(SEND, _sms()) == {}


def test_a_missing_field_is_named_and_said_to_be_required():
    assert _problems(SEND, {"recipients": ["0611111111"]}) == {"message": "This field is required."}


def test_every_missing_field_is_reported_at_once():
    assert _problems(SEND, {}) == {"message": "This field is required.", "recipients": "This field is required."}


def test_an_unknown_field_is_named_and_the_accepted_fields_listed():
    assert _problems(SEND, _sms(colour="red")) == {
        "colour": "Unknown field 'colour'. Accepted fields: " + ", ".join(SMS_FIELDS) + "."
    }


def test_the_accepted_fields_of_a_schema_built_on_shared_fields_include_its_own():
    problems = _problems(SCHEDULE, _sms(send_at="2030-12-01 09:30", zz=1))
    assert problems["zz"].endswith("Accepted fields: " + ", ".join(SMS_FIELDS + ["send_at"]) + ".")


def test_send_at_is_an_unknown_field_of_an_immediate_send():
    assert list(_problems(SEND, _sms(send_at="2030-12-01 09:30"))) == ["send_at"]


def test_an_unknown_field_inside_a_recipient_lists_the_recipients_fields():
    problems = _problems(SEND, _sms(recipients=["0611111111", {"phone_number": "0622222222", "name": "Al"}]))
    assert problems == {"recipients[1].name": "Unknown field 'name'. Accepted fields: phone_number, params."}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("message", 5, "Expected text, got a number."),
        ("message", None, "Expected text, got null."),
        ("flash", "yes", "Expected true or false, got text."),
        ("add_stop_mention", 1, "Expected true or false, got a number."),
        ("campaign_name", ["a"], "Expected text, got a list."),
        ("invalid_numbers", {"x": 1}, "Expected text, got an object."),
    ],
)
def test_a_value_of_the_wrong_type_says_what_was_expected_and_what_came(field, value, message):
    assert _problems(SEND, _sms(**{field: value}))[field] == message


def test_a_document_that_is_not_an_object_is_blamed_on_the_body():
    assert _problems(SEND, ["x"]) == {"(body)": "Expected an object, got a list."}


def test_a_text_that_is_too_long_says_the_limit_and_its_length():
    assert _problems(SEND, _sms(message="x" * 641)) == {
        "message": "Must be at most 640 characters long (this one has 641)."
    }


def test_an_empty_text_is_said_to_be_empty():
    assert _problems(SEND, _sms(message="")) == {"message": "This field is empty."}


def test_an_empty_list_is_said_to_be_empty():
    assert _problems(SEND, _sms(recipients=[])) == {"recipients": "The list is empty."}


def test_a_value_outside_its_enum_lists_the_choices():
    assert _problems(SEND, _sms(invalid_numbers="drop")) == {"invalid_numbers": "Must be one of: reject, skip."}


def test_a_field_with_its_own_error_text_uses_it():
    assert _problems(SEND, _sms(sender="My Shop!")) == {
        "sender": "A sender is up to 11 letters, digits or spaces (no accents or punctuation) starting with a "
        "letter, or empty to use the short code 36180."
    }


def test_a_bad_item_in_the_recipients_list_is_blamed_at_its_index():
    problems = _problems(SEND, _sms(recipients=["0611111111", 12, "0633333333"]))
    assert list(problems) == ["recipients[1]"]
    assert "phone number" in problems["recipients[1]"]


def test_a_recipient_object_without_a_phone_number_is_blamed_at_its_phone_number():
    assert _problems(SEND, _sms(recipients=[{"params": ["a"]}])) == {
        "recipients[0].phone_number": "This field is required."
    }


def test_a_bad_param_is_blamed_at_its_own_index():
    problems = _problems(SEND, _sms(recipients=[{"phone_number": "0611111111", "params": ["ok", True]}]))
    assert problems == {"recipients[0].params[1]": "Expected text or a number, got true/false."}


def test_recipients_that_are_neither_a_list_nor_a_text_get_the_recipients_explanation():
    problems = _problems(SEND, _sms(recipients=5))
    assert list(problems) == ["recipients"]
    assert "commas, semicolons or new lines" in problems["recipients"]


def test_problems_come_sorted_with_indexes_compared_as_numbers():
    problems = list(_problems(SEND, _sms(recipients=[12] * 12)))
    assert problems == [f"recipients[{i}]" for i in range(12)]


def test_one_problem_per_field_path():
    problems = check(CATALOG.validator(SEND), _sms(message=""), CATALOG.resolved(SEND))
    assert len(problems) == len({p.path for p in problems})


def test_a_voice_message_needs_exactly_one_of_audio_or_text():
    expected = {"(body)": "Give either an audio file URL or a text to read, not both."}
    assert _problems(VOICE, {"recipients": ["0611111111"]}) == expected
    assert _problems(VOICE, {"recipients": ["0611111111"], "audio_url": "https://e.com/a.mp3", "text": "x"}) == expected


def test_a_cancel_with_a_null_campaign_id_in_its_list_is_blamed_at_that_item():
    assert _problems(CANCEL, {"campaign_id": ["1", None]}) == {
        "campaign_id[1]": "Expected text or a whole number, got null."
    }


def test_an_unknown_field_named_with_digits_is_reported_beside_other_problems():
    problems = _problems(SEND, {"1": "x", "10": "y"})
    assert list(problems) == ["1", "10", "message", "recipients"]


# --- field_path and invalid_input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "path"),
    [
        ([], "(body)"),
        (["message"], "message"),
        (["recipients", 3], "recipients[3]"),
        (["recipients", 3, "params", 0], "recipients[3].params[0]"),
        ([0], "[0]"),
    ],
)
def test_field_path_reads_like_the_document(parts, path):
    assert field_path(parts) == path


def test_one_problem_is_summed_up_by_itself():
    error = invalid_input([FieldError("message", "This field is empty.")])
    assert isinstance(error, InvalidInput)
    assert error.message == "message: This field is empty."
    assert error.extra == {}


def test_several_problems_are_counted_and_the_first_shown():
    error = invalid_input([FieldError("a", "A is wrong."), FieldError("b", "B is wrong.")])
    assert error.message == "2 problems with the input, the first: a: A is wrong."
    assert [f.path for f in error.fields] == ["a", "b"]


def test_past_max_listed_problems_the_rest_are_counted_not_listed():
    problems = [FieldError(f"recipients[{i}]", "Bad.") for i in range(MAX_LISTED + 7)]
    error = invalid_input(problems)
    assert len(error.fields) == MAX_LISTED
    assert error.extra == {"more_fields": 7}
    body = error.as_json()["error"]
    assert body["more_fields"] == 7 and len(body["fields"]) == MAX_LISTED and body["code"] == "invalid_input"


# --- every schema's examples and counterexamples ----------------------------------------------


def _cases(key: str):
    return [
        pytest.param(name, i, doc, id=f"{name}[{i}]")
        for name in CATALOG.names
        for i, doc in enumerate(CATALOG.documents[name].get(key, []))
    ]


def _definition_examples():
    # Examples given on the shared definitions in defs.json, checked against their own definition.
    definitions = CATALOG.documents["defs.json"]["$defs"]
    return [
        pytest.param(key, example, id=f"defs.json#/$defs/{key}[{i}]")
        for key, definition in definitions.items()
        for i, example in enumerate(definition.get("examples", []))
    ]


EXAMPLES = _cases("examples")
COUNTEREXAMPLES = _cases("x-counterexamples")


def test_the_catalog_has_examples_and_counterexamples_to_run():
    assert len(EXAMPLES) >= 5 and len(COUNTEREXAMPLES) >= 10
    assert {name for name, *_ in (p.values for p in EXAMPLES)} >= {SEND, SCHEDULE, VOICE, CANCEL}


@pytest.mark.parametrize(("name", "index", "document"), EXAMPLES)
def test_every_schema_example_validates(name, index, document):
    assert _problems(name, document) == {}


@pytest.mark.parametrize(("name", "index", "document"), COUNTEREXAMPLES)
def test_every_schema_counterexample_yields_a_field_error_with_a_message(name, index, document):
    problems = check(CATALOG.validator(name), document, CATALOG.resolved(name))
    assert problems
    for problem in problems:
        assert problem.path
        assert problem.message.strip()


@pytest.mark.parametrize(("key", "example"), _definition_examples())
def test_every_shared_definition_example_validates(key, example):
    validator = Draft202012Validator({"$ref": f"{BASE_URI}defs.json#/$defs/{key}"}, registry=CATALOG.registry)
    assert list(validator.iter_errors(example)) == []


@pytest.mark.parametrize(
    "name",
    [
        "actions/send_sms.output.json",
        "actions/estimate_sms.output.json",
        "actions/send_voice.output.json",
        "actions/get_account.output.json",
        "actions/cancel_scheduled.output.json",
    ],
)
def test_every_action_sample_in_the_manifest_validates_against_its_output_schema(name):
    samples = [a.sample for a in manifest.load().actions if a.output == name]
    assert samples
    for sample in samples:
        assert _problems(name, sample) == {}


def test_the_fast_screen_and_the_explaining_validator_agree_on_bad_and_good_inputs():
    from connector.description.manifest import load

    catalog = load().catalog
    name = "actions/send_sms.input.json"
    cases = [
        {"message": "Hi", "recipients": ["0611111111"]},
        {"message": "Hi", "recipients": "0611111111"},
        {"message": "Hi", "recipients": [{"phone_number": "06", "params": ["a", 1, 2.5]}]},
        {"message": "Hi", "recipients": [{"phone_number": "06", "params": [None]}]},
        {"message": "Hi", "recipients": [{"phone_number": "06", "params": [True]}]},
        {"message": "Hi", "recipients": [["0611111111"]]},
        {"message": "Hi", "recipients": ["0611111111"], "sender": "Ab"},
        {"message": "Hi", "recipients": ["0611111111"], "sender": "Abc"},
        {"message": "Hi", "recipients": ["0611111111"], "sender": "Abcdefghijkl"},
        {"message": "Hi", "recipients": ["0611111111"], "sender": "1abc"},
        {"message": "Hi", "recipients": ["0611111111"], "sender": "Shop\n"},
        {"message": "Hi", "recipients": ["0611111111"], "client_reference": "a b"},
        {"message": "x" * 640, "recipients": ["1"]},
        {"message": "x" * 641, "recipients": ["1"]},
        {"message": "😀" * 640, "recipients": ["1"]},
        {"message": "Hi", "recipients": ["0611111111"], "flash": 1},
        {"message": "Hi", "recipients": ["0611111111"], "invalid_numbers": "ignore"},
    ]
    for case in cases:
        explained = catalog.check(name, case) == [] if catalog.fast_validator(name).is_valid(case) else None
        assert catalog.fast_validator(name).is_valid(case) == catalog.validator(name).is_valid(case), case
        assert explained in (True, None)


def test_when_the_explaining_validator_finds_nothing_the_fast_screens_words_are_used():
    from connector.description.catalog import Validator
    from connector.description.manifest import load

    catalog = load().catalog
    name = "actions/send_sms.input.json"
    catalog._validators[name] = Validator({})  # an explainer that accepts everything
    problems = catalog.check(name, {"message": "Hi", "recipients": ["0611111111"], "sender": "Way too long"})
    assert [p.path for p in problems] == ["sender"] and problems[0].message

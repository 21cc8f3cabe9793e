"""The shipped manifest loads; broken ones stop the service listing every problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from connector.description import manifest
from connector.errors import ConfigError
from connector.sending.actions import HANDLERS

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_manifest_and_schemas_load_without_problems():
    loaded = manifest.load()
    assert [a.key for a in loaded.actions] == [
        "send_sms",
        "schedule_sms",
        "cancel_scheduled",
        "estimate_sms",
        "send_voice",
        "get_account",
        "send_mms",
        "send_email",
        "create_list",
        "add_contact",
        "remove_contact",
    ]
    assert [t.event_type for t in loaded.triggers] == [
        "sms.delivery_receipt",
        "sms.reply_received",
        "sms.opt_out",
        "account.credits_low",
    ]
    assert [t.delivery for t in loaded.triggers] == ["push", "push", "poll", "poll"]
    assert loaded.secret_fields == ("apiKey",)


def test_every_action_has_a_handler_and_every_handler_an_action():
    assert manifest.check_handlers(manifest.load(), HANDLERS) == []


def test_a_missing_handler_and_an_undescribed_one_are_both_reported():
    handlers = {k: v for k, v in HANDLERS.items() if k != "send_voice"} | {"send_fax": lambda ctx, p: {}}
    assert manifest.check_handlers(manifest.load(), handlers) == [
        "action 'send_voice' has no handler",
        "handler 'send_fax' is not described in the manifest",
    ]


@pytest.fixture
def copy(tmp_path):
    """A writable copy of manifest.yaml and schemas/."""
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    raw = yaml.safe_load((ROOT / "manifest.yaml").read_text())

    def load(mutate=None, mutate_schemas=None):
        data = json.loads(json.dumps(raw))
        if mutate:
            mutate(data)
        if mutate_schemas:
            mutate_schemas(tmp_path / "schemas")
        (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(data))
        return manifest.load(tmp_path / "manifest.yaml", tmp_path / "schemas")

    return load


def problems_of(load, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(**kwargs)
    return caught.value.problems


def test_the_copy_of_the_shipped_manifest_loads(copy):
    assert [a.key for a in copy().actions] == [a.key for a in manifest.load().actions]


def test_several_structural_problems_are_all_listed_at_once(copy):
    def break_it(data):
        data["actions"][0]["label"] = ""
        del data["actions"][1]["output"]
        data["actions"][2]["colour"] = "blue"
        data["auth"]["type"] = "oauth2"

    problems = problems_of(copy, mutate=break_it)
    assert any("actions[0].label" in p for p in problems)
    assert any("actions[1].output" in p and "required" in p for p in problems)
    assert any("colour" in p for p in problems)
    assert any("auth.type" in p for p in problems)


def test_a_sample_that_does_not_match_its_schema_is_reported(copy):
    def break_it(data):
        data["actions"][0]["sample"]["credits_used"] = "thirty"
        data["triggers"][0]["sample"]["type"] = "sms.other"

    problems = problems_of(copy, mutate=break_it)
    assert any("send_sms: sample credits_used" in p for p in problems)
    assert any("delivery_receipt: sample type is 'sms.other'" in p for p in problems)


def test_a_duplicate_key_and_a_missing_schema_file_are_reported(copy):
    def break_it(data):
        data["actions"][1]["key"] = "send_sms"
        data["actions"][2]["input"] = "actions/nothing.input.json"

    problems = problems_of(copy, mutate=break_it)
    assert "key 'send_sms' is used more than once" in problems
    assert any("schemas/actions/nothing.input.json does not exist" in p for p in problems)


def test_a_schema_whose_counterexample_validates_is_reported(copy):
    def loosen(schemas: Path):
        path = schemas / "actions" / "cancel_scheduled.input.json"
        document = json.loads(path.read_text())
        document["required"] = []
        path.write_text(json.dumps(document))

    problems = problems_of(copy, mutate_schemas=loosen)
    assert "schemas/actions/cancel_scheduled.input.json: x-counterexamples[0] validates but should not" in problems


def test_a_schema_with_a_wrong_id_or_bad_json_is_reported(copy):
    def damage(schemas: Path):
        path = schemas / "actions" / "get_account.output.json"
        document = json.loads(path.read_text())
        document["$id"] = "https://elsewhere.example/x.json"
        path.write_text(json.dumps(document))
        (schemas / "events" / "sms.reply_received.json").write_text("{not json")

    problems = problems_of(copy, mutate_schemas=damage)
    assert any("get_account.output.json: $id must be" in p for p in problems)
    assert any("sms.reply_received.json: not readable JSON" in p for p in problems)


def test_an_unreadable_manifest_says_so(tmp_path):
    (tmp_path / "manifest.yaml").write_text("actions: [unclosed")
    with pytest.raises(ConfigError) as caught:
        manifest.load(tmp_path / "manifest.yaml", ROOT / "schemas")
    assert "cannot be read" in str(caught.value)


def test_the_resolved_description_inlines_every_reference():
    described = manifest.load().describe()
    text = json.dumps(described)
    assert "$ref" not in text
    send = next(a for a in described["actions"] if a["key"] == "schedule_sms")
    assert set(send["input"]["properties"]) >= {"message", "recipients", "sender", "send_at"}
    assert "send_at" in send["input"]["required"] and "message" in send["input"]["required"]
    assert send["request"] == {"method": "POST", "path": "/v1/actions/schedule_sms"}


def test_the_manifest_route_serves_the_resolved_description(client):
    response = client.get("/v1/manifest")
    assert response.status_code == 200
    assert response.get_json() == json.loads(json.dumps(manifest.load().describe()))

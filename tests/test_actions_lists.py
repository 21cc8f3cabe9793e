"""Contact lists end to end (Create List, Add or Update Contact, Remove Contact), and their feeds."""

from __future__ import annotations

import json

import pytest

from connector.errors import InvalidInput
from connector.sending import contacts, messages
from connector.sending.actions import Context, list_names
from connector.sending.upstream import AllMySMS, Credentials
from tests.conftest import DEMO, Scripted


def _create(api, name="VIP", fields=("Firstname", "City")):
    response = api.action("create_list", {"name": name, "fields": list(fields)})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_list_is_created_with_its_fields_and_shows_among_the_accounts_lists(api, sandbox):
    body = _create(api)
    assert body == {
        "id": "VIP",
        "name": "VIP",
        "fields": ["Firstname", "City"],
        "locked": False,
        "status_text": "database successfully populated",
    }
    assert [found["listName"] for found in sandbox.state.contact_lists.all("demo")] == ["VIP"]


def test_the_list_feed_has_the_public_clients_structure(through, scripted):
    scripted.script(Scripted(body={"lists": []}), Scripted(body={"status": "1", "statusText": "ok"}))
    response = through().action("create_list", {"name": "Shop 12", "fields": "Firstname; Lastname", "locked": True})
    assert response.status_code == 200, response.text
    assert [r["path"] for r in scripted.requests] == ["/http/9.0/getLists/", "/http/9.0/createList/"]
    assert json.loads(scripted.requests[-1]["form"]["listData"]) == {
        "DATA": {
            "LISTNAME": "Shop 12",
            "LOCKED": "1",
            "STRUCTURE": [
                {"FIELDNAME": "Firstname", "FILTER": 0, "MAILING": 0},
                {"FIELDNAME": "Lastname", "FILTER": 0, "MAILING": 0},
            ],
        }
    }


def test_a_list_name_already_taken_is_refused_before_allmysms_is_asked_to_create(api, sandbox):
    _create(api)
    response = api.action("create_list", {"name": "VIP"})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["path"] == "name"
    assert "already exists" in response.json()["error"]["message"]


def test_a_contact_is_added_with_its_fields_then_counted_as_already_there(api, sandbox):
    _create(api)
    body = {"list_name": "VIP", "phone_number": "06 12 34 56 78", "fields": "Firstname=Michel\nCity=Lyon"}
    first = api.action("add_contact", body)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "id": "VIP",
        "list_name": "VIP",
        "phone_number": "+33612345678",
        "succeeded": 1,
        "ignored": 0,
        "duplicated": 0,
        "status_text": "list VIP successfully populated",
    }
    assert sandbox.state.contact_lists.numbers("demo", "VIP") == ("33612345678",)
    again = api.action("add_contact", {**body, "fields": {"Firstname": "Michel"}})
    assert again.status_code == 200 and again.json()["duplicated"] == 1 and again.json()["succeeded"] == 0


def test_the_contact_feed_carries_the_number_as_allmysms_writes_it_and_each_field(through, scripted):
    scripted.script(Scripted(body={"lists": [{"listName": "VIP", "contacts": "0", "locked": "0"}]}))
    scripted.default.body = {"status": "1", "statusText": "ok", "success": 1, "ignored": 0, "duplicated": 0}
    api = through()
    response = api.action("add_contact", {"list_name": "VIP", "phone_number": "+33612345678", "fields": {"Age": 42.0}})
    assert response.status_code == 200, response.text
    assert json.loads(scripted.requests[-1]["form"]["populateData"]) == {
        "DATA": {"LISTNAME": "VIP", "CONTACTS": [{"MOBILEPHONE": "33612345678", "Age": "42"}]}
    }


def test_a_contact_is_removed_and_a_number_not_in_the_list_is_ignored(api, sandbox):
    _create(api)
    api.action("add_contact", {"list_name": "VIP", "phone_number": "0612345678"})
    removed = api.action("remove_contact", {"list_name": "VIP", "phone_number": "+33 6 12 34 56 78"})
    assert removed.status_code == 200, removed.text
    assert removed.json()["succeeded"] == 1 and sandbox.state.contact_lists.numbers("demo", "VIP") == ()
    again = api.action("remove_contact", {"list_name": "VIP", "phone_number": "0612345678"})
    assert again.json()["succeeded"] == 0 and again.json()["ignored"] == 1


@pytest.mark.parametrize("action", ["add_contact", "remove_contact"])
def test_an_unknown_list_is_refused_with_the_accounts_lists(api, sandbox, action):
    _create(api, "VIP")
    _create(api, "Newsletter", ())
    response = api.action(action, {"list_name": "vip", "phone_number": "0612345678"})
    assert response.status_code == 422, response.text
    field = response.json()["error"]["fields"][0]
    assert field["path"] == "list_name"
    assert "Did you mean" in field["message"] and "VIP" in field["message"] and "Newsletter" in field["message"]


def test_an_account_without_lists_is_told_to_create_one(api):
    response = api.action("add_contact", {"list_name": "VIP", "phone_number": "0612345678"})
    assert response.status_code == 422
    assert "no contact list yet" in response.json()["error"]["fields"][0]["message"]


LIST_BAD_INPUTS = [
    ("create_list", "blank name", {"name": "  "}, "name"),
    ("create_list", "phone number as a field", {"name": "A", "fields": ["Firstname", "mobilephone"]}, "fields[1]"),
    ("create_list", "field with punctuation", {"name": "A", "fields": "First.name"}, "fields"),
    ("create_list", "field twice", {"name": "A", "fields": ["City", "city"]}, "fields[1]"),
    ("create_list", "too many fields", {"name": "A", "fields": ",".join(f"F{i}" for i in range(31))}, "fields"),
    ("add_contact", "bad number", {"list_name": "A", "phone_number": "12"}, "phone_number"),
    ("add_contact", "line without =", {"list_name": "A", "phone_number": "0612345678", "fields": "Michel"}, "fields"),
    (
        "add_contact",
        "bad field name",
        {"list_name": "A", "phone_number": "0612345678", "fields": {"1st": "x"}},
        "fields.1st",
    ),
    (
        "add_contact",
        "value with a control character",
        {"list_name": "A", "phone_number": "0612345678", "fields": {"A": "x\x01"}},
        "fields.A",
    ),
    ("remove_contact", "missing number", {"list_name": "A"}, "phone_number"),
    ("remove_contact", "fields given", {"list_name": "A", "phone_number": "0612345678", "fields": "A=b"}, "fields"),
]


@pytest.mark.parametrize("action, name, body, path", LIST_BAD_INPUTS, ids=[b[1] for b in LIST_BAD_INPUTS])
def test_bad_list_input_is_refused_naming_the_field(api, sandbox, action, name, body, path):
    response = api.action(action, body)
    assert response.status_code == 422, response.text
    assert path in [f["path"] for f in response.json()["error"]["fields"]]
    assert sandbox.state.contact_lists.all("demo") == []


def test_a_key_creates_a_list_once_and_answers_the_same(api, sandbox):
    first = api.action("create_list", {"name": "VIP"}, headers={"Idempotency-Key": "list-1"})
    second = api.action("create_list", {"name": "VIP"}, headers={"Idempotency-Key": "list-1"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() and second.headers["Idempotent-Replayed"] == "true"


def test_list_names_reads_the_accounts_lists_for_a_choice_of_list(api, sandbox):
    _create(api, "VIP")
    _create(api, "Newsletter", ())
    ctx = Context(
        upstream=AllMySMS(sandbox.url),
        credentials=Credentials(*DEMO),
        rules=messages.Rules(),
        feed_format="json",
        recipients_per_feed=100,
        credits_per_sms_fr=15,
    )
    assert list_names(ctx) == ["VIP", "Newsletter"]


def test_a_contact_given_as_lines_keeps_its_fields_in_order():
    found = contacts.contact(
        {"list_name": " VIP ", "phone_number": "0612345678", "fields": "City = Lyon\n\nNote=a=b"}, messages.Rules()
    )
    assert found == contacts.Contact("VIP", "+33612345678", (("City", "Lyon"), ("Note", "a=b")))


def test_an_unknown_list_error_names_at_most_twenty_lists():
    error = contacts.unknown_list("X", [f"L{i}" for i in range(25)])
    assert isinstance(error, InvalidInput) and "and 5 more" in error.fields[0].message


@pytest.mark.parametrize(
    "fixture, field, build",
    [
        ("createList.populate", "populateData", contacts.populate_data),
        ("createList.delete_contacts", "deleteData", contacts.delete_data),
    ],
)
def test_the_contact_feeds_have_the_shape_of_the_recorded_requests(fixture, field, build):
    recorded = json.loads(open(f"tests/contract/replies/{fixture}.json").read())["request"][field]["DATA"]
    contact = recorded["CONTACTS"][0]
    fields = tuple((k, v) for k, v in contact.items() if k != "MOBILEPHONE") if field == "populateData" else ()
    ours = json.loads(build(contacts.Contact(recorded["LISTNAME"], "+" + contact["MOBILEPHONE"], fields)))["DATA"]
    # SUBACCOUNT is null in the recording: this connector speaks for the account itself, and leaves it out.
    assert ours == {k: v for k, v in recorded.items() if k != "SUBACCOUNT"}

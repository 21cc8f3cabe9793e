"""The routes that fill dropdowns from the account: GET /v1/options/<kind>, one per ``x-options`` of the schemas."""

from __future__ import annotations

import pytest
import requests

from connector import create_app
from connector.errors import ConfigError
from connector.sending.options import OPTIONS
from connector.web import operations
from tests.conftest import Scripted, connector_settings


def test_the_contact_lists_are_answered_with_their_names_and_sizes_after_create_list(api):
    assert api.get("/v1/options/contact_lists").json() == []
    for name in ("VIP", "Newsletter"):
        assert api.action("create_list", {"name": name}).status_code == 200
    assert api.action("add_contact", {"list_name": "VIP", "phone_number": "0612345678"}).status_code == 200
    response = api.get("/v1/options/contact_lists")
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"value": "VIP", "label": "VIP (1 contact)"},
        {"value": "Newsletter", "label": "Newsletter (0 contacts)"},
    ]


def test_the_choices_need_the_accounts_credentials(api):
    assert requests.get(f"{api.url}/v1/options/contact_lists", timeout=30).status_code == 401


def test_a_list_without_a_name_is_not_offered(through, scripted):
    scripted.script(
        Scripted(body={"lists": [{"listName": "", "contacts": "3"}, {"listName": "Shop", "contacts": "12"}]})
    )
    assert through().get("/v1/options/contact_lists").json() == [{"value": "Shop", "label": "Shop (12 contacts)"}]


def test_each_kind_of_choice_the_schemas_name_has_its_operation(app):
    table = operations.table(app.extensions["connector"].manifest)
    assert [(op.key, op.path) for op in table if op.options] == [("contact_lists", "/v1/options/contact_lists")]


def test_a_kind_of_choice_no_code_answers_stops_the_app(monkeypatch, sandbox):
    monkeypatch.delitem(OPTIONS, "contact_lists")
    with pytest.raises(ConfigError) as raised:
        create_app(connector_settings(sandbox.url))
    assert "contact_lists" in " ".join(raised.value.problems)

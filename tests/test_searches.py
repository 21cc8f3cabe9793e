"""The searches end to end on the sandbox: a send's status, its campaign report and its replies found through the
API; nothing found is an empty list; bad input names the field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from connector import create_app, exports
from connector.description.manifest import check_handlers, load
from connector.errors import AuthenticationFailed, ConfigError, InvalidInput
from connector.exports import elasticio, guide, make, openapi, powerautomate
from connector.sending import searches
from connector.sending.actions import Context
from connector.sending.messages import Rules
from connector.sending.upstream import Credentials
from tests.conftest import connector_settings, wait_for

BASE_URL = "https://connector.example.com"
ROOT = Path(__file__).resolve().parent.parent
_STATUSES = ["delivered", "undelivered", "pending", "rejected", "unknown_number", "unknown"]


@pytest.fixture(scope="module")
def manifest():
    return load()


@pytest.fixture
def on_sandbox(sandbox, serve):
    return serve(create_app(connector_settings(sandbox.url, ALLMYSMS_SANDBOX=True)))


def _search(api, key, body):
    return api.session.post(f"{api.url}/v1/searches/{key}", json=body, timeout=30)


def _found(api, key, body):
    answer = _search(api, key, body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _final(items):
    """Items whose receipt is final: the sandbox reports some SMS pending first."""
    return [item for item in items if item["status"] != "pending"]


def test_every_search_of_the_manifest_has_a_handler_and_every_handler_a_search():
    assert load().searches and {s.key for s in load().searches} == set(searches.SEARCHES)


def test_a_missing_search_handler_and_an_undescribed_one_are_both_reported(manifest):
    handlers = {k: v for k, v in searches.SEARCHES.items() if k != "find_replies"} | {"find_fax": lambda c, p: []}
    assert check_handlers(manifest, handlers, kind="search") == [
        "search 'find_replies' has no handler",
        "search handler 'find_fax' is not described in the manifest",
    ]


@pytest.fixture
def broken(tmp_path):
    """Loads a copy of manifest.yaml changed by ``mutate``: the ConfigError's problems."""
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    raw = yaml.safe_load((ROOT / "manifest.yaml").read_text())

    def problems(mutate) -> list[str]:
        mutate(raw)
        (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError) as caught:
            load(tmp_path / "manifest.yaml", tmp_path / "schemas")
        return caught.value.problems

    return problems


def test_a_search_sample_that_does_not_match_its_item_schema_stops_the_service(broken):
    found = broken(lambda raw: raw["searches"][0]["sample"].update(status="lost"))
    assert found == [f"find_sms_status: sample status: Must be one of: {', '.join(_STATUSES)}."], found


def test_a_search_with_a_field_the_meta_schema_does_not_know_stops_the_service(broken):
    found = broken(lambda raw: raw["searches"][0].update(limit=3))
    assert found == ["manifest.yaml searches[0].limit: Unknown field 'limit'."], found


def test_a_search_key_taken_by_an_action_stops_the_service(broken):
    found = broken(lambda raw: raw["searches"][1].update(key=raw["actions"][0]["key"]))
    assert found == [f"key {'send_sms'!r} is used more than once"], found


def test_a_sent_sms_is_found_by_its_id_in_its_campaign_report_and_with_its_replies(on_sandbox):
    sent = on_sandbox.action("send_sms", {"message": "Venez-vous ?", "recipients": ["0611111111", "0622222222"]})
    assert sent.status_code == 200, sent.text
    campaign, sms_id = sent.json()["campaign_id"], sent.json()["sms_ids"][0]["sms_id"]

    status = wait_for(lambda: _final(_found(on_sandbox, "find_sms_status", {"sms_id": sms_id})), what="the receipt")
    assert [(s["id"], s["sms_id"], s["phone_number"]) for s in status] == [(sms_id, sms_id, "+33611111111")]
    assert status[0]["status"] in {"delivered", "undelivered", "rejected", "unknown_number"}
    assert status[0]["received_at"].endswith("Z")

    report = wait_for(
        lambda: (
            len(_final(found := _found(on_sandbox, "find_campaign_report", {"campaign_id": campaign}))) == 2 and found
        ),
        what="both receipts",
    )
    assert [r["id"] for r in report] == [f"{campaign}:1", f"{campaign}:2"]
    assert {r["phone_number"] for r in report} == {"+33611111111", "+33622222222"}
    assert {r["campaign_id"] for r in report} == {campaign}

    assert _found(on_sandbox, "find_replies", {"campaign_id": campaign}) == []
    replied = on_sandbox.session.post(
        f"{on_sandbox.url}/v1/sandbox/replies",
        json={"phone_number": "06 22 22 22 22", "message": "Oui, merci", "sms_id": sent.json()["sms_ids"][1]["sms_id"]},
        timeout=10,
    )
    assert replied.status_code == 201, replied.text
    replies = _found(on_sandbox, "find_replies", {"campaign_id": [campaign]})
    assert [(r["message"], r["phone_number"], r["campaign_id"]) for r in replies] == [
        ("Oui, merci", "+33622222222", campaign)
    ]
    assert replies[0]["id"] == replies[0]["reply_id"]
    # getPull reads without consuming: the same replies every time.
    assert _found(on_sandbox, "find_replies", {"campaign_id": campaign}) == replies


@pytest.mark.parametrize(
    "key, body",
    [
        ("find_sms_status", {"sms_id": "nosuchsms"}),
        ("find_campaign_report", {"campaign_id": "999999"}),
        ("find_replies", {"campaign_id": "999999"}),
    ],
)
def test_nothing_found_is_an_empty_list_not_an_error(on_sandbox, key, body):
    assert _found(on_sandbox, key, body) == []


def test_an_sms_without_a_receipt_yet_is_not_found(sandbox, on_sandbox):
    sandbox.state.close()  # the dispatcher stops: no receipt comes
    sent = on_sandbox.action("send_sms", {"message": "Bonjour", "recipients": ["0611111111"]})
    assert sent.status_code == 200, sent.text
    assert _found(on_sandbox, "find_sms_status", {"sms_id": sent.json()["sms_ids"][0]["sms_id"]}) == []


@pytest.mark.parametrize(
    "key, body, field",
    [
        ("find_sms_status", {}, "sms_id"),
        ("find_sms_status", {"sms_id": "not an id"}, "sms_id"),
        ("find_campaign_report", {"campaign_id": ""}, "campaign_id"),
        ("find_replies", {"campaign_id": "12, n°3"}, "campaign_id"),
        ("find_replies", {"campaign_id": "1", "limit": 3}, "limit"),
        ("find_campaign_report", {"campaign_id": [str(n) for n in range(searches.MAX_CAMPAIGNS + 1)]}, "campaign_id"),
    ],
)
def test_bad_input_is_refused_naming_the_field(on_sandbox, key, body, field):
    answer = _search(on_sandbox, key, body)
    assert answer.status_code == 422, answer.text
    assert field in {f["path"] for f in answer.json()["error"]["fields"]}, answer.text


def test_a_search_with_wrong_credentials_is_refused(on_sandbox):
    on_sandbox.session.auth = ("demo", "wrong-key")
    assert _search(on_sandbox, "find_replies", {"campaign_id": "1"}).status_code == 401


def test_the_manifest_describes_each_search_with_its_route_and_a_list_as_output(client):
    described = client.get("/v1/manifest").get_json()["searches"]
    assert [s["request"] for s in described] == [{"method": "POST", "path": s.path} for s in load().searches]
    assert all(s["output"]["type"] == "array" for s in described)


# --- Every export has the searches, as its platform says "nothing found" ---------------------------------------


def test_openapi_describes_each_search_as_a_post_answering_a_list(manifest):
    paths = openapi.document(manifest, BASE_URL)["paths"]
    for search in manifest.searches:
        operation = paths[search.path]["post"]
        assert operation["operationId"] == search.key and operation["tags"] == ["searches"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
        assert "empty list" in operation["description"]


def test_the_zapier_app_has_a_search_per_search_returning_the_list(manifest):
    rendered = exports.render("zapier", manifest, BASE_URL)
    for search in manifest.searches:
        module = rendered[f"searches/{search.key}.js"]
        assert f"${{BASE_URL}}{search.path}" in module
        assert "return response.data;" in module and "Idempotency-Key" not in module
        assert f"[\"{search.key}\"]: require('./searches/{search.key}')" in rendered["index.js"]


def test_the_make_app_has_a_search_module_iterating_the_items(manifest):
    modules = {m["name"]: m for m in make.app(manifest, BASE_URL)["modules"]}
    for search in manifest.searches:
        module = modules[search.key]
        assert module["typeOf"] == "search"
        assert module["communication"]["response"]["iterate"] == "{{body}}"
        assert (module["communication"]["url"], module["communication"]["method"]) == (search.path, "POST")
        assert "headers" not in module["communication"]


def test_the_n8n_node_has_an_operation_per_search_without_a_key(manifest):
    node = exports.render("n8n", manifest, BASE_URL)["nodes/AllMySms/AllMySms.node.ts"]
    for search in manifest.searches:
        assert f'"value": "{search.key}"' in node
        after_url = node[node.index(f'"url": "{search.path}"') :]
        assert "preSend" not in after_url[: after_url.index("}")]
        assert "preSend" not in after_url[: after_url.index('"value"')]


def test_power_automate_has_an_action_per_search_returning_an_array(manifest):
    paths = powerautomate.document(manifest, BASE_URL)["paths"]
    for search in manifest.searches:
        operation = paths[search.path]["post"]
        assert operation["operationId"] == powerautomate._operation_id(search.key)
        assert operation["parameters"][0]["x-ms-summary"] == search.label
        assert operation["responses"]["200"]["schema"]["type"] == "array"
        assert all(p["name"] != "Idempotency-Key" for p in operation["parameters"])


def test_the_elasticio_component_has_an_action_per_search_emitting_each_item(manifest):
    component = elasticio.component(manifest)
    rendered = exports.render("elasticio", manifest, BASE_URL)
    for search in manifest.searches:
        described = component["actions"][search.key]
        assert described["metadata"]["out"]["properties"]["id"]["required"] is True
        module = rendered[described["main"].removeprefix("./")]
        assert "for (const item of data)" in module and search.path in module


def test_the_guide_lists_each_search_with_its_route(manifest):
    text = guide.guide(manifest, BASE_URL)
    for search in manifest.searches:
        assert f"**{search.label}** — `POST {BASE_URL}{search.path}`" in text


class _Upstream:
    """Answers every read with ``reply``, or raises it."""

    def __init__(self, reply):
        self.reply = reply

    def _answer(self, *args):
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply

    ack_by_sms_id = get_acks = pull = _answer


def _context(reply) -> Context:
    return Context(_Upstream(reply), Credentials("demo", "key"), Rules(), "json", 2000, 15)


def test_a_status_allmysms_does_not_document_is_nothing_found_but_a_documented_refusal_is_an_error():
    unknown = InvalidInput("AllMySMS refused the request.", code="refused_by_allmysms")
    assert searches.find_sms_status(_context(unknown), {"sms_id": "a1"}) == []
    assert searches.find_replies(_context(unknown), {"campaign_id": "1"}) == []
    with pytest.raises(AuthenticationFailed):
        searches.find_campaign_report(_context(AuthenticationFailed("no")), {"campaign_id": "1"})


def test_receipts_and_replies_are_read_in_utc_and_e164_with_ids_of_their_own():
    ack = {"phoneNumber": "33611111111", "statut": "2", "comment": "", "receptionDate": "2026-12-01 09:30:03"}
    assert searches.find_sms_status(_context(ack), {"sms_id": "a1"}) == [
        {
            "id": "a1",
            "sms_id": "a1",
            "phone_number": "+33611111111",
            "status_code": 2,
            "status": "undelivered",
            "comment": None,
            "received_at": "2026-12-01T08:30:03Z",
        }
    ]
    assert searches.find_sms_status(_context({}), {"sms_id": "a1"}) == []
    report = searches.find_campaign_report(_context({"acks": [ack, ack]}), {"campaign_id": "7, 8"})
    assert [r["id"] for r in report] == ["7:1", "7:2", "8:1", "8:2"]
    mos = {"mos": [{"phoneNumber": "33611111111", "message": "Oui", "receptionDate": "2026-12-01 09:41:09"}]}
    assert [
        (r["id"], r["reply_id"], r["campaign_id"]) for r in searches.find_replies(_context(mos), {"campaign_id": "7"})
    ] == [("7:1", None, "7")]

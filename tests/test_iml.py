"""The IML evaluator (tests/iml.py) against Make's documented examples, then every `{{...}}` of the Make export
parsed and evaluated: offline with realistic inputs, and as Make would run the app against the live connector."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from connector.description import manifest as manifest_module
from connector.exports import make
from tests import iml
from tests.conftest import DEMO, wait_for

BASE_URL = "https://connector.example.com"
CONNECTION = {"login": DEMO[0], "apiKey": DEMO[1]}
BASIC = "Basic " + base64.b64encode(f"{DEMO[0]}:{DEMO[1]}".encode()).decode()


# --- Make's documented examples (developer docs "JavaScript in Make"; help "Functions") ---------------------


@pytest.mark.parametrize(
    "template, context, expected",
    [
        ("{{body.data}}", {"body": {"data": {"a": 1}}}, {"a": 1}),
        ("{{'Hello, ' + item.name}}", {"item": {"name": "Ada"}}, "Hello, Ada"),
        ('{{"Hello, " + item.name}}', {"item": {"name": "Ada"}}, "Hello, Ada"),
        ("{{if(body.id > 100, body.user, false)}}", {"body": {"id": 101, "user": "u1"}}, "u1"),
        ("{{if(body.id > 100, body.user, false)}}", {"body": {"id": 7, "user": "u1"}}, False),
        ("{{ifempty(body.username, body.user)}}", {"body": {"username": "ada", "user": "u1"}}, "ada"),
        ("{{ifempty(body.username, body.user)}}", {"body": {"user": "u1"}}, "u1"),
        ("{{ifempty(body.username, body.user)}}", {"body": {"username": None, "user": "u1"}}, "u1"),
        ("{{ifempty(body.username, body.user)}}", {"body": {"username": "", "user": "u1"}}, "u1"),
        ("{{parameters.input.data}}", {"parameters": {"input": {"data": 42}}}, 42),
        ("{{headers.`X-HOOK-TYPE`}}", {"headers": {"X-HOOK-TYPE": "ping"}}, "ping"),
        ("{{parameters.`First Name`}}", {"parameters": {"First Name": "Ada"}}, "Ada"),
        ("{{body.data[2].prop}}", {"body": {"data": [{"prop": "a"}, {"prop": "b"}, {"prop": "c"}]}}, "b"),
        ("{{body.data[-1].prop}}", {"body": {"data": [{"prop": "a"}, {"prop": "b"}, {"prop": "c"}]}}, "c"),
        ("{{get(body.data, 'some property')}}", {"body": {"data": {"some property": 5}}}, 5),
        ("{{get(body, parameters.fieldName)}}", {"body": {"x": 1}, "parameters": {"fieldName": "x"}}, 1),
        (
            "{{get(body.data, if(body.xml == true, 'xml', 'json'))}}",
            {"body": {"xml": True, "data": {"xml": "<a/>", "json": "{}"}}},
            "<a/>",
        ),
        ("{{base64('Make')}}", {}, "TWFrZQ=="),
        ("{{omit(user, 'password')}}", {"user": {"name": "ada", "password": "x"}}, {"name": "ada"}),
    ],
)
def test_the_evaluator_gives_what_makes_documentation_says(template, context, expected):
    assert iml.render(template, context) == expected


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("1 == '1'", False),
        ("1 = 1", True),
        ("1 === 1", True),
        ("1 != '1'", True),
        ("'a' !== 'a'", False),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("7 % 3", 1),
        ("7 / 2", 3.5),
        ("'n' + 1", "n1"),
        ("1 < 2 && 2 <= 2", True),
        ("!true || 3 >= 4", False),
        ("missing.deeper.still", None),
        ("-2 + 1", -1),
    ],
)
def test_operators_are_strict_and_javascript_like_as_documented(expression, expected):
    assert iml.evaluate(expression, {}) == expected


def test_one_expression_keeps_its_type_and_text_around_it_makes_text():
    context = {"statusCode": 422, "body": {"n": 3, "gone": None}}
    assert iml.render("{{statusCode}}", context) == 422
    assert iml.render("[{{statusCode}}] n={{body.n}}{{body.gone}}", context) == "[422] n=3"


@pytest.mark.parametrize(
    "expression",
    [
        "body..id",
        "if(statusCode == 429, 'a'",
        "unknownFunction(body)",
        "body.id +",
        "'open",
        "a ? b : c",
        "x => x",
    ],
)
def test_an_expression_outside_the_subset_is_refused(expression):
    with pytest.raises(iml.IMLError):
        iml.parse(expression)


def test_unbalanced_braces_are_refused():
    with pytest.raises(iml.IMLError):
        iml.render("Basic {{base64(connection.login)", {})


# --- The Make export ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest():
    return manifest_module.load()


@pytest.fixture(scope="module")
def app(manifest):
    return make.app(manifest, BASE_URL)


def test_every_expression_of_the_make_export_is_in_the_subset_we_can_check(app):
    found = iml.expressions(app)
    assert len(found) >= 10
    for expression in found:
        iml.parse(expression)
    # a stray brace would be an expression Make reads and we do not
    for text in _strings(app):
        assert text.count("{{") == text.count("}}") == len(iml.expressions(text)), text


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_the_authorization_header_is_basic_with_login_and_api_key(app):
    assert iml.render_all(app["base"]["headers"], {"connection": CONNECTION}) == {"authorization": BASIC}
    connection = app["connections"][0]
    # the connection dialog's own check uses the values just typed, before the connection exists
    assert iml.render_all(connection["communication"]["headers"], {"parameters": CONNECTION}) == {
        "authorization": BASIC
    }
    assert {p["name"] for p in connection["parameters"]} == set(CONNECTION)


def test_an_api_key_with_non_ascii_characters_is_encoded_as_utf8(app):
    header = iml.render(app["base"]["headers"]["authorization"], {"connection": {"login": "zoé", "apiKey": "k"}})
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "zoé:k"


@pytest.mark.parametrize(
    "status, kind",
    [
        (401, "InvalidAccessTokenError"),
        (402, "DataError"),
        (422, "DataError"),
        (429, "RateLimitError"),
        (502, "ConnectionError"),
        (503, "ConnectionError"),
    ],
)
def test_the_error_mapping_gives_makes_error_type_for_each_status(app, status, kind):
    body = {"error": {"code": "x", "message": "Top up your AllMySMS credits.", "disposition": "top_up"}}
    error = iml.render_all(app["base"]["response"]["error"], {"statusCode": status, "body": body})
    assert error == {"message": f"[{status}] Top up your AllMySMS credits.", "type": kind}


def test_an_action_sends_its_parameters_as_body_and_the_key_only_as_a_header(app):
    module = next(m for m in app["modules"] if m["name"] == "send_sms")
    parameters = {"message": "Hi", "recipients": ["+33611111111"], "idempotency_key": "k-1"}
    request = iml.render_all(module["communication"], {"parameters": parameters, "connection": CONNECTION})
    assert request["body"] == {"message": "Hi", "recipients": ["+33611111111"]}
    assert request["headers"] == {"Idempotency-Key": "k-1"}
    # no key given: the header is undefined, which Make leaves out (an empty one the service reads as no key)
    request = iml.render_all(module["communication"], {"parameters": {"message": "Hi"}})
    assert request["headers"] == {"Idempotency-Key": None} and request["body"] == {"message": "Hi"}


# --- Run as Make would, against the live connector ---------------------------------------------------------


class _MakeRun:
    """What Make does with the app's JSON for one call: render the request with IML, merge the base, send,
    and render the response or the error mapping."""

    def __init__(self, app: dict, base_url: str):
        self.app, self.base_url = app, base_url

    def call(self, communication: dict, context: dict) -> tuple[requests.Response, dict]:
        context = {"connection": CONNECTION, **context}
        request = iml.render_all({k: v for k, v in communication.items() if k != "response"}, context)
        url = request["url"] if request["url"].startswith("http") else self.base_url + request["url"]
        headers = {**iml.render_all(self.app["base"]["headers"], context), **request.get("headers", {})}
        answer = requests.request(
            request["method"], url, headers=headers, params=request.get("qs"), json=request.get("body"), timeout=30
        )
        reply = {"statusCode": answer.status_code, "body": answer.json() if answer.content else None}
        if answer.status_code >= 400:
            return answer, {"error": iml.render_all(self.app["base"]["response"]["error"], {**context, **reply})}
        return answer, iml.render_all(communication.get("response", {}), {**context, **reply})


def _live_app(live_service) -> dict:
    return make.app(manifest_module.load(), live_service.url)


def test_the_make_connection_check_and_an_action_run_against_the_live_service(live_service):
    app = _live_app(live_service)
    run = _MakeRun(app, live_service.url)
    connection = app["connections"][0]["communication"]
    answer, mapped = run.call(connection, {"parameters": CONNECTION})
    assert answer.status_code == 200 and mapped["metadata"]["value"] == answer.json()["label"]

    module = next(m for m in app["modules"] if m["name"] == "send_sms")
    parameters = {"message": "Bonjour", "recipients": ["0611111111"], "idempotency_key": "make-run-1"}
    answer, mapped = run.call(module["communication"], {"parameters": parameters})
    assert answer.status_code == 200, answer.text
    sent = mapped["output"]
    assert sent["recipients"] == 1 and sent["sms_ids"][0]["phone_number"] == "+33611111111"
    _, mapped_again = run.call(module["communication"], {"parameters": parameters})
    assert mapped_again["output"]["id"] == sent["id"]  # the header reached the service: no second send


def test_the_make_error_mapping_shows_the_services_own_message(live_service):
    app = _live_app(live_service)
    run = _MakeRun(app, live_service.url)
    module = next(m for m in app["modules"] if m["name"] == "send_sms")
    answer, mapped = run.call(module["communication"], {"parameters": {"message": "Hi"}})
    assert answer.status_code == 422
    assert mapped["error"] == {"message": f"[422] {answer.json()['error']['message']}", "type": "DataError"}
    answer, mapped = run.call(
        module["communication"],
        {
            "parameters": {"message": "Hi", "recipients": ["0611111111"]},
            "connection": {"login": "demo", "apiKey": "wrong"},
        },
    )
    assert answer.status_code == 401
    assert mapped["error"] == {
        "message": f"[401] {answer.json()['error']['message']}",
        "type": "InvalidAccessTokenError",
    }


def test_the_make_webhook_attaches_receives_a_reply_and_detaches(live_service, subscriber):
    app = _live_app(live_service)
    run = _MakeRun(app, live_service.url)
    hook = next(h for h in app["webhooks"] if h["name"] == "reply_received_hook")
    webhook = {"url": subscriber.target("/make")}
    answer, attached = run.call(hook["attach"], {"webhook": webhook})
    assert answer.status_code == 201 and attached["data"]["externalHookId"] == answer.json()["id"]
    webhook["externalHookId"] = attached["data"]["externalHookId"]

    module = next(m for m in app["modules"] if m["name"] == "send_sms")
    sent, _ = run.call(module["communication"], {"parameters": {"message": "Hi", "recipients": ["0611111111"]}})
    assert sent.status_code == 200 and "Idempotency-Key" not in sent.request.headers, sent.text
    fired = live_service.session.post(
        f"{live_service.url}/v1/sandbox/replies",
        json={"phone_number": "06 11 11 11 11", "message": "Oui merci"},
        timeout=10,
    )
    assert fired.status_code == 201, fired.text
    delivery = wait_for(lambda: subscriber.deliveries("/make"), what="the reply at Make's webhook")[0]
    event = iml.render(hook["communication"]["output"], {"body": json.loads(delivery["body"])})
    assert event["type"] == "sms.reply_received" and event["data"]["message"] == "Oui merci"

    answer, _ = run.call(hook["detach"], {"webhook": webhook})
    assert answer.status_code == 204
    again, _ = run.call(hook["detach"], {"webhook": webhook})
    assert again.status_code in (204, 404)  # gone: detaching again changes nothing
    listed = live_service.session.get(f"{live_service.url}/v1/triggers/reply_received/subscriptions", timeout=10)
    assert listed.status_code == 200 and webhook["externalHookId"] not in {s["id"] for s in listed.json()}


def test_a_make_polling_trigger_reads_newest_first_items_with_their_ids(live_service):
    app = _live_app(live_service)
    run = _MakeRun(app, live_service.url)
    module = next(m for m in app["modules"] if m["name"] == "watch_credits_low")
    communication, response = module["communication"], module["communication"]["response"]
    parameters = {"limit": 5, "threshold": 10**8}  # above any balance: the first poll sees the crossing
    answer, _ = run.call({k: v for k, v in communication.items() if k != "response"}, {"parameters": parameters})
    assert answer.status_code == 200, answer.text
    assert answer.request.url.endswith(f"limit=5&threshold={10**8}")
    items = iml.render(response["iterate"], {"body": answer.json()})
    assert len(items) == 1 and items[0]["data"]["threshold"] == 10**8
    assert iml.render(response["output"], {"item": items[0]}) == items[0]
    assert iml.render(response["trigger"]["id"], {"item": items[0]}) == items[0]["id"] != ""
    assert iml.render(response["limit"], {"parameters": parameters}) == 5


def test_a_make_search_sends_its_parameters_but_the_limit_and_iterates_the_items_found(live_service):
    app = _live_app(live_service)
    run = _MakeRun(app, live_service.url)
    sent, mapped = run.call(
        next(m for m in app["modules"] if m["name"] == "send_sms")["communication"],
        {"parameters": {"message": "Bonjour", "recipients": ["0611111111"]}},
    )
    assert sent.status_code == 200, sent.text
    module = next(m for m in app["modules"] if m["name"] == "find_sms_status")
    assert module["typeOf"] == "search"
    communication, response = module["communication"], module["communication"]["response"]
    parameters = {"limit": 3, "sms_id": mapped["output"]["sms_ids"][0]["sms_id"]}
    request = {k: v for k, v in communication.items() if k != "response"}
    answer = wait_for(lambda: (found := run.call(request, {"parameters": parameters})[0]).json() and found)
    assert json.loads(answer.request.body) == {"sms_id": parameters["sms_id"]}
    items = iml.render(response["iterate"], {"body": answer.json()})
    assert [iml.render(response["output"], {"item": item})["sms_id"] for item in items] == [parameters["sms_id"]]
    nothing, _ = run.call(request, {"parameters": {"sms_id": "nothing-found-0"}})
    assert nothing.status_code == 200 and iml.render(response["iterate"], {"body": nothing.json()}) == []


def test_a_make_rpc_lists_the_accounts_contact_lists_as_the_select_options(live_service):
    app = _live_app(live_service)
    run = _MakeRun(app, live_service.url)
    created, _ = run.call(
        next(m for m in app["modules"] if m["name"] == "create_list")["communication"],
        {"parameters": {"name": "Clients"}},
    )
    assert created.status_code == 200, created.text
    rpc = next(r for r in app["rpcs"] if r["name"] == "contactLists")
    answer, _ = run.call({k: v for k, v in rpc["communication"].items() if k != "response"}, {})
    assert answer.status_code == 200, answer.text
    response = rpc["communication"]["response"]
    items = iml.render(response["iterate"], {"body": answer.json()})
    options = [iml.render_all(response["output"], {"item": item}) for item in items]
    assert {"label": "Clients (0 contacts)", "value": "Clients"} in options
    parameter = next(
        p
        for m in app["modules"]
        if m["name"] == "add_contact"
        for p in m["mappableParameters"]
        if p["name"] == "list_name"
    )
    assert parameter["type"] == "select" and parameter["options"] == "rpc://contactLists"

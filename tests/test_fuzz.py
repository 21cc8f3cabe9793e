"""Fuzzing (hypothesis): whatever arrives at the inbound callback URL, the action routes, the trigger routes or
the console's login, the answer is never a server error, and every refusal of the API says what was wrong in
its JSON error shape. Deterministic (derandomized) and short; schemathesis covers the documented shapes."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from itertools import count
from urllib.parse import quote, quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import create_app
from connector.sandbox import SandboxState, create_sandbox_app
from tests.conftest import DEMO, LoopbackServer, connector_settings

# Failing examples are printed shortened; the bodies that nest 100,000 deep would be printed whole.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

OPERATOR_TOKEN = "operator-token-for-the-fuzzer-0123456789"
PROFILE = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """One connector on one sandbox for the whole file: (test client, Basic auth header, inbound path)."""
    state = SandboxState()
    sandbox = LoopbackServer(create_sandbox_app(state))
    app = create_app(
        connector_settings(
            sandbox.url,
            CONNECTOR_DATA_DIR=str(tmp_path_factory.mktemp("fuzz") / "var"),
            CONNECTOR_OPERATOR_TOKEN=OPERATOR_TOKEN,
            CONNECTOR_ACTIONS_PER_MINUTE=100_000,
            CONNECTOR_ALLOWED_TARGETS="127.0.0.1",
        )
    )
    client = app.test_client()
    auth = {"Authorization": "Basic ZGVtbzpkZW1vLWFwaS1rZXk="}
    assert DEMO == ("demo", "demo-api-key")
    me = client.get("/v1/me", headers=auth)
    assert me.status_code == 200, me.get_data(as_text=True)
    inbound = "/v1/inbound/allmysms/" + me.get_json()["inbound_url"].rsplit("/", 1)[1]
    yield app, client, auth, inbound
    sandbox.stop()
    state.close()


# --- What is thrown --------------------------------------------------------------------------------

# Texts that broke, or could break, a parser, an encoder, a database or a log line.
NASTY_TEXTS = [
    "\ud800",
    "a\udfffb",
    "\udc80\ud800",
    "\x00",
    "a\x00b",
    "\x1b[2J",
    "\r\n",
    "\u2028",
    "\ufeff",
    "\u202e",
    "\x85",
    "\uffff",
    "",
    " ",
    "💥",
    "é",
    "%00",
    "%0a",
    "../..",
    "<x>",
    "]]>",
    "&amp;",
    "9" * 5000,
    "x" * 3000,
    "9999-12-31T23:59:59+00:00",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59",
    "2026-02-30 10:00",
    "https://[::1]/",
    "https://127.0.0.1\x00.example/",
    "https://[64:ff9b::7f00:1]/",
    "http://127.0.0.1:1/hook",
    "+33612345678",
    "0611111111",
]
# Number literals JSON's grammar allows but a float or a database may not take.
NASTY_NUMBERS = [
    "1e400",
    "-1e400",
    "1E-400",
    "1" * 5000,
    "-0",
    "0.1e1",
    "123456789012345678901234567890",
    "NaN",
    "Infinity",
    "-Infinity",
]

texts = st.one_of(
    st.sampled_from(NASTY_TEXTS),
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.lists(st.sampled_from(NASTY_TEXTS), min_size=1, max_size=4).map("".join),
)


class Literal(str):
    """JSON written as is into a document: what json.dumps would never write."""


scalars = st.one_of(
    texts,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.sampled_from(NASTY_NUMBERS).map(Literal),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)


def encode(value) -> str:
    """``value`` as JSON text, lone surrogates escaped (\\ud800) and Literals written as they are."""
    if isinstance(value, Literal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            nested(100),
            nested(2000),
            "[" * 100_000 + "]" * 100_000,
            '{"a":1,"a":2}',
            "\ufeff{}",
            "null",
            '"\\ud800"',
            "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e 'x'>]><x>&e;</x>",
            "<a><b>1</b>",
            "a=%ff%00&b=\\ud800",
            "\xff\xfe{\x00}\x00",
        ]
    ).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
json_bodies = documents.map(lambda document: encode(document).encode("utf-8", "surrogatepass"))
bodies = st.one_of(json_bodies, raw_bodies)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=utf-16",
        "application/json; charset=base64",
        "application/json; charset=x-nonsense",
        "application/json; charset=",
        "text/plain",
        "text/plain; charset=latin-1",
        "application/xml",
        "text/xml; charset=utf-7",
        "application/soap+xml",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=cp1252",
        "multipart/form-data; boundary=b",
        "multipart/form-data",
        "application/merge-patch+json",
        "application/octet-stream",
        "",
        "*/*",
        ";;;",
        'application/json; charset="utf-8',
        "text/plain; charset=utf-32",
    ]
)
query_strings = st.one_of(
    st.just(b""),
    st.binary(max_size=60),
    st.dictionaries(texts, texts, max_size=3).map(
        lambda fields: "&".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8", "surrogatepass")
    ),
)


def url(path: str, query: bytes = b"") -> str:
    return path + ("?" + quote_from_bytes(query, safe="=&") if query else "")


def segment(text: str) -> str:
    """A path segment as a client would send it: its UTF-8 bytes, surrogates too, percent-encoded."""
    return quote(text, safe="", errors="surrogatepass") or "x"


def assert_no_server_error(response, *, json_errors: bool = True) -> None:
    body = response.get_data()
    assert response.status_code < 500, body[:2000]
    assert b"Traceback" not in body
    if json_errors and response.status_code >= 400:
        assert response.is_json, (response.status_code, response.content_type, body[:500])
        error = response.get_json()["error"]
        assert isinstance(error["code"], str) and error["code"], error
        assert isinstance(error["message"], str) and error["message"], error


# --- The inbound callback URL ------------------------------------------------------------------------


@PROFILE
@given(
    method=st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "DELETE"]),
    content_type=content_types,
    body=bodies,
    query=query_strings,
)
def test_no_callback_whatever_its_body_type_charset_or_query_gets_a_server_error(
    fuzzed, method, content_type, body, query
):
    _, client, _, inbound = fuzzed
    response = client.open(url(inbound, query), method=method, data=body, headers={"Content-Type": content_type})
    assert_no_server_error(response)


@PROFILE
@given(
    record=st.dictionaries(
        st.sampled_from(
            [
                "smsId",
                "status",
                "phoneNumber",
                "message",
                "smsMoId",
                "campaignId",
                "receptionDate",
                "statusText",
                "CLIMSGID",
                "SMSID",
                "mo",
                "x",
            ]
        ),
        scalars,
        min_size=1,
        max_size=6,
    ),
    batch=st.booleans(),
)
def test_no_callback_record_whatever_its_field_values_gets_a_server_error(fuzzed, record, batch):
    """Records shaped like AllMySMS's, so that they get past reading and into events and the store."""
    _, client, _, inbound = fuzzed
    body = encode([record, record] if batch else record)
    response = client.post(
        inbound, data=body.encode("utf-8", "surrogatepass"), headers={"Content-Type": "application/json"}
    )
    assert_no_server_error(response)


# --- The action routes ---------------------------------------------------------------------------------

action_documents = documents  # lone surrogates included: the strict JSON reader refuses them by name
action_bodies = st.one_of(action_documents.map(lambda document: encode(document).encode()), raw_bodies)


def action_inputs(app) -> list[tuple[str, dict, list[str]]]:
    manifest = app.extensions["connector"].manifest
    found = []
    for action in manifest.actions:
        examples = manifest.catalog.documents[action.input].get("examples") or [{}]
        fields = sorted(manifest.catalog.resolved(action.input).get("properties", {}))
        found.append((action.path, examples[0], fields or ["extra"]))
    return found


@PROFILE
@given(data=st.data(), value=action_documents, content_type=st.one_of(st.just("application/json"), content_types))
def test_no_action_input_with_one_field_changed_to_anything_gets_a_server_error(fuzzed, data, value, content_type):
    """Each action's own example with one field, known or not, set to anything: past the JSON parser and
    the schema, into the code that reads input."""
    app, client, auth, _ = fuzzed
    path, example, fields = data.draw(st.sampled_from(action_inputs(app)), label="action")
    names = st.one_of(st.sampled_from(fields), texts)
    name = data.draw(names, label="field")
    body = encode({**example, name: value})
    response = client.post(
        path, data=body.encode("utf-8", "surrogatepass"), headers={**auth, "Content-Type": content_type}
    )
    assert_no_server_error(response)


# Any moment of the calendar, written with any offset, Z, or none: the ends of the calendar have no
# equivalent in UTC or in Paris time.
offsets = st.one_of(st.just(""), st.just("Z"), st.from_regex(r"[+-](0\d|1[0-4]):[0-5]\d", fullmatch=True))
moments = st.builds(
    lambda moment, offset: moment.isoformat() + offset,
    st.one_of(
        st.datetimes(), st.datetimes(min_value=datetime(9999, 12, 30)), st.datetimes(max_value=datetime(1, 1, 2))
    ),
    offsets,
)


@PROFILE
@given(data=st.data(), moment=moments)
def test_no_send_time_anywhere_in_the_calendar_gets_a_server_error(fuzzed, data, moment):
    app, client, auth, _ = fuzzed
    path, example = data.draw(
        st.sampled_from([(path, example) for path, example, fields in action_inputs(app) if "send_at" in fields]),
        label="action",
    )
    response = client.post(path, json={**example, "send_at": moment}, headers=auth)
    assert_no_server_error(response)


@PROFILE
@given(data=st.data(), body=action_bodies, content_type=content_types)
def test_no_action_body_whatever_its_bytes_and_type_gets_a_server_error(fuzzed, data, body, content_type):
    app, client, auth, _ = fuzzed
    path = data.draw(st.sampled_from([path for path, _, _ in action_inputs(app)]), label="action")
    response = client.post(path, data=body, headers={**auth, "Content-Type": content_type})
    assert_no_server_error(response)


@pytest.mark.parametrize(
    "path, field",
    [
        ("/v1/actions/send_sms", "sender"),
        ("/v1/actions/send_voice", "audio_url"),
        ("/v1/actions/send_sms", "client_reference"),
    ],
)
def test_a_lone_surrogate_in_any_action_field_is_refused_naming_that_field(fuzzed, path, field):
    app, client, auth, _ = fuzzed
    example = next(body for at, body, _ in action_inputs(app) if at == path)
    response = client.post(
        path, data=encode({**example, field: "ok\ud800"}).encode(), headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert [problem["path"] for problem in response.get_json()["error"]["fields"]] == [field]


# What a header can carry: Latin-1, without the line breaks that would end it.
header_texts = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40)


@PROFILE
@given(
    header=st.one_of(
        header_texts,
        header_texts.map(lambda text: "Basic " + text),
        st.text(st.characters(max_codepoint=255), max_size=30).map(
            lambda text: "Basic " + base64.b64encode(text.encode("latin-1")).decode()
        ),
    )
)
def test_no_authorization_header_gets_a_server_error(fuzzed, header):
    _, client, _, _ = fuzzed
    response = client.post(
        "/v1/actions/get_account", data="{}", headers={"Authorization": header, "Content-Type": "application/json"}
    )
    assert_no_server_error(response)


# --- The trigger routes --------------------------------------------------------------------------------

HOSTS = [
    "127.0.0.1",
    "[::1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "10.0.0.1",
    "localhost",
    "[::ffff:0:7f00:1]",
    "[fec0::1]",
    "nowhere.invalid",
]
target_urls = st.one_of(
    texts,
    st.builds(
        lambda scheme, host, tail: f"{scheme}://{host}{tail}",
        st.sampled_from(["https", "http", "ftp"]),
        st.one_of(st.sampled_from(HOSTS), texts),
        st.one_of(st.just("/hook"), texts),
    ),
)


def trigger_keys(app) -> list[str]:
    return [trigger.key for trigger in app.extensions["connector"].manifest.triggers]


@PROFILE
@given(
    data=st.data(), target=st.one_of(target_urls, documents), key=st.sampled_from(["target_url", "targetUrl", "url"])
)
def test_no_subscription_whatever_its_target_gets_a_server_error(fuzzed, data, target, key):
    app, client, auth, _ = fuzzed
    trigger = data.draw(st.sampled_from(trigger_keys(app)), label="trigger")
    response = client.post(
        f"/v1/triggers/{trigger}/subscriptions",
        data=encode({key: target}).encode("utf-8", "surrogatepass"),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert_no_server_error(response)
    if response.status_code == 201:
        client.delete(f"/v1/triggers/{trigger}/subscriptions/{response.get_json()['id']}", headers=auth)


@PROFILE
@given(data=st.data(), ident=texts, query=query_strings, body=bodies, content_type=content_types)
def test_no_trigger_route_whatever_its_path_query_or_body_gets_a_server_error(
    fuzzed, data, ident, query, body, content_type
):
    app, client, auth, _ = fuzzed
    trigger = data.draw(st.sampled_from(trigger_keys(app)), label="trigger")
    method, path = data.draw(
        st.sampled_from(
            [
                ("GET", f"/v1/triggers/{trigger}/events"),
                ("GET", f"/v1/triggers/{trigger}/subscriptions"),
                ("POST", f"/v1/triggers/{trigger}/subscriptions"),
                ("GET", f"/v1/triggers/{trigger}/subscriptions/{segment(ident)}"),
                ("DELETE", f"/v1/triggers/{trigger}/subscriptions/{segment(ident)}"),
                ("GET", f"/v1/triggers/{trigger}/subscriptions/{segment(ident)}/deliveries"),
                ("POST", f"/v1/triggers/{trigger}/subscriptions/{segment(ident)}/replay"),
                ("POST", f"/v1/events/{segment(ident)}/replay"),
                ("GET", "/v1/inbound/rejected"),
            ]
        ),
        label="route",
    )
    response = client.open(url(path, query), method=method, data=body, headers={**auth, "Content-Type": content_type})
    assert_no_server_error(response)


# --- The console's login ---------------------------------------------------------------------------------

_addresses = count(1)


@PROFILE
@given(
    token=st.one_of(texts, st.just(OPERATOR_TOKEN)),
    target=st.one_of(
        texts,
        st.sampled_from(
            ["/console/events", "//evil.example/", "https://evil.example/", "/console\r\nX: 1", "\\\\evil", "/%2e%2e/"]
        ),
    ),
    charset=st.sampled_from(["", "; charset=utf-8", "; charset=latin-1", "; charset=utf-16", "; charset=nonsense"]),
)
def test_no_console_login_whatever_its_token_and_next_gets_a_server_error(fuzzed, token, target, charset):
    app, _, _, _ = fuzzed
    # A client of its own, from an address of its own: each try starts with a fresh session and is not
    # slowed by the wrong tokens tried before it.
    address = next(_addresses)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"10.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}"
    page = client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    form = "&".join(
        f"{name}={quote(value, safe='', errors='surrogatepass')}"
        for name, value in (("csrf", csrf), ("token", token), ("next", target))
    )
    response = client.post(
        "/console/login",
        data=form.encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded" + charset},
    )
    assert_no_server_error(response, json_errors=False)
    if response.status_code == 303:
        location = response.headers["Location"]
        assert location.startswith("/console") and "\n" not in location and "\r" not in location

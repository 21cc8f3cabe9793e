"""Plain callbacks are answered before Flask (web/callbacks.Lane): as the inbound route answers them, with the
same events kept; every other request to the inbound URL is the route's."""

from __future__ import annotations

import base64
import json

import pytest

from connector import create_app
from connector.events.callbacks import RECEIPT, REPLY
from connector.web import callbacks
from tests.conftest import DEMO, connector_settings

AUTH = {"Authorization": "Basic " + base64.b64encode(":".join(DEMO).encode()).decode()}
FORM = "application/x-www-form-urlencoded"

# (method, content type, query string, body): what AllMySMS may push, some records refused.
CALLBACKS = [
    ("POST", FORM, "", b"smsId=s-1&status=1&phoneNumber=33611111111&receptionDate=2026-12-01+09%3A30%3A03"),
    ("GET", "", "smsId=s-2&status=2&phoneNumber=0611111111", b""),
    ("POST", f"{FORM}; charset=iso-8859-1", "", b"smsMoId=mo-1&message=r\xe9ponse&phoneNumber=33622222222"),
    ("POST", "application/json", "", json.dumps([{"smsId": "s-3", "status": "1"}, {"nothing": "here"}]).encode()),
    ("POST", "application/xml", "", b"<ack><smsId>s-4</smsId><status>3</status></ack>"),
    ("POST", FORM, "", b"smsId=s-1&status=1&phoneNumber=33611111111&receptionDate=2026-12-01+09%3A30%3A03"),
]


def _app(sandbox, tmp_path, name: str, lane: bool):
    app = create_app(connector_settings(sandbox.url, CONNECTOR_DATA_DIR=str(tmp_path / name)))
    if not lane:
        app.wsgi_app = app.wsgi_app._app  # type: ignore[attr-defined,method-assign]
    client = app.test_client()
    inbound = client.get("/v1/me", headers=AUTH).json["inbound_url"]
    return app, client, "/" + inbound.split("/", 3)[3]


def _push(client, path: str, method: str, content_type: str, query: str, body: bytes, **headers):
    return client.open(
        path, method=method, query_string=query, data=body, content_type=content_type or None, headers=headers
    )


@pytest.fixture
def routed(monkeypatch):
    """The requests the Flask route answered."""
    seen: list[str] = []
    route = callbacks._receive

    def counted(services, token):
        seen.append(token)
        return route(services, token)

    monkeypatch.setattr(callbacks, "_receive", counted)
    return seen


def test_the_lane_answers_each_callback_as_the_route_does_and_keeps_the_same_events(sandbox, tmp_path, routed):
    lane_app, lane, lane_path = _app(sandbox, tmp_path, "lane", lane=True)
    route_app, route, route_path = _app(sandbox, tmp_path, "route", lane=False)
    for method, content_type, query, body in CALLBACKS:
        by_lane = _push(lane, lane_path, method, content_type, query, body)
        by_route = _push(route, route_path, method, content_type, query, body)
        assert (by_lane.status_code, by_lane.json) == (by_route.status_code, by_route.json), (method, body)
        assert by_lane.data == by_route.data and by_lane.status_code == 200
        assert sorted(by_lane.headers.keys()) == sorted(by_route.headers.keys())
        assert by_lane.headers["Content-Type"] == by_route.headers["Content-Type"] == "application/json"
    assert len(routed) == len(CALLBACKS)  # the route's own app; the lane's never reached it

    def kept(app):
        events = app.extensions["connector"].store.events
        return {kind: [(e["id"], e["data"]) for e in events.recent(1, kind, 50)] for kind in (RECEIPT, REPLY)}

    assert kept(lane_app) == kept(route_app)
    assert [len(events) for events in kept(lane_app).values()] == [4, 1]
    assert lane.get("/v1/inbound/rejected", headers=AUTH).json == route.get("/v1/inbound/rejected", headers=AUTH).json


def test_what_the_lane_does_not_answer_the_route_does_as_before(sandbox, tmp_path, routed):
    app, client, path = _app(sandbox, tmp_path, "lane", lane=True)
    # Refused: 400 from the route, the refusal kept once.
    refused = _push(client, path, "POST", "application/json", "", b'{"nothing": "usable"}')
    assert refused.status_code == 400 and refused.json["error"]["code"] == "callback_rejected"
    assert len(client.get("/v1/inbound/rejected", headers=AUTH).json) == 1
    # An unknown token, a body over the limit, a method the URL does not take.
    assert _push(client, path + "x", "POST", FORM, "", b"smsId=s-1&status=1").status_code == 404
    too_large = b"smsId=s-1&status=1&pad=" + b"x" * app.config["CONNECTOR_MAX_CALLBACK_BYTES"]
    assert _push(client, path, "POST", FORM, "", too_large).status_code == 413
    assert _push(client, path, "PUT", FORM, "", b"smsId=s-1&status=1").status_code == 405
    assert len(routed) == 3  # 404 and 405 are Flask's before any route
    # A plain one is the lane's; the caller's own request id comes back.
    plain = _push(client, path, "POST", FORM, "", b"smsId=s-9&status=1", **{"X-Request-Id": "abcd-1234-efgh"})
    assert plain.status_code == 200 and plain.json["accepted"] == 1
    assert plain.headers["X-Request-Id"] == "abcd-1234-efgh" and len(routed) == 3


def test_the_first_request_of_a_process_is_flasks_even_a_callback(sandbox, tmp_path, routed):
    _, _, path = _app(sandbox, tmp_path, "shared", lane=True)
    # Another process on the same data: its first request does the first-request work (journal replay).
    client = create_app(connector_settings(sandbox.url, CONNECTOR_DATA_DIR=str(tmp_path / "shared"))).test_client()
    assert _push(client, path, "POST", FORM, "", b"smsId=s-1&status=1").json["accepted"] == 1
    assert len(routed) == 1
    assert _push(client, path, "POST", FORM, "", b"smsId=s-2&status=1").json["accepted"] == 1
    assert len(routed) == 1

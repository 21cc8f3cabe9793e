"""Idempotency-Key on actions: retries get the first answer, never a second send."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from connector import create_app
from tests.conftest import Api, Scripted, connector_settings, wait_for
from tests.test_upstream import SUCCESS_FIELDS

SEND = {"message": "Hi", "recipients": ["+33611111111"]}
ACCOUNT_OK = Scripted(body={"status": "Active Account", "credits": "1000"})  # the credentials check


def keyed(api: Api, key: str, body=SEND, action: str = "send_sms"):
    return api.action(action, body, headers={"Idempotency-Key": key})


def sends(scripted) -> int:
    return len([r for r in scripted.requests if r["path"].endswith("/sendSms/")])


def test_the_same_key_and_body_twice_send_once_and_answer_the_same(sandbox, api):
    first, second = keyed(api, "order-1001"), keyed(api, "order-1001")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(sandbox.state.campaigns("demo")) == 1


def test_another_key_or_no_key_sends_again(sandbox, api):
    keyed(api, "order-1001")
    keyed(api, "order-1002")
    api.action("send_sms", SEND)
    assert len(sandbox.state.campaigns("demo")) == 3


def test_the_same_key_for_another_request_is_refused_naming_the_header(sandbox, api):
    keyed(api, "order-1001")
    for other in (keyed(api, "order-1001", {**SEND, "message": "Bye"}),
                  keyed(api, "order-1001", SEND, action="estimate_sms")):
        assert other.status_code == 422
        error = other.json()["error"]
        assert error["code"] == "idempotency_key_reused"
        assert error["fields"] == [{"path": "Idempotency-Key", "message": "Already used for a different request."}]
    assert len(sandbox.state.campaigns("demo")) == 1


def test_the_same_body_written_differently_is_the_same_request(sandbox, api):
    first = api.session.post(f"{api.url}/v1/actions/send_sms", headers={"Idempotency-Key": "k",
                             "Content-Type": "application/json"}, data='{"message":"Hi","recipients":["+33611111111"]}')
    second = api.session.post(f"{api.url}/v1/actions/send_sms", headers={"Idempotency-Key": "k",
                              "Content-Type": "application/json"},
                              data='{ "recipients": [ "+33611111111" ], "message": "Hi" }')
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.headers.get("Idempotent-Replayed") == "true"


def test_keys_belong_to_one_account(sandbox, app, serve):
    demo, low = serve(app), Api(serve(app).url, auth=("low", "low-api-key"))
    assert keyed(demo, "shared-key").status_code == 200
    assert keyed(low, "shared-key").status_code == 200
    assert len(sandbox.state.campaigns("demo")) == 1 and len(sandbox.state.campaigns("low")) == 1


def test_an_answer_that_sent_nothing_lets_the_key_go_so_the_retry_after_a_fix_sends(sandbox, app, serve):
    broke = Api(serve(app).url, auth=("broke", "broke-api-key"))
    refused = keyed(broke, "k")
    assert refused.status_code == 402
    sandbox.state.set_credits("broke", 1000)  # the user tops up, the platform retries the step
    retried = keyed(broke, "k")
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers
    assert len(sandbox.state.campaigns("broke")) == 1


def test_a_send_that_may_have_gone_out_is_kept_and_its_retry_does_not_send_again(scripted, through):
    scripted.script(ACCOUNT_OK, Scripted(body={"status": 100} | SUCCESS_FIELDS, delay=1.0))
    api = through(ALLMYSMS_READ_TIMEOUT=0.3)
    first, second = keyed(api, "k"), keyed(api, "k")
    assert first.status_code == second.status_code == 504
    assert first.json() == second.json() and "MAY have been sent" in second.json()["error"]["message"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert sends(scripted) == 1


def first_call_under_way(scripted, through, pool, seconds: float):
    """A keyed send that AllMySMS takes ``seconds`` to answer, once it has reached AllMySMS."""
    scripted.script(ACCOUNT_OK, Scripted(body={"status": 100} | SUCCESS_FIELDS, delay=seconds))
    api = through()
    first = pool.submit(keyed, api, "k")
    wait_for(lambda: sends(scripted) == 1, what="the first call to reach AllMySMS")
    return api, first


def test_a_second_call_while_the_first_runs_waits_and_gets_its_answer(scripted, through):
    with ThreadPoolExecutor(2) as pool:
        api, first = first_call_under_way(scripted, through, pool, 0.8)
        second = pool.submit(keyed, api, "k")
        answers = [first.result(10), second.result(10)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert sends(scripted) == 1


def test_a_second_call_gets_409_while_the_first_runs_longer_than_it_waits(scripted, through):
    with ThreadPoolExecutor(2) as pool:
        api, first = first_call_under_way(scripted, through, pool, 3.0)
        busy = keyed(api, "k")
        assert busy.status_code == 409 and busy.headers["Retry-After"] == "2"
        assert busy.json()["error"]["code"] == "idempotency_key_in_use"
        assert first.result(10).status_code == 200
    assert keyed(api, "k").headers["Idempotent-Replayed"] == "true"
    assert sends(scripted) == 1


@pytest.mark.parametrize("key", ["has space", "", "é", "x" * 256])
def test_a_malformed_key_is_refused_with_400(sandbox, api, key):
    answer = keyed(api, key)
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"][0]["path"] == "Idempotency-Key"
    assert sandbox.state.campaigns("demo") == []


def test_answers_are_kept_across_a_restart(sandbox, serve):
    settings = connector_settings(sandbox.url)
    assert keyed(serve(create_app(settings)), "k").status_code == 200
    again = keyed(serve(create_app(settings)), "k")  # a new process on the same database
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(sandbox.state.campaigns("demo")) == 1

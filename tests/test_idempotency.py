"""Idempotency-Key on actions: retries get the first answer, never a second send."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from connector import create_app
from tests.conftest import Api, Scripted, connector_settings, wait_for
from tests.test_upstream import SUCCESS_FIELDS

# Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.usefixtures("backend")

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
    for other in (
        keyed(api, "order-1001", {**SEND, "message": "Bye"}),
        keyed(api, "order-1001", SEND, action="estimate_sms"),
    ):
        assert other.status_code == 422
        error = other.json()["error"]
        assert error["code"] == "idempotency_key_reused"
        assert error["fields"] == [{"path": "Idempotency-Key", "message": "Already used for a different request."}]
    assert len(sandbox.state.campaigns("demo")) == 1


def test_the_same_body_written_differently_is_the_same_request(sandbox, api):
    first = api.session.post(
        f"{api.url}/v1/actions/send_sms",
        headers={"Idempotency-Key": "k", "Content-Type": "application/json"},
        data='{"message":"Hi","recipients":["+33611111111"]}',
    )
    second = api.session.post(
        f"{api.url}/v1/actions/send_sms",
        headers={"Idempotency-Key": "k", "Content-Type": "application/json"},
        data='{ "recipients": [ "+33611111111" ], "message": "Hi" }',
    )
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


@pytest.mark.parametrize("key", ["has space", "é", "x" * 256])
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


def test_a_blank_key_is_no_key_as_platforms_send_an_optional_field_left_empty(sandbox, api):
    first, second = keyed(api, ""), keyed(api, "")
    assert first.status_code == second.status_code == 200
    assert "Idempotent-Replayed" not in second.headers
    assert len(sandbox.state.campaigns("demo")) == 2


def from_a_run(api: Api, run: str, step: str = "Send_SMS", body=SEND):
    """A call as Logic Apps / Power Automate makes it: no Idempotency-Key, its run and action names."""
    return api.action("send_sms", body, headers={"x-ms-workflow-run-id": run, "x-ms-workflow-operation-name": step})


def test_a_workflow_runs_retry_of_an_action_sends_once_with_no_key_given(sandbox, api):
    first, retried = from_a_run(api, "08586-run-1"), from_a_run(api, "08586-run-1")
    assert first.status_code == retried.status_code == 200
    assert retried.json() == first.json() and retried.headers["Idempotent-Replayed"] == "true"
    assert len(sandbox.state.campaigns("demo")) == 1


def test_another_run_another_action_or_another_item_of_a_loop_sends_again(sandbox, api):
    from_a_run(api, "08586-run-1")
    answers = [
        from_a_run(api, "08586-run-2"),
        from_a_run(api, "08586-run-1", step="Send_SMS_2"),
        from_a_run(api, "08586-run-1", body={**SEND, "recipients": ["+33622222222"]}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert not any("Idempotent-Replayed" in a.headers for a in answers)
    assert len(sandbox.state.campaigns("demo")) == 4


def test_a_key_derived_from_a_run_belongs_to_one_account(sandbox, app, serve):
    demo, low = serve(app), Api(serve(app).url, auth=("low", "low-api-key"))
    assert from_a_run(demo, "08586-run-1").status_code == from_a_run(low, "08586-run-1").status_code == 200
    assert len(sandbox.state.campaigns("demo")) == 1 and len(sandbox.state.campaigns("low")) == 1


def test_a_key_given_wins_over_the_run_names(sandbox, api):
    headers = {
        "Idempotency-Key": "order-1001",
        "x-ms-workflow-run-id": "08586-run-1",
        "x-ms-workflow-operation-name": "Send_SMS",
    }
    assert api.action("send_sms", SEND, headers=headers).status_code == 200
    assert keyed(api, "order-1001").headers["Idempotent-Replayed"] == "true"


def test_a_key_whose_first_call_died_with_its_process_answers_at_once_that_it_may_have_sent(sandbox, app, api):
    """A web process killed mid-send leaves its key running; a retry that sees the process is gone says
    "may have been sent" at once, instead of 409 until the key goes stale."""
    import subprocess
    import sys
    import time as clock

    from connector.observe import processes
    from connector.sending.idempotency import fingerprint

    doomed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder = processes.identity(doomed.pid)
    doomed.kill()
    doomed.wait()
    store = app.extensions["connector"].store
    store.keys.claim("demo", "order-7", "send_sms", fingerprint("send_sms", SEND), clock.time(), owner=holder)
    retried = keyed(api, "order-7")
    assert retried.status_code == 504 and retried.json()["error"]["code"] == "outcome_unknown"
    assert "ended without an answer" in retried.json()["error"]["message"]  # not the 409 of a call still running
    assert len(sandbox.state.campaigns("demo")) == 0


def test_a_key_held_by_a_live_process_is_still_in_progress():
    from connector.observe import processes

    assert not processes.gone(processes.identity())
    assert not processes.gone("another-host:1:1")


# As Logic Apps sends them beside the run and action names (Microsoft's request-history samples).
WORKFLOW = {
    "x-ms-workflow-subscription-id": "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345",
    "x-ms-workflow-resourcegroup-name": "sms-flows",
    "x-ms-workflow-system-id": "/locations/westeurope/scaleunits/prod-17/workflows/80244732be3648f59d2084fd979cdd56",
    "x-ms-workflow-id": "80244732be3648f59d2084fd979cdd56",
    "x-ms-workflow-name": "sms-on-new-order",
}
SENT = Scripted(body={"status": 100} | SUCCESS_FIELDS)


def from_a_workflow(api: Api, workflow: dict, run: str = "08586-run-1", step: str = "Send_SMS"):
    return api.action(
        "send_sms", SEND, headers={**workflow, "x-ms-workflow-run-id": run, "x-ms-workflow-operation-name": step}
    )


def test_a_retry_in_a_run_that_names_its_workflow_sends_once(scripted, through):
    scripted.script(ACCOUNT_OK, SENT)
    api = through()
    first, retried = from_a_workflow(api, WORKFLOW), from_a_workflow(api, WORKFLOW)
    assert first.status_code == retried.status_code == 200
    assert retried.headers["Idempotent-Replayed"] == "true" and retried.json() == first.json()
    assert sends(scripted) == 1


@pytest.mark.parametrize("header", sorted(WORKFLOW))
def test_the_same_run_and_action_names_from_another_workflow_or_subscription_send_again(scripted, through, header):
    """Run ids are only said to be unique within a workflow: another workflow (or the same name in another
    subscription) with the same run id and action name must not get the first one's answer and send nothing."""
    scripted.script(ACCOUNT_OK, SENT, SENT)
    api = through()
    first = from_a_workflow(api, WORKFLOW)
    other = from_a_workflow(api, {**WORKFLOW, header: WORKFLOW[header] + "0"})
    assert first.status_code == other.status_code == 200
    assert "Idempotent-Replayed" not in other.headers
    assert sends(scripted) == 2


def test_a_run_whose_workflow_headers_are_absent_still_gets_a_key_from_its_run_and_action(scripted, through):
    scripted.script(ACCOUNT_OK, SENT)
    api = through()
    first, retried = from_a_workflow(api, {}), from_a_workflow(api, {})
    assert retried.headers["Idempotent-Replayed"] == "true" and retried.json() == first.json()
    assert sends(scripted) == 1

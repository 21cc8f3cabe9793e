"""bench/chaos.py, short: SIGKILLs under load lose no event and send no SMS twice; and the sandbox's campaign
list it counts SMS with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import DEMO

ROOT = Path(__file__).resolve().parent.parent


def test_the_sandbox_lists_an_accounts_campaigns_with_their_client_reference_and_no_numbers(api, sandbox):
    for reference in ("order-1", "order-2"):
        sent = api.action(
            "send_sms", {"message": "Hello there", "recipients": ["0611111111"], "client_reference": reference}
        )
        assert sent.status_code == 200, sent.text
    answer = requests.get(f"{sandbox.url}/sandbox/accounts/demo/campaigns", auth=DEMO, timeout=10)
    assert answer.status_code == 200
    listed = answer.json()["campaigns"]
    assert [c["client_reference"] for c in listed] == ["order-1", "order-2"]
    assert {c["kind"] for c in listed} == {"sms"} and {c["recipients"] for c in listed} == {1}
    assert "611111111" not in answer.text and "Hello there" not in answer.text


def test_the_sandbox_lists_campaigns_only_to_their_own_account(sandbox):
    url = f"{sandbox.url}/sandbox/accounts/demo/campaigns"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("demo", "wrong-key"), timeout=10).status_code == 401
    assert requests.get(url, auth=("low", "low-api-key"), timeout=10).status_code == 403


def test_a_short_chaos_run_reconciles_every_callback_and_every_key(tmp_path):
    # Kills come 0.6 to 1.8 s after the last one is repaired, each kind in turn in a shuffled order. How many
    # fit in 12 s depends on how fast the machine restarts a web master (over 10 s on a loaded one): what
    # is checked is that kills happened and that the first three, as many as there were, are of distinct kinds.
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "chaos.py"),
            "--quick",
            "--kill-every",
            "1.2",
            "--seed",
            "7",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "chaos.json").read_text())
    first = [kill["kind"] for kill in results["kills"]][:3]
    assert first and len(set(first)) == len(first), results["kills"]
    assert set(first) <= {"web master", "web worker", "delivery worker"}, results["kills"]
    callbacks, actions = results["callbacks"], results["actions"]
    assert callbacks["offered"] >= 100 and callbacks["accepted"] == callbacks["offered"]
    assert callbacks["lost"] == 0 and callbacks["events_with_several_webhook_ids"] == 0
    assert all(s["accepted_delivered"] == callbacks["accepted"] for s in callbacks["subscribers"])
    assert actions["offered"] >= 100 and actions["duplicate_sms"] == 0 and not actions["sent_without_sms"]
    # Every key has a definitive answer but those whose first call died with its process (still "running").
    assert not [outcome for outcome in actions["outcomes"] if outcome.startswith("refused")]
    assert actions["outcomes"].get("no answer yet", 0) == actions["in_progress"]
    assert not actions["in_progress_unexplained"]
    assert results["drain"]["drained"] and not results["unplanned_exits"]

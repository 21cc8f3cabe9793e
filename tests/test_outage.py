"""bench/outage.py, short: under steady callbacks and keyed sends, PostgreSQL killed for a few seconds, then (apart)
the disk full; no callback is lost or answered 500, no SMS goes out twice, the journal drains, and each outage
costs a few log lines, not one a request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
# A round takes about 30 s; a loaded machine may double that. Past this, something hangs.
ROUND_TIMEOUT = 240


def _round(phase: str, out: Path) -> tuple[dict, int, str]:
    """One quick round of one phase: its results, the exit code and the end of the run's output."""
    flag = "--" + phase.replace("_", "-")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "outage.py"), "--quick", "--json", flag, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=ROUND_TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the run then stops its servers, its PostgreSQL and unmounts its disk.
        process.terminate()
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"the {phase} round took over {ROUND_TIMEOUT} s:\n{stderr[-3000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert stdout.strip(), f"no results (exit {process.returncode}):\n{stderr[-3000:]}"
    found = json.loads(stdout)["phases"][phase]
    require(found.get("missing"))
    return found, process.returncode, stderr[-4000:]


def _assert_reconciled(found: dict, output: str, most_lines: int) -> None:
    callbacks, actions = found["callbacks"], found["actions"]
    assert callbacks["offered"] >= 100 and callbacks["accepted"] == callbacks["offered"], output
    assert callbacks["answered_500"] == 0 and callbacks["without_retry_after"] == 0, callbacks["answers"]
    assert callbacks["not_stored"] == 0 and callbacks["lost"] == 0, output
    assert all(s["accepted_delivered"] == callbacks["accepted"] for s in callbacks["subscribers"]), output
    assert callbacks["events_with_several_webhook_ids"] == 0
    assert actions["offered"] >= 30 and actions["outcomes"] == {"sent": actions["offered"]}, actions["outcomes"]
    assert actions["answered_500"] == 0 and actions["duplicate_sms"] == 0, actions["answers"]
    assert not actions["sent_without_sms"] and actions["unknown_references"] == 0
    assert found["journal"]["drained"], found["journal"]
    assert found["outbox"]["drained"], found["outbox"]
    assert not found["healthz_failures"], found["healthz_failures"]
    for fault in found["faults"]:
        log = fault["log"]
        assert log["tracebacks"] == 0, log["samples"]
        assert log["most_from_one_process"] <= most_lines, log
        assert fault["readyz"]["ready_again_after_s"] is not None, fault["readyz"]
    assert found["service"] == {"running": True, "children_replaced": 0}, output


def test_a_postgresql_killed_under_load_loses_no_callback_and_costs_a_few_log_lines(tmp_path):
    found, code, output = _round("postgres_outage", tmp_path)
    (fault,) = found["faults"]
    # The load really met the outage: answers came while PostgreSQL was down, and callbacks went to the journal.
    assert sum(found["callbacks"]["answers_during_faults"].values()) > 0, output
    assert found["journal"]["most_bytes_seen"] > 0, output
    assert fault["readyz"]["not_ready_seen"], fault["readyz"]
    assert found["metrics"].get("connector_database_outages_total", 0) >= 1, found["metrics"]
    _assert_reconciled(found, output, most_lines=3)  # gone, back, journal replayed
    assert code == 0, output


def test_a_full_disk_answers_callbacks_503_and_damages_nothing(tmp_path):
    found, code, output = _round("disk_full", tmp_path)
    (fault,) = found["faults"]
    assert fault["filler_bytes"] > 0, fault
    # While the disk was full some callbacks were answered 503 (with Retry-After: checked below), none 500.
    assert found["callbacks"]["answers_during_faults"].get("HTTP 503", 0) > 0, found["callbacks"]["answers"]
    assert found["integrity"] == "ok"
    _assert_reconciled(found, output, most_lines=4)  # the database and the journal, each gone and back
    assert code == 0, output

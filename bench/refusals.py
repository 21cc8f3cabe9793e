"""What a refused action costs the service, in-process (Flask's test client, the built-in sandbox on
loopback as AllMySMS), beside a baseline measured in the same run: an invalid or oversized body with a wrong
key must cost about what a small valid send does, not seconds (issue 13, finding 1).

    .venv/bin/python bench/refusals.py [--runs 5]

Prints one row per case: median and worst wall time, and the answer's status.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector import create_app
from connector.sandbox import SandboxState, create_sandbox_app, make_sandbox_server  # noqa: E402


def _auth(login: str, key: str) -> dict:
    return {
        "Authorization": "Basic " + base64.b64encode(f"{login}:{key}".encode()).decode(),
        "Content-Type": "application/json",
    }


def _body(recipients) -> bytes:
    return json.dumps({"message": "hi", "recipients": recipients}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    import threading

    state = SandboxState()
    sandbox = make_sandbox_server(create_sandbox_app(state))
    threading.Thread(target=sandbox.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    with tempfile.TemporaryDirectory() as data_dir:
        # No throttling here: each run must take the path it measures, not a 429.
        app = create_app(
            {
                "ALLMYSMS_BASE_URL": f"http://127.0.0.1:{sandbox.server_port}",
                "CONNECTOR_DATA_DIR": data_dir,
                "CONNECTOR_ACTIONS_PER_MINUTE": 0,
                "CONNECTOR_AUTH_FAILURES_PER_MINUTE": 0,
                "CONNECTOR_LOGIN_FAILURES_PER_MINUTE": 0,
            }
        )
        client = app.test_client()
        bad_20k = _body([{"a": 0}] * 20_000)
        wrong_keys = iter(f"wrong-{n}" for n in range(10_000))
        cases = [
            ("baseline: valid send, 1 recipient, right key", lambda: ("demo", "demo-api-key"), _body(["+33611111111"])),
            ("baseline: GET /v1/manifest", None, None),
            ("20,000 invalid items, a new wrong key each time", lambda: ("demo", next(wrong_keys)), bad_20k),
            ("20,000 invalid items, a wrong key refused a moment ago", lambda: ("demo", "wrong"), bad_20k),
            ("20,000 invalid items, right key (422, bounded)", lambda: ("demo", "demo-api-key"), bad_20k),
            (
                "100,000 recipients, a new wrong key each time",
                lambda: ("demo", next(wrong_keys)),
                _body(["+33611111111"] * 100_000),
            ),
            (
                "8 MB of invalid items, a new wrong key each time",
                lambda: ("demo", next(wrong_keys)),
                _body([{"a": 0}] * 1_000_000),
            ),
        ]
        print(f"{'case':58} {'median ms':>10} {'worst ms':>9}  status  body")
        for label, who, body in cases:
            times, status = [], None
            for run in range(runs + 1):
                started = time.perf_counter()
                if who is None:
                    answer = client.get("/v1/manifest")
                else:
                    answer = client.post("/v1/actions/send_sms", data=body, headers=_auth(*who()))
                elapsed = time.perf_counter() - started
                if run:  # the first run warms up caches, and is not counted
                    times.append(elapsed * 1000)
                status = answer.status_code
            size = f"{len(body) // 1024} KiB" if body else "-"
            print(f"{label:58} {statistics.median(times):10.1f} {max(times):9.1f}  {status:6}  {size}")
    sandbox.shutdown()
    state.close()


if __name__ == "__main__":
    main()

"""Bulk sends from a CSV file (`connector send`): the recipients go to the running service's send_sms in
chunks, with progress. Each chunk carries an Idempotency-Key made from the file, the message and its
place, so that running the same command again after a failure sends no chunk twice."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import time

import requests


def read_recipients(path: str) -> list:
    """One recipient a line: the number, then the values of #param_1#, #param_2#... A first line whose
    first cell holds no digit is a header."""
    recipients = []
    with open(path, newline="", encoding="utf-8-sig") as lines:
        for index, row in enumerate(csv.reader(lines)):
            cells = [cell.strip() for cell in row]
            if not cells or not cells[0]:
                continue
            if index == 0 and not any(c.isdigit() for c in cells[0]):
                continue
            params = cells[1:]
            recipients.append({"phone_number": cells[0], "params": params} if params else cells[0])
    return recipients


def send(
    url: str,
    auth: tuple[str, str],
    message: str,
    recipients: list,
    *,
    chunk_size: int = 1000,
    skip_invalid: bool = False,
    out=sys.stderr,
    session: requests.Session | None = None,
) -> int:
    """Send, printing progress to ``out``; 0 when every chunk was accepted, 1 otherwise."""
    session = session or requests.Session()
    chunks = [recipients[i : i + chunk_size] for i in range(0, len(recipients), chunk_size)]
    run = hashlib.sha256(json.dumps([message, recipients, chunk_size, skip_invalid]).encode()).hexdigest()[:32]
    done = invalid = 0
    for number, chunk in enumerate(chunks, 1):
        body = {"message": message, "recipients": chunk}
        if skip_invalid:
            body["invalid_numbers"] = "skip"
        answer = _post(session, url.rstrip("/") + "/v1/actions/send_sms", auth, body, f"bulk-{run}-{number}")
        if answer.status_code != 200:
            error = _error(answer)
            print(
                f"chunk {number}/{len(chunks)} refused ({answer.status_code} {error.get('code', '')}): "
                f"{error.get('message', answer.text[:300])}",
                file=out,
                flush=True,
            )
            print(
                f"{done} of {len(recipients)} recipients were sent before it. Fix what is said and run the "
                "same command again: chunks already sent are not sent again (for 24 hours).",
                file=out,
                flush=True,
            )
            return 1
        result = answer.json()
        done += len(chunk)
        invalid += len(result.get("invalid_numbers", []))
        again = " (already sent: not sent again)" if answer.headers.get("Idempotent-Replayed") else ""
        print(
            f"{done}/{len(recipients)} recipients ({done * 100 // len(recipients)}%), chunk {number}/{len(chunks)}"
            f": {result.get('recipients', 0)} accepted{again}",
            file=out,
            flush=True,
        )
    print(
        f"done: {len(recipients)} recipients in {len(chunks)} chunks"
        + (f", {invalid} invalid numbers skipped" if invalid else ""),
        file=out,
        flush=True,
    )
    return 0


def _post(session, url: str, auth, body: dict, key: str, attempts: int = 10) -> requests.Response:
    for _ in range(attempts):
        answer = session.post(url, json=body, auth=auth, timeout=300, headers={"Idempotency-Key": key})
        # Throttled (nothing sent) or the same chunk still running elsewhere: both safe to ask again.
        if answer.status_code not in (409, 429):
            return answer
        time.sleep(min(float(answer.headers.get("Retry-After") or 2), 60))
    return answer


def _error(answer: requests.Response) -> dict:
    try:
        return answer.json().get("error", {})
    except ValueError:
        return {}

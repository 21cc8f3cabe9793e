"""Idempotency-Key on actions: a retry of the same request gets the first answer, never a second send.

Platforms retry steps (timeouts, autoreplay). With the same key (scoped to the AllMySMS login) and the
same action and body, the first call's answer is returned again without calling AllMySMS, also while
the first call is still running (the second waits a moment, then gets 409). The same key with another
request gets 422. Only answers after which something may have happened upstream are kept: a success,
and "may have been sent" (no answer after posting, an answer AllMySMS does not document, partial
sends). An answer that says nothing was sent (bad input, credentials, credit, throttling) lets the key
go, so the retry after a fix runs afresh.
Keys are stored with the answers, so this holds across processes and restarts.

A blank header is no key: platforms send an optional field left empty that way. With no key, a call
from Logic Apps / Power Automate still gets one, derived from the run and action names that platform
sends with each call (its workflow, run and action), so that its retry policy cannot send twice and
another workflow's run is never answered with this one's send (see ``run_names``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from werkzeug.datastructures import Headers

from connector.errors import ConnectorError, FieldError, InProgress, KeyReused, MalformedRequest, OutcomeUnknown
from connector.observe import processes
from connector.storage import outage
from connector.storage.store import Store

HEADER = "Idempotency-Key"
_VALID = re.compile(r"[\x21-\x7e]{1,255}")
# How long a second call waits for the first to finish before answering 409.
WAIT_FOR_FIRST = 2.0
# Kept answers: a success, or a send that may have gone out.
_KEPT_DISPOSITIONS = {"check_before_retry"}


class ClaimUnsure(Exception):
    """The database went away while the key was being taken: the claim may have been written (a commit whose
    answer was lost). Nothing was sent; the claim, if it is there, must be undone, or every retry would find
    the key "running" under this live process and wait."""

    def __init__(self, owner: str, created_at: float):
        super().__init__("the key's claim may or may not have been written")
        self.owner, self.created_at = owner, created_at


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: str


def read_key(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    if not _VALID.fullmatch(raw):
        raise MalformedRequest(
            f"The {HEADER} header must be 1 to 255 visible ASCII characters (no spaces).",
            fields=[FieldError(HEADER, "Use 1 to 255 visible ASCII characters, e.g. a UUID.")],
        )
    return raw


# Logic Apps (which Power Automate runs on) sends these with a workflow's HTTP calls, as Microsoft's
# request-history samples show: the run's id and the action's name. A retry of the action by its retry
# policy is the same action in the same run; another run, or a resubmitted one, has another id.
RUN_HEADERS = ("x-ms-workflow-run-id", "x-ms-workflow-operation-name")
# Sent beside them (the same samples): where the run belongs. A run is named within its workflow
# (…/workflows/{name}/runs/{run id}) and nothing says another workflow's runs get other ids: these name the
# workflow and its Azure subscription, so that one workflow's run is never taken for another's and its
# send answered with theirs. Each counts when sent; without them a key still holds within a workflow.
WORKFLOW_HEADERS = (
    "x-ms-workflow-subscription-id",
    "x-ms-workflow-resourcegroup-name",
    "x-ms-workflow-system-id",
    "x-ms-workflow-id",
    "x-ms-workflow-name",
)


def run_names(headers: Mapping[str, str] | Headers) -> tuple[str, ...] | None:
    """The platform's names for the workflow, run and action of a call, as `header=value`; None when the run
    or the action is missing."""
    if not all(headers.get(name, "").strip() for name in RUN_HEADERS):
        return None
    return tuple(f"{name}={headers.get(name, '').strip()}" for name in (*WORKFLOW_HEADERS, *RUN_HEADERS))


def derived_key(names: tuple[str, ...], request_hash: str) -> str:
    """A key for a call that brought none, from the workflow, run and action names. The request is part of
    it: one action run many times in a run ("For each") sends other bodies, and each must go out, not be
    refused as a reused key."""
    digest = hashlib.sha256("\n".join([*names, request_hash]).encode()).hexdigest()
    return f"logicapps-{digest}"


def fingerprint(action: str, payload: object) -> str:
    """The request as compared between calls: action and body, whatever the key order or spacing."""
    canonical = json.dumps([action, payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def begin(
    store: Store,
    login: str,
    key: str,
    action: str,
    request_hash: str,
    *,
    stale_after: float,
    kept_for: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Replay | None:
    """None when this call owns the key and must run; a Replay of the first answer otherwise. Raises
    KeyReused, InProgress, or OutcomeUnknown (the first call ended without a kept answer)."""
    deadline = clock() + WAIT_FOR_FIRST
    while True:
        now, owner = clock(), processes.identity()
        try:
            row = store.keys.claim(login, key, action, request_hash, now, owner=owner)
        except Exception as error:
            if outage.unavailable(error):
                raise ClaimUnsure(owner, now) from error
            raise
        if row is None:
            return None
        if row["created_at"] < clock() - kept_for:
            store.keys.release(login, key)  # expired: the key is free again
            continue
        if row["request_hash"] != request_hash:
            raise KeyReused(
                f"This {HEADER} was already used for another request (another action or body). "
                "Use a new key for a new request.",
                fields=[FieldError(HEADER, "Already used for a different request.")],
            )
        if row["state"] == "done":
            return Replay(row["status_code"], row["response"])
        # The first call's process may have died mid-call (killed, restarted): on this host that is seen at
        # once; elsewhere only when the key has been running for longer than any call could.
        if (
            row["state"] == "unknown"
            or clock() - row["created_at"] > stale_after
            or (row["state"] == "running" and processes.gone(row["owner"]))
        ):
            raise OutcomeUnknown(
                f"An earlier request with this {HEADER} ended without an answer: it may have "
                "sent. Check the campaigns and delivery receipts in AllMySMS before sending "
                "again with a new key."
            )
        if clock() >= deadline:
            raise InProgress(
                f"A request with this {HEADER} is still running. Try again in a few seconds: you will get its answer.",
                retry_after=2,
            )
        sleep(0.05)


def keep(error: ConnectorError | None) -> bool:
    """Whether an answer is kept for the key (else the key is let go)."""
    return error is None or error.disposition in _KEPT_DISPOSITIONS

"""The retry policy of deliveries: what follows each attempt (succeeded, due again when, failed for good, or the
subscription disabled or gone). Pure: every rule is testable without a network."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from connector.storage.tables import FAILED, PENDING, SUCCEEDED


@dataclass(frozen=True)
class Policy:
    """The retry rules, from settings."""

    schedule: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    jitter: float = 0.1
    timeout: float = 15.0
    disable_after: float = 5 * 86400
    max_retry_after: float = 86400
    #: Deliveries a second to any one host, from each worker, in bursts of up to a second's worth; 0: no
    #: limit. Hosts of the allow-list (the operator's own) are not limited.
    per_host: float = 0.0


def next_step(
    policy: Policy,
    attempts_before: int,
    status_code: int | None,
    retry_after: float | None,
    now: float,
    failing_since: float | None,
    rng: random.Random,
) -> dict[str, Any]:
    """What follows one attempt: pure, so every rule is testable without a network.

    ``attempts_before`` counts the attempts made before this one.
    """
    if status_code is not None and 200 <= status_code < 300:
        return {"status": SUCCEEDED, "next_attempt_at": None}
    if status_code == 410:
        # The platform removed the hook (a Zap turned off): stop for good.
        return {"status": FAILED, "next_attempt_at": None, "subscription": "gone"}
    made = attempts_before + 1
    outcome: dict[str, Any] = {"status": FAILED, "next_attempt_at": None}
    if made < len(policy.schedule):
        delay = policy.schedule[made] * (1 + rng.uniform(-policy.jitter, policy.jitter))
        if retry_after is not None and status_code in (429, 503):
            delay = max(delay, min(retry_after, policy.max_retry_after))
        outcome = {"status": PENDING, "next_attempt_at": now + delay}
    if failing_since is not None and now - failing_since >= policy.disable_after:
        outcome.update(
            subscription="disable", reason=f"Every delivery failed for {round((now - failing_since) / 3600)} hours."
        )
    return outcome

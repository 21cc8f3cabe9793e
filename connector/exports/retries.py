"""Retries without a second send: where each platform's export takes its Idempotency-Key from, and the
optional "Idempotency key" field offered where the platform gives a connector no run or step id.

Each exporter states its own source (``KEY_SOURCE``); the guide and the README table are built from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.exports.fields import Field


@dataclass(frozen=True)
class KeySource:
    platform: str
    key: str  # what the key is made of
    retries: str  # whether the platform's own retry of the step keeps it, and where that was found
    fallback: str  # what covers the cases the key does not


# One wording on every platform that shows the field.
KEY_FIELD = Field(
    key="idempotency_key",
    label="Idempotency key",
    type="string",
    help="Optional. A value that names this item in this workflow only, such as the ID from the trigger step "
    "followed by a word for this workflow (up to 255 visible characters, no spaces). A retry of this step "
    "with the same value and the same fields within 24 hours gets the first answer instead of sending "
    "again, and so would another workflow given the same value: never share one. Leave it empty to send "
    "on every run.",
)


def key_field(schema: dict) -> Field:
    """The field, for an action whose own input must not have a field of that name."""
    if KEY_FIELD.key in schema.get("properties", {}):
        raise ValueError(f"an action input named {KEY_FIELD.key!r} would be taken for the Idempotency-Key field")
    return KEY_FIELD


def table(sources: list[KeySource]) -> list[str]:
    """Markdown lines: one row per platform."""
    rows = [
        "| platform | Idempotency-Key sent | kept when the platform retries the step? | otherwise |",
        "|---|---|---|---|",
    ]
    rows += [f"| {s.platform} | {s.key} | {s.retries} | {s.fallback} |" for s in sources]
    return rows

"""Retry-After: how long an HTTP server asks to be left alone (AllMySMS upstream, subscribers)."""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header, written as seconds or as an HTTP date; None when
    absent or unreadable."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is in GMT even when it does not say so
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)

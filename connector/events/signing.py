"""Standard Webhooks signatures: each subscription's secret, the headers of an outgoing event, and their
verification."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "whsec_"
VERSION = "v1"
SECRET_BYTES = 24
DEFAULT_TOLERANCE = 300


class InvalidSignature(Exception):
    """A request whose signature headers do not prove it came from a holder of the secret.

    ``reason`` is short and safe to show: it never contains a secret or a signature.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def new_secret() -> str:
    """A fresh signing secret for one subscription: ``whsec_`` and 24 random bytes in base64."""
    return PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode("ascii")


def derived_secret(secret_key: str, subscription_id: str) -> str:
    """The signing secret of one subscription: ``whsec_`` and 32 bytes of HMAC-SHA256 of its id under the
    service's secret key, in base64. Derived, not stored, so a copy of the database signs nothing; and
    the same for every process that has the secret key, so web and worker processes agree on it."""
    if not secret_key:
        raise ValueError("a signing secret is derived from the service's secret key, which is missing")
    digest = hmac.new(secret_key.encode(), b"signing-secret\0" + subscription_id.encode(), hashlib.sha256).digest()
    return PREFIX + base64.b64encode(digest).decode("ascii")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of ``body`` (the exact bytes sent) for this id and timestamp."""
    digest = hmac.new(_key(secret), _signed_content(message_id, timestamp, body), hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode('ascii')}"


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers that go with ``body``: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(
    secrets: Iterable[str], headers: Mapping[str, Any], body: bytes, *, now: int, tolerance: int = DEFAULT_TOLERANCE
) -> None:
    """Return if one ``v1`` signature of the headers matches one of ``secrets``; raise InvalidSignature
    otherwise. Several secrets and several signatures are how a secret is rotated without downtime."""
    keys = [_key(secret) for secret in secrets]
    if not keys:
        raise ValueError("verify needs at least one secret")
    message_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    given = _header(headers, "webhook-signature")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise InvalidSignature("the webhook-timestamp header is not a whole number of seconds")
    timestamp = int(stamp)
    # The window bounds how long a captured request can be replayed.
    if timestamp < now - tolerance:
        raise InvalidSignature("the webhook-timestamp is too old")
    if timestamp > now + tolerance:
        raise InvalidSignature("the webhook-timestamp is in the future")
    content = _signed_content(message_id, timestamp, body)
    decoded = [_decoded(part[len(VERSION) + 1 :]) for part in given.split(" ") if part.startswith(VERSION + ",")]
    candidates = [c for c in decoded if c is not None]

    for key in keys:
        expected = hmac.new(key, content, hashlib.sha256).digest()
        # Every candidate is compared, in constant time, so timing tells nothing about which one was close.
        matched = False
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
        if matched:
            return
    raise InvalidSignature("no signature matches")


def _signed_content(message_id: str, timestamp: int, body: bytes) -> bytes:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise TypeError("the timestamp is a whole number of seconds")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError("the body is signed as the exact bytes sent, not as text")
    return f"{message_id}.{timestamp}.".encode() + bytes(body)


def _key(secret: str) -> bytes:
    encoded = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # The secret itself is never part of the message: it may end up in a log.
        raise ValueError(f"a signing secret is {PREFIX} followed by base64") from None
    if not key:
        raise ValueError("a signing secret may not be empty")
    return key


def _header(headers: Mapping[str, Any], name: str) -> str:
    value = headers.get(name)
    if value is None:
        # HTTP header names are case-insensitive; a plain dict is not.
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    if value is None or not str(value).strip():
        raise InvalidSignature(f"the {name} header is missing")
    return str(value).strip()


def _decoded(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None

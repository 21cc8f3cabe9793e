"""Request bodies: one reading of JSON for every route (UTF-8, an object, no duplicate field, no NaN, no lone
surrogate), and the check of a body against its operation's schema. Callbacks from AllMySMS are not read here:
they come in AllMySMS's shapes (events/callbacks.py)."""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from flask import current_app, request
from werkzeug.exceptions import HTTPException

from connector.description.validation import invalid_input
from connector.errors import MalformedRequest
from connector.sending import messages
from connector.web import current_services
from connector.web.operations import Operation

_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def read(operation: Operation) -> dict[str, Any]:
    """The request's body, read as JSON and checked against ``operation``'s schema (its fields under the other
    names the schema accepts, ``x-aliases``, given their own name first): InvalidInput listing every problem."""
    payload = json_body()
    if operation.body is None:
        return payload
    catalog = current_services().manifest.catalog
    for alias, name in catalog.resolved(operation.body).get("x-aliases", {}).items():
        if alias in payload:
            value = payload.pop(alias)
            payload.setdefault(name, value)
    problems = catalog.check(operation.body, payload)
    if problems:
        raise invalid_input(problems)
    return payload


def json_body() -> dict[str, Any]:
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    mimetype = request.mimetype or ""
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise MalformedRequest(
            f"The body must be JSON (Content-Type: application/json), not {mimetype}.",
            code="unsupported_media_type",
            status=415,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"The body is not valid UTF-8 (byte {exc.start + 1}).") from None
    del raw  # a large send's body need not stay in memory twice while it is parsed
    try:
        payload = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"The body cannot be accepted: {_short(exc)}") from None
    if not isinstance(payload, dict):
        raise MalformedRequest("The body must be a JSON object ({...}) with the action's fields.")
    # Valid UTF-8 cannot hold half of a UTF-16 pair; only a JSON escape can, so the (rare) walk of the whole
    # document is needed only when the text holds one.
    if _ESCAPED_SURROGATE.search(text):
        problems = messages.lone_surrogates(payload)
        if problems:
            raise invalid_input(problems)
    return payload


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the field {key!r} appears twice")
        seen[key] = value
    return seen


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def _short(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "it is nested too deeply."
    text = str(exc)
    if "digits" in text and "limit" in text:
        return "a number is too large."
    return text if len(text) < 200 else "a value is too large."


def drain_unread() -> None:
    """Read and drop what is left of a body nobody read (an unknown address, a refusal before the body was
    needed), up to the largest body accepted: the connection can then carry the client's next request.
    Left there, gunicorn drops the connection without saying so, and that next request fails."""
    length = request.content_length
    if not length or length > (current_app.config["MAX_CONTENT_LENGTH"] or 0):
        return
    try:
        stream = request.stream
        if getattr(stream, "is_exhausted", False):  # read whole already: the usual case
            return
        while stream.read(1 << 16):
            pass
    except (OSError, HTTPException):
        pass  # the client went away: nothing to keep alive

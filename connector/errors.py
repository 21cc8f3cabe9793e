"""Errors grouped by what the caller should do, and the one JSON error handler."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: What a caller should do about an error; stable words that exports and docs rely on.
DISPOSITIONS = {
    "fix_input": "Change the request and send it again.",
    "fix_credentials": "Check the login and API key of the connection.",
    "top_up_credit": "Buy credits in the AllMySMS customer area, then try again.",
    "retry_later": "Nothing was sent; try again later.",
    "check_before_retry": "The message may have gone out: check before sending again.",
    "give_up": "This will not work by retrying; contact support if it persists.",
}


#: A run of this many characters without a space is a caller's value being quoted, not words: it is cut.
_QUOTED_RUN = re.compile(r"\S{101,}")


def _cut_quotes(text: str) -> str:
    """``text`` with every run of more than 100 characters without a space cut to 100 and an ellipsis: an
    error that quotes a 100,000-character value must not send it back (once in the summary, once per field)."""
    return _QUOTED_RUN.sub(lambda run: run.group()[:100] + "…", text)


@dataclass(frozen=True)
class FieldError:
    """One problem with one input field; ``path`` reads like ``recipients[3].phone_number``."""

    path: str
    message: str

    def as_json(self) -> dict:
        return {"path": _cut_quotes(self.path), "message": _cut_quotes(self.message)}


class ConnectorError(Exception):
    """An error with a message a person can act on, and internal detail that only goes to logs."""

    status = 500
    code = "internal_error"
    disposition = "give_up"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields=(),
        log_detail: str | None = None,
        extra: dict | None = None,
        retry_after: int | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.fields = list(fields)
        self.log_detail = log_detail
        self.extra = dict(extra or {})
        self.retry_after = retry_after

    def with_disposition(self, disposition: str) -> ConnectorError:
        if disposition not in DISPOSITIONS:
            raise ValueError(f"unknown disposition {disposition!r}: one of {', '.join(DISPOSITIONS)}")
        self.disposition = disposition
        return self

    @property
    def retryable(self) -> bool:
        return self.disposition == "retry_later"

    def as_json(self, request_id: str | None = None) -> dict:
        body = {
            "code": self.code,
            "message": _cut_quotes(self.message),
            "disposition": self.disposition,
            "retryable": self.retryable,
            **self.extra,
        }
        if self.fields:
            body["fields"] = [f.as_json() for f in self.fields]
        if request_id:
            body["request_id"] = request_id
        return {"error": body}


class InvalidInput(ConnectorError):
    status = 422
    code = "invalid_input"
    disposition = "fix_input"


class MalformedRequest(InvalidInput):
    status = 400
    code = "malformed_request"


class KeyReused(InvalidInput):
    """This Idempotency-Key was used for another request."""

    code = "idempotency_key_reused"


class InProgress(ConnectorError):
    """A request with this Idempotency-Key is still running."""

    status = 409
    code = "idempotency_key_in_use"
    disposition = "retry_later"


class TooManySubscriptions(ConnectorError):
    """The account has as many subscriptions to this trigger as it may have."""

    status = 409
    code = "too_many_subscriptions"
    disposition = "fix_input"


class NotFound(ConnectorError):
    status = 404
    code = "not_found"
    disposition = "fix_input"


class AuthenticationFailed(ConnectorError):
    status = 401
    code = "invalid_credentials"
    disposition = "fix_credentials"


class CreditExhausted(ConnectorError):
    status = 402
    code = "insufficient_credit"
    disposition = "top_up_credit"


class Throttled(ConnectorError):
    status = 429
    code = "rate_limited"
    disposition = "retry_later"


class UpstreamUnavailable(ConnectorError):
    """AllMySMS could not be reached or answered with a failure before acting: nothing was sent."""

    status = 502
    code = "upstream_unavailable"
    disposition = "retry_later"


class UpstreamFailed(ConnectorError):
    """AllMySMS answered in a way we cannot use; retrying the same request is unlikely to help."""

    status = 502
    code = "upstream_error"
    disposition = "give_up"


class OutcomeUnknown(ConnectorError):
    """The request reached AllMySMS but no answer came back: a send may have gone out."""

    status = 504
    code = "outcome_unknown"
    disposition = "check_before_retry"


class NotReady(ConnectorError):
    """The service cannot take work now (its database is unreachable or not migrated)."""

    status = 503
    code = "not_ready"
    disposition = "retry_later"


class DatabaseUnavailable(ConnectorError):
    """The service's database does not answer: nothing was done, and the same request works once it does."""

    status = 503
    code = "database_unavailable"
    disposition = "retry_later"


class StorageUnavailable(ConnectorError):
    """A callback neither the database nor the local journal could keep (the disk is full): send it again later."""

    status = 503
    code = "storage_unavailable"
    disposition = "retry_later"


class ConfigError(Exception):
    """The service cannot start; every problem is listed at once."""

    def __init__(self, what: str, problems: list[str]):
        self.what = what
        self.problems = problems
        super().__init__(f"{what}:\n" + "\n".join(f"  - {p}" for p in problems))


def _response(error: ConnectorError):
    request_id = getattr(g, "request_id", None)
    response = jsonify(error.as_json(request_id))
    response.status_code = error.status
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="AllMySMS", charset="UTF-8"'
    return response


# Looked up by an HTTPException's code, which may be None.
_HTTP_MESSAGES: dict[int | None, tuple[str, str, str]] = {
    400: ("malformed_request", "fix_input", "The request could not be read."),
    404: ("not_found", "fix_input", "There is nothing at this address. See /v1/manifest for the available routes."),
    405: ("method_not_allowed", "fix_input", "This address does not accept this HTTP method."),
    413: ("request_too_large", "fix_input", "The request body is larger than this service accepts."),
    415: ("unsupported_media_type", "fix_input", "Send the body as JSON with Content-Type: application/json."),
}


def code_of(error: BaseException) -> str:
    """The ``code`` the caller is answered for this exception (the handlers below decide the answer)."""
    if isinstance(error, ConnectorError):
        return error.code
    if isinstance(error, HTTPException):
        return _HTTP_MESSAGES[error.code][0] if error.code in _HTTP_MESSAGES else "http_error"
    return ConnectorError.code


def register(app: Flask) -> None:
    @app.errorhandler(ConnectorError)
    def _connector_error(error: ConnectorError):
        if error.log_detail:
            log.warning("%s: %s", error.code, error.log_detail)
        return _response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code, disposition, message = _HTTP_MESSAGES.get(
            error.code, ("http_error", "give_up", error.description or "The request failed.")
        )
        wrapped = ConnectorError(message, code=code, status=error.code)
        wrapped.disposition = disposition
        response = _response(wrapped)
        valid_methods = getattr(error, "valid_methods", None)  # MethodNotAllowed's
        if error.code == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        from connector.storage import outage

        if outage.unavailable(error):
            # Said once in the log by the store's Outage, not once per request.
            return _response(
                DatabaseUnavailable(
                    "The service's database does not answer at the moment. Nothing "
                    "was done: send the same request again in a few seconds.",
                    retry_after=5,
                )
            )
        if isinstance(error, ConfigError):
            # A database migrated by a version this one cannot run on, found after start-up.
            log.error("%s", error)
            return _response(NotReady(f"{error.what}: {'; '.join(error.problems)}."))
        log.exception("unexpected error (request %s)", getattr(g, "request_id", "-"))
        return _response(
            ConnectorError(
                "Something went wrong on our side. Try again; if it persists, contact support with the request id."
            )
        )

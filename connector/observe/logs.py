"""Log output: text lines for a person at a terminal, or JSON lines for a log pipeline; in both, whatever
looks like a secret or a phone number is masked, whoever logged it, and what is not printable is escaped.

All redaction is here, in one filter (Masking) that every handler carries: the application's, gunicorn's
access and error logs, the delivery worker's and the sandbox's. The code logs no secret on purpose and shows
tokens as fingerprints (:func:`fingerprint`); the filter is the last line of defence, for a message, a request
line or a traceback that carries one anyway.

Messages carry what callers wrote (a request's path, a header): a line break or a terminal escape in one
would write a line of the caller's choosing, or rewrite the terminal, so every character that is not
printable is written as an escape (\\x0a, \\x1b, \\u2028), in messages and in JSON lines alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The inbound URL (connector.events.inbound.PATH) holds an account's token, a credential, as its last segment.
_INBOUND_TOKEN = re.compile(r"(/v1/inbound/allmysms/)([^/?#\s\"]+)")
_BASIC_OR_BEARER = re.compile(r"\b(Basic|Bearer)(\s+)[A-Za-z0-9+/=._~-]{6,}", re.IGNORECASE)
# AllMySMS's apiKey in a form, query string or JSON, and the like.
_KEY_FIELD = re.compile(
    r"""(\b(?:api[_-]?key|apikey|password|secret|token)\b["']?\s*[:=]\s*["']?)[^\s"'&,;}]+""", re.IGNORECASE
)
_KEY_WORDS = ("key", "password", "secret", "token")
_SIGNING_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=]+")
# An inbound URL token outside its URL: 192 bits in URL-safe base64 is 32 characters.
_BARE_TOKEN = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{32}(?![\w-])")
# A number as people and AllMySMS write one: 9 to 15 digits, maybe after +, together or in groups split by
# one kind of separator (spaces, dots or dashes); not inside a word, a decimal or an id. Shorter runs
# (ports, durations, process ids) and addresses (127.0.0.1) have too few digits.
_PHONE = re.compile(
    r"(?<![\w+.-])\+?(?:\d{9,15}|\d{1,4}(?:(?: \d{1,4}){2,7}|(?:\.\d{1,4}){2,7}|(?:-\d{1,4}){2,7}))"
    r"(?!\w|[.:-]\d)"
)
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
# A URL's query string in a request line: the sandbox's feed methods accept GET, so API keys, numbers and
# whole messages travel there.
_QUERY = re.compile(r"\?[^\s\"']*")


def fingerprint(token: str) -> str:
    """What logs show of a token (a credential): the start of its SHA-256."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def mask(text: str, secrets: tuple[str, ...] = (), *, queries: bool = False) -> str:
    """``text`` with secrets and phone numbers replaced by what logs may show of them, and with ``queries``
    any URL query string cut out. Masking masked text changes nothing."""
    if queries:
        text = _QUERY.sub("?[redacted]", text)
    for secret in secrets:
        text = text.replace(secret, "[masked]")
    # Each pattern is tried only where the words it needs are there: every request's access line is masked,
    # and the patterns cost more than the rest of the line's writing. Not so in other scripts than ASCII,
    # where a case-blind pattern also takes letters such as the Kelvin sign for a "k".
    everything = not text.isascii()
    if everything or "/v1/inbound/allmysms/" in text:
        # A fingerprint is left as it is (no token holds ':').
        text = _INBOUND_TOKEN.sub(
            lambda m: m.group(0) if m.group(2).startswith("sha256:") else m.group(1) + fingerprint(m.group(2)), text
        )
    lowered = text.lower()
    if everything or "basic" in lowered or "bearer" in lowered:
        text = _BASIC_OR_BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}[masked]", text)
    if everything or any(word in lowered for word in _KEY_WORDS):
        text = _KEY_FIELD.sub(lambda m: f"{m.group(1)}[masked]", text)
    if everything or "whsec_" in text:
        text = _SIGNING_SECRET.sub("whsec_[masked]", text)
    text = _BARE_TOKEN.sub(_token_fingerprint, text)
    return _PHONE.sub(_phone, text)


def escaped(text: str, keep: str = "") -> str:
    """``text`` with each character that is not printable (controls, line and paragraph separators, format
    characters such as bidirectional overrides, lone surrogates) written as a Python escape, except those in
    ``keep``. The space is printable; a backslash is left as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else _escape(c) for c in text)


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _json_escaped(line: str) -> str:
    """A JSON text with what json.dumps leaves unescaped and is not printable (DEL, C1 controls, U+2028,
    lone surrogates) as \\u escapes: still the same JSON, and one line wherever it is read."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else _json_escape(c) for c in line)


def _json_escape(character: str) -> str:
    code = ord(character)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _token_fingerprint(match: re.Match) -> str:
    token = match.group(0)
    # Mixed letters and digits like a random token; a word of 32 letters or digits alone is left as is.
    if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
        return token
    return fingerprint(token)


def _phone(match: re.Match) -> str:
    from connector.sending.phones import mask as mask_number

    digits = re.sub(r"[ .\-]", "", match.group(0))
    if not 9 <= len(digits.lstrip("+")) <= 15 or _DATE.fullmatch(match.group(0)):
        return match.group(0)
    return mask_number(digits)


class Masking(logging.Filter):
    """Rewrites each record's message, traceback, stack and access fields (``http``) with :func:`mask`, and
    all but the access fields with :func:`escaped`, before any handler formats it. A traceback keeps its line
    breaks: it is many lines by nature, each indented or starting with the name of an exception.

    ``secrets`` are the values to mask wherever they appear (the settings marked secret); with ``queries``
    every URL query string is cut out too. On a logger and on its handlers alike, a record is rewritten once
    for each set of secrets not yet masked in it."""

    def __init__(self, secrets: tuple[str, ...] = (), *, queries: bool = False):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 8)
        self.queries = queries
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        done = getattr(record, "_masked_with", None)
        if done is not None and not self.queries and done.issuperset(self.secrets):
            return True
        try:
            record.msg, record.args = escaped(self._mask(record.getMessage())), None
        except Exception:  # a message that cannot be formatted is shown as logging would show it, masked
            record.msg, record.args = escaped(self._mask(f"{record.msg!r} {record.args!r}")), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = escaped(self._mask(record.exc_text), keep="\n")
        if record.stack_info:
            record.stack_info = escaped(self._mask(record.stack_info), keep="\n")
        http = getattr(record, "http", None)
        if isinstance(http, dict):
            # JSON lines show these fields as they are (JSON escapes them): masked only.
            record.http = {name: self._mask(value) if isinstance(value, str) else value for name, value in http.items()}
        record._masked_with = (done or frozenset()) | frozenset(self.secrets)
        return True

    def _mask(self, text: str) -> str:
        return mask(text, self.secrets, queries=self.queries)


def guard(logger: logging.Logger, *, queries: bool = False) -> None:
    """Mask what ``logger`` records before any handler sees it, whichever handlers it ends up with (a
    library's own default one included)."""
    if not any(isinstance(f, Masking) for f in logger.filters):
        logger.addFilter(Masking(queries=queries))


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, request_id when there is one, the
    process id (several share one output), the access log's ``http`` fields and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", None) or _request_id()
        if request_id:
            entry["request_id"] = request_id
        http = getattr(record, "http", None)  # set by the access log's calls
        if isinstance(http, dict):
            entry["http"] = http
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return _json_escaped(json.dumps(entry, ensure_ascii=False, default=str))


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def _request_id() -> str | None:
    from flask import g, has_app_context, has_request_context

    if has_request_context() and has_app_context():
        return g.get("request_id")
    return None


def formatter(log_format: str) -> logging.Formatter:
    return JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def secrets_of(settings: dict) -> tuple[str, ...]:
    """The values of the settings the config schema marks as secret (x-secret)."""
    from connector import config

    return tuple(
        str(settings[name])
        for name, prop in config.schema()["properties"].items()
        if prop.get("x-secret") and settings.get(name)
    )


class LineHandler(logging.StreamHandler):
    """A stream handler that writes each record's whole line with one system call and takes no lock.

    Every request writes an access line: with the usual handler's lock, a thread writing held it across the
    system call, the next ones queued on it, and each release woke one with the interpreter's lock held
    (connector/bells.py tells what that costs). One ``os.write`` per line needs no lock: the kernel keeps a
    line whole (a pipe up to 4 KB at once, a file under its own lock), only their order among threads is
    the order they were written in."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._fd = stream.fileno()

    def createLock(self) -> None:  # noqa: N802 (logging's name)
        self.lock = None  # Handler.acquire and release skip a handler without one

    def _at_fork_reinit(self) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + self.terminator).encode("utf-8", "backslashreplace")
            self.flush()  # what others wrote through the stream's buffer goes first
            while line:
                line = line[os.write(self._fd, line) :]
        except Exception:
            self.handleError(record)

    @staticmethod
    def replacing(handler: logging.Handler) -> logging.Handler:
        """``handler`` as a LineHandler when it writes to a stream with a file descriptor, with its level,
        formatter and filters; else ``handler`` itself."""
        stream = getattr(handler, "stream", None)
        if type(handler) is not logging.StreamHandler or stream is None:
            return handler
        try:
            stream.fileno()
        except (AttributeError, OSError, ValueError):
            return handler
        line = LineHandler(stream)
        line.setLevel(handler.level)
        line.setFormatter(handler.formatter)
        for kept in handler.filters:
            line.addFilter(kept)
        return line


def equip(handler: logging.Handler, settings: dict, *, keep_format: bool = False) -> None:
    """Mask what ``handler`` writes and, unless ``keep_format``, format it as the settings say."""
    for old in [f for f in handler.filters if isinstance(f, Masking)]:
        handler.removeFilter(old)
    handler.addFilter(Masking(secrets_of(settings)))
    if not keep_format:
        handler.setFormatter(formatter(settings["CONNECTOR_LOG_FORMAT"]))


def configure(settings: dict) -> None:
    """The process's own log output (the root logger's handlers), as the settings say."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        equip(handler, settings)
    if settings["CONNECTOR_LOG_FORMAT"] == "json":
        # A warning printed by the warnings module would be a line that is not JSON.
        logging.captureWarnings(True)

"""Log output: text lines for a person at a terminal, or JSON lines for a log pipeline; in both, whatever
looks like a secret or a phone number is masked, whoever logged it, and what is not printable is escaped.

The code logs no secret and masks numbers itself (inbound.fingerprint, phones.mask); the Masking filter
is the last line of defence, for a message or a traceback that slipped through.

Messages carry what callers wrote (a request's path, a header): a line break or a terminal escape in one
would write a line of the caller's choosing, or rewrite the terminal, so every character that is not
printable is written as an escape (\\x0a, \\x1b, \\u2028), in messages and in JSON lines alike.
"""

from __future__ import annotations

import json
import logging
import re
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_BASIC_OR_BEARER = re.compile(r"\b(Basic|Bearer)(\s+)[A-Za-z0-9+/=._~-]{6,}", re.IGNORECASE)
# AllMySMS's apiKey in a form, query string or JSON, and the like.
_KEY_FIELD = re.compile(r"""(\b(?:api[_-]?key|apikey|password|secret|token)\b["']?\s*[:=]\s*["']?)[^\s"'&,;}]+""",
                        re.IGNORECASE)
_SIGNING_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=]+")
# An inbound URL token outside its URL: 192 bits in URL-safe base64 is 32 characters.
_BARE_TOKEN = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{32}(?![\w-])")
# A number as people and AllMySMS write one: 9 to 15 digits, maybe after +, together or in groups split by
# one kind of separator (spaces, dots or dashes); not inside a word, a decimal or an id. Shorter runs
# (ports, durations, process ids) and addresses (127.0.0.1) have too few digits.
_PHONE = re.compile(r"(?<![\w+.-])\+?(?:\d{9,15}|\d{1,4}(?:(?: \d{1,4}){2,7}|(?:\.\d{1,4}){2,7}|(?:-\d{1,4}){2,7}))"
                    r"(?!\w|[.:-]\d)")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def mask(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with secrets and phone numbers replaced by what logs may show of them."""
    from connector.events import inbound
    for secret in secrets:
        text = text.replace(secret, "[masked]")
    text = inbound.masked(text)
    text = _BASIC_OR_BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}[masked]", text)
    text = _KEY_FIELD.sub(lambda m: f"{m.group(1)}[masked]", text)
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
    from connector.events.inbound import fingerprint
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
    """Rewrites each record's message, traceback and stack with :func:`mask` and :func:`escaped`, before any
    handler formats it. A traceback keeps its line breaks: it is many lines by nature, each indented or
    starting with the name of an exception."""

    def __init__(self, secrets: tuple[str, ...] = ()):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 8)
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_masked", False):
            try:
                record.msg, record.args = escaped(mask(record.getMessage(), self.secrets)), None
            except Exception:  # a message that cannot be formatted is shown as logging would show it, masked
                record.msg, record.args = escaped(mask(f"{record.msg!r} {record.args!r}", self.secrets)), None
            if record.exc_info and not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = escaped(mask(record.exc_text, self.secrets), keep="\n")
            if record.stack_info:
                record.stack_info = escaped(mask(record.stack_info, self.secrets), keep="\n")
            record._masked = True
        return True


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, request_id when there is one, the
    process id (several share one output), the access log's ``http`` fields and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": _utc(record.created), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage(), "pid": record.process}
        request_id = getattr(record, "request_id", None) or _request_id()
        if request_id:
            entry["request_id"] = request_id
        if isinstance(getattr(record, "http", None), dict):
            entry["http"] = record.http
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
    return tuple(str(settings[name]) for name, prop in config.schema()["properties"].items()
                 if prop.get("x-secret") and settings.get(name))


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

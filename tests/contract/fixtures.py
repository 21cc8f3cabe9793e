"""Loads the AllMySMS contract fixtures (replies and callbacks recorded from public sources)."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPLIES_DIR = HERE / "replies"
CALLBACKS_DIR = HERE / "callbacks"

# Every key a fixture file may carry; anything else is a typo and fails loudly.
_REPLY_KEYS = {"source", "api", "method", "http_status", "request", "reply", "reply_text", "content_type"}
_CALLBACK_KEYS = {"source", "kind", "http_method", "content_type", "fields", "body_text", "body_latin1", "expect"}

_ABSENT = object()


@dataclass(frozen=True)
class Fixture:
    """One recorded reply or callback; `raw` keeps the file's object as written."""

    name: str
    path: Path
    source: dict
    raw: dict = field(repr=False)
    api: str | None = None
    method: str | None = None
    http_status: int | None = None
    request: Any = None
    reply: Any = None
    reply_text: str | None = None
    kind: str | None = None
    http_method: str | None = None
    fields: dict | None = None
    body_text: str | None = None
    body_latin1: str | None = None
    expect: dict | None = None
    declared_content_type: str | None = None

    @property
    def is_reply(self) -> bool:
        return self.path.parent.name == "replies"

    @property
    def has_json_reply(self) -> bool:
        return "reply" in self.raw

    @property
    def content_type(self) -> str | None:
        """The Content-Type as sent; a GET callback (no body) has none."""
        if self.declared_content_type:
            return self.declared_content_type
        if self.has_json_reply:
            return "application/json"
        if self.http_method == "GET":
            return None
        if self.fields is not None:
            return "application/x-www-form-urlencoded"
        text = self.reply_text if self.reply_text is not None else self.body_text
        if text is not None:
            return "application/xml" if text.lstrip().startswith("<") else "application/json"
        if self.body_latin1 is not None:
            return "application/x-www-form-urlencoded"
        return None

    def body(self) -> bytes:
        """The bytes on the wire: JSON reply, text (UTF-8), Latin-1 text, or the urlencoded form; b'' for a GET."""
        if self.has_json_reply:
            # ensure_ascii mirrors PHP's json_encode, which escapes non-ASCII letters as \\uXXXX.
            return json.dumps(self.reply).encode("utf-8")
        if self.reply_text is not None:
            return self.reply_text.encode("utf-8")
        if self.body_text is not None:
            return self.body_text.encode("utf-8")
        if self.body_latin1 is not None:
            return self.body_latin1.encode("latin-1")
        if self.fields is not None and self.http_method != "GET":
            return urllib.parse.urlencode(self.fields).encode("ascii")
        return b""

    def query_string(self) -> str:
        """The query string of a GET callback ('' for anything else)."""
        if self.http_method == "GET" and self.fields is not None:
            return urllib.parse.urlencode(self.fields)
        return ""


def _load(path: Path) -> Fixture:
    data = json.loads(path.read_text(encoding="utf-8"))
    allowed = _REPLY_KEYS if path.parent.name == "replies" else _CALLBACK_KEYS
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}")
    reply = data.get("reply", _ABSENT)
    return Fixture(
        name=path.name[: -len(".json")],
        path=path,
        source=data.get("source", {}),
        raw=data,
        api=data.get("api"),
        method=data.get("method"),
        http_status=data.get("http_status"),
        request=data.get("request"),
        reply=None if reply is _ABSENT else reply,
        reply_text=data.get("reply_text"),
        kind=data.get("kind"),
        http_method=data.get("http_method"),
        fields=data.get("fields"),
        body_text=data.get("body_text"),
        body_latin1=data.get("body_latin1"),
        expect=data.get("expect"),
        declared_content_type=data.get("content_type"),
    )


def _all(folder: Path) -> list[Fixture]:
    return [_load(p) for p in sorted(folder.glob("*.json"))]


def replies(method: str | None = None) -> list[Fixture]:
    """Every recorded reply, or those of one method ('sendSms', 'voice/send/bulk', ...)."""
    return [f for f in _all(REPLIES_DIR) if method is None or f.method == method]


def reply(name: str) -> Fixture:
    """One reply by file stem, e.g. 'getBlacklist.two_entries'."""
    return _by_name(REPLIES_DIR, name)


def callbacks(kind: str | None = None) -> list[Fixture]:
    """Every recorded callback, or those of one kind ('delivery_receipt' or 'reply')."""
    return [f for f in _all(CALLBACKS_DIR) if kind is None or f.kind == kind]


def callback(name: str) -> Fixture:
    """One callback by file stem, e.g. 'delivery_receipt.form'."""
    return _by_name(CALLBACKS_DIR, name)


def _by_name(folder: Path, name: str) -> Fixture:
    path = folder / f"{name}.json"
    if not path.is_file():
        known = ", ".join(p.name[: -len(".json")] for p in sorted(folder.glob("*.json")))
        raise KeyError(f"no fixture {name!r} in {folder.name}/ (known: {known})")
    return _load(path)

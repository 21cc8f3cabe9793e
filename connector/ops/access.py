"""The access log of `connector serve`: gunicorn's, each line masked (logs.Masking), as JSON when asked, and
its fields worked out only as the line's format asks for them."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from gunicorn import glogging


class AccessLog(glogging.Logger):
    """gunicorn's logger, every line of its access and error logs masked (logs.Masking: inbound URL tokens,
    credentials, shown as fingerprints, the access fields of JSON lines included), and JSON lines when
    CONNECTOR_LOG_FORMAT is json."""

    _json = False
    _format = ""

    def setup(self, cfg):
        from connector import config
        from connector.observe import logs

        super().setup(cfg)
        settings = config.load()
        self._json = settings["CONNECTOR_LOG_FORMAT"] == "json"
        self._format = cfg.access_log_format  # read once: gunicorn's settings are looked up by name each time
        # A line per request: written without a lock (logs.LineHandler).
        for handler in list(self.access_log.handlers):
            line = logs.LineHandler.replacing(handler)
            if line is not handler:
                self.access_log.removeHandler(handler)
                self.access_log.addHandler(line)
        for handler in self.error_log.handlers + self.access_log.handlers:
            logs.equip(handler, settings, keep_format=not self._json)
        # The application's own lines go to the root logger; under plain gunicorn nobody else sets it up.
        logs.configure(settings)

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        atoms = Atoms(self, resp, req, environ, request_time)
        extra = None
        if self._json:
            request_id = atoms["{x-request-id}o"]
            extra = {
                "http": {
                    "remote": atoms["h"],
                    "method": atoms["m"],
                    "path": atoms["U"],
                    "status": _number(atoms["s"]),
                    "bytes": _number(atoms["B"]),
                    "duration_ms": _number(atoms["M"]),
                },
                "request_id": None if request_id == "-" else request_id,
            }
        try:
            self.access_log.info(self._format, atoms, extra=extra)
        except Exception:
            self.exception("the access log line could not be written")


def _number(text):
    return int(text) if isinstance(text, str) and text.isdigit() else text


_BUILT_IN = {
    "h": lambda a: a.environ.get("REMOTE_ADDR", "-"),
    "l": lambda a: "-",
    "u": lambda a: a.logger._get_user(a.environ) or "-",
    "t": lambda a: a.logger.now(),
    "r": lambda a: f"{a.environ['REQUEST_METHOD']} {a.environ['RAW_URI']} {a.environ['SERVER_PROTOCOL']}",
    "s": lambda a: a.resp.status.split(None, 1)[0] if isinstance(a.resp.status, str) else a.resp.status,
    "m": lambda a: a.environ.get("REQUEST_METHOD"),
    "U": lambda a: a.environ.get("PATH_INFO"),
    "q": lambda a: a.environ.get("QUERY_STRING"),
    "H": lambda a: a.environ.get("SERVER_PROTOCOL"),
    "b": lambda a: getattr(a.resp, "sent", None) is not None and str(a.resp.sent) or "-",
    "B": lambda a: getattr(a.resp, "sent", None),
    "f": lambda a: a.environ.get("HTTP_REFERER", "-"),
    "a": lambda a: a.environ.get("HTTP_USER_AGENT", "-"),
    "T": lambda a: a.took.seconds,
    "D": lambda a: a.took.seconds * 1000000 + a.took.microseconds,
    "M": lambda a: a.took.seconds * 1000 + a.took.microseconds // 1000,
    "L": lambda a: f"{a.took.seconds}.{a.took.microseconds:06d}",
    "p": lambda a: f"<{os.getpid()}>",
}


class Atoms(Mapping):
    """What gunicorn's ``atoms`` and ``SafeAtoms`` give an access line (``%(s)s``, ``%({header}i)s`` for a
    request header, ``o`` for a response header, ``e`` for an environ entry; ``-`` for what is not there, and
    double quotes escaped), each worked out when the format asks for it. gunicorn builds them all first, every
    header and environ entry: a tenth of the processor time of a small request."""

    __slots__ = ("logger", "resp", "req", "environ", "took")

    def __init__(self, logger: glogging.Logger, resp, req, environ: dict, took):
        self.logger, self.resp, self.req, self.environ, self.took = logger, resp, req, environ, took

    def __getitem__(self, key: str) -> Any:
        value = self._value(key)
        return value.replace('"', '\\"') if isinstance(value, str) else value

    def _value(self, key: str) -> Any:
        if not key.startswith("{"):
            built_in = _BUILT_IN.get(key)
            return "-" if built_in is None else built_in(self)
        name, _, kind = key[1:].lower().rpartition("}")
        if kind == "e":
            found = {k.lower(): v for k, v in self.environ.items()}
        elif kind == "i":
            found = self._headers(self.req)
        elif kind == "o":
            found = self._headers(self.resp)
        else:
            return "-"
        return found.get(name, "-")

    @staticmethod
    def _headers(message) -> dict[str, Any]:
        headers = message.headers if hasattr(message, "headers") else message
        if hasattr(headers, "items"):
            headers = headers.items()
        # As gunicorn: names lower-cased, the last of a repeated header kept.
        return {name.lower(): value for name, value in headers}

    def _all(self) -> dict[str, Any]:
        return dict(self.logger.atoms(self.resp, self.req, self.environ, self.took))

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __bool__(self) -> bool:
        return True  # logging takes a mapping argument as the format's only when it is not empty

"""A webhook subscriber for bench/triggers.py: answers every delivery 204, after a fixed delay when the
target URL asks for one (``?delay_ms=50``), and remembers when each delivery arrived.

Served by gunicorn with ONE worker (the records live in that worker's memory) and as many threads as
deliveries may be in flight at once:

    .venv/bin/gunicorn -k gthread -w 1 --threads 64 --pythonpath bench 'receiver:create_app()'

    POST <any path>[?delay_ms=N]   a delivery: recorded as [path, data.sms_id, webhook-id, arrival time]
    GET  /stats                    {"count": deliveries so far, "unsigned": those without the three headers}
    GET  /records?start=I          the records from index I on, as a JSON list

Arrival times are ``time.time()``, the clock the benchmark stamps its callbacks with (same machine).
A plain WSGI function, not Flask: what is measured is the connector, so the subscriber must cost little.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

_SIGNED = ("HTTP_WEBHOOK_ID", "HTTP_WEBHOOK_TIMESTAMP", "HTTP_WEBHOOK_SIGNATURE")
_MAX_BODY = 1 << 20


def create_app():
    records: list[list] = []  # list.append is atomic under the GIL: no lock is needed
    unsigned = [0]

    def app(environ, start_response):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/")
        if method == "POST":
            arrived = time.time()
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(min(length, _MAX_BODY))
            try:
                sms_id = json.loads(body)["data"]["sms_id"]
            except (ValueError, KeyError, TypeError):
                sms_id = None
            if not all(environ.get(name) for name in _SIGNED):
                unsigned[0] += 1
            records.append([path, sms_id, environ.get("HTTP_WEBHOOK_ID"), arrived])
            delay = _delay_ms(environ.get("QUERY_STRING", ""))
            if delay:
                time.sleep(delay / 1000)
            start_response("204 No Content", [])
            return [b""]
        if path == "/stats":
            return _json(start_response, {"count": len(records), "unsigned": unsigned[0]})
        if path == "/records":
            start = int(parse_qs(environ.get("QUERY_STRING", "")).get("start", ["0"])[0])
            return _json(start_response, records[start:])
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]

    return app


def _delay_ms(query: str) -> float:
    if "delay_ms=" not in query:
        return 0.0
    return float(parse_qs(query).get("delay_ms", ["0"])[0])


def _json(start_response, document) -> list[bytes]:
    body = json.dumps(document, separators=(",", ":")).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

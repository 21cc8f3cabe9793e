"""A webhook subscriber for bench/triggers.py: answers every delivery 204, after a fixed delay when the
target URL asks for one (``?delay_ms=50``), and remembers when each delivery arrived.

One process, one asyncio event loop, keep-alive connections:

    .venv/bin/python bench/receiver.py --port 8900

    POST <any path>[?delay_ms=N]   a delivery: recorded as [path, data.sms_id, webhook-id, arrival time, id]
    GET  /stats                    {"count": deliveries so far, "unsigned": those without the three headers}
    GET  /records?start=I          the records from index I on, as a JSON list

Arrival times are ``time.time()``, the clock the benchmark stamps its callbacks with (same machine).

What is measured is the connector, so the subscriber must cost as little as it can: a thread per request
(gunicorn gthread) cost about 0.3 ms of CPU per delivery, as much as the worker itself once it got
fast. This server reads requests off the socket with a parser for just what the benchmark sends
(Content-Length bodies, no chunking) and answers delayed deliveries with a timer, not a sleeping thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import parse_qs, urlsplit

_SIGNED = (b"webhook-id", b"webhook-timestamp", b"webhook-signature")
_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class Records:
    def __init__(self):
        self.rows: list[list] = []
        self.unsigned = 0


class _Connection(asyncio.Protocol):
    def __init__(self, records: Records):
        self.records = records
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        # Answers go out in request order even when an earlier one waits for its delay (HTTP/1.1).
        self.pending: list[list] = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, target = lines[0].split(b" ")[:2]
            self._handle(method, target.decode(), headers, body)

    def _handle(self, method: bytes, target: str, headers: dict, body: bytes) -> None:
        parts = urlsplit(target)
        if method == b"POST":
            arrived = time.time()
            sms_id, event_id = _identity(body)
            if not all(headers.get(name) for name in _SIGNED):
                self.records.unsigned += 1
            webhook_id = headers.get(b"webhook-id", b"").decode() or None
            self.records.rows.append([parts.path, sms_id, webhook_id, arrived, event_id])
            delay = float(parse_qs(parts.query).get("delay_ms", ["0"])[0])
            slot = [None]
            self.pending.append(slot)
            if delay:
                asyncio.get_running_loop().call_later(delay / 1000, self._ready, slot, _NO_CONTENT)
            else:
                self._ready(slot, _NO_CONTENT)
            return
        if parts.path == "/stats":
            answer = {"count": len(self.records.rows), "unsigned": self.records.unsigned}
        elif parts.path == "/records":
            answer = self.records.rows[int(parse_qs(parts.query).get("start", ["0"])[0]) :]
        else:
            self.pending.append([b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"])
            self._flush()
            return
        payload = json.dumps(answer, separators=(",", ":")).encode()
        self.pending.append(
            [
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            ]
        )
        self._flush()

    def _ready(self, slot: list, answer: bytes) -> None:
        slot[0] = answer
        self._flush()

    def _flush(self) -> None:
        while self.pending and self.pending[0][0] is not None:
            answer = self.pending.pop(0)[0]
            if self.transport and not self.transport.is_closing():
                self.transport.write(answer)


def _identity(body: bytes) -> tuple:
    """The event's data.sms_id and id, or None for what a delivery does not carry."""
    try:
        event = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(event, dict):
        return None, None
    data = event.get("data")
    return (data.get("sms_id") if isinstance(data, dict) else None), event.get("id")


async def serve(port: int) -> None:
    records = Records()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(records), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()

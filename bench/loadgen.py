"""Closed-loop HTTP load on 127.0.0.1: a bounded number of client threads, each on its own keep-alive
connection, sending the same request again and again until a deadline."""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field

import psutil

MAX_CLIENTS = 64
MAX_SECONDS = 120
HOST = "127.0.0.1"
_TIMEOUT = 30


@dataclass
class LoadResult:
    ok: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False)  # seconds, successful requests only
    client_cpu: float  # cores used by this (client) process while it ran
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in seconds (nan when nothing succeeded)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, round(q / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    def summary(self) -> dict:
        return {"requests_per_s": round(self.rate, 1), "ok": self.ok, "errors": self.errors,
                "seconds": round(self.seconds, 3), "p50_ms": round(self.percentile(50) * 1000, 2),
                "p99_ms": round(self.percentile(99) * 1000, 2), "client_cpu_cores": round(self.client_cpu, 2),
                "first_error": self.first_error}


def drive(port: int, path: str, body: bytes, headers: dict, *, clients: int, seconds: float) -> LoadResult:
    """POST `body` to 127.0.0.1:`port``path` from `clients` threads for `seconds`."""
    if not 1 <= clients <= MAX_CLIENTS:
        raise ValueError(f"clients must be between 1 and {MAX_CLIENTS}")
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be above 0 and at most {MAX_SECONDS}")
    headers = {**headers, "Content-Length": str(len(body))}
    gate = threading.Barrier(clients + 1)
    clock: dict[str, float] = {}
    tallies: list[dict] = []
    threads = [threading.Thread(target=_client, args=(port, path, body, headers, gate, clock, tallies),
                                name=f"load-{i}", daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    me = psutil.Process()
    cpu_before = sum(me.cpu_times()[:2])
    clock["start"] = time.perf_counter()
    clock["deadline"] = clock["start"] + seconds
    gate.wait()
    for thread in threads:
        # A request in flight at the deadline may take up to the socket timeout to finish.
        thread.join(seconds + _TIMEOUT + 5)
    ended = max((t["ended"] for t in tallies), default=time.perf_counter())
    wall = ended - clock["start"]
    cpu = sum(me.cpu_times()[:2]) - cpu_before
    return LoadResult(ok=sum(t["ok"] for t in tallies), errors=sum(t["errors"] for t in tallies),
                      seconds=wall, latencies=[x for t in tallies for x in t["latencies"]],
                      client_cpu=cpu / wall if wall else 0.0,
                      first_error=next((t["first_error"] for t in tallies if t["first_error"]), ""))


def _client(port, path, body, headers, gate, clock, tallies):
    tally = {"ok": 0, "errors": 0, "latencies": [], "first_error": "", "ended": 0.0}
    conn = None
    gate.wait()
    deadline = clock["deadline"]
    try:
        while (sent := time.perf_counter()) < deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=_TIMEOUT)
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    tally["ok"] += 1
                    tally["latencies"].append(time.perf_counter() - sent)
                else:
                    tally["errors"] += 1
                    tally["first_error"] = tally["first_error"] or f"HTTP {response.status}"
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                tally["errors"] += 1
                tally["first_error"] = tally["first_error"] or repr(exc)
                if conn is not None:
                    conn.close()
                conn = None
                # A refused connection must not turn into a busy loop.
                time.sleep(0.01)
    finally:
        if conn is not None:
            conn.close()
        tally["ended"] = time.perf_counter()
        tallies.append(tally)

"""HTTP load on 127.0.0.1 from a bounded number of client threads, each on its own keep-alive connection:
closed loop (the same or a fresh request again and again until a deadline, or each of a list once) and
open loop (requests started at a fixed rate, whether or not earlier ones have been answered)."""

from __future__ import annotations

import http.client
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

MAX_CLIENTS = 64
MAX_SECONDS = 120
MAX_PACED = 100_000
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
        return _rank(sorted(self.latencies), q)

    def summary(self) -> dict:
        return {
            "requests_per_s": round(self.rate, 1),
            "ok": self.ok,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "p50_ms": round(self.percentile(50) * 1000, 2),
            "p99_ms": round(self.percentile(99) * 1000, 2),
            "client_cpu_cores": round(self.client_cpu, 2),
            "first_error": self.first_error,
        }


def drive(
    port: int, path: str, body: bytes | Callable[[], bytes], headers: dict, *, clients: int, seconds: float
) -> LoadResult:
    """POST `body` to 127.0.0.1:`port``path` from `clients` threads for `seconds`; when `body` is a
    function, each request sends what it returns (distinct requests, e.g. callbacks that must not be
    duplicates)."""
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be above 0 and at most {MAX_SECONDS}")
    if callable(body):
        # http.client writes each body's own Content-Length.
        return _closed_loop(port, path, body, headers, clients, seconds)
    headers = {**headers, "Content-Length": str(len(body))}
    return _closed_loop(port, path, lambda: body, headers, clients, seconds)


def post_each(
    port: int, path: str, bodies: Iterable[bytes], headers: dict, *, clients: int, timeout: float = MAX_SECONDS
) -> LoadResult:
    """POST every one of `bodies` once, from `clients` threads; give up on what is left after `timeout` s."""
    remaining = iter(bodies)
    lock = threading.Lock()

    def next_body() -> bytes | None:
        with lock:
            return next(remaining, None)

    return _closed_loop(port, path, next_body, headers, clients, timeout)


def _closed_loop(port, path, next_body, headers, clients, seconds) -> LoadResult:
    if not 1 <= clients <= MAX_CLIENTS:
        raise ValueError(f"clients must be between 1 and {MAX_CLIENTS}")
    gate = threading.Barrier(clients + 1)
    clock: dict[str, float] = {}
    tallies: list[dict] = []
    threads = [
        threading.Thread(
            target=_client, args=(port, path, next_body, headers, gate, clock, tallies), name=f"load-{i}", daemon=True
        )
        for i in range(clients)
    ]
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
    return LoadResult(
        ok=sum(t["ok"] for t in tallies),
        errors=sum(t["errors"] for t in tallies),
        seconds=wall,
        latencies=[x for t in tallies for x in t["latencies"]],
        client_cpu=cpu / wall if wall else 0.0,
        first_error=next((t["first_error"] for t in tallies if t["first_error"]), ""),
    )


def _client(port, path, next_body, headers, gate, clock, tallies):
    tally = {"ok": 0, "errors": 0, "latencies": [], "first_error": "", "ended": 0.0}
    conn = None
    gate.wait()
    deadline = clock["deadline"]
    try:
        while time.perf_counter() < deadline:
            body = next_body()
            if body is None:
                break
            sent = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=_TIMEOUT)
                status, will_close = _post(conn, path, body, headers)
                if status == 200:
                    tally["ok"] += 1
                    tally["latencies"].append(time.perf_counter() - sent)
                else:
                    tally["errors"] += 1
                    tally["first_error"] = tally["first_error"] or f"HTTP {status}"
                if will_close:
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


def _post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict) -> tuple[int, bool]:
    conn.request("POST", path, body, headers)
    response = conn.getresponse()
    response.read()
    return response.status, response.will_close


# Open loop


@dataclass
class PacedResult:
    """One entry per request, by index: when it was sent (``time.time()``, to compare with other
    processes' clocks), how late that was against the schedule, how long the answer took, its status."""

    rate: float
    sent_at: list[float] = field(repr=False)
    lag: list[float] = field(repr=False)  # seconds behind schedule when the request started
    latencies: list[float] = field(repr=False)  # seconds; nan when it failed
    statuses: list[int] = field(repr=False)  # 0 when no answer came
    seconds: float = 0.0  # from the first scheduled start to the last answer
    first_error: str = ""

    @property
    def ok(self) -> int:
        return sum(1 for s in self.statuses if s == 200)

    @property
    def errors(self) -> int:
        return len(self.statuses) - self.ok

    def summary(self) -> dict:
        answered = sorted(x for x in self.latencies if x == x)
        lags = sorted(self.lag)
        return {
            "rate_asked": self.rate,
            "requests": len(self.statuses),
            "ok": self.ok,
            "errors": self.errors,
            "achieved_rate": round(len(self.statuses) / self.seconds, 1) if self.seconds else None,
            "p50_ms": round(_rank(answered, 50) * 1000, 2),
            "p99_ms": round(_rank(answered, 99) * 1000, 2),
            "max_ms": round(answered[-1] * 1000, 2) if answered else None,
            "max_lag_ms": round(lags[-1] * 1000, 2) if lags else None,
            "p99_lag_ms": round(_rank(lags, 99) * 1000, 2),
            "first_error": self.first_error,
        }


def paced(
    port: int,
    path: str,
    make_body: Callable[[int], bytes],
    headers: dict,
    *,
    rate: float,
    count: int,
    senders: int = 32,
    timeout: float = _TIMEOUT,
) -> PacedResult:
    """POST `make_body(i)` for i in range(`count`), request i starting `i / rate` seconds after the first,
    from `senders` threads. When all senders are busy a request starts late; its lag is kept, so a
    server that cannot keep up shows as lag, not as a lower rate that looks fine. A request unanswered
    after `timeout` seconds counts as failed."""
    if not 1 <= senders <= MAX_CLIENTS:
        raise ValueError(f"senders must be between 1 and {MAX_CLIENTS}")
    if not 1 <= count <= MAX_PACED or rate <= 0:
        raise ValueError(f"count must be between 1 and {MAX_PACED}, rate above 0")
    bodies = [make_body(i) for i in range(count)]  # built first, so building never delays a send
    result = PacedResult(
        rate=rate, sent_at=[0.0] * count, lag=[0.0] * count, latencies=[float("nan")] * count, statuses=[0] * count
    )
    todo: queue.SimpleQueue = queue.SimpleQueue()
    errors: list[str] = []
    threads = [
        threading.Thread(
            target=_sender,
            args=(port, path, bodies, headers, todo, result, errors, timeout),
            name=f"paced-{i}",
            daemon=True,
        )
        for i in range(senders)
    ]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        todo.put((i, due))
    for _ in threads:
        todo.put(None)
    for thread in threads:
        thread.join(timeout + 5 + count / rate)
    result.seconds = time.perf_counter() - start
    result.first_error = errors[0] if errors else ""
    return result


def _sender(port, path, bodies, headers, todo, result: PacedResult, errors: list[str], timeout: float):
    conn = None
    try:
        while (item := todo.get()) is not None:
            i, due = item
            started = time.perf_counter()
            result.sent_at[i] = time.time()
            result.lag[i] = max(0.0, started - due)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
                status, will_close = _post(conn, path, bodies[i], headers)
                result.statuses[i] = status
                result.latencies[i] = time.perf_counter() - started
                if status != 200 and not errors:
                    errors.append(f"HTTP {status}")
                if will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                if not errors:
                    errors.append(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()


def _rank(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ordered list (nan when empty)."""
    if not ordered:
        return float("nan")
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]

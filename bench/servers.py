"""The benchmark's server processes on 127.0.0.1: free ports, start, readiness, RSS and CPU sampling, and a
stop that always happens (terminate, then kill) — only for the processes started here, by their ids; and the
load a platform puts on them (keyed actions and callbacks, retried until their answer is definitive)."""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import psutil
import report
import requests

from connector.events import callbacks as events

HOST = "127.0.0.1"
MB = 1024 * 1024


# The same server settings `connector serve` uses (connector/ops/serving.py), so only the app differs.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def workers(self) -> list[psutil.Process]:
        """The gunicorn workers: the children of the master process."""
        try:
            return psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []

    def processes(self) -> list[psutil.Process]:
        """The process started and its children (a gunicorn master and its workers)."""
        try:
            master = psutil.Process(self.process.pid)
            return [master, *master.children()]
        except psutil.NoSuchProcess:
            return []

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Fleet:
    """Every server the benchmark started; leaving the `with` block stops those still running."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.running: list[Server] = []

    def __enter__(self) -> Fleet:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info) -> None:
        for server in reversed(list(self.running)):
            self.stop(server)

    def start(
        self, name: str, argv: list[str], env: dict, port: int, ready_path: str, *, workers: int, timeout: float = 60
    ) -> Server:
        """Start `argv` and wait until GET `ready_path` answers 200 and all `workers` are up."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = Server(name, process, port, log_path)
        self.running.append(server)
        _wait_ready(server, ready_path, workers, timeout)
        return server

    def spawn(self, name: str, argv: list[str], env: dict) -> Server:
        """Start `argv`, a process that serves no HTTP (a delivery worker): no readiness to wait for."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = Server(name, process, 0, log_path)
        self.running.append(server)
        return server

    def stop(self, server: Server, grace: float = 10) -> None:
        # Workers are listed before the master goes, so none is left behind if it dies first.
        workers = server.workers()
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(grace)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(5)
        alive = [w for w in workers if w.is_running()]
        for worker in alive:
            _quietly(worker.terminate)
        _, left = psutil.wait_procs(alive, timeout=3)
        for worker in left:
            _quietly(worker.kill)
        if server in self.running:
            self.running.remove(server)


def _wait_ready(server: Server, path: str, workers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with code {server.process.returncode}:\n{server.log_tail()}")
        if len(server.workers()) >= workers and _answers(server.port, path):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} was not ready after {timeout:.0f} s:\n{server.log_tail()}")


def _answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _quietly(action) -> None:
    try:
        action()
    except psutil.NoSuchProcess:
        pass


class RssSampler:
    """Sums the resident memory of `processes` every `interval` seconds in a thread, while in a `with`."""

    def __init__(self, processes: list[psutil.Process], interval: float = 0.02):
        self.processes = processes
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._sample())
            self.samples += 1

    def _sample(self) -> int:
        total = 0
        for process in self.processes:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total


def gunicorn_argv(port: int, workers: int, threads: int, worker_class: str | None = None) -> list[str]:
    """gunicorn with the worker class and timeouts `connector serve` uses (or ``worker_class``); the app spec
    goes last."""
    from connector.ops.serving import WORKER_CLASS

    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{HOST}:{port}",
        "--worker-class",
        worker_class or WORKER_CLASS,
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        "90",
        "--graceful-timeout",
        "5",
        # gunicorn 27 puts one control socket per user at ~/.gunicorn/gunicorn.ctl: servers started side
        # by side would take it from each other.
        "--no-control-socket",
    ]


def clean_env(**overrides: str) -> dict:
    """This environment less every setting of the connector, the sandbox and the baselines, plus `overrides`:
    settings from the caller's shell must not change what is measured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "ALLMYSMS_", "PASSTHROUGH_"))}
    for name in ("PORT", "DATABASE_URL"):
        env.pop(name, None)
    return {**env, **overrides}


def start_sandbox(fleet: Fleet, accounts: dict, workers: int, threads: int, ready_login: str) -> Server:
    """The AllMySMS sandbox under gunicorn; `accounts` ({login: {"api_key", "credits"}}) exist in each
    worker's own in-memory state."""
    port = free_port()
    # gunicorn evaluates literal arguments of the factory call, so each worker builds the accounts.
    spec = f"connector.sandbox:create_sandbox_app(accounts={accounts!r})"
    key = accounts[ready_login]["api_key"]
    ready = f"/http/9.0/getInfo/?login={ready_login}&apiKey={key}&returnformat=json"
    return fleet.start(
        "sandbox", gunicorn_argv(port, workers, threads) + [spec], clean_env(), port, ready, workers=workers
    )


class CpuMeter:
    """CPU time (user + system) used by `processes` between `start()` and `stop()`, in cores."""

    def __init__(self, processes: list[psutil.Process]):
        self.processes = processes
        self.cores = 0.0
        self._before: dict[int, float] = {}
        self._started = 0.0

    def start(self) -> CpuMeter:
        self._before = {p.pid: _cpu(p) for p in self.processes}
        self._started = time.perf_counter()
        return self

    def stop(self) -> float:
        wall = time.perf_counter() - self._started
        used = sum(max(0.0, _cpu(p) - self._before.get(p.pid, 0.0)) for p in self.processes)
        self.cores = used / wall if wall > 0 else 0.0
        return self.cores


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
        return times.user + times.system
    except psutil.NoSuchProcess:
        return 0.0


# The load an automation platform puts on the connector

REQUEST_TIMEOUT = 10.0
SENDERS = 8  # threads per kind of load: retries of stuck items must not hold back new ones
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
RECEIPT = {
    "campaignId": "c-bench",
    "phoneNumber": "33611111111",
    "status": "1",
    "statusText": "Delivered",
    "receptionDate": "2026-12-01 09:30:03",
}


@dataclass
class Item:
    """One keyed action or one callback, retried until its answer is definitive."""

    n: int
    body: bytes
    created: float  # time.time()
    key: str = ""  # actions: the Idempotency-Key (and client_reference)
    event_id: str = ""  # callbacks: the id the connector gives the event
    attempts: list = field(default_factory=list)  # [started, ended, what came back], time.time()
    outcome: str | None = None
    resolved_at: float | None = None
    replayed: bool = False
    campaign_id: str | None = None
    conflict_since: float | None = None  # when an unbroken run of 409s began


class _Due:
    """Work items by when they are due: new ones at once, retries after a back-off; any thread takes them."""

    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, item: Item, delay: float = 0.0) -> None:
        with self._ready:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), item))
            self._ready.notify()

    def take(self) -> Item | None:
        with self._ready:
            while not self._closed:
                if not self._heap:
                    self._ready.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._heap)[2]
                self._ready.wait(wait)
            return None

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class Load:
    """Keyed send_sms actions and receipt callbacks, offered at steady rates and retried like a platform:
    an action with the same key and body after no answer, a 5xx, 409 (in progress) or 429, until the answer
    is definitive; a callback until it is answered 200. Every answer is tallied."""

    def __init__(self, url: str, inbound_path: str, run: str, auth: tuple[str, str], phone: str, prefix: str = "bench"):
        self.url = url
        self.inbound_path = inbound_path
        self.run = run
        self.login = auth[0]
        self.authorization = report.basic_auth(*auth)
        self.phone = phone
        self.prefix = prefix
        self.actions: list[Item] = []
        self.callbacks: list[Item] = []
        self.statuses: Counter = Counter()  # what came back, by kind: "action 409", "callback no answer", ...
        # 429 and 503 answers that did not say when to come back (Retry-After), by kind and status.
        self.unhinted: Counter = Counter()
        self.due = {"action": _Due(), "callback": _Due()}
        self.sessions = threading.local()
        self.offering: list[threading.Thread] = []
        self.senders: list[threading.Thread] = []
        self.lock = threading.Lock()

    def start(self, rate: float, callback_rate: float, seconds: float) -> None:
        self.offering = [
            threading.Thread(target=self._offer, args=("action", rate, seconds), daemon=True),
            threading.Thread(target=self._offer, args=("callback", callback_rate, seconds), daemon=True),
        ]
        self.senders = [
            threading.Thread(target=self._send, args=(kind,), name=f"{kind}-{i}", daemon=True)
            for kind in self.due
            for i in range(SENDERS)
        ]
        for thread in self.offering + self.senders:
            thread.start()

    def wait_offered(self) -> None:
        for thread in self.offering:
            thread.join()

    def settle(self, timeout: float, held=None) -> float:
        """Seconds until every item has a definitive answer or is one `held(item)` excuses, or `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if all(i.outcome is not None or (held is not None and held(i)) for i in self.actions + self.callbacks):
                break
            time.sleep(0.1)
        return time.monotonic() - started

    def stop(self) -> None:
        for due in self.due.values():
            due.close()
        for thread in self.senders:
            thread.join(REQUEST_TIMEOUT + 5)

    def _offer(self, kind: str, rate: float, seconds: float) -> None:
        # Open loop: item i is due i/rate s after the start, whatever happened to the earlier ones.
        started = time.monotonic()
        for n in itertools.count():
            due_at = started + n / rate
            if due_at >= started + seconds:
                return
            pause = due_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            item = self._action(n) if kind == "action" else self._callback(n)
            with self.lock:
                (self.actions if kind == "action" else self.callbacks).append(item)
            self.due[kind].put(item)

    def _action(self, n: int) -> Item:
        key = f"{self.prefix}-{self.run}-{n}"
        body = {
            "message": f"{self.prefix.capitalize()} run message {n}",
            "recipients": [self.phone],
            "client_reference": key,
        }
        return Item(n, json.dumps(body).encode(), time.time(), key=key)

    def _callback(self, n: int) -> Item:
        form = {"smsId": f"{self.prefix}-{self.run}-{n}", **RECEIPT}
        body = urlencode(form).encode()
        record = events.read_callback("POST", FORM["Content-Type"], {}, dict(parse_qsl(body.decode())), body)[0]
        event = events.normalise(record, account=self.login)
        return Item(n, body, time.time(), event_id=event.id)

    def _send(self, kind: str) -> None:
        due = self.due[kind]
        while (item := due.take()) is not None:
            retry_in = self._attempt_action(item) if kind == "action" else self._attempt_callback(item)
            if retry_in is not None:
                due.put(item, retry_in)

    def _session(self) -> requests.Session:
        if not hasattr(self.sessions, "session"):
            self.sessions.session = requests.Session()
        return self.sessions.session

    def _post(self, item: Item, path: str, headers: dict, tally: str):
        """One attempt: the answer, or None when none came (connection refused or reset, timeout)."""
        started = time.time()
        try:
            answer = self._session().post(self.url + path, data=item.body, headers=headers, timeout=REQUEST_TIMEOUT)
            what = f"HTTP {answer.status_code}"
        except requests.RequestException:
            # A broken keep-alive connection must not be reused for the retry.
            self.sessions.session = requests.Session()
            answer, what = None, "no answer"
        item.attempts.append([started, time.time(), what])
        with self.lock:
            self.statuses[f"{tally} {what}"] += 1
            if answer is not None and answer.status_code in (429, 503) and "Retry-After" not in answer.headers:
                self.unhinted[f"{tally} {what}"] += 1
        return answer

    def _attempt_action(self, item: Item) -> float | None:
        """Seconds before the next try, or None once the answer is definitive."""
        headers = {"Content-Type": "application/json", "Idempotency-Key": item.key, "Authorization": self.authorization}
        answer = self._post(item, "/v1/actions/send_sms", headers, "action")
        retry = backoff(item)
        if answer is None:
            item.conflict_since = None
            return retry
        if answer.status_code == 409:
            item.conflict_since = item.conflict_since or item.attempts[-1][0]
            return max(retry, retry_after(answer))
        item.conflict_since = None
        error = error_of(answer)
        replayed = answer.headers.get("Idempotent-Replayed") == "true"
        if answer.status_code == 200:
            return self._resolved(item, "sent", replayed, answer.json().get("campaign_id"))
        if error.get("disposition") == "check_before_retry":
            return self._resolved(item, "outcome unknown", replayed)
        if answer.status_code == 429 or answer.status_code >= 500:
            return max(retry, retry_after(answer))  # nothing was sent, or the key now says what happened
        return self._resolved(item, f"refused {answer.status_code} {error.get('code', '')}".strip(), replayed)

    def _attempt_callback(self, item: Item) -> float | None:
        answer = self._post(item, self.inbound_path, FORM, "callback")
        if answer is not None and answer.status_code == 200:
            return self._resolved(item, "accepted")
        if answer is not None and 400 <= answer.status_code < 500 and answer.status_code != 429:
            return self._resolved(item, f"refused {answer.status_code} {error_of(answer).get('code', '')}".strip())
        return backoff(item) if answer is None else max(backoff(item), retry_after(answer))

    @staticmethod
    def _resolved(item: Item, outcome: str, replayed: bool = False, campaign_id: str | None = None) -> None:
        item.outcome, item.replayed, item.campaign_id = outcome, replayed, campaign_id
        item.resolved_at = time.time()
        return None


def backoff(item: Item) -> float:
    # Quick first retries (a restarted process is back within seconds), never more than 2 s apart.
    return min(2.0, 0.1 * 2 ** (len(item.attempts) - 1)) * random.uniform(0.8, 1.2)


def retry_after(answer: requests.Response) -> float:
    """The answer's Retry-After in seconds, at most 5: a run is seconds long, a platform's retries are not."""
    try:
        return min(5.0, float(answer.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0


def error_of(answer: requests.Response) -> dict:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body.get("error", {}) if isinstance(body, dict) else {}


def callback_figures(load: Load, records: list[list], subscribers: int, start: float, end: float) -> dict:
    """What became of the callbacks: answers, and for each subscriber (path /hook/k) the accepted events it
    got, lost or got under several webhook-ids."""
    accepted = {c.event_id for c in load.callbacks if c.outcome == "accepted"}
    offered = {c.event_id for c in load.callbacks}
    per_subscriber = []
    for k in range(subscribers):
        mine = [r for r in records if r[0] == f"/hook/{k}"]
        webhook_ids: dict[str, set] = {}
        for _, _, webhook_id, _, event_id in mine:
            webhook_ids.setdefault(event_id, set()).add(webhook_id)
        per_subscriber.append(
            {
                "subscriber": k,
                "deliveries": len(mine),
                "events": len(webhook_ids),
                "accepted_delivered": len(accepted & webhook_ids.keys()),
                "lost": sorted(accepted - webhook_ids.keys())[:20],
                "lost_count": len(accepted - webhook_ids.keys()),
                "duplicates_same_webhook_id": len(mine) - len(webhook_ids),
                "events_with_several_webhook_ids": sum(1 for ids in webhook_ids.values() if len(ids) > 1),
                "foreign_events": len(webhook_ids.keys() - offered),
            }
        )
    return {
        "offered": len(load.callbacks),
        "outcomes": dict(Counter(c.outcome or "no answer yet" for c in load.callbacks)),
        "accepted": len(accepted),
        "held_per_s": held_per_s(load.callbacks, start, end),
        "answer_s": spread([c.resolved_at - c.created for c in load.callbacks if c.resolved_at]),
        "retried": sum(1 for c in load.callbacks if len(c.attempts) > 1),
        "subscribers": per_subscriber,
        "lost": sum(s["lost_count"] for s in per_subscriber),
        "duplicates_same_webhook_id": sum(s["duplicates_same_webhook_id"] for s in per_subscriber),
        "events_with_several_webhook_ids": sum(s["events_with_several_webhook_ids"] for s in per_subscriber),
    }


def held_per_s(items: list[Item], start: float, end: float) -> float:
    """Definitive answers a second within the load window: what the service kept up with."""
    done = sum(1 for i in items if i.resolved_at is not None and i.resolved_at <= end)
    return round(done / (end - start), 1) if end > start else 0.0


def spread(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    if not ordered:
        return {"p50": None, "p99": None, "max": None}

    def rank(q):
        return round(ordered[min(len(ordered), max(1, round(q / 100 * len(ordered)))) - 1], 3)

    return {"p50": rank(50), "p99": rank(99), "max": round(ordered[-1], 3)}

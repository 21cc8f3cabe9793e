"""Benchmark of the connector's triggers on 127.0.0.1: callback ingest, end-to-end latency, worker throughput,
and the service at rest; on SQLite and on PostgreSQL.

Callbacks in (ingest), callback to subscriber (end-to-end latency), what one delivery worker sends, and what
`connector serve` costs with nothing to do (idle).

Usage (from the repository root):

    .venv/bin/python bench/triggers.py              # full run on both databases, at most about 8 minutes
    .venv/bin/python bench/triggers.py --quick      # smoke run on both, about 1.5 minutes
    .venv/bin/python bench/triggers.py --sqlite-only   # SQLite only
    .venv/bin/python bench/triggers.py --postgres      # PostgreSQL only (BENCH_POSTGRES_URL; a schema per phase)
    .venv/bin/python bench/triggers.py --only idle     # one phase (may be repeated)
    .venv/bin/python bench/triggers.py --py-spy /tmp/pyspy/bin/py-spy   # also profile the delivery worker

Every phase runs once per database, SQLite first; each row of the table names its database. Beside each rate
is its CPU cost per item (CPU-µs: CPU seconds of the processes named / items), the figure that survives a
change of machine; all CPU is user + system time of whole processes, read from /proc by psutil.

Everything runs on loopback, with servers started here and always stopped on exit (even on Ctrl-C). The
AllMySMS sandbox runs under gunicorn (2 workers x 8 threads, an account with 10**12 credits); it only
answers the credential checks. Subscribers are bench/receiver.py (one asyncio process each),
answering 204 at once or after `?delay_ms=N` and recording when each delivery arrived. Each
phase gets its own `connector serve` (gunicorn through connector/ops/serving.py) on a fresh data directory,
so each starts on an empty SQLite database.

1. Ingest. Form-encoded delivery receipts, each with its own smsId (so none is a duplicate), are POSTed
   to the account's inbound URL of `connector serve` as deployed by default (2 workers x 8 threads, its
   delivery worker processes on) by N client threads for S seconds (closed loop), with no subscription, so
   nothing is delivered. The same load goes to bench/echo.py, a bare Flask app answering the form
   back as JSON under gunicorn with the same workers, threads and access log. After a warm-up each is
   driven in turn (A B A B); the better round of each counts. Target: connector >= 0.6 x echo. The
   number of events in the database must equal the number of callbacks answered 200. CPU-µs per callback:
   the server's processes (connector: web workers, master and delivery workers; echo: its gunicorn).
2. End-to-end latency. 10 subscriptions on the receipt trigger point at the receivers (no delay); the
   connector runs 2 web workers and delivers from its default delivery worker processes. Receipts are POSTed open
   loop at 300/s for 10 s (each starts on schedule whether or not earlier ones were answered, from 32
   sender threads: when all 32 wait for answers the next one starts late, and that lag is reported);
   for each of the 3,000 x 10 deliveries, latency = arrival at the subscriber - the moment its callback
   was POSTed (also reported from the moment it was due, when senders were held up).
   Target: p99 <= 200 ms with nothing lost (and nothing delivered twice: a receiver records each delivery;
   an (event, subscription) that arrived twice is a duplicate). When 300/s misses it, lower rates are tried
   (each on a fresh connector, halving the ladder of rates) and the highest that meets it is reported.
   CPU-µs per callback delivered to the 10 subscribers: all of the connector's processes, from the first
   callback until the last delivery.
3. Delivery throughput. `connector serve` with CONNECTOR_WORKERS=1 and CONNECTOR_DELIVERY_WORKER=off
   stores M receipts x 10 subscriptions while no worker runs (the events wait in the fan-out queue);
   then ONE `connector worker` process starts, turns them into deliveries and sends them to subscribers
   that take 50 ms to answer. deliveries/s = deliveries / (last arrival - first arrival), so the
   worker's start-up is not counted (it is reported apart). Run with CONNECTOR_DELIVERY_CONCURRENCY 64
   and 128 (the default is 256). Target: >= 500/s. CPU-µs per delivery: the worker process.
4. Idle. A fresh `connector serve` as deployed by default (2 web workers, its delivery worker processes),
   with nothing to do: once its start-up is over (the CPU of its processes has settled), the CPU of the
   whole process tree over 60 s (10 s with --quick). Target: <= 1 % of a core. The connectors of both
   databases are started first and measured side by side, over the same seconds, while the other phases
   run: they are given nothing to do, and only their own processes' CPU time counts (their databases, data
   folders and PostgreSQL channels are their own).

Prints one table (measure, value, baseline/target, verdict) and writes everything measured to
bench/results/triggers-latest.json; the servers' logs are in bench/results/logs/triggers/.
"""

from __future__ import annotations

import argparse
import collections
import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

# bench/ is on sys.path when this file is run as a script, so its modules import by name.
import databases
import loadgen
import psutil
import report
import servers
from hooks import Hooks, Receivers
from report import say

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs" / "triggers"

LOGIN, API_KEY = "bench", "bench-api-key"
CREDITS = 10**12
SERVER_WORKERS, SERVER_THREADS = 2, 8
RECEIVERS = 2
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CALLBACK_TIMEOUT = 10.0  # a callback unanswered after this long counts as failed (and keeps runs bounded)
# Everything of a receipt but its smsId, which makes each callback a new event.
RECEIPT_REST = "&" + urlencode(
    {
        "campaignId": "c-bench",
        "phoneNumber": "33611111111",
        "status": "1",
        "statusText": "Delivered",
        "receptionDate": "2026-12-01 09:30:03",
    }
)

PHASES = ("ingest", "latency", "throughput", "idle")
BACKENDS = ("sqlite", "postgresql")
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
TARGETS = {
    "ingest_ratio": 0.6,
    "e2e_rate": 300,
    "e2e_p99_ms": 200.0,
    "deliveries_per_s": 500.0,
    "idle_cpu_percent": 1.0,
}

FULL = {
    "clients": 16,
    "ingest_warmup": 2.0,
    "ingest_seconds": 5.0,
    "ingest_rounds": 2,
    "subscribers": 10,
    "rate": 300,
    "latency_seconds": 10.0,
    "ladder": (50, 75, 100, 150, 200),
    "ladder_seconds": 5.0,
    "latency_warmup_events": 100,
    "drain_s": 45.0,
    "preload_events": 300,
    "concurrencies": (64, 128),
    "delay_ms": 50,
    "delivery_timeout_s": 40.0,
    "profile_events": 600,
    "idle_seconds": 60.0,
    "idle_settle_max_s": 30.0,
}
QUICK = {
    "clients": 16,
    "ingest_warmup": 0.5,
    "ingest_seconds": 1.5,
    "ingest_rounds": 1,
    "subscribers": 10,
    "rate": 300,
    "latency_seconds": 3.0,
    "ladder": (50,),
    "ladder_seconds": 1.5,
    "latency_warmup_events": 30,
    "drain_s": 15.0,
    "preload_events": 60,
    "concurrencies": (64, 128),
    "delay_ms": 50,
    "delivery_timeout_s": 15.0,
    "profile_events": 200,
    "idle_seconds": 10.0,
    "idle_settle_max_s": 15.0,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: short rounds, fewer events")
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="py-spy executable: profile the delivery worker of phase 3 (what holds the GIL) into bench/results/",
    )
    narrow = parser.add_mutually_exclusive_group()
    narrow.add_argument(
        "--postgres",
        action="store_true",
        help="run on PostgreSQL only (BENCH_POSTGRES_URL; a schema per phase); by default both databases",
    )
    narrow.add_argument("--sqlite-only", action="store_true", help="run on SQLite only")
    parser.add_argument(
        "--only",
        choices=PHASES,
        action="append",
        help="run only this phase (may be repeated; the table shows what ran)",
    )
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    phases = args.only or list(PHASES)
    backends = ["postgresql"] if args.postgres else ["sqlite"] if args.sqlite_only else list(BACKENDS)
    signal.signal(signal.SIGTERM, report.exit_on_sigterm)

    started = time.perf_counter()
    for stale in LOGS.glob("*.log"):  # only this benchmark's own logs, from an earlier run
        stale.unlink()
    results = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.items()},
        "machine": report.machine(),
        "targets": TARGETS,
    }
    with servers.Fleet(LOGS) as fleet, tempfile.TemporaryDirectory(prefix="bench-triggers-") as scratch:
        results["machine"]["data_dir_filesystem"] = _filesystem(scratch)
        results["machine"]["connector_uncommitted"] = _uncommitted("connector", "manifest.yaml", "schemas")
        results["machine"]["databases"] = backends
        results["machine"]["load_average_at_start"] = [round(x, 2) for x in psutil.getloadavg()]
        schemas = databases.Schemas() if "postgresql" in backends else None
        bench = _Bench(fleet, Path(scratch), plan, args.py_spy, schemas)
        try:
            idle = None
            if "idle" in phases:
                # First, and measured while the other phases run: at rest, what others do costs them nothing.
                say(f"--- {', '.join(NAMES[b] for b in backends)}: idle, side by side, measured from now on")
                begun = time.perf_counter()
                idle = bench.idle(backends)
                idle_start_s = round(time.perf_counter() - begun, 1)
            for backend in backends:
                results[backend] = {}
                bench.backend = backend
                for phase in PHASES:
                    if phase in phases and phase != "idle":
                        say(f"--- {NAMES[backend]}: {phase}")
                        begun = time.perf_counter()
                        results[backend][phase] = getattr(bench, phase)()
                        results[backend][phase]["phase_s"] = round(time.perf_counter() - begun, 1)
            if idle is not None:
                for backend, measured in idle.results().items():
                    results[backend]["idle"] = {**measured, "phase_s": idle_start_s}
        finally:
            if schemas is not None:
                schemas.drop_all()
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in psutil.getloadavg()]
    results["total_s"] = round(time.perf_counter() - started, 1)
    report.publish(
        results,
        _rows(results),
        RESULTS / "triggers-latest.json",
        LOGS,
        notes=[
            _profile_text(p)
            for backend in backends
            for p in results.get(backend, {}).get("throughput", {}).get("profiles", [])
        ],
    )
    return 0


class _Bench:
    def __init__(
        self, fleet: servers.Fleet, scratch: Path, plan: dict, py_spy: str | None, schemas: databases.Schemas | None
    ):
        self.schemas = schemas
        self.backend = "sqlite"
        self.fleet = fleet
        self.scratch = scratch
        self.plan = plan
        self.py_spy = py_spy
        self.phases = 0
        accounts = {LOGIN: {"api_key": API_KEY, "credits": CREDITS}}
        self.sandbox = servers.start_sandbox(fleet, accounts, SERVER_WORKERS, SERVER_THREADS, LOGIN)
        say(f"sandbox: gunicorn {SERVER_WORKERS}x{SERVER_THREADS} on port {self.sandbox.port}")
        self.receivers = Receivers.start(fleet, RECEIVERS)
        say(
            f"receivers: {RECEIVERS} x asyncio (bench/receiver.py) on ports "
            f"{', '.join(str(r.port) for r in self.receivers.servers)}"
        )

    # 1. Ingest

    def ingest(self) -> dict:
        plan = self.plan
        connector, database = self._connector("ingest", workers=SERVER_WORKERS, delivery="process")
        echo = self._echo()
        hooks = Hooks(connector.url, (LOGIN, API_KEY))
        path = hooks.inbound_path()
        targets = {"connector": connector, "echo": echo}
        counter = iter(range(10**9))

        def drive(name: str, seconds: float) -> tuple[loadgen.LoadResult, _Meter]:
            # next() on a range iterator is atomic under the GIL: every callback gets its own smsId.
            def body() -> bytes:
                return _receipt(f"in-{next(counter)}")

            processes = targets[name].processes()
            meter = _Meter(processes)
            meter.workers = _Meter([p for p in processes if "connector.ops.cli worker" in " ".join(_cmdline(p))])
            result = loadgen.drive(targets[name].port, path, body, FORM, clients=plan["clients"], seconds=seconds)
            meter.stop()
            meter.workers.stop()
            return result, meter

        for name in targets:
            warm, _ = drive(name, plan["ingest_warmup"])
            say(f"warm-up {name}: {warm.rate:.0f} callbacks/s, {warm.errors} errors")
            if not warm.ok:
                raise RuntimeError(
                    f"{name} accepted no callback during warm-up ({warm.first_error}):\n{targets[name].log_tail()}"
                )
        rounds = []
        for number in range(1, plan["ingest_rounds"] + 1):
            for name in targets:
                result, meter = drive(name, plan["ingest_seconds"])
                per_callback = meter.us_per(result.ok)
                by_workers = meter.workers.us_per(result.ok)
                say(
                    f"round {number} {name}: {result.rate:.0f} callbacks/s, p50 {result.percentile(50) * 1000:.1f} "
                    f"ms, p99 {result.percentile(99) * 1000:.1f} ms, {result.errors} errors, server "
                    f"{meter.cores:.2f} cores ({_text_us(per_callback)} per callback, of which delivery workers "
                    f"{_text_us(by_workers)}), client {result.client_cpu:.2f} cores"
                )
                rounds.append(
                    {
                        "round": number,
                        "target": name,
                        **result.summary(),
                        "server_cpu_cores": round(meter.cores, 2),
                        "server_cpu_us_per_callback": per_callback,
                        "workers_cpu_us_per_callback": by_workers,
                    }
                )
        accepted = _count_requests_answered(rounds, "connector")
        self.fleet.stop(echo)
        self.fleet.stop(connector)
        stored = databases.counts(database)
        best = {
            name: max((r for r in rounds if r["target"] == name), key=lambda r: r["requests_per_s"]) for name in targets
        }
        echo_rate = best["echo"]["requests_per_s"]
        return {
            "clients": plan["clients"],
            "seconds_per_round": plan["ingest_seconds"],
            "rounds": rounds,
            "best": best,
            "ratio": round(best["connector"]["requests_per_s"] / echo_rate, 3) if echo_rate else None,
            # Warm-up callbacks are stored too; rounds are what was counted.
            "events_stored": stored["events"],
            "callbacks_accepted_in_rounds": accepted,
            "deliveries_stored": stored["deliveries"],
        }

    # 2. End-to-end latency

    def latency(self) -> dict:
        plan = self.plan
        runs = [self._latency_run(plan["rate"], plan["latency_seconds"])]
        if not runs[0]["meets_target"]:
            # The highest rate of the ladder that meets it, by halving the ladder (three runs for five rates):
            # a run that misses is long (its backlog drains after the last callback), so few of them are paid for.
            ladder = sorted(r for r in plan["ladder"] if r < plan["rate"])
            low, high = -1, len(ladder)  # the highest known to pass, the lowest known to miss
            while low + 1 < high:
                middle = (low + high) // 2
                runs.append(self._latency_run(ladder[middle], plan["ladder_seconds"]))
                low, high = (middle, high) if runs[-1]["meets_target"] else (low, middle)
        passing = [r["rate"] for r in runs if r["meets_target"]]
        return {
            "runs": runs,
            "highest_rate_meeting_target": max(passing) if passing else None,
            "subscribers": plan["subscribers"],
        }

    def _latency_run(self, rate: int, seconds: float) -> dict:
        plan = self.plan
        connector, database = self._connector(f"latency-{rate}", workers=SERVER_WORKERS, delivery="process")
        try:
            hooks = Hooks(connector.url, (LOGIN, API_KEY))
            path = hooks.inbound_path()
            for k in range(plan["subscribers"]):
                hooks.subscribe(self.receivers.target(k))
            # Warm-up: connections to the subscribers, caches and the database's first pages.
            self._paced_and_delivered(
                connector,
                path,
                f"w{rate}",
                rate=min(rate, 100),
                count=plan["latency_warmup_events"],
                drain_s=plan["drain_s"],
            )
            run = self._paced_and_delivered(
                connector, path, f"r{rate}", rate=rate, count=int(rate * seconds), drain_s=plan["drain_s"]
            )
        finally:
            self.fleet.stop(connector)
        # What did not arrive in time is either still queued (late) or lost for good.
        queued = databases.counts(database)["by_status"].get("pending", 0)
        late = min(queued, run["missing"])
        p99 = run["e2e"]["p99_ms"]
        run.update(
            rate=rate,
            seconds=seconds,
            drain_s=plan["drain_s"],
            late=late,
            lost=run["missing"] - late,
            meets_target=(
                run["missing"] == 0
                and run["callbacks"]["errors"] == 0
                and p99 is not None
                and p99 <= TARGETS["e2e_p99_ms"]
            ),
        )
        e2e = run["e2e"]
        say(
            f"{rate}/s for {seconds:g} s: {run['delivered']}/{run['expected']} delivered ({run['late']} late, "
            f"{run['lost']} lost), e2e p50 {_text_ms(e2e['p50_ms'])}, p99 {_text_ms(e2e['p99_ms'])}, max "
            f"{_text_ms(e2e['max_ms'])}; {run['deliveries_per_s']:.0f} deliveries/s; callbacks: "
            f"{run['callbacks']['achieved_rate']:.0f}/s, p99 {run['callbacks']['p99_ms']:.0f} ms, max lag "
            f"{run['callbacks']['max_lag_ms']:.0f} ms; {run['duplicates']} duplicates; connector "
            f"{_text_us(run['cpu_us_per_callback'])} per callback; cores: connector "
            f"{run['cpu_cores']['connector']:.2f} "
            f"(web {run['cpu_cores']['web']:.2f}, worker {run['cpu_cores']['worker']:.2f}), "
            f"receivers {run['cpu_cores']['receivers']:.2f}, client {run['cpu_cores']['client']:.2f}"
        )
        return run

    def _paced_and_delivered(
        self, connector: servers.Server, path: str, tag: str, *, rate: float, count: int, drain_s: float
    ) -> dict:
        """POST `count` receipts at `rate`/s, wait for every delivery, and measure what arrived."""
        subscribers = self.plan["subscribers"]
        starts = self.receivers.counts()
        processes = connector.processes()
        worker = [p for p in processes if "worker" in " ".join(_cmdline(p))]
        meters = {
            "connector": _Meter(processes),
            "web": _Meter([p for p in processes if p not in worker]),
            "worker": _Meter(worker),
            "receivers": _Meter([p for r in self.receivers.servers for p in r.processes()]),
            "client": _Meter([psutil.Process()]),
        }
        sent = loadgen.paced(
            connector.port,
            path,
            lambda i: _receipt(f"{tag}-{i}"),
            FORM,
            rate=rate,
            count=count,
            timeout=CALLBACK_TIMEOUT,
        )
        posted = time.time()
        expected = count * subscribers
        self.receivers.wait(starts, expected, deadline=time.monotonic() + drain_s)
        cores = {name: round(meter.stop(), 2) for name, meter in meters.items()}
        records = self.receivers.records_since(starts)
        arrivals = _arrivals(records, tag, sent.ok * subscribers, sent)
        return {
            **arrivals,
            "callbacks": sent.summary(),
            "cpu_cores": cores,
            # Per callback answered and delivered to every subscriber (all of the connector's processes), and per
            # delivery (the delivery workers alone).
            "cpu_us_per_callback": meters["connector"].us_per(sent.ok),
            "web_cpu_us_per_callback": meters["web"].us_per(sent.ok),
            "worker_cpu_us_per_delivery": meters["worker"].us_per(arrivals["delivered"]),
            "drain_after_last_post_s": None if not records else round(max(r[3] for r in records) - posted, 2),
        }

    # 3. Delivery throughput of one worker

    def throughput(self) -> dict:
        plan = self.plan
        runs = [self._throughput_run(concurrency, plan["preload_events"]) for concurrency in plan["concurrencies"]]
        out = {
            "runs": runs,
            "events": plan["preload_events"],
            "subscribers": plan["subscribers"],
            "delay_ms": plan["delay_ms"],
        }
        if self.py_spy:
            # A run of its own, longer for more samples, and kept out of the table: the profiler costs a little.
            concurrency = plan["concurrencies"][0]
            profiled = self._throughput_run(
                concurrency, plan["profile_events"], RESULTS / f"triggers-worker-profile-{concurrency}.txt"
            )
            out["profiles"] = [profiled.pop("profile")]
            out["profiled_run"] = profiled
        return out

    def _throughput_run(self, concurrency: int, events: int, profile_to: Path | None = None) -> dict:
        plan = self.plan
        subscribers = plan["subscribers"]
        expected = events * subscribers
        name = f"throughput-{concurrency}" + ("-profiled" if profile_to else "")
        connector, database = self._connector(name, workers=1, delivery="off")
        hooks = Hooks(connector.url, (LOGIN, API_KEY))
        path = hooks.inbound_path()
        for k in range(subscribers):
            hooks.subscribe(self.receivers.target(k, delay_ms=plan["delay_ms"]))
        tag = f"t{concurrency}-{'p' if profile_to else 'm'}"
        preload = loadgen.post_each(
            connector.port, path, (_receipt(f"{tag}-{i}") for i in range(events)), FORM, clients=plan["clients"]
        )
        counts = databases.counts(database)
        # Events wait in the fan-out queue until a worker turns them into deliveries (that work is timed).
        pending = counts["by_status"].get("pending", 0) + counts["queued"] * subscribers
        say(
            f"preloaded {preload.ok} receipts x {subscribers} subscriptions in {preload.seconds:.1f} s "
            f"({preload.rate:.0f}/s): {pending} deliveries pending or queued"
        )
        if pending != expected:
            raise RuntimeError(
                f"{pending} deliveries are pending or queued, expected {expected} ({preload.first_error})"
            )
        starts = self.receivers.counts()
        env = self._connector_env(
            connector.port, database, workers=1, delivery="off", CONNECTOR_DELIVERY_CONCURRENCY=str(concurrency)
        )
        launched = time.time()
        worker = self.fleet.spawn(
            f"worker-{self.backend}-{name}", [sys.executable, "-m", "connector.ops.cli", "worker"], env
        )
        spy = _start_py_spy(self.py_spy, worker.process.pid, profile_to) if profile_to else None
        profile = None
        try:
            meter = _Meter([psutil.Process(worker.process.pid)])
            deadline = time.monotonic() + plan["delivery_timeout_s"]
            alive = lambda: worker.process.poll() is None  # noqa: E731
            # From the first arrival on, the worker's CPU is its deliveries' (its start-up is done).
            head = self.receivers.wait(starts, 1, deadline=deadline, alive=alive)
            busy = _Meter([psutil.Process(worker.process.pid)])
            self.receivers.wait(starts, expected, deadline=deadline, alive=alive)
            busy.stop()
            cores = meter.stop()
        finally:
            self.fleet.stop(worker)
            self.fleet.stop(connector)
            if spy is not None:
                profile = _finish_py_spy(spy, profile_to, concurrency)
        records = self.receivers.records_since(starts)
        arrived = _arrivals(records, tag, expected)
        final = databases.counts(database)
        first = min((r[3] for r in records), default=math.nan)
        last = max((r[3] for r in records), default=math.nan)
        span = last - first
        rate = (len(records) - 1) / span if span > 0 else 0.0
        run = {
            "concurrency": concurrency,
            "events": events,
            "subscribers": subscribers,
            "expected": expected,
            "delivered": arrived["delivered"],
            "lost": arrived["missing"],
            "duplicates": arrived["duplicates"],
            "deliveries_per_s": round(rate, 1),
            "first_to_last_arrival_s": round(span, 3),
            "start_to_first_arrival_s": round(first - launched, 3),
            "start_to_last_arrival_s": round(last - launched, 3),
            "worker_cpu_cores": round(cores, 2),
            # From the first arrival: the start-up (imports, the first connections) is not counted.
            "worker_cpu_us_per_delivery": busy.us_per(len(records) - head),
            "statuses_after": final["by_status"],
            "attempts_recorded": final["attempts"],
            "preload_per_s": round(preload.rate, 1),
        }
        say(
            f"one worker, concurrency {concurrency}: {run['delivered']}/{expected} delivered, "
            f"{rate:.0f} deliveries/s (first to last arrival {span:.2f} s; start-up {first - launched:.2f} s), "
            f"worker {cores:.2f} cores ({_text_us(run['worker_cpu_us_per_delivery'])} per delivery), "
            f"{arrived['duplicates']} duplicates"
        )
        if profile is not None:
            run["profile"] = profile
        return run

    # 4. At rest

    def idle(self, backends: list[str]) -> _Idle:
        """A fresh `connector serve` per database, side by side, with nothing to do, once their start-up is over:
        the CPU of each process tree is measured from now on, over idle_seconds (see _Idle.results)."""
        connectors = {}
        for backend in backends:
            self.backend = backend
            connectors[backend], _ = self._connector("idle", workers=SERVER_WORKERS, delivery="process")
        settled = {backend: self._settle(server) for backend, server in connectors.items()}
        return _Idle(self.fleet, connectors, settled, self.plan["idle_seconds"])

    def _settle(self, server: servers.Server) -> float:
        """Wait until the start-up of `server` is over: its delivery workers started and two seconds in a row of its
        process tree costing under 5 % of a core (or idle_settle_max_s); how long that took."""
        begun = time.perf_counter()
        deadline = time.monotonic() + self.plan["idle_settle_max_s"]
        quiet = 0
        while time.monotonic() < deadline and quiet < 2:
            tree = _tree(server)
            if any(_kind(p, server) == "delivery workers" for p in tree):
                meter = _Meter(tree)
                time.sleep(1.0)
                quiet = quiet + 1 if meter.stop() < 0.05 else 0
            else:
                time.sleep(0.2)
        return round(time.perf_counter() - begun, 1)

    # Servers

    def _connector_env(self, port: int, database: str, *, workers: int, delivery: str, **extra: str) -> dict:
        return servers.clean_env(
            ALLMYSMS_BASE_URL=self.sandbox.url,
            PORT=str(port),
            CONNECTOR_HOST=servers.HOST,
            CONNECTOR_WORKERS=str(workers),
            CONNECTOR_THREADS=str(SERVER_THREADS),
            CONNECTOR_ALLOWED_TARGETS=servers.HOST,
            DATABASE_URL=database,
            CONNECTOR_DATA_DIR=str(self.scratch / "data"),
            CONNECTOR_DELIVERY_WORKER=delivery,
            **extra,
        )

    def _connector(self, name: str, *, workers: int, delivery: str) -> tuple[servers.Server, str]:
        """A connector on a database of its own: (server, its DATABASE_URL)."""
        self.phases += 1
        if self.backend == "postgresql":
            assert self.schemas is not None
            database = self.schemas.new()
        else:
            database = f"sqlite:///{self.scratch / f'{self.phases}-{name}' / 'connector.db'}"
            (self.scratch / f"{self.phases}-{name}").mkdir()
        port = servers.free_port()
        env = self._connector_env(port, database, workers=workers, delivery=delivery)
        say(
            f"{name}: connector serve {workers}x{SERVER_THREADS} on {NAMES[self.backend]}, delivery worker "
            f"{delivery}, port {port}"
        )
        server = self.fleet.start(
            f"connector-{self.backend}-{name}",
            [sys.executable, "-m", "connector.ops.cli", "serve"],
            env,
            port,
            "/v1/manifest",
            workers=workers,
        )
        return server, database

    def _echo(self) -> servers.Server:
        port = servers.free_port()
        argv = servers.gunicorn_argv(port, SERVER_WORKERS, SERVER_THREADS) + [
            "--access-logfile",
            "-",
            "--access-logformat",
            servers.ACCESS_LOG_FORMAT,
            "--pythonpath",
            str(BENCH),
            "echo:create_app()",
        ]
        say(f"echo: gunicorn {SERVER_WORKERS}x{SERVER_THREADS} on port {port}")
        return self.fleet.start("echo", argv, servers.clean_env(), port, "/v1/manifest", workers=SERVER_WORKERS)


# Measures


def _receipt(sms_id: str) -> bytes:
    return f"smsId={quote(sms_id)}{RECEIPT_REST}".encode()


def _arrivals(records: list[list], tag: str, expected: int, sent: loadgen.PacedResult | None = None) -> dict:
    """What arrived of the `expected` deliveries of events tagged `tag`: counts and, when the send times
    are known, latencies. A delivery that did not arrive counts as infinitely late in the percentiles."""
    prefix = tag + "-"
    mine = [r for r in records if isinstance(r[1], str) and r[1].startswith(prefix)]
    first_arrival: dict[tuple[str, str], float] = {}
    for path, sms_id, _, arrived, *_ in mine:
        key = (path, sms_id)
        first_arrival[key] = min(arrived, first_arrival.get(key, arrived))
    missing = max(0, expected - len(first_arrival))
    out = {
        "expected": expected,
        "delivered": len(first_arrival),
        "missing": missing,
        "duplicates": len(mine) - len(first_arrival),
    }
    if sent is None:
        return out
    index = {key: int(key[1][len(prefix) :]) for key in first_arrival}
    latencies = sorted(arrived - sent.sent_at[index[key]] for key, arrived in first_arrival.items())
    # From when the callback was due to be sent: includes any wait for a free sender, i.e. the time
    # AllMySMS would have spent queueing or retrying callbacks the connector was too slow to take.
    scheduled = sorted(
        arrived - (sent.sent_at[index[key]] - sent.lag[index[key]]) for key, arrived in first_arrival.items()
    )
    span = (max(first_arrival.values()) - min(sent.sent_at)) if first_arrival else 0.0
    out["deliveries_per_s"] = round(len(first_arrival) / span, 1) if span > 0 else 0.0
    out["e2e"] = {
        **_percentiles(latencies + [math.inf] * missing),
        "per_second": _per_second(first_arrival, sent, prefix),
    }
    out["e2e_from_schedule"] = _percentiles(scheduled + [math.inf] * missing)
    return out


def _percentiles(ordered: list[float]) -> dict:
    return {
        "p50_ms": _ms(_rank(ordered, 50)),
        "p90_ms": _ms(_rank(ordered, 90)),
        "p99_ms": _ms(_rank(ordered, 99)),
        "max_ms": _ms(ordered[-1] if ordered else math.nan),
    }


def _per_second(first_arrival: dict, sent: loadgen.PacedResult, prefix: str) -> list[dict]:
    """p50 and p99 by the second the callback was posted in: shows whether a backlog grows."""
    start = min(sent.sent_at)
    buckets: dict[int, list[float]] = collections.defaultdict(list)
    for (_, sms_id), arrived in first_arrival.items():
        posted = sent.sent_at[int(sms_id[len(prefix) :])]
        buckets[int(posted - start)].append(arrived - posted)
    return [
        {
            "second": second,
            "deliveries": len(late),
            "p50_ms": _ms(_rank(sorted(late), 50)),
            "p99_ms": _ms(_rank(sorted(late), 99)),
        }
        for second, late in sorted(buckets.items())
    ]


def _rank(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(max(1, round(q / 100 * len(ordered))), len(ordered)) - 1]


def _ms(seconds: float) -> float | None:
    """Milliseconds, or None for a delivery that never came (JSON has no infinity)."""
    return None if math.isinf(seconds) else round(seconds * 1000, 1)


def _text_ms(ms: float | None) -> str:
    return "never (some did not arrive)" if ms is None else f"{ms:.0f} ms"


class _Idle:
    """Connectors at rest, their CPU measured from when this is made: other phases may run meanwhile, as
    these connectors are given nothing to do and only their own processes' CPU time is counted."""

    def __init__(self, fleet: servers.Fleet, connectors: dict, settled: dict, seconds: float):
        self.fleet, self.connectors, self.settled, self.seconds = fleet, connectors, settled, seconds
        self.trees = {backend: _tree(server) for backend, server in connectors.items()}
        self.meters = {backend: {p.pid: _Meter([p]) for p in tree} for backend, tree in self.trees.items()}
        self.ended: dict[str, list[int]] = {}
        self._timer = threading.Timer(seconds, self._stop)
        self._timer.start()

    def _stop(self) -> None:
        for backend, by_pid in self.meters.items():
            for meter in by_pid.values():
                meter.stop()
            self.ended[backend] = sorted(p.pid for p in _tree(self.connectors[backend]))

    def results(self) -> dict[str, dict]:
        """Once the measure is over (waiting for its end if need be): what each connector used; then they stop."""
        self._timer.join()
        try:
            out = {}
            for backend, by_pid in self.meters.items():
                wall = max(m.wall for m in by_pid.values())
                kinds: dict[str, float] = collections.defaultdict(float)
                for process in self.trees[backend]:
                    kinds[_kind(process, self.connectors[backend])] += by_pid[process.pid].cpu_s
                out[backend] = {
                    "seconds": round(wall, 1),
                    "settled_after_s": self.settled[backend],
                    "processes": len(self.trees[backend]),
                    "cpu_percent": round(100 * sum(kinds.values()) / wall, 3),
                    "cpu_us_per_s": round(1e6 * sum(kinds.values()) / wall),
                    "cpu_percent_by_kind": {kind: round(100 * cpu / wall, 3) for kind, cpu in sorted(kinds.items())},
                    # A process that began or ended during the measure would be missing from it.
                    "same_processes_at_end": self.ended[backend] == sorted(p.pid for p in self.trees[backend]),
                }
                say(
                    f"idle {NAMES[backend]}: {out[backend]['cpu_percent']:.2f} % of a core over {wall:.0f} s "
                    f"({', '.join(f'{k} {v:.2f} %' for k, v in out[backend]['cpu_percent_by_kind'].items())}); "
                    f"start-up settled after {self.settled[backend]:.1f} s"
                )
            return out
        finally:
            for server in self.connectors.values():
                self.fleet.stop(server)


class _Meter(servers.CpuMeter):
    """servers.CpuMeter, started at once, that also keeps the CPU seconds and the wall time it measured."""

    def __init__(self, processes: list[psutil.Process]):
        super().__init__(processes)
        self.cpu_s = self.wall = 0.0
        self.workers: _Meter | None = None  # the share of the delivery workers, where it is measured apart
        self.start()

    def stop(self) -> float:
        self.wall = time.perf_counter() - self._started
        cores = super().stop()
        self.cpu_s = cores * self.wall
        return cores

    def us_per(self, items: int) -> float | None:
        """CPU-µs per item: CPU seconds measured / items."""
        return round(self.cpu_s / items * 1e6, 1) if items else None


def _text_us(us: float | None) -> str:
    return "n/a" if us is None else f"{us:,.0f} CPU-µs"


def _tree(server: servers.Server) -> list[psutil.Process]:
    """The process started and all its descendants (the delivery workers are the master's children too)."""
    try:
        master = psutil.Process(server.process.pid)
        return [master, *master.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kind(process: psutil.Process, server: servers.Server) -> str:
    if process.pid == server.process.pid:
        return "master"
    return "delivery workers" if "worker" in _cmdline(process) else "web workers"


def _count_requests_answered(rounds: list[dict], target: str) -> int:
    return sum(r["ok"] for r in rounds if r["target"] == target)


def _uncommitted(*paths: str) -> list[str]:
    """What of the measured code differs from the commit in results["machine"] (others may be editing it)."""
    try:
        return subprocess.run(
            ["git", "-C", str(report.REPO), "status", "--porcelain", "--", *paths],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return ["(git status failed)"]


def _filesystem(path: str) -> str:
    best = ("", "?")
    for partition in psutil.disk_partitions(all=True):
        if path.startswith(partition.mountpoint) and len(partition.mountpoint) > len(best[0]):
            best = (partition.mountpoint, partition.fstype)
    return best[1]


# Profiling the worker (optional)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def _start_py_spy(executable: str, pid: int, out: Path) -> subprocess.Popen:
    RESULTS.mkdir(parents=True, exist_ok=True)
    # --gil: only what holds the GIL, i.e. what one Python process can do at a time; raw = collapsed stacks.
    # --nonblocking: sampled without pausing the worker, so what is measured is not slowed much.
    return subprocess.Popen(
        [
            executable,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--gil",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _finish_py_spy(spy: subprocess.Popen, out: Path, concurrency: int) -> dict:
    # py-spy stops by itself when the worker it records has exited, and writes its file then.
    try:
        spy.wait(20)
    except subprocess.TimeoutExpired:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(10)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    return {"concurrency": concurrency, "file": str(out.relative_to(report.REPO)), **_collapsed_summary(out)}


def _collapsed_summary(path: Path, top: int = 12) -> dict:
    """Top functions by own and by inclusive samples, from py-spy's collapsed stacks."""
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"samples": 0, "by_own": [], "by_inclusive": []}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")[1:]]  # the first frame is the thread
        if not any("(delivery.py)" in f for f in frames):
            continue  # start-up (imports) and shutdown: not the delivering
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter):
        return [{"function": f, "share": round(n / total, 3)} for f, n in counter.most_common(top)]

    return {"samples": total, "by_own": share(own), "by_inclusive": share(inclusive)}


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" → "function (module.py)": lines differ, functions add up.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    short = "/".join(parts[-2:]) if "site-packages" in where or "python3" in where else parts[-1]
    return f"{name} ({short})" if where else name


# The table


def _rows(results: dict) -> list[dict]:
    table = report.Rows()
    for backend in BACKENDS:
        measured = results.get(backend, {})
        rows = _Labelled(table, NAMES[backend] + ": ")
        if "ingest" in measured:
            _ingest_rows(rows, measured["ingest"])
        if "latency" in measured:
            _latency_rows(rows, measured["latency"])
        if "throughput" in measured:
            _throughput_rows(rows, measured["throughput"])
        if "idle" in measured:
            _idle_rows(rows, measured["idle"])
    return table.rows


class _Labelled:
    """report.Rows, each measure named after its database."""

    def __init__(self, rows: report.Rows, label: str):
        self._rows, self._label = rows, label

    def info(self, measure: str, value: str, baseline: str = "") -> None:
        self._rows.info(self._label + measure, value, baseline)

    def judged(self, measure: str, value: str, target: str, ok: bool) -> None:
        self._rows.judged(self._label + measure, value, target, ok)


def _ingest_rows(rows: _Labelled, ingest: dict) -> None:
    c, e = ingest["best"]["connector"], ingest["best"]["echo"]
    load = f"{ingest['clients']} clients, best of {len(ingest['rounds']) // 2} x {ingest['seconds_per_round']:g} s"
    rows.info(
        f"ingest: callbacks accepted/s, connector ({load})",
        f"{c['requests_per_s']:.0f}/s",
        f"echo {e['requests_per_s']:.0f}/s",
    )
    ratio = ingest["ratio"]
    rows.judged(
        "ingest ratio connector/echo",
        f"{ratio:.2f}" if ratio is not None else "n/a",
        f">= {TARGETS['ingest_ratio']}",
        ratio is not None and ratio >= TARGETS["ingest_ratio"],
    )
    rows.info("ingest p50 latency, connector", f"{c['p50_ms']:.1f} ms", f"echo {e['p50_ms']:.1f} ms")
    rows.info("ingest p99 latency, connector", f"{c['p99_ms']:.1f} ms", f"echo {e['p99_ms']:.1f} ms")
    rows.info("ingest server CPU, connector", f"{c['server_cpu_cores']:.2f} cores", f"echo {e['server_cpu_cores']:.2f}")
    rows.info(
        "ingest CPU per callback, connector (all its processes)",
        _text_us(c.get("server_cpu_us_per_callback")),
        f"echo {_text_us(e.get('server_cpu_us_per_callback'))}",
    )
    errors = sum(r["errors"] for r in ingest["rounds"])
    rows.judged("ingest: failed callbacks", str(errors), "0", errors == 0)
    rows.judged(
        "ingest: events stored = callbacks accepted",
        f"{ingest['events_stored']}",
        f">= {ingest['callbacks_accepted_in_rounds']} (+ warm-up)",
        ingest["events_stored"] >= ingest["callbacks_accepted_in_rounds"],
    )


def _latency_rows(rows: _Labelled, latency: dict) -> None:
    subscribers = latency["subscribers"]
    limit = TARGETS["e2e_p99_ms"]
    for run in latency["runs"]:
        label = f"e2e {run['rate']}/s x {subscribers} subs, {run['seconds']:g} s"
        e2e = run["e2e"]
        p99 = e2e["p99_ms"]
        if p99 is None:
            value = f"> {run['drain_s']:g} s (not all arrived)"
        else:
            value = f"{p99:.0f} ms" + ("" if p99 <= limit else f" ({p99 / limit:.1f}x the target)")
        rows.judged(f"{label}: p99 callback -> subscriber", value, f"<= {limit:g} ms", p99 is not None and p99 <= limit)
        rows.info(f"{label}: p50 / max", f"{_text_ms(e2e['p50_ms'])} / {_text_ms(e2e['max_ms'])}")
        if run["callbacks"]["max_lag_ms"] > 100:
            late = run["e2e_from_schedule"]
            rows.info(
                f"{label}: p50 / p99 from when each callback was due",
                f"{_text_ms(late['p50_ms'])} / {_text_ms(late['p99_ms'])}",
                "senders were held up",
            )
        rows.judged(f"{label}: lost deliveries", f"{run['lost']} of {run['expected']}", "0", run["lost"] == 0)
        rows.judged(
            f"{label}: duplicated deliveries (an event twice to a subscription)",
            str(run["duplicates"]),
            "0",
            run["duplicates"] == 0,
        )
        if run["late"]:
            rows.judged(f"{label}: still queued after {run['drain_s']:g} s", f"{run['late']}", "0", False)
        rows.info(
            f"{label}: deliveries/s achieved",
            f"{run['deliveries_per_s']:.0f}/s",
            f"offered {run['rate'] * subscribers}/s",
        )
        rows.info(
            f"{label}: connector CPU per callback delivered to {subscribers} (web / worker per delivery)",
            _text_us(run.get("cpu_us_per_callback")),
            f"{_text_us(run.get('web_cpu_us_per_callback'))} / {_text_us(run.get('worker_cpu_us_per_delivery'))}",
        )
        rows.info(
            f"{label}: callbacks answered/s, p99, max lag",
            f"{run['callbacks']['achieved_rate']:.0f}/s, {run['callbacks']['p99_ms']:.0f} ms, "
            f"{run['callbacks']['max_lag_ms']:.0f} ms",
            f"offered {run['rate']}/s",
        )
    failed = sum(run["callbacks"]["errors"] for run in latency["runs"])
    first = next((run["callbacks"]["first_error"] for run in latency["runs"] if run["callbacks"]["errors"]), "")
    rows.judged(
        "e2e: failed callbacks, all runs", str(failed) + (f" ({first[:40]})" if first else ""), "0", failed == 0
    )
    best = latency["highest_rate_meeting_target"]
    rows.judged(
        f"e2e: highest rate tried with p99 <= {limit:g} ms, none lost",
        f"{best}/s" if best else "none",
        f">= {TARGETS['e2e_rate']}/s",
        best is not None and best >= TARGETS["e2e_rate"],
    )


def _throughput_rows(rows: _Labelled, throughput: dict) -> None:
    for run in throughput["runs"]:
        label = (
            f"one worker, concurrency {run['concurrency']}, {run['events']} x {run['subscribers']} "
            f"deliveries, {throughput['delay_ms']} ms subscribers"
        )
        rows.judged(
            f"{label}: deliveries/s",
            f"{run['deliveries_per_s']:.0f}/s",
            f">= {TARGETS['deliveries_per_s']:g}/s",
            run["deliveries_per_s"] >= TARGETS["deliveries_per_s"],
        )
        rows.judged(f"{label}: lost", f"{run['lost']} of {run['expected']}", "0", run["lost"] == 0)
        rows.judged(f"{label}: duplicated", str(run["duplicates"]), "0", run["duplicates"] == 0)
        rows.info(
            f"{label}: worker CPU per delivery",
            _text_us(run.get("worker_cpu_us_per_delivery")),
            "from the first arrival",
        )
        rows.info(
            f"{label}: worker CPU / start-up",
            f"{run['worker_cpu_cores']:.2f} cores / {run['start_to_first_arrival_s']:.1f} s",
        )


def _idle_rows(rows: _Labelled, idle: dict) -> None:
    limit = TARGETS["idle_cpu_percent"]
    rows.judged(
        f"idle connector serve, nothing to do: CPU of its {idle['processes']} processes over {idle['seconds']:g} s",
        f"{idle['cpu_percent']:.2f} % of a core",
        f"<= {limit:g} %",
        idle["cpu_percent"] <= limit,
    )
    rows.info(
        "idle: by process kind",
        ", ".join(f"{kind} {cpu:.2f} %" for kind, cpu in idle["cpu_percent_by_kind"].items()),
        f"start-up excluded ({idle['settled_after_s']:g} s)",
    )


def _profile_text(profile: dict) -> str:
    lines = [
        f"\npy-spy of the delivery worker (concurrency {profile['concurrency']}, {profile['samples']} samples "
        f"holding the GIL; {profile['file']}):"
    ]
    for title, key in (("top by own samples", "by_own"), ("top by inclusive samples", "by_inclusive")):
        lines.append(f"  {title}:")
        lines += [f"    {r['share']:6.1%}  {r['function']}" for r in profile[key]]
    return "\n".join(lines)


if __name__ == "__main__":
    report.run(main)

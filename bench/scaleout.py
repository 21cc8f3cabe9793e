"""Benchmark of scaling out on PostgreSQL, on 127.0.0.1: delivery workers side by side, and callback ingest
on PostgreSQL against SQLite.

Usage (from the repository root; PostgreSQL must be reachable, by default at 127.0.0.1:5432, database
test, user postgres: set BENCH_POSTGRES_URL otherwise):

    .venv/bin/python bench/scaleout.py            # full run, about 3 minutes
    .venv/bin/python bench/scaleout.py --quick    # smoke run, under a minute
    .venv/bin/python bench/scaleout.py --concurrency 256 --events 2000   # workers as deployed by default

Everything runs on loopback, with servers started here and always stopped on exit (even on Ctrl-C). Each
run gets a PostgreSQL schema of its own, made by `connector migrate` and dropped at the end. The AllMySMS
sandbox (gunicorn 2 x 8) only answers the credential checks; subscribers are bench/receiver.py processes.

1. Delivery throughput with 1, 2 and 4 `connector worker` processes on one PostgreSQL. `connector serve`
   (1 web worker, no delivery worker) stores M receipts x 10 subscriptions while no worker runs; then N
   workers start together and send everything to subscribers that take 50 ms to answer.
   deliveries/s = deliveries / (last arrival - first arrival). Each worker holds C deliveries in flight
   (CONNECTOR_DELIVERY_CONCURRENCY), so one worker's ceiling is C / 50 ms; more workers raise it only if
   they share the queue without waiting for each other. The baseline is the one-worker run of the same
   invocation. Target: 2 workers >= 1.7 x one. Also checked: nothing lost, nothing sent twice.
2. Ingest. The same closed-loop load of form-encoded receipts (each its own smsId) to `connector serve`
   as deployed by default (2 web workers x 8 threads, delivery worker processes on), once on SQLite and
   once on PostgreSQL, in turn (A B A B); the better round of each counts. Reported: callbacks/s on each,
   and PostgreSQL / SQLite.

Prints one table and writes everything measured to bench/results/scaleout-latest.json; the servers' logs
are in bench/results/logs/scaleout/.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

# bench/ is on sys.path when this file is run as a script, so its modules import by name.
import loadgen
import psutil
import report
import servers
from databases import Schemas
from hooks import Hooks, Receivers
from report import say
from sqlalchemy import create_engine, func, select

from connector.storage.database import engine_url
from connector.storage.tables import deliveries, events, fanout

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs" / "scaleout"

LOGIN, API_KEY = "bench", "bench-api-key"
SERVER_WORKERS, SERVER_THREADS = 2, 8
RECEIVERS = 2
SUBSCRIBERS = 10
SUBSCRIBER_DELAY_MS = 50
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
RECEIPT_REST = "&" + urlencode(
    {
        "campaignId": "c-bench",
        "phoneNumber": "33611111111",
        "status": "1",
        "statusText": "Delivered",
        "receptionDate": "2026-12-01 09:30:03",
    }
)

FULL = {
    "workers": (1, 2, 4),
    "concurrency": 32,
    "events": 600,
    "clients": 16,
    "ingest_seconds": 8.0,
    "ingest_rounds": 2,
    "ingest_warmup": 2.0,
    "delivery_timeout_s": 120,
}
QUICK = {
    "workers": (1, 2),
    "concurrency": 32,
    "events": 200,
    "clients": 8,
    "ingest_seconds": 3.0,
    "ingest_rounds": 1,
    "ingest_warmup": 1.0,
    "delivery_timeout_s": 60,
}
TARGET_SPEED_UP = 1.7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer events, shorter rounds")
    parser.add_argument("--concurrency", type=int, help="deliveries in flight per worker (default 32)")
    parser.add_argument("--events", type=int, help="receipts per throughput run (x 10 subscriptions)")
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    plan.update({k: v for k, v in {"concurrency": args.concurrency, "events": args.events}.items() if v})
    signal.signal(signal.SIGTERM, report.exit_on_sigterm)
    started = time.perf_counter()
    LOGS.mkdir(parents=True, exist_ok=True)
    for stale in LOGS.glob("*.log"):
        stale.unlink()
    results = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.items()},
        "machine": report.machine(),
    }
    with servers.Fleet(LOGS) as fleet, tempfile.TemporaryDirectory(prefix="bench-scaleout-") as scratch:
        bench = _Bench(fleet, Path(scratch), plan)
        try:
            results["throughput"] = bench.throughput()
            results["ingest"] = bench.ingest()
        finally:
            bench.schemas.drop_all()
    results["total_s"] = round(time.perf_counter() - started, 1)
    report.publish(results, _rows(results), RESULTS / "scaleout-latest.json", LOGS)
    return 0


class _Bench:
    def __init__(self, fleet: servers.Fleet, scratch: Path, plan: dict):
        self.fleet = fleet
        self.scratch = scratch
        self.plan = plan
        self.schemas = Schemas()
        self.runs = 0
        accounts = {LOGIN: {"api_key": API_KEY, "credits": 10**12}}
        self.sandbox = servers.start_sandbox(fleet, accounts, SERVER_WORKERS, SERVER_THREADS, LOGIN)
        self.receivers = Receivers.start(fleet, RECEIVERS)
        say(
            f"sandbox on port {self.sandbox.port}; receivers on ports "
            f"{', '.join(str(r.port) for r in self.receivers.servers)}"
        )

    # 1. Delivery throughput

    def throughput(self) -> dict:
        runs = [self._throughput_run(workers) for workers in self.plan["workers"]]
        one = runs[0]["deliveries_per_s"]
        for run in runs:
            run["speed_up"] = round(run["deliveries_per_s"] / one, 2) if one else None
        return {
            "concurrency_per_worker": self.plan["concurrency"],
            "subscriber_delay_ms": SUBSCRIBER_DELAY_MS,
            "runs": runs,
        }

    def _throughput_run(self, workers: int) -> dict:
        plan = self.plan
        url = self.schemas.new()
        connector = self._connector(f"throughput-{workers}", url, web_workers=1, delivery="off")
        hooks = Hooks(connector.url, (LOGIN, API_KEY))
        tag = f"w{workers}"
        for k in range(SUBSCRIBERS):
            hooks.subscribe(self.receivers.target(k, delay_ms=SUBSCRIBER_DELAY_MS))
        path = hooks.inbound_path()
        preload = loadgen.post_each(
            connector.port, path, (_receipt(f"{tag}-{i}") for i in range(plan["events"])), FORM, clients=plan["clients"]
        )
        expected = plan["events"] * SUBSCRIBERS
        if preload.ok != plan["events"]:
            raise RuntimeError(f"only {preload.ok} of {plan['events']} receipts were stored ({preload.first_error})")
        starts = self.receivers.counts()
        env = self._env(
            connector.port, url, web_workers=1, delivery="off", CONNECTOR_DELIVERY_CONCURRENCY=str(plan["concurrency"])
        )
        launched = time.time()
        running = [
            self.fleet.spawn(f"worker-{tag}-{n}", [sys.executable, "-m", "connector.ops.cli", "worker"], env)
            for n in range(workers)
        ]
        try:
            meter = servers.CpuMeter([psutil.Process(w.process.pid) for w in running]).start()
            self.receivers.wait(
                starts,
                expected,
                deadline=time.monotonic() + plan["delivery_timeout_s"],
                alive=lambda: all(w.process.poll() is None for w in running),
            )
            cores = meter.stop()
        finally:
            for worker in running:
                self.fleet.stop(worker)
            self.fleet.stop(connector)
        records = self.receivers.records_since(starts)
        ids = [r[2] for r in records]
        first = min((r[3] for r in records), default=math.nan)
        last = max((r[3] for r in records), default=math.nan)
        span = last - first
        rate = (len(records) - 1) / span if span > 0 else 0.0
        run = {
            "workers": workers,
            "events": plan["events"],
            "expected": expected,
            "delivered": len(set(ids)),
            "lost": expected - len(set(ids)),
            "sent_twice": len(ids) - len(set(ids)),
            "deliveries_per_s": round(rate, 1),
            "first_to_last_arrival_s": round(span, 3),
            "start_to_first_arrival_s": round(first - launched, 3),
            "workers_cpu_cores": round(cores, 2),
            "database": _counts(url),
        }
        say(
            f"{workers} worker(s) x {plan['concurrency']}: {run['delivered']}/{expected} delivered, {rate:.0f}/s, "
            f"sent twice {run['sent_twice']}, workers {cores:.2f} cores"
        )
        return run

    # 2. Ingest

    def ingest(self) -> dict:
        plan = self.plan
        targets = {"sqlite": None, "postgresql": self.schemas.new()}
        started = {
            name: self._connector(f"ingest-{name}", url, web_workers=SERVER_WORKERS, delivery="process")
            for name, url in targets.items()
        }
        paths = {name: Hooks(server.url, (LOGIN, API_KEY)).inbound_path() for name, server in started.items()}
        counter = iter(range(10**9))

        def drive(name: str, seconds: float) -> loadgen.LoadResult:
            def body() -> bytes:
                return _receipt(f"in-{next(counter)}")

            return loadgen.drive(started[name].port, paths[name], body, FORM, clients=plan["clients"], seconds=seconds)

        rounds = []
        try:
            for name in started:
                warm = drive(name, plan["ingest_warmup"])
                if not warm.ok:
                    raise RuntimeError(f"{name}: no callback accepted in the warm-up ({warm.first_error})")
            for number in range(1, plan["ingest_rounds"] + 1):
                for name in started:
                    result = drive(name, plan["ingest_seconds"])
                    say(
                        f"ingest round {number} {name}: {result.rate:.0f} callbacks/s, p99 "
                        f"{result.percentile(99) * 1000:.1f} ms, {result.errors} errors"
                    )
                    rounds.append({"round": number, "backend": name, **result.summary()})
        finally:
            for server in started.values():
                self.fleet.stop(server)
        best = {
            name: max((r for r in rounds if r["backend"] == name), key=lambda r: r["requests_per_s"])
            for name in started
        }
        sqlite_rate = best["sqlite"]["requests_per_s"]
        return {
            "clients": plan["clients"],
            "rounds": rounds,
            "best": best,
            "postgresql_over_sqlite": round(best["postgresql"]["requests_per_s"] / sqlite_rate, 2)
            if sqlite_rate
            else None,
        }

    # Servers

    def _env(self, port: int, database_url: str | None, *, web_workers: int, delivery: str, **extra: str) -> dict:
        self.runs += 1
        settings = dict(
            ALLMYSMS_BASE_URL=self.sandbox.url,
            PORT=str(port),
            CONNECTOR_HOST=servers.HOST,
            CONNECTOR_WORKERS=str(web_workers),
            CONNECTOR_THREADS=str(SERVER_THREADS),
            CONNECTOR_ALLOWED_TARGETS=servers.HOST,
            CONNECTOR_DELIVERY_WORKER=delivery,
            CONNECTOR_DATA_DIR=str(self.scratch / f"data-{port}"),
            **extra,
        )
        if database_url:
            settings["DATABASE_URL"] = database_url
        return servers.clean_env(**settings)

    def _connector(self, name: str, database_url: str | None, *, web_workers: int, delivery: str) -> servers.Server:
        port = servers.free_port()
        env = self._env(port, database_url, web_workers=web_workers, delivery=delivery)
        return self.fleet.start(
            f"connector-{name}",
            [sys.executable, "-m", "connector.ops.cli", "serve"],
            env,
            port,
            "/v1/manifest",
            workers=web_workers,
        )


def _receipt(sms_id: str) -> bytes:
    return (urlencode({"smsId": sms_id}) + RECEIPT_REST).encode()


def _counts(database_url: str) -> dict:
    engine = create_engine(engine_url(database_url))
    with engine.connect() as db:
        by_status = dict(db.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status)).all())
        counts = {
            "events": db.execute(select(func.count()).select_from(events)).scalar_one(),
            "queued": db.execute(select(func.count()).select_from(fanout)).scalar_one(),
            "deliveries_by_status": by_status,
        }
    engine.dispose()
    return counts


def _rows(results: dict) -> list[dict]:
    rows = report.Rows()
    throughput = results["throughput"]
    one = throughput["runs"][0]
    for run in throughput["runs"]:
        measure = (
            f"delivery, {run['workers']} worker(s) x {throughput['concurrency_per_worker']} in flight, "
            f"subscribers {throughput['subscriber_delay_ms']} ms"
        )
        value = (
            f"{run['deliveries_per_s']:.0f}/s = {run['speed_up']:.2f}x (lost {run['lost']}, twice {run['sent_twice']})"
        )
        if run["workers"] == 2:
            rows.judged(
                measure,
                value,
                f"1 worker {one['deliveries_per_s']:.0f}/s; >= {TARGET_SPEED_UP}x",
                run["speed_up"] >= TARGET_SPEED_UP and run["lost"] == 0,
            )
        else:
            rows.judged(measure, value, f"1 worker {one['deliveries_per_s']:.0f}/s; nothing lost", run["lost"] == 0)
    ingest = results["ingest"]
    best = ingest["best"]
    rows.info(
        f"ingest, {ingest['clients']} clients, 2 web workers: PostgreSQL / SQLite",
        f"{best['postgresql']['requests_per_s']:.0f}/s = {ingest['postgresql_over_sqlite']:.2f}x",
        f"SQLite {best['sqlite']['requests_per_s']:.0f}/s",
    )
    return rows.rows


if __name__ == "__main__":
    report.run(main)

"""Soak and chaos run of the connector on 127.0.0.1: steady load while its processes are SIGKILLed, then a
reconciliation of what went in against what came out.

Usage (from the repository root):

    .venv/bin/python bench/chaos.py                  # 60 s of load, a SIGKILL every 5 s on average
    .venv/bin/python bench/chaos.py --quick          # about 20 s in all
    .venv/bin/python bench/chaos.py --postgres       # every process on PostgreSQL (BENCH_POSTGRES_URL)
    .venv/bin/python bench/chaos.py --seconds 300 --rate 30 --callback-rate 50 --kill-every 3 --seed 7

What runs, all on loopback, started here and always stopped on exit (even on Ctrl-C):
- the AllMySMS sandbox under gunicorn, one worker (its state is in memory: it is the outside world and is
  never killed), with an account of 10**12 credits and no callback URL (so it pushes nothing);
- the connector's web side, `connector serve` with CONNECTOR_DELIVERY_WORKER=off (gunicorn, 2 workers x 8
  threads), and 2 `connector worker` processes, all on one SQLite data directory (with --postgres, on one
  PostgreSQL schema made for the run by `connector migrate`);
- 3 subscribers (bench/receiver.py), each subscribed to the delivery_receipt trigger, recording every
  delivery's event id and webhook-id.

Load, open loop for --seconds: --rate keyed `send_sms` actions a second, each with its own
Idempotency-Key (also its client_reference, so the sandbox can tell the sends apart), and --callback-rate
delivery receipts a second (default: --rate) POSTed to the account's inbound URL, each with its own smsId.
Like an automation platform, the load retries an action with the same key and body after no answer, a
5xx, 409 (in progress) or 429, until the answer is definitive: 200 (sent), "may have been sent"
(outcome unknown: check_before_retry), or another 4xx; and retries a callback until it is answered 200.

Chaos, for the same --seconds: after a random wait (uniform, 0.5 to 1.5 x --kill-every s), one SIGKILL to the
gunicorn master, a gunicorn web worker or a delivery worker (in a random order that takes each kind in
turn). What died is started again here (gunicorn replaces its own workers). The master's workers are
SIGKILLed with it, as a supervisor would (systemd's control group, a container's end): left alone they keep
the listening socket, unanswered, for up to 20 s. A process that dies unasked is started again and counted.

Then the load stops, retries go on until every item has a definitive answer (or --settle s), the outbox is
drained (or --drain s), and this is reconciled:
- every callback answered 200 reached every subscriber (matched by the event id the connector derives from
  the callback, computed here with connector/events/callbacks.py); duplicates only with the same webhook-id;
- for every Idempotency-Key the sandbox launched at most one campaign (zero duplicate SMS), and exactly one
  for every key answered 200;
- a key whose first call was cut by a SIGKILL of its web process is answered "may have been sent" (504) as
  soon as a retry sees that process gone; one still "in progress" (409) at the end is counted apart, must
  be explained by a kill during its first call, and is sent at most once.

Prints one table, writes everything to bench/results/chaos.json (--out DIR: DIR/chaos.json) and the
servers' logs to bench/results/logs/chaos/. Exit code 0 when every judged row is ok, 1 otherwise.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

# bench/ is on sys.path when this file is run as a script, so its modules import by name.
import databases
import psutil
import report
import requests
import servers
from hooks import Hooks, Receivers
from report import say

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

LOGIN, API_KEY = "chaos", "chaos-api-key"
CREDITS = 10**12
PHONE = "0611111111"  # never printed
SUBSCRIBERS = 3
WEB_WORKERS, WEB_THREADS = 2, 8
DELIVERY_WORKERS = 2
SANDBOX_THREADS = 16
KINDS = ("web master", "web worker", "delivery worker")
READ_TIMEOUT = 5  # ALLMYSMS_READ_TIMEOUT: sets when a key left "running" by a dead process goes stale
# A key answered 409 for longer than any first call can run (its upstream call would have timed out) is
# held by a call whose process died.
ORPHANED_AFTER = READ_TIMEOUT + 5

FULL = {"seconds": 60.0, "rate": 20.0, "kill_every": 5.0, "settle": 30.0, "drain": 60.0}
QUICK = {"seconds": 12.0, "rate": 10.0, "kill_every": 2.0, "settle": 12.0, "drain": 20.0}


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, report.exit_on_sigterm)
    out_dir = Path(args.out) if args.out else RESULTS
    logs = out_dir / "logs" / "chaos"
    for stale in logs.glob("*.log"):  # only this script's own logs, from an earlier run
        stale.unlink()
    rng = random.Random(args.seed)
    started = time.monotonic()
    results = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "plan": {
            k: getattr(args, k) for k in ("seconds", "rate", "callback_rate", "kill_every", "settle", "drain", "seed")
        },
        "machine": report.machine(),
    }
    with servers.Fleet(logs) as fleet, tempfile.TemporaryDirectory(prefix="bench-chaos-") as scratch:
        schemas = databases.Schemas() if args.postgres else None
        data_dir = Path(scratch) / "var"
        results["machine"]["database"] = "postgresql" if schemas else "sqlite"
        try:
            database = schemas.new() if schemas else f"sqlite:///{data_dir / 'connector.db'}"
            cluster = _Cluster(fleet, data_dir, database)
            cluster.start()
            load = servers.Load(
                cluster.web_url, cluster.inbound_path, secrets.token_hex(3), (LOGIN, API_KEY), PHONE, prefix="chaos"
            )
            # Kills and restarts run on this thread, so leaving the `with` (even on Ctrl-C) never races a restart.
            results.update(_soak(cluster, load, _Chaos(cluster, rng, args.kill_every), args))
        finally:
            if schemas:
                schemas.drop_all()
    results["total_s"] = round(time.monotonic() - started, 1)
    rows = _rows(results)
    results["ok"] = all(r["ok"] is not False for r in rows)
    report.publish(
        results, rows, out_dir / "chaos.json", logs, verdict="reconciled" if results["ok"] else "NOT RECONCILED"
    )
    return 0 if results["ok"] else 1


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="short run (about 20 s): 12 s of load at 10/s, a kill every 2 s"
    )
    parser.add_argument("--seconds", type=float, help="seconds of load and kills (default 60; quick 12)")
    parser.add_argument("--rate", type=float, help="keyed send_sms actions a second (default 20; quick 10)")
    parser.add_argument("--callback-rate", type=float, help="callbacks a second (default: --rate)")
    parser.add_argument("--kill-every", type=float, help="mean seconds between SIGKILLs (default 5; quick 2)")
    parser.add_argument(
        "--settle",
        type=float,
        help="seconds allowed after the load for retries to get their answers (default 30; quick 12)",
    )
    parser.add_argument(
        "--drain", type=float, help="seconds allowed after that for the outbox to drain (default 60; quick 20)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill schedule (default: random)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="every process on PostgreSQL (BENCH_POSTGRES_URL; a schema of its own) instead of SQLite",
    )
    parser.add_argument("--out", help="directory for chaos.json and logs/chaos/ (default bench/results)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    for name in ("seconds", "rate", "kill_every", "settle", "drain"):
        if getattr(args, name) is None:
            setattr(args, name, plan[name])
    if args.callback_rate is None:
        args.callback_rate = args.rate
    if args.seed is None:
        args.seed = secrets.randbelow(10**6)
    # Bounded whatever is asked: a soak is minutes, not hours, on a shared machine.
    if not (
        0 < args.seconds <= 3600
        and 0 < args.rate <= 500
        and 0 < args.callback_rate <= 500
        and args.kill_every >= 0.5
        and 0 < args.settle <= 600
        and 0 < args.drain <= 600
    ):
        parser.error(
            "keep to 0 < --seconds <= 3600, rates in (0, 500], --kill-every >= 0.5, --settle and --drain in (0, 600]"
        )
    return args


def _soak(cluster: _Cluster, load: servers.Load, chaos: _Chaos, args) -> dict:
    say(
        f"load: {args.rate:g} actions/s + {args.callback_rate:g} callbacks/s for {args.seconds:g} s; a SIGKILL "
        f"every {args.kill_every:g} s on average (seed {args.seed})"
    )
    load_started = time.time()
    load.start(args.rate, args.callback_rate, args.seconds)
    chaos.run(args.seconds)  # returns when the load window is over, with everything running again
    load.wait_offered()
    load_ended = time.time()
    say(f"load over: {len(chaos.kills)} kills; waiting up to {args.settle:g} s for definitive answers")
    web_kills = [k["at"] for k in chaos.kills if k["kind"] != "delivery worker"]
    settled = load.settle(args.settle, held=lambda item: _orphaned(item, web_kills))
    load.stop()
    say(f"answers settled in {settled:.1f} s; waiting up to {args.drain:g} s for the outbox to drain")
    # A delivery is recorded by its subscriber before it is marked done: once drained, every record is in.
    drain = cluster.drain(args.drain)
    records = cluster.records()
    campaigns = cluster.campaigns()
    keys_in_db = cluster.key_states([a.key for a in load.actions if a.outcome is None])
    return {
        "load_window": [load_started, load_ended],
        "settle_s": round(settled, 1),
        "drain": drain,
        "kills": chaos.kills,
        "unplanned_exits": chaos.unplanned,
        "actions": _action_figures(load, campaigns, keys_in_db, chaos.kills, load_started, load_ended),
        "callbacks": servers.callback_figures(load, records, SUBSCRIBERS, load_started, load_ended),
        "http": dict(load.statuses),
    }


# The processes


class _Cluster:
    """The sandbox, the subscribers, the connector's web side and its delivery workers, kept running."""

    def __init__(self, fleet: servers.Fleet, data_dir: Path, database: str):
        self.fleet = fleet
        self.data_dir = data_dir
        self.database = database
        self.port = servers.free_port()
        self.generation = itertools.count()
        self.sandbox = self.web = self.receivers = None
        self.workers: list[servers.Server] = []
        self.inbound_path = ""

    @property
    def web_url(self) -> str:
        return f"http://{servers.HOST}:{self.port}"

    def start(self) -> None:
        accounts = {LOGIN: {"api_key": API_KEY, "credits": CREDITS}}
        # One worker: the sandbox's state is per process, and what it launched is what is counted.
        self.sandbox = servers.start_sandbox(self.fleet, accounts, 1, SANDBOX_THREADS, LOGIN)
        self.receivers = Receivers.start(self.fleet, SUBSCRIBERS)
        self.web = self._start_web()
        hooks = Hooks(self.web_url, (LOGIN, API_KEY))
        self.inbound_path = hooks.inbound_path()
        for k in range(SUBSCRIBERS):
            hooks.subscribe(self.receivers.target(k))
        self.workers = [self._start_worker(slot) for slot in range(DELIVERY_WORKERS)]
        say(
            f"sandbox on port {self.sandbox.port}; connector web on port {self.port} ({WEB_WORKERS} x "
            f"{WEB_THREADS}); {DELIVERY_WORKERS} delivery workers; {SUBSCRIBERS} subscribers"
        )

    def _env(self) -> dict:
        return servers.clean_env(
            ALLMYSMS_BASE_URL=self.sandbox.url,
            ALLMYSMS_READ_TIMEOUT=str(READ_TIMEOUT),
            PORT=str(self.port),
            CONNECTOR_HOST=servers.HOST,
            CONNECTOR_WORKERS=str(WEB_WORKERS),
            CONNECTOR_THREADS=str(WEB_THREADS),
            CONNECTOR_ALLOWED_TARGETS=servers.HOST,
            CONNECTOR_DATA_DIR=str(self.data_dir),
            DATABASE_URL=self.database,
            CONNECTOR_DELIVERY_WORKER="off",
            # One caller sends all the load: the per-caller limit would only add 429s to tell apart.
            CONNECTOR_ACTIONS_PER_MINUTE="0",
            # What a killed worker had leased comes back after timeout + 5 s, not the default minute.
            CONNECTOR_LEASE_SECONDS="1",
            CONNECTOR_DELIVERY_TIMEOUT="2",
            CONNECTOR_RETRY_SCHEDULE="0,1,2,4,8,16",
        )

    def _start_web(self) -> servers.Server:
        argv = [sys.executable, "-m", "connector.ops.cli", "serve"]
        return self.fleet.start(
            f"web-{next(self.generation)}", argv, self._env(), self.port, "/v1/manifest", workers=WEB_WORKERS
        )

    def _start_worker(self, slot: int) -> servers.Server:
        argv = [sys.executable, "-m", "connector.ops.cli", "worker"]
        return self.fleet.spawn(f"worker-{slot}-{next(self.generation)}", argv, self._env())

    # Kills and restarts

    def kill(self, kind: str, rng: random.Random) -> dict:
        """SIGKILL one process of `kind` and start again what gunicorn does not: what happened, timed."""
        at = time.time()
        if kind == "web master":
            pid = self.web.process.pid
            self._restart_web(kill=True)
        elif kind == "web worker":
            pid = self._kill_web_worker(rng)
        else:
            slot = rng.randrange(len(self.workers))
            pid = self.workers[slot].process.pid
            self._restart_worker(slot, kill=True)
        return {"kind": kind, "at": at, "pid": pid, "back_after_s": round(time.time() - at, 2)}

    def heal(self) -> list[dict]:
        """Start again what died unasked (a finding in itself): what it was, its exit code, its log's end."""
        found = []
        if self.web.process.poll() is not None:
            found.append(self._unplanned("web master", self.web))
            self._restart_web(kill=False)
        for slot, worker in enumerate(self.workers):
            if worker.process.poll() is not None:
                found.append(self._unplanned("delivery worker", worker))
                self._restart_worker(slot, kill=False)
        return found

    def _unplanned(self, kind: str, server: servers.Server) -> dict:
        say(f"{server.name} ({kind}) exited by itself with code {server.process.returncode}")
        return {
            "kind": kind,
            "at": time.time(),
            "exit_code": server.process.returncode,
            "log_tail": server.log_tail(10),
        }

    def _restart_web(self, kill: bool) -> None:
        master = self.web
        orphans = master.workers()  # listed before the master goes: afterwards they are nobody's children
        if kill:
            os.kill(master.process.pid, signal.SIGKILL)
        master.process.wait(10)
        self.fleet.stop(master)  # forgets it: it is dead
        # Left alone, gunicorn workers whose master died stop accepting but keep the listening socket for up
        # to graceful_timeout (20 s): connections queue unanswered and the new master cannot bind. A
        # supervisor (systemd's control group, a container's end) kills them with their master; so does this.
        for process in orphans:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(orphans, timeout=10)
        self.web = self._start_web()

    def _kill_web_worker(self, rng: random.Random) -> int:
        victim = rng.choice(self.web.workers())
        victim.send_signal(signal.SIGKILL)
        # gunicorn starts its replacement; the next kill waits until the master has all its workers again.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_living(self.web.workers(), but=victim.pid)) < WEB_WORKERS:
            time.sleep(0.05)
        return victim.pid

    def _restart_worker(self, slot: int, kill: bool) -> None:
        worker = self.workers[slot]
        if kill:
            worker.process.kill()  # SIGKILL
        worker.process.wait(10)
        self.fleet.stop(worker)
        self.workers[slot] = self._start_worker(slot)

    # What is left to see

    def drain(self, timeout: float) -> dict:
        """Poll the database until no event waits for fan-out and no delivery is pending, or time is up."""
        started = time.monotonic()
        while True:
            counts = databases.outbox(self.database)
            elapsed = time.monotonic() - started
            if (counts["queued"] == 0 and counts["pending"] == 0) or elapsed > timeout:
                return {
                    **counts,
                    "drained": counts["queued"] == 0 and counts["pending"] == 0,
                    "waited_s": round(elapsed, 1),
                }
            time.sleep(0.1)

    def records(self) -> list[list]:
        return self.receivers.records_since([0] * SUBSCRIBERS)

    def campaigns(self) -> list[dict]:
        answer = requests.get(
            f"{self.sandbox.url}/sandbox/accounts/{LOGIN}/campaigns", auth=(LOGIN, API_KEY), timeout=30
        )
        answer.raise_for_status()
        return answer.json()["campaigns"]

    def key_states(self, keys: list[str]) -> dict:
        return databases.key_states(self.database, LOGIN, keys)


def _living(processes: list[psutil.Process], but: int) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.pid != but and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


class _Chaos:
    """SIGKILLs at random times, each kind in turn in a shuffled order; heals what dies unasked."""

    def __init__(self, cluster: _Cluster, rng: random.Random, mean_gap: float):
        self.cluster = cluster
        self.rng = rng
        self.mean_gap = mean_gap
        self.kills: list[dict] = []
        self.unplanned: list[dict] = []

    def run(self, seconds: float) -> None:
        deck: list[str] = []
        until = time.monotonic() + seconds
        next_kill = time.monotonic() + self._gap()
        while time.monotonic() < until:
            self.unplanned += self.cluster.heal()
            if time.monotonic() >= next_kill:
                if not deck:
                    deck = list(KINDS)
                    self.rng.shuffle(deck)
                done = self.cluster.kill(deck.pop(), self.rng)
                self.kills.append(done)
                say(f"SIGKILL {done['kind']} (pid {done['pid']}); running again after {done['back_after_s']} s")
                next_kill = time.monotonic() + self._gap()
            time.sleep(0.1)
        self.unplanned += self.cluster.heal()

    def _gap(self) -> float:
        # Uniform around the mean rather than exponential: a short run still gets its share of kills, and
        # none lands back to back (that would test gunicorn's boot, not the connector).
        return self.rng.uniform(0.5, 1.5) * self.mean_gap


# The load (servers.Load)


def _orphaned(item: servers.Item, web_kills: list[float]) -> bool:
    """Whether the key is held by a first call whose process died: answered 409 for longer than any call can
    run, or twice in a row (4 s and more) after a kill cut one of its calls."""
    if item.conflict_since is None:
        return False
    if time.time() - item.conflict_since > ORPHANED_AFTER:
        return True
    last_two = [what for _, _, what in item.attempts[-2:]]
    return last_two == ["HTTP 409", "HTTP 409"] and _cut_by_kill(item, web_kills)


# Reconciliation


def _action_figures(
    load: servers.Load, campaigns: list[dict], key_states: dict, kills: list[dict], start: float, end: float
) -> dict:
    sent_per_key = Counter(c["client_reference"] for c in campaigns)
    campaign_of = {c["client_reference"]: c["id"] for c in campaigns}
    keys = {a.key for a in load.actions}
    outcomes = Counter(a.outcome or "no answer yet" for a in load.actions)
    web_kills = [k["at"] for k in kills if k["kind"] != "delivery worker"]
    unresolved = [a for a in load.actions if a.outcome is None]
    explained = {a.key for a in unresolved if _cut_by_kill(a, web_kills)}
    sent = [a for a in load.actions if a.outcome == "sent"]
    return {
        "offered": len(load.actions),
        "outcomes": dict(outcomes),
        "held_per_s": servers.held_per_s(load.actions, start, end),
        "answer_s": servers.spread([a.resolved_at - a.created for a in load.actions if a.resolved_at]),
        "keys_retried": sum(1 for a in load.actions if len(a.attempts) > 1),
        "retries": sum(len(a.attempts) - 1 for a in load.actions),
        "replayed": sum(1 for a in load.actions if a.replayed),
        "sms_campaigns": len(campaigns),
        "duplicate_sms": sum(n - 1 for n in sent_per_key.values() if n > 1),
        "keys_sent_twice": sorted(k for k, n in sent_per_key.items() if n > 1)[:20],
        "unknown_references": sum(1 for ref in sent_per_key if ref not in keys),
        "sent_without_sms": sorted(a.key for a in sent if sent_per_key[a.key] != 1)[:20],
        "sent_other_campaign": sorted(
            a.key for a in sent if a.campaign_id and sent_per_key[a.key] == 1 and campaign_of[a.key] != a.campaign_id
        )[:20],
        "unknown_that_went_out": sum(
            1 for a in load.actions if a.outcome == "outcome unknown" and sent_per_key[a.key] == 1
        ),
        "in_progress": len(unresolved),
        "in_progress_went_out": sum(1 for a in unresolved if sent_per_key[a.key] == 1),
        "in_progress_states": dict(Counter(key_states.get(a.key, "absent") for a in unresolved)),
        "in_progress_unexplained": sorted(a.key for a in unresolved if a.key not in explained)[:20],
    }


def _cut_by_kill(item: servers.Item, kill_times: list[float]) -> bool:
    """Whether a web kill fell during one of the item's attempts that got no answer (the call it cut)."""
    return any(
        started - 0.05 <= at <= ended + 0.05
        for started, ended, what in item.attempts
        if what == "no answer"
        for at in kill_times
    )


# The table


def _rows(results: dict) -> list[dict]:
    rows = report.Rows()
    plan, actions, callbacks = results["plan"], results["actions"], results["callbacks"]
    _load_rows(rows, plan, actions, callbacks)
    _kill_rows(rows, results)
    _callback_rows(rows, callbacks, results["drain"])
    _action_rows(rows, actions)
    rows.info("answers other than 200", _other_answers(results["http"]) or "none")
    servers_errors = sum(n for what, n in results["http"].items() if what.endswith("HTTP 500"))
    rows.judged("HTTP 500 answers (actions and callbacks)", str(servers_errors), "0", servers_errors == 0)
    return rows.rows


def _load_rows(rows: report.Rows, plan: dict, actions: dict, callbacks: dict) -> None:
    seconds = plan["seconds"]
    rows.info(
        f"keyed send_sms: offered / answered within the {seconds:g} s",
        f"{actions['offered'] / seconds:.1f}/s / {actions['held_per_s']:.1f}/s",
        f"asked {plan['rate']:g}/s",
    )
    rows.info(
        f"callbacks: offered / accepted within the {seconds:g} s",
        f"{callbacks['offered'] / seconds:.1f}/s / {callbacks['held_per_s']:.1f}/s",
        f"asked {plan['callback_rate']:g}/s",
    )
    for name, figures in (("keyed send_sms", actions), ("callbacks", callbacks)):
        spread = figures["answer_s"]
        if spread["p50"] is not None:
            rows.info(
                f"{name}: time to a definitive answer p50 / p99 / max",
                f"{spread['p50']:.2f} / {spread['p99']:.2f} / {spread['max']:.2f} s",
                "retries included",
            )


def _kill_rows(rows: report.Rows, results: dict) -> None:
    kills = results["kills"]
    by_kind = Counter(k["kind"] for k in kills)
    rows.info(
        "SIGKILLs: web master / web worker / delivery worker",
        " / ".join(str(by_kind[kind]) for kind in KINDS) + f" ({len(kills)} in all)",
        f"mean gap {results['plan']['kill_every']:g} s, seed {results['plan']['seed']}",
    )
    masters = [k["back_after_s"] for k in kills if k["kind"] == "web master"]
    if masters:
        rows.info("web master killed: serving again after (max)", f"{max(masters):.1f} s")
    unplanned = results["unplanned_exits"]
    rows.judged("processes that died unasked", str(len(unplanned)), "0", not unplanned)


def _callback_rows(rows: report.Rows, callbacks: dict, drain: dict) -> None:
    outcomes = callbacks["outcomes"]
    rows.info(
        "callbacks accepted (answered 200)",
        f"{callbacks['accepted']} of {callbacks['offered']}",
        f"{callbacks['retried']} needed a retry",
    )
    unanswered = callbacks["offered"] - callbacks["accepted"]
    rows.judged("callbacks never accepted", str(unanswered) + _detail(outcomes, "accepted"), "0", unanswered == 0)
    drained = drain["drained"]
    rows.judged(
        "outbox drained after the load",
        f"{drain['waited_s']:.1f} s" if drained else f"no: {drain['queued']} queued, {drain['pending']} pending",
        "yes",
        drained,
    )
    for sub in callbacks["subscribers"]:
        rows.judged(
            f"subscriber {sub['subscriber']}: accepted events delivered",
            f"{sub['accepted_delivered']} of {callbacks['accepted']}",
            "all",
            sub["accepted_delivered"] == callbacks["accepted"],
        )
    rows.judged("events lost (accepted, missing at a subscriber)", str(callbacks["lost"]), "0", callbacks["lost"] == 0)
    rows.info("duplicate deliveries (same webhook-id)", str(callbacks["duplicates_same_webhook_id"]), "allowed")
    several = callbacks["events_with_several_webhook_ids"]
    rows.judged("events delivered under two webhook-ids", str(several), "0", several == 0)
    failed = drain.get("failed", 0)
    rows.judged("deliveries marked failed", str(failed), "0", failed == 0)


def _action_rows(rows: report.Rows, actions: dict) -> None:
    outcomes = actions["outcomes"]
    rows.info(
        "keyed send_sms: sent / outcome unknown / in progress at the end",
        f"{outcomes.get('sent', 0)} / {outcomes.get('outcome unknown', 0)} / {actions['in_progress']}",
        f"of {actions['offered']}",
    )
    refused = {k: v for k, v in outcomes.items() if k.startswith("refused")}
    rows.judged(
        "keyed send_sms refused (4xx)",
        str(sum(refused.values())) + (f" {refused}" if refused else ""),
        "0",
        not refused,
    )
    rows.info(
        "keyed send_sms retried with the same key",
        f"{actions['keys_retried']} keys, {actions['retries']} retries",
        f"{actions['replayed']} answers replayed",
    )
    rows.judged(
        "duplicate SMS (a key launched twice at AllMySMS)",
        str(actions["duplicate_sms"]),
        "0",
        actions["duplicate_sms"] == 0,
    )
    wrong = len(actions["sent_without_sms"]) + len(actions["sent_other_campaign"])
    rows.judged("keys answered 'sent' without exactly their one SMS", str(wrong), "0", wrong == 0)
    rows.judged(
        "SMS launched under no key of this run",
        str(actions["unknown_references"]),
        "0",
        actions["unknown_references"] == 0,
    )
    if outcomes.get("outcome unknown"):
        rows.info("outcome unknown: of which AllMySMS did launch", str(actions["unknown_that_went_out"]))
    if actions["in_progress"]:
        rows.info(
            "in progress at the end (first call cut by a kill; 409 until stale)",
            f"{actions['in_progress']}, {actions['in_progress_went_out']} launched",
            f"key states {actions['in_progress_states']}",
        )
    unexplained = len(actions["in_progress_unexplained"])
    rows.judged("in progress at the end with no kill to explain it", str(unexplained), "0", unexplained == 0)


def _other_answers(tallies: dict) -> str:
    """E.g. "action: 409 x17, none x550; callback: none x535" from {"action HTTP 409": 17, ...}."""
    by_kind: dict[str, list[str]] = {}
    for what, n in sorted(tallies.items()):
        kind, _, answer = what.partition(" ")
        if answer != "HTTP 200":
            by_kind.setdefault(kind, []).append(f"{answer.replace('HTTP ', '').replace('no answer', 'none')} x{n}")
    return "; ".join(f"{kind}: {', '.join(answers)}" for kind, answers in by_kind.items())


def _detail(outcomes: dict, ok: str) -> str:
    others = {k: v for k, v in outcomes.items() if k != ok}
    return f" {others}" if others else ""


if __name__ == "__main__":
    report.run(main)

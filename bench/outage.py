"""Outage run of the connector on 127.0.0.1: steady callbacks and keyed sends while its PostgreSQL is killed and
started again, and, in a phase apart, while its disk is full; then a reconciliation of what went in against what
came out, and of what the service logged meanwhile.

Usage (from the repository root):

    .venv/bin/python bench/outage.py                    # both phases: 60 s of load each, two 15 s faults each
    .venv/bin/python bench/outage.py --quick            # both phases: 8 s of load and one 4 s fault each
    .venv/bin/python bench/outage.py --postgres-outage --seconds 120 --outages 3 --down 20
    .venv/bin/python bench/outage.py --disk-full --disk-mb 32
    .venv/bin/python bench/outage.py --quick --json     # the results as JSON on stdout, the table on stderr

What runs, all on loopback, started here and always stopped on exit (even on Ctrl-C or SIGTERM):
- the AllMySMS sandbox under gunicorn (one worker, state in memory, never touched), with an account of 10**12
  credits and no callback URL;
- the connector, `connector serve` (2 web workers x 8 threads, and the 2 delivery worker processes it starts
  and supervises itself), logging JSON lines to one file; 2 subscribers (bench/receiver.py) on the
  delivery_receipt trigger;
- --postgres-outage: a PostgreSQL server of the run's own (databases.OwnPostgres: initdb in a temporary folder,
  a free port, fsync on; as the `postgres` user when this runs as root), migrated by `connector migrate`.
  The fault: `pg_ctl stop -m immediate`, then, --down s later, the server started again on the same port and
  folder;
- --disk-full: the connector on SQLite (the default backend) with CONNECTOR_DATA_DIR on a tmpfs of --disk-mb MB
  mounted here (root only: as another user, run this phase alone under `unshare -rm`). The fault: a file
  written until ENOSPC, topped up every half second, removed --down s later.

Load, open loop for --seconds (servers.Load, as in bench/chaos.py): --callback-rate delivery receipts a second,
each with its own smsId, and --rate keyed send_sms actions a second, each with its own Idempotency-Key, retried
like a platform: an action with the same key after no answer, a 5xx, 409 or 429; a callback until it is
answered 200; either after Retry-After when the answer gives one. Every answer is tallied. The faults begin
after a warm-up and are spread evenly over the load.

Then retries go on until every item has a definitive answer (or --settle s), the journal
(CONNECTOR_DATA_DIR/journal) and the outbox drain (or --drain s each), and each phase is reconciled:
- no callback answered 500 (503 with Retry-After is allowed), every one accepted in the end, every accepted
  one stored as an event (its id computed with connector/events/callbacks.py) and delivered to each subscriber;
- no action answered 500, every key answered definitively, no key launched twice at AllMySMS;
- the journal and the outbox empty at the end;
- from the start of each fault to the next one (or the end), at most 3 log lines about the database or the
  disk from any one process, and no traceback;
- /readyz 503 during a PostgreSQL outage and 200 again after each fault, /healthz 200 throughout,
  connector_database_outages_total counting the PostgreSQL outages;
- no worker process of the service dies (its supervisor would start it again: counted all the same);
- disk full: every 503 says Retry-After, and SQLite's `PRAGMA integrity_check` answers ok after the run.

Prints one table, writes everything to bench/results/outage.json (--out DIR: DIR/outage.json) and the logs to
bench/results/logs/outage/<phase>/. Exit code 0 when every judged row is ok, 1 when one is missed, 2 when
none is missed but a phase asked for could not run here (its "missing" in the JSON says why).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

# bench/ is on sys.path when this file is run as a script, so its modules import by name.
import databases
import report
import requests
import servers
from hooks import Hooks, Receivers
from report import say
from sqlalchemy.exc import SQLAlchemyError

from connector.storage.database import default_url

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

LOGIN, API_KEY = "outage", "outage-api-key"
CREDITS = 10**12
PHONE = "0611111111"  # never printed
SUBSCRIBERS = 2
WEB_WORKERS, WEB_THREADS = 2, 8
DELIVERY_PROCESSES = 2
SANDBOX_THREADS = 8
READ_TIMEOUT = 5
PROBE_EVERY = 0.5  # seconds between two looks at /readyz and /healthz, as an orchestrator's probe
# The most lines about one fault one process may log: the database going and coming back, and the journal
# replayed; on a full disk the journal cannot be written either, which is said going and coming back too.
LOG_LINES_PER_PROCESS = {"postgres_outage": 3, "disk_full": 4}
# What a line about the database or the disk says (the driver's exceptions included).
ABOUT_STORAGE = re.compile(
    r"database|OperationalError|InterfaceError|psycopg|sqlalchemy|sqlite|postgres|"
    r"connection (refused|reset)|server closed|disk|no space|ENOSPC|journal|Traceback",
    re.IGNORECASE,
)

PHASES = {"postgres_outage": "PostgreSQL killed", "disk_full": "disk full"}
FULL = {"seconds": 60.0, "rate": 5.0, "callback_rate": 40.0, "down": 15.0, "outages": 2, "settle": 60.0, "drain": 60.0}
QUICK = {"seconds": 8.0, "rate": 5.0, "callback_rate": 20.0, "down": 4.0, "outages": 1, "settle": 25.0, "drain": 25.0}


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    signal.signal(signal.SIGTERM, report.exit_on_sigterm)
    out_dir = Path(args.out) if args.out else RESULTS
    logs = out_dir / "logs" / "outage"
    for phase in PHASES:
        for stale in (logs / phase).glob("*.log"):  # only this script's own logs, from an earlier run
            stale.unlink()
    started = time.monotonic()
    results = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "plan": {
            k: getattr(args, k)
            for k in ("seconds", "rate", "callback_rate", "down", "outages", "settle", "drain", "disk_mb")
        },
        "machine": report.machine(),
        "phases": {},
    }
    for phase in args.phases:
        (logs / phase).mkdir(parents=True, exist_ok=True)
        run = _postgres_phase if phase == "postgres_outage" else _disk_phase
        results["phases"][phase] = run(args, logs / phase)
    results["total_s"] = round(time.monotonic() - started, 1)
    rows = _rows(results)
    missed = any(r["ok"] is False for r in rows)
    missing = [name for name, found in results["phases"].items() if "missing" in found]
    results["ok"] = not missed and not missing
    verdict = "NOT RECONCILED" if missed else f"not run: {', '.join(missing)}" if missing else "reconciled"
    if args.json:
        with contextlib.redirect_stdout(sys.stderr):
            report.publish(results, rows, out_dir / "outage.json", logs, verdict=verdict)
        print(json.dumps(results, ensure_ascii=False))
    else:
        report.publish(results, rows, out_dir / "outage.json", logs, verdict=verdict)
    return 1 if missed else 2 if missing else 0


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres-outage", action="store_true", help="run the PostgreSQL phase (default: both phases)"
    )
    parser.add_argument("--disk-full", action="store_true", help="run the disk-full phase (default: both phases)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short run: 8 s of load (5 actions/s, 20 callbacks/s), one 4 s fault a phase",
    )
    parser.add_argument("--seconds", type=float, help="seconds of load a phase (default 60; quick 8)")
    parser.add_argument("--rate", type=float, help="keyed send_sms actions a second (default 5)")
    parser.add_argument("--callback-rate", type=float, help="callbacks a second (default 40; quick 20)")
    parser.add_argument("--down", type=float, help="seconds each fault lasts (default 15; quick 4)")
    parser.add_argument("--outages", type=int, help="faults a phase (default 2; quick 1)")
    parser.add_argument(
        "--settle",
        type=float,
        help="seconds allowed after the load for retries to get their answers (default 60; quick 25)",
    )
    parser.add_argument(
        "--drain", type=float, help="seconds allowed for the journal, then the outbox, to drain (default 60; quick 25)"
    )
    parser.add_argument("--disk-mb", type=int, default=64, help="size of the disk-full phase's tmpfs (default 64)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout (table on stderr)")
    parser.add_argument("--out", help="directory for outage.json and logs/outage/ (default bench/results)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    for name in plan:
        if getattr(args, name) is None:
            setattr(args, name, plan[name])
    args.phases = [p for p in PHASES if getattr(args, p)] or list(PHASES)
    # Bounded whatever is asked: a run is minutes, not hours, on a shared machine.
    if not (
        0 < args.seconds <= 3600
        and 0 < args.rate <= 500
        and 0 < args.callback_rate <= 500
        and 0.5 <= args.down <= 600
        and 1 <= args.outages <= 50
        and 0 < args.settle <= 600
        and 0 < args.drain <= 600
        and 8 <= args.disk_mb <= 4096
    ):
        parser.error(
            "keep to 0 < --seconds <= 3600, rates in (0, 500], --down in [0.5, 600], --outages in "
            "[1, 50], --settle and --drain in (0, 600], --disk-mb in [8, 4096]"
        )
    if _gap(args) < 1:
        parser.error(
            f"{args.outages} faults of {args.down:g} s do not fit in {args.seconds:g} s of load with a "
            f"warm-up and a second at least after each: give more --seconds"
        )
    return args


def _warm_up(args) -> float:
    return min(5.0, args.seconds / 4)


def _gap(args) -> float:
    """Seconds of load after each fault before the next one (or the end of the load)."""
    return (args.seconds - _warm_up(args) - args.outages * args.down) / args.outages


def _schedule(args) -> list[float]:
    """When each fault begins, in seconds after the load began."""
    return [_warm_up(args) + i * (args.down + _gap(args)) for i in range(args.outages)]


# The phases


def _postgres_phase(args, logs: Path) -> dict:
    problem = databases.postgres_problem()
    if problem:
        say(f"PostgreSQL phase not run: {problem}")
        return {"missing": problem}
    say("PostgreSQL phase: a server of its own, killed with `pg_ctl stop -m immediate` and started again")
    # The service stops before its database does: its shutdown is not part of any outage.
    with (
        databases.OwnPostgres(logs / "postgresql.log") as postgres,
        tempfile.TemporaryDirectory(prefix="bench-outage-") as scratch,
        servers.Fleet(logs) as fleet,
    ):
        service = _Service(fleet, Path(scratch) / "var", postgres.url)
        return _run(service, _PostgresKill(postgres), args)


def _disk_phase(args, logs: Path) -> dict:
    disk = _Tmpfs(args.disk_mb)
    problem = disk.mount()
    if problem:
        say(f"disk-full phase not run: {problem}")
        return {"missing": problem}
    say(f"disk-full phase: the service on SQLite, its data folder on a tmpfs of {args.disk_mb} MB")
    try:
        data_dir = disk.path / "var"
        with servers.Fleet(logs) as fleet:
            service = _Service(fleet, data_dir, None)
            found = _run(service, _DiskFill(disk.path), args)
        # Once every process of the service has stopped, so that nothing writes while it is read.
        found["integrity"] = _integrity(data_dir / "connector.db")
        return found
    finally:
        disk.unmount()


def _run(service: _Service, fault, args) -> dict:
    """Start the service, put the load on it with the faults in it, wait for it to settle, reconcile."""
    service.start()
    load = servers.Load(
        service.url, service.inbound_path, secrets.token_hex(3), (LOGIN, API_KEY), PHONE, prefix="outage"
    )
    faults: list[dict] = []
    say(
        f"load: {args.rate:g} actions/s + {args.callback_rate:g} callbacks/s for {args.seconds:g} s; "
        f"{args.outages} x {fault.what} for {args.down:g} s"
    )
    with _Probe(service) as probe:
        log_from = service.log_offset()
        load_started = time.time()
        load.start(args.rate, args.callback_rate, args.seconds)
        # Faults begin and end on this thread: the database server follows the thread that started it.
        for begins in _schedule(args):
            _pause_until(load_started + begins)
            faults.append(_fault(service, fault, args.down))
        load.wait_offered()
        load_ended = time.time()
        say(f"load over; waiting up to {args.settle:g} s for definitive answers")
        settled = load.settle(args.settle)
        load.stop()
        say(
            f"answers settled in {settled:.1f} s; waiting up to {args.drain:g} s each for the journal and "
            "the outbox to drain"
        )
        journal = _wait_journal_drained(service.journal_dir, args.drain)
        outbox = _wait_outbox_drained(service.database, args.drain)
        log_to = service.log_offset()
    marks = [log_from] + [f["log_from"] for f in faults] + [log_to]
    windows = _log_windows(service.log_path, marks)
    for found, window in zip(faults, windows[1:]):
        found["log"] = window
        found["readyz"] = probe.around(found["at"], found["ended"])
    return {
        "what": fault.what,
        "load_window": [load_started, load_ended],
        "settle_s": round(settled, 1),
        "faults": faults,
        "log_before_faults": windows[0],
        "callbacks": _callback_figures(load, service, faults, load_started, load_ended),
        "actions": _action_figures(load, service, faults, load_started, load_ended),
        "journal": {**journal, "most_bytes_seen": probe.most_journal_bytes()},
        "outbox": outbox,
        "healthz_failures": probe.healthz_failures(),
        "metrics": service.metrics(),
        "service": service.processes_report(),
    }


def _fault(service: _Service, fault, down: float) -> dict:
    found = {"log_from": service.log_offset(), "at": time.time()}
    found.update(fault.begin())
    say(f"{fault.what} for {down:g} s")
    until = found["at"] + down
    while (left := until - time.time()) > 0:
        fault.hold()
        time.sleep(min(0.5, left))
    # What a scrape shows at the end of the fault: the journal's depth, the outages counted so far.
    found["metrics_during"] = service.metrics()
    found.update(fault.end())
    found["ended"] = time.time()
    say(f"{fault.what}: over after {found['ended'] - found['at']:.1f} s")
    return found


def _pause_until(moment: float) -> None:
    pause = moment - time.time()
    if pause > 0:
        time.sleep(pause)


# The faults


class _PostgresKill:
    what = "PostgreSQL killed"

    def __init__(self, postgres: databases.OwnPostgres):
        self.postgres = postgres

    def begin(self) -> dict:
        self.postgres.crash()
        return {}

    def hold(self) -> None:
        pass

    def end(self) -> dict:
        return {"restart_s": round(self.postgres.start(), 2)}


class _DiskFill:
    what = "disk full"

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / "filler"

    def begin(self) -> dict:
        written = self._fill()
        return {"filler_bytes": written, "free_bytes_after_fill": self._free()}

    def hold(self) -> None:
        # What the service frees (a journal file removed, a WAL checkpointed) is taken back at once.
        self._fill()

    def end(self) -> dict:
        size = self.filler.stat().st_size
        self.filler.unlink()
        return {"filler_bytes": size, "free_bytes_after": self._free()}

    def _fill(self) -> int:
        """Write until the file system refuses (ENOSPC), in smaller and smaller pieces: the bytes written."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
                chunk = b"\0" * size
                while True:
                    try:
                        done = os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    written += done
                    if done < size:
                        break
        finally:
            os.close(fd)
        return written

    def _free(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize


class _Tmpfs:
    """A tmpfs of ``size_mb`` mounted on a temporary folder: a disk this run may fill."""

    def __init__(self, size_mb: int):
        self.size_mb = size_mb
        self.path: Path | None = None

    def mount(self) -> str | None:
        """Mount it; or say why it cannot be, having mounted nothing."""
        if os.geteuid() != 0:
            return (
                "the disk-full phase mounts a tmpfs of its own, which needs root: run as root, or run this "
                "phase alone in a user namespace: unshare -rm .venv/bin/python bench/outage.py --disk-full"
            )
        self.path = Path(tempfile.mkdtemp(prefix="bench-outage-disk-"))
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0700", "tmpfs", str(self.path)],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            done = subprocess.CompletedProcess([], 1, "", str(exc))
        if done.returncode != 0:
            self.path.rmdir()
            self.path = None
            return f"mount -t tmpfs failed (the disk-full phase needs to mount one): {done.stderr.strip()}"
        return None

    def unmount(self) -> None:
        if self.path is None:
            return
        if subprocess.run(["umount", str(self.path)], capture_output=True, timeout=30).returncode != 0:
            # Busy: something of the run still holds a file there; it goes when that ends.
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)
        try:
            self.path.rmdir()
        except OSError:
            pass
        self.path = None


def _integrity(database: Path) -> str:
    if not database.exists():
        return "no database file"
    with contextlib.closing(sqlite3.connect(database)) as db:
        return "; ".join(row[0] for row in db.execute("PRAGMA integrity_check").fetchall())


# The service


class _Service:
    """The sandbox, the subscribers and `connector serve` (its web workers and its delivery workers)."""

    def __init__(self, fleet: servers.Fleet, data_dir: Path, database_url: str | None):
        self.fleet = fleet
        self.data_dir = data_dir
        self.database_url = database_url
        self.database = database_url or default_url(str(data_dir))
        self.port = servers.free_port()
        self.sandbox = self.web = self.receivers = None
        self.inbound_path = ""
        self.children_at_start: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://{servers.HOST}:{self.port}"

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    @property
    def log_path(self) -> Path:
        return self.web.log_path

    def start(self) -> None:
        accounts = {LOGIN: {"api_key": API_KEY, "credits": CREDITS}}
        self.sandbox = servers.start_sandbox(self.fleet, accounts, 1, SANDBOX_THREADS, LOGIN)
        self.receivers = Receivers.start(self.fleet, SUBSCRIBERS)
        env = self._env()
        # As a release step would; on SQLite too, so that both phases start the same way.
        subprocess.run(
            [sys.executable, "-m", "connector.ops.cli", "migrate"],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.web = self.fleet.start(
            "connector",
            [sys.executable, "-m", "connector.ops.cli", "serve"],
            env,
            self.port,
            "/readyz",
            workers=WEB_WORKERS + DELIVERY_PROCESSES,
        )
        hooks = Hooks(self.url, (LOGIN, API_KEY))
        self.inbound_path = hooks.inbound_path()
        for k in range(SUBSCRIBERS):
            hooks.subscribe(self.receivers.target(k))
        self.children_at_start = {p.pid for p in self.web.workers()}
        say(
            f"sandbox on port {self.sandbox.port}; connector on port {self.port} ({WEB_WORKERS} x {WEB_THREADS}, "
            f"{DELIVERY_PROCESSES} delivery workers); {SUBSCRIBERS} subscribers; database "
            f"{'PostgreSQL' if self.database_url else 'SQLite'}"
        )

    def _env(self) -> dict:
        env = servers.clean_env(
            ALLMYSMS_BASE_URL=self.sandbox.url,
            ALLMYSMS_READ_TIMEOUT=str(READ_TIMEOUT),
            PORT=str(self.port),
            CONNECTOR_HOST=servers.HOST,
            CONNECTOR_WORKERS=str(WEB_WORKERS),
            CONNECTOR_THREADS=str(WEB_THREADS),
            CONNECTOR_ALLOWED_TARGETS=servers.HOST,
            CONNECTOR_DATA_DIR=str(self.data_dir),
            CONNECTOR_DELIVERY_WORKER="process",
            CONNECTOR_DELIVERY_PROCESSES=str(DELIVERY_PROCESSES),
            # One caller sends all the load: the per-caller limit would only add 429s to tell apart.
            CONNECTOR_ACTIONS_PER_MINUTE="0",
            # JSON lines say which process wrote each one, and whether it carries a traceback.
            CONNECTOR_LOG_FORMAT="json",
            # A delivery whose outcome could not be recorded during the fault is due again within seconds.
            CONNECTOR_LEASE_SECONDS="1",
            CONNECTOR_DELIVERY_TIMEOUT="2",
            CONNECTOR_RETRY_SCHEDULE="0,1,2,4,8,16",
            **({"DATABASE_URL": self.database_url} if self.database_url else {}),
        )
        # The metrics' files go where the service puts them by default: in its data folder, on the full disk.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return env

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def campaigns(self) -> list[dict]:
        answer = requests.get(
            f"{self.sandbox.url}/sandbox/accounts/{LOGIN}/campaigns", auth=(LOGIN, API_KEY), timeout=30
        )
        answer.raise_for_status()
        return answer.json()["campaigns"]

    def metrics(self) -> dict:
        """The outage and journal figures of a scrape of /metrics, summed over their labels."""
        try:
            answer = requests.get(f"{self.url}/metrics", timeout=10)
        except requests.RequestException as exc:
            return {"error": type(exc).__name__}
        if answer.status_code != 200:
            return {"error": f"HTTP {answer.status_code}"}
        from prometheus_client.parser import text_string_to_metric_families

        found: dict = {}
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                if sample.name.startswith(("connector_database_", "connector_journal")):
                    found[sample.name] = found.get(sample.name, 0) + sample.value
        return found

    def processes_report(self) -> dict:
        children = {p.pid for p in self.web.workers()}
        return {"running": self.web.process.poll() is None, "children_replaced": len(self.children_at_start - children)}


class _Probe:
    """/readyz and /healthz every PROBE_EVERY s in a thread, as an orchestrator would look, and the bytes in
    the journal folder."""

    def __init__(self, service: _Service):
        self.service = service
        self.samples: list[tuple] = []  # (time, readyz status, its reason, healthz status, journal bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._session = requests.Session()

    def __enter__(self) -> _Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.wait(PROBE_EVERY):
            at = time.time()
            ready, reason = self._get("/readyz")
            healthy, _ = self._get("/healthz")
            self.samples.append((at, ready, reason, healthy, _folder_bytes(self.service.journal_dir)))

    def _get(self, path: str) -> tuple:
        try:
            answer = self._session.get(self.service.url + path, timeout=5)
        except requests.RequestException:
            self._session = requests.Session()
            return None, "no answer"
        if answer.status_code == 200:
            return 200, ""
        return answer.status_code, (servers.error_of(answer).get("message") or answer.text)[:200]

    def around(self, began: float, ended: float) -> dict:
        """What /readyz said during a fault, and how soon after it it answered 200 again."""
        during = [s for s in self.samples if began <= s[0] <= ended]
        after = [s for s in self.samples if s[0] > ended]
        again = next((s[0] for s in after if s[1] == 200), None)
        return {
            "during": dict(Counter(str(s[1]) for s in during)),
            "reasons": sorted({s[2] for s in during if s[1] not in (200, None)})[:3],
            "not_ready_seen": any(s[1] == 503 for s in during),
            "ready_again_after_s": None if again is None else round(again - ended, 1),
        }

    def healthz_failures(self) -> dict:
        return dict(Counter(str(s[3]) for s in self.samples if s[3] != 200))

    def most_journal_bytes(self) -> int:
        return max((s[4] for s in self.samples), default=0)


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
    except OSError:
        return 0


def _wait_journal_drained(folder: Path, timeout: float) -> dict:
    """Poll the journal folder until no file in it holds anything, or time is up."""
    started = time.monotonic()
    while True:
        left = {}
        try:
            left = {
                entry.name: entry.stat().st_size
                for entry in folder.iterdir()
                if entry.is_file() and entry.stat().st_size > 0
            }
        except FileNotFoundError:
            pass
        elapsed = time.monotonic() - started
        if not left or elapsed > timeout:
            return {
                "drained": not left,
                "waited_s": round(elapsed, 1),
                "folder_exists": folder.is_dir(),
                "files_left": dict(list(left.items())[:10]),
                "bytes_left": sum(left.values()),
            }
        time.sleep(0.1)


def _wait_outbox_drained(database: str, timeout: float) -> dict:
    """Poll the database until no event waits for fan-out and no delivery is pending, or time is up."""
    started = time.monotonic()
    counts = {"error": "never read"}
    while True:
        try:
            counts = databases.outbox(database)
            done = counts["queued"] == 0 and counts["pending"] == 0
        except SQLAlchemyError as exc:
            counts, done = {"error": type(exc).__name__}, False
        elapsed = time.monotonic() - started
        if done or elapsed > timeout:
            return {**counts, "drained": done, "waited_s": round(elapsed, 1)}
        time.sleep(0.1)


# Reconciliation


def _during(attempts: list, faults: list[dict]) -> Counter:
    """The answers to the attempts that began while a fault lasted."""
    return Counter(what for started, _, what in attempts if any(f["at"] <= started <= f["ended"] for f in faults))


def _callback_figures(load: servers.Load, service: _Service, faults: list[dict], start: float, end: float) -> dict:
    records = service.receivers.records_since([0] * SUBSCRIBERS)
    figures = servers.callback_figures(load, records, SUBSCRIBERS, start, end)
    accepted = sorted(c.event_id for c in load.callbacks if c.outcome == "accepted")
    try:
        stored = databases.stored_events(service.database, accepted)
        missing = sorted(set(accepted) - stored)
    except SQLAlchemyError as exc:
        missing = accepted
        figures["store_error"] = type(exc).__name__
    answers = Counter(what for c in load.callbacks for _, _, what in c.attempts)
    return {
        **figures,
        "not_stored": len(missing),
        "not_stored_ids": missing[:20],
        "several_webhook_ids": _several_webhook_ids(records),
        "answers": dict(answers),
        "answered_500": answers["HTTP 500"],
        "answers_during_faults": dict(_during([a for c in load.callbacks for a in c.attempts], faults)),
        "without_retry_after": sum(n for what, n in load.unhinted.items() if what.startswith("callback")),
    }


def _several_webhook_ids(records: list[list]) -> list[dict]:
    """A few events a subscriber got under more than one webhook-id, with when each delivery arrived: to tell
    when, against the faults, the event was fanned out twice."""
    arrivals: dict[tuple, list] = {}
    for path, _, webhook_id, arrived, event_id in records:
        arrivals.setdefault((path, event_id), []).append([webhook_id, round(arrived, 3)])
    return [
        {"subscriber": path, "event_id": event_id, "deliveries": got}
        for (path, event_id), got in sorted(arrivals.items())
        if len({webhook_id for webhook_id, _ in got}) > 1
    ][:10]


def _action_figures(load: servers.Load, service: _Service, faults: list[dict], start: float, end: float) -> dict:
    campaigns = service.campaigns()
    sent_per_key = Counter(c["client_reference"] for c in campaigns)
    keys = {a.key for a in load.actions}
    sent = [a for a in load.actions if a.outcome == "sent"]
    answers = Counter(what for a in load.actions for _, _, what in a.attempts)
    return {
        "offered": len(load.actions),
        "outcomes": dict(Counter(a.outcome or "no answer yet" for a in load.actions)),
        "unresolved": sum(1 for a in load.actions if a.outcome is None),
        "held_per_s": servers.held_per_s(load.actions, start, end),
        "answer_s": servers.spread([a.resolved_at - a.created for a in load.actions if a.resolved_at]),
        "answers": dict(answers),
        "answered_500": answers["HTTP 500"],
        "answers_during_faults": dict(_during([x for a in load.actions for x in a.attempts], faults)),
        "without_retry_after": sum(n for what, n in load.unhinted.items() if what.startswith("action")),
        "sms_campaigns": len(campaigns),
        "duplicate_sms": sum(n - 1 for n in sent_per_key.values() if n > 1),
        "keys_sent_twice": sorted(k for k, n in sent_per_key.items() if n > 1)[:20],
        "sent_without_sms": sorted(a.key for a in sent if sent_per_key[a.key] != 1)[:20],
        "unknown_references": sum(1 for ref in sent_per_key if ref not in keys),
    }


def _log_windows(path: Path, marks: list[int]) -> list[dict]:
    """What the service logged between consecutive byte offsets of its log (a window a fault began)."""
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    return [
        _read_lines(data[begin:end].decode("utf-8", "replace").splitlines()) for begin, end in zip(marks, marks[1:])
    ]


def _read_lines(lines: list[str]) -> dict:
    """Lines other than the access log, by process: all of them, those about the storage, tracebacks."""
    every: Counter = Counter()
    about: Counter = Counter()
    tracebacks = 0
    samples: list[str] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            if "http" in entry or entry.get("logger") == "gunicorn.access":
                continue
            process = str(entry.get("pid", "?"))
            text = f"{entry.get('level', '')} {entry.get('logger', '')}: {entry.get('message', '')}"
            traceback = "exception" in entry or "stack" in entry or "Traceback" in text
            detail = text + " " + str(entry.get("exception", ""))
        else:  # not a line of the service's logging: a crash's own output
            process, text = "not JSON", line
            traceback = "Traceback (most recent call last)" in line
            detail = line
        every[process] += 1
        tracebacks += traceback
        if ABOUT_STORAGE.search(detail):
            about[process] += 1
            short = text[:200]
            if short not in samples and len(samples) < 8:
                samples.append(short)
    worst = about.most_common(1)[0] if about else ("-", 0)
    return {
        "lines": sum(every.values()),
        "lines_by_process": dict(every),
        "about_storage": sum(about.values()),
        "about_storage_by_process": dict(about),
        "most_from_one_process": worst[1],
        "worst_process": worst[0],
        "tracebacks": tracebacks,
        "samples": samples,
    }


# The table


def _rows(results: dict) -> list[dict]:
    rows = report.Rows()
    for phase, found in results["phases"].items():
        label = PHASES[phase]
        if "missing" in found:
            rows.info(f"{label}: phase not run", found["missing"])
            continue
        _load_rows(rows, label, results["plan"], found)
        _callback_rows(rows, label, found["callbacks"])
        _action_rows(rows, label, found["actions"])
        _drain_rows(rows, label, found)
        _fault_rows(rows, label, phase, found)
        _service_rows(rows, label, phase, found, results["plan"])
    return rows.rows


def _load_rows(rows: report.Rows, label: str, plan: dict, found: dict) -> None:
    seconds = plan["seconds"]
    callbacks, actions = found["callbacks"], found["actions"]
    rows.info(
        f"{label}: callbacks offered / accepted within the {seconds:g} s",
        f"{callbacks['offered'] / seconds:.1f}/s / {callbacks['held_per_s']:.1f}/s",
        f"asked {plan['callback_rate']:g}/s",
    )
    rows.info(
        f"{label}: keyed send_sms offered / answered within the {seconds:g} s",
        f"{actions['offered'] / seconds:.1f}/s / {actions['held_per_s']:.1f}/s",
        f"asked {plan['rate']:g}/s",
    )


def _callback_rows(rows: report.Rows, label: str, callbacks: dict) -> None:
    rows.info(f"{label}: callbacks, answers while it lasted", _answers(callbacks["answers_during_faults"]))
    rows.judged(f"{label}: callbacks answered 500", str(callbacks["answered_500"]), "0", callbacks["answered_500"] == 0)
    rows.judged(
        f"{label}: 503 answers to callbacks without Retry-After",
        str(callbacks["without_retry_after"]),
        "0",
        callbacks["without_retry_after"] == 0,
    )
    never = callbacks["offered"] - callbacks["accepted"]
    others = {k: v for k, v in callbacks["outcomes"].items() if k != "accepted"}
    rows.judged(f"{label}: callbacks never accepted", str(never) + (f" {others}" if others else ""), "0", never == 0)
    rows.judged(
        f"{label}: accepted callbacks not stored as events",
        f"{callbacks['not_stored']} of {callbacks['accepted']}",
        "0",
        callbacks["not_stored"] == 0,
    )
    for sub in callbacks["subscribers"]:
        rows.judged(
            f"{label}: subscriber {sub['subscriber']}: accepted events delivered",
            f"{sub['accepted_delivered']} of {callbacks['accepted']}",
            "all",
            sub["accepted_delivered"] == callbacks["accepted"],
        )
    several = callbacks["events_with_several_webhook_ids"]
    rows.judged(f"{label}: events delivered under two webhook-ids", str(several), "0", several == 0)


def _action_rows(rows: report.Rows, label: str, actions: dict) -> None:
    rows.info(f"{label}: keyed send_sms, answers while it lasted", _answers(actions["answers_during_faults"]))
    rows.judged(
        f"{label}: keyed send_sms answered 500", str(actions["answered_500"]), "0", actions["answered_500"] == 0
    )
    outcomes = actions["outcomes"]
    rows.judged(
        f"{label}: keyed send_sms sent",
        f"{outcomes.get('sent', 0)} of {actions['offered']}" + (f" {outcomes}" if len(outcomes) > 1 else ""),
        "all",
        outcomes.get("sent", 0) == actions["offered"],
    )
    rows.judged(
        f"{label}: duplicate SMS (a key launched twice at AllMySMS)",
        str(actions["duplicate_sms"]),
        "0",
        actions["duplicate_sms"] == 0,
    )
    wrong = len(actions["sent_without_sms"]) + actions["unknown_references"]
    rows.judged(f"{label}: keys 'sent' without their one SMS, SMS of no key", str(wrong), "0", wrong == 0)


def _drain_rows(rows: report.Rows, label: str, found: dict) -> None:
    journal, outbox = found["journal"], found["outbox"]
    rows.info(
        f"{label}: journal, most bytes seen",
        str(journal["most_bytes_seen"]),
        "" if journal["folder_exists"] else "no journal folder",
    )
    rows.judged(
        f"{label}: journal drained",
        f"{journal['waited_s']:.1f} s"
        if journal["drained"]
        else f"no: {journal['bytes_left']} bytes in {len(journal['files_left'])} files",
        "yes",
        journal["drained"],
    )
    rows.judged(
        f"{label}: outbox drained",
        f"{outbox['waited_s']:.1f} s"
        if outbox["drained"]
        else f"no: {outbox.get('queued')} queued, {outbox.get('pending')} pending {outbox.get('error', '')}".strip(),
        "yes",
        outbox["drained"],
    )


def _fault_rows(rows: report.Rows, label: str, phase: str, found: dict) -> None:
    before = found["log_before_faults"]
    rows.info(f"{label}: log lines about the database or disk before any fault", str(before["about_storage"]))
    for n, fault in enumerate(found["faults"], 1):
        log = fault["log"]
        rows.judged(
            f"{label} #{n}: log lines about it, most from one process",
            f"{log['most_from_one_process']} ({log['about_storage']} in all, {log['lines']} lines)",
            f"<= {LOG_LINES_PER_PROCESS[phase]}",
            log["most_from_one_process"] <= LOG_LINES_PER_PROCESS[phase],
        )
        rows.judged(f"{label} #{n}: tracebacks logged", str(log["tracebacks"]), "0", log["tracebacks"] == 0)
        ready = fault["readyz"]
        during = ", ".join(f"{k} x{v}" for k, v in sorted(ready["during"].items())) or "no sample"
        if phase == "postgres_outage":
            rows.judged(f"{label} #{n}: /readyz during it", during, "503 seen", ready["not_ready_seen"])
        else:
            rows.info(f"{label} #{n}: /readyz during it", during)
        again = ready["ready_again_after_s"]
        rows.judged(
            f"{label} #{n}: /readyz 200 again after it",
            "never" if again is None else f"after {again:g} s",
            "yes",
            again is not None,
        )


def _service_rows(rows: report.Rows, label: str, phase: str, found: dict, plan: dict) -> None:
    failures = found["healthz_failures"]
    rows.judged(f"{label}: /healthz answers other than 200", _answers(failures) if failures else "0", "0", not failures)
    metrics = found["metrics"]
    counted = metrics.get("connector_database_outages_total")
    if phase == "postgres_outage":
        rows.judged(
            f"{label}: outages counted (connector_database_outages_total)",
            "absent" if counted is None else f"{counted:g}",
            f">= {plan['outages']}",
            counted is not None and counted >= plan["outages"],
        )
    else:
        rows.info(
            f"{label}: outages counted (connector_database_outages_total)",
            "absent" if counted is None else f"{counted:g}",
        )
    for n, fault in enumerate(found["faults"], 1):
        rows.info(f"{label} #{n}: journal metrics at its end", _journal_metrics(fault["metrics_during"]))
    rows.info(f"{label}: journal metrics after the run", _journal_metrics(metrics))
    service = found["service"]
    rows.judged(
        f"{label}: connector serve running at the end", "yes" if service["running"] else "no", "yes", service["running"]
    )
    # A web or delivery worker that died (and was started again by its supervisor) is a crash all the same.
    rows.judged(
        f"{label}: worker processes that died during the run",
        str(service["children_replaced"]),
        "0",
        service["children_replaced"] == 0,
    )
    if phase == "disk_full":
        rows.info(
            f"{label}: filler written",
            f"{found['faults'][0].get('filler_bytes', 0) // 1024} KiB",
            f"tmpfs of {plan['disk_mb']} MB",
        )
        rows.judged(
            f"{label}: SQLite integrity_check after the run", found["integrity"], "ok", found["integrity"] == "ok"
        )


def _journal_metrics(metrics: dict) -> str:
    """E.g. "entries 80, bytes 30866" from {"connector_journal_entries": 80.0, ...}."""
    shown = [
        f"{name.removeprefix('connector_journal_')} {value:g}"
        for name, value in sorted(metrics.items())
        if name.startswith("connector_journal")
    ]
    return ", ".join(shown) or metrics.get("error", "absent")


def _answers(tallies: dict) -> str:
    """E.g. "200 x17, 503 x40, none x2" from {"HTTP 200": 17, ...}."""
    return (
        ", ".join(
            f"{what.replace('HTTP ', '').replace('no answer', 'none')} x{n}" for what, n in sorted(tallies.items())
        )
        or "none"
    )


if __name__ == "__main__":
    report.run(main)

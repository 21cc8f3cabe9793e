"""PostgreSQL for benchmark runs: each run on a schema of its own, made by `connector migrate` as a release
step would, and dropped at the end; or on a server of the run's own, to kill; and what the connector's
database holds."""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import servers
from sqlalchemy import bindparam, create_engine, text

from connector.storage.database import engine_url

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class Schemas:
    def __init__(self, base_url: str = POSTGRES_URL):
        self.base_url = base_url
        self.made: list[str] = []

    def new(self) -> str:
        """A DATABASE_URL on a new, migrated schema."""
        name = f"bench_{secrets.token_hex(4)}"
        self._admin(f"CREATE SCHEMA {name}")
        self.made.append(name)
        url = f"{self.base_url}?options=-csearch_path%3D{name}&application_name={name}"
        subprocess.run(
            [sys.executable, "-m", "connector.ops.cli", "migrate"],
            env=servers.clean_env(DATABASE_URL=url),
            check=True,
            capture_output=True,
            timeout=120,
        )
        return url

    def drop_all(self) -> None:
        for name in self.made:
            self._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n", n=name)
            self._admin(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        self.made.clear()

    def _admin(self, statement: str, **values) -> None:
        engine = create_engine(engine_url(self.base_url), isolation_level="AUTOCOMMIT")
        with engine.connect() as db:
            db.execute(text(statement), values)
        engine.dispose()


def counts(database_url: str) -> dict:
    """Rows in the connector's database (SQLite or PostgreSQL), read after its servers stopped."""
    engine = create_engine(engine_url(database_url))
    try:
        with engine.connect() as db:

            def count(table: str) -> int:
                return db.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()

            return {
                "events": count("events"),
                "deliveries": count("deliveries"),
                "attempts": count("attempts"),
                "queued": count("fanout"),
                "by_status": dict(db.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status")).all()),
            }
    finally:
        engine.dispose()


def outbox(database_url: str) -> dict:
    """Events stored, events waiting for fan-out (queued), deliveries pending or failed."""
    found = counts(database_url)
    return {
        "events": found["events"],
        "queued": found["queued"],
        "pending": found["by_status"].get("pending", 0),
        "failed": found["by_status"].get("failed", 0),
    }


def stored_events(database_url: str, ids: list[str]) -> set[str]:
    """Which of these event ids the connector's database holds."""
    if not ids:
        return set()
    engine = create_engine(engine_url(database_url))
    try:
        with engine.connect() as db:
            found = set()
            for start in range(0, len(ids), 500):  # SQLite allows a bounded number of parameters
                chunk = ids[start : start + 500]
                found |= set(
                    db.execute(
                        text("SELECT id FROM events WHERE id IN :ids").bindparams(bindparam("ids", expanding=True)),
                        {"ids": chunk},
                    ).scalars()
                )
            return found
    finally:
        engine.dispose()


def key_states(database_url: str, login: str, keys: list[str]) -> dict:
    """The state of each of these Idempotency-Keys of ``login`` (running, done, unknown)."""
    if not keys:
        return {}
    engine = create_engine(engine_url(database_url))
    try:
        with engine.connect() as db:
            rows = db.execute(
                text("SELECT key, state FROM idempotency_keys WHERE login = :login AND key IN :keys").bindparams(
                    bindparam("keys", expanding=True)
                ),
                {"login": login, "keys": keys},
            ).all()
    finally:
        engine.dispose()
    return {key: state for key, state in rows}


# A PostgreSQL server of the benchmark's own, to kill and start again


def postgres_bindir() -> Path | None:
    """Where PostgreSQL's server programs are: BENCH_POSTGRES_BIN, else `pg_config --bindir`, else the newest
    /usr/lib/postgresql/*/bin, else the folder of an `initdb` on the PATH."""
    candidates = []
    if os.environ.get("BENCH_POSTGRES_BIN"):
        candidates.append(Path(os.environ["BENCH_POSTGRES_BIN"]))
    if shutil.which("pg_config"):
        try:
            found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(found.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: [int(part) for part in re.findall(r"\d+", p.parent.name)],
        reverse=True,
    )
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    for bindir in candidates:
        if all((bindir / program).is_file() for program in _PROGRAMS):
            return bindir
    return None


def postgres_problem() -> str | None:
    """Why OwnPostgres cannot run here, or None."""
    if postgres_bindir() is None:
        return (
            "no PostgreSQL server programs (initdb, pg_ctl, postgres) found: install PostgreSQL, or set "
            "BENCH_POSTGRES_BIN to their folder"
        )
    if os.geteuid() == 0:
        if _unprivileged_user() is None:
            return "running as root with no unprivileged user (postgres, nobody) to run PostgreSQL as"
        if not (shutil.which("setpriv") or shutil.which("runuser")):
            return "running as root with neither setpriv nor runuser to run PostgreSQL as another user"
    return None


_PROGRAMS = ("initdb", "pg_ctl", "postgres")


def _unprivileged_user() -> pwd.struct_passwd | None:
    # initdb and postgres refuse to run as root.
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


class OwnPostgres:
    """A cluster made by initdb in a temporary folder, serving on a free port of 127.0.0.1 with trust
    authentication and fsync on. `crash()` is `pg_ctl stop -m immediate` (what a power cut or an OOM kill
    leaves: crash recovery at the next start); `start()` serves again on the same port and folder. Leaving the
    `with` stops it and removes the folder, also on Ctrl-C or an exception.

    The postmaster is this process's child, started through setpriv with a parent-death signal (SIGQUIT,
    PostgreSQL's immediate shutdown) so that it does not outlive a benchmark that is SIGKILLed; start it from
    the thread that lives as long as the run (the signal follows the thread that forked)."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.bindir = postgres_bindir()
        self.port = servers.free_port()
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self.user = _unprivileged_user() if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{servers.HOST}:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def __enter__(self) -> OwnPostgres:
        problem = postgres_problem()
        if problem:
            raise RuntimeError(problem)
        self.root = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
        try:
            if self.user is not None:
                os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            # -N: initdb's own files need no flush for a throwaway cluster; the server runs with fsync on.
            made = subprocess.run(
                self._as_owner(
                    [
                        str(self.bindir / "initdb"),
                        "-D",
                        str(self.data),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--locale=C",
                        "-N",
                    ]
                ),
                cwd=self.root,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if made.returncode != 0:
                raise RuntimeError(f"initdb failed ({made.returncode}): {made.stderr.strip()[-800:]}")
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if self.running:
                self._stop("fast")
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60) -> float:
        """Start the server and wait until it takes connections: the seconds that took."""
        started = time.monotonic()
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data),
            "-c",
            f"port={self.port}",
            "-c",
            f"listen_addresses={servers.HOST}",
            "-c",
            f"unix_socket_directories={self.root}",
            "-c",
            "fsync=on",
            "-c",
            "max_connections=300",
            "-c",
            "logging_collector=off",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._as_owner(argv, pdeathsig=True),
                cwd=self.root,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        import psycopg

        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with code {self.process.returncode}:\n{self._log_tail()}")
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return time.monotonic() - started
            except psycopg.Error:
                if time.monotonic() - started > timeout:
                    raise RuntimeError(
                        f"PostgreSQL took no connection within {timeout:.0f} s:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.1)

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: every backend ends at once, nothing is flushed or checkpointed."""
        self._stop("immediate")

    def _stop(self, mode: str) -> None:
        self._pg_ctl_stop(mode)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def _pg_ctl_stop(self, mode: str) -> None:
        stopped = subprocess.run(
            self._as_owner([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30"]),
            cwd=self.root,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if stopped.returncode != 0 and self.running:
            # pg_ctl could not do it (its signal is what matters): send the same signal itself.
            self.process.send_signal(signal.SIGQUIT if mode == "immediate" else signal.SIGINT)

    def _as_owner(self, argv: list[str], pdeathsig: bool = False) -> list[str]:
        setpriv = shutil.which("setpriv")
        if self.user is None:
            return ([setpriv, "--pdeathsig", "SIGQUIT", "--"] if pdeathsig and setpriv else []) + argv
        if setpriv:
            return [
                setpriv,
                f"--reuid={self.user.pw_uid}",
                f"--regid={self.user.pw_gid}",
                "--clear-groups",
                *(["--pdeathsig", "SIGQUIT"] if pdeathsig else []),
                "--",
                *argv,
            ]
        return [shutil.which("runuser"), "-u", self.user.pw_name, "--", *argv]

    @staticmethod
    def _env() -> dict:
        # The caller's PG* settings (PGDATA, PGPORT, ...) must not redirect the cluster's programs.
        return {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, "LC_ALL": "C"}

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

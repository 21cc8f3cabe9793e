"""The benchmark's server processes on 127.0.0.1: free ports, start, readiness, RSS and CPU sampling, and a
stop that always happens (terminate, then kill) — only for the processes started here, by their ids."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

HOST = "127.0.0.1"
MB = 1024 * 1024


# The same server settings `connector serve` uses (connector/serving.py), so only the app differs.
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

    def start(self, name: str, argv: list[str], env: dict, port: int, ready_path: str, *,
              workers: int, timeout: float = 60) -> Server:
        """Start `argv` and wait until GET `ready_path` answers 200 and all `workers` are up."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        server = Server(name, process, port, log_path)
        self.running.append(server)
        _wait_ready(server, ready_path, workers, timeout)
        return server

    def spawn(self, name: str, argv: list[str], env: dict) -> Server:
        """Start `argv`, a process that serves no HTTP (a delivery worker): no readiness to wait for."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
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
    from connector.serving import WORKER_CLASS
    return [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}",
            "--worker-class", worker_class or WORKER_CLASS,
            "--workers", str(workers), "--threads", str(threads), "--timeout", "90", "--graceful-timeout", "5",
            # gunicorn 27 puts one control socket per user at ~/.gunicorn/gunicorn.ctl: servers started side
            # by side would take it from each other.
            "--no-control-socket"]


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
    return fleet.start("sandbox", gunicorn_argv(port, workers, threads) + [spec], clean_env(), port, ready,
                       workers=workers)


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

"""Running the service: gunicorn through the app factory, and the built-in sandbox beside it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

log = logging.getLogger(__name__)


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Each worker builds its own app after the fork: nothing is shared but the environment and the
        # database.
        from . import create_app
        return create_app()


def worker_for(settings, store=None):
    """A delivery worker for these settings (over ``store``, or a store of its own)."""
    from . import open_store, policy
    from .delivery import Worker
    from .targets import AllowList
    return Worker(store or open_store(settings, replayable=True), policy=policy(settings),
                  allowed=AllowList(settings["CONNECTOR_ALLOWED_TARGETS"]),
                  concurrency=settings["CONNECTOR_DELIVERY_CONCURRENCY"],
                  lease_seconds=settings["CONNECTOR_LEASE_SECONDS"],
                  retention_seconds=settings["CONNECTOR_EVENT_RETENTION_DAYS"] * 86400,
                  keys_kept_for=settings["CONNECTOR_IDEMPOTENCY_HOURS"] * 3600)


def start_sandbox(port: int = 0, host: str = "127.0.0.1"):
    """The built-in sandbox on a real loopback port in a background thread: (base URL, stop, state)."""
    from .sandbox import SandboxState, create_sandbox_app, make_sandbox_server

    state = SandboxState()
    server = make_sandbox_server(create_sandbox_app(state), host, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox",
                              daemon=True)
    thread.start()
    return f"http://{host}:{server.server_port}", server.shutdown, state


def _point_sandbox_at(app, sandbox, settings: dict) -> None:
    """Do for the demo accounts what a customer does in the AllMySMS customer area: set the URL that
    receipts and replies are pushed to, here this service's own inbound URL."""
    from . import inbound
    from .accounts import inbound_token
    from .sandbox import DEMO_ACCOUNTS
    services = app.extensions["connector"]
    host = _reachable_host(settings)
    for login in DEMO_ACCOUNTS:
        services.accounts.remember(login)
        token = inbound_token(services.accounts.secret, login)
        sandbox.set_callback_url(login, inbound.url(f"http://{host}:{settings['PORT']}", token))


def _reachable_host(settings: dict) -> str:
    """The host to write in a URL to this service: a wildcard bind is reached on loopback."""
    return "127.0.0.1" if settings["CONNECTOR_HOST"] in ("0.0.0.0", "::") else settings["CONNECTOR_HOST"]


def _announce_console(settings: dict) -> None:
    """Where to log in to the console; the token itself never goes to the log, only where to read it."""
    from .console.access import token_path
    host = _reachable_host(settings)
    where = ("the CONNECTOR_OPERATOR_TOKEN setting" if settings["CONNECTOR_OPERATOR_TOKEN"]
             else f"the file {token_path(settings['CONNECTOR_DATA_DIR'])}")
    log.warning("Operator console at http://%s:%s/console; log in with the token in %s.", host, settings["PORT"],
                where)


def serve(settings: dict) -> None:
    """Start gunicorn; when no AllMySMS URL is set, first start the sandbox and point the workers at it."""
    sandbox = None
    if not settings["ALLMYSMS_BASE_URL"] and settings["CONNECTOR_SANDBOX"]:
        # Started in the master process, before the workers fork, so every worker talks to one sandbox.
        url, _, sandbox = start_sandbox(settings["CONNECTOR_SANDBOX_PORT"])
        os.environ["ALLMYSMS_BASE_URL"] = url
        os.environ["ALLMYSMS_SANDBOX"] = "true"
        log.warning("Sandbox mode: no message leaves this machine. Sandbox at %s; demo login 'demo', "
                    "API key 'demo-api-key'.", url)
    # Fail here, once and readably, rather than in every worker as it boots.
    from . import create_app
    app = create_app()
    if sandbox is not None:
        _point_sandbox_at(app, sandbox, settings)
        _announce_console(settings)
    # Workers open their own connections after the fork; none may be inherited from here.
    app.extensions["connector"].store.close()
    # Before any process of the service counts anything: the web and delivery workers inherit it.
    from .metrics import prepare_directory
    prepare_directory(settings["CONNECTOR_DATA_DIR"])
    supervisors = []
    if settings["CONNECTOR_DELIVERY_WORKER"] == "process":
        # Deliveries run in a process of their own: in the web workers they would compete with
        # callbacks for the interpreter lock, and a thread in this master would be inside SQLite
        # transactions whenever gunicorn forks a worker, leaving the child a lock it can never release.
        # More than one, because a worker's event loop and its database thread share one interpreter lock.
        supervisors = [WorkerProcess().start() for _ in range(settings["CONNECTOR_DELIVERY_PROCESSES"])]
    try:
        _Gunicorn(gunicorn_options(settings)).run()
    finally:
        for supervisor in supervisors:
            supervisor.stop()


def gunicorn_options(settings: dict) -> dict:
    """gunicorn's settings, for `connector serve` and for gunicorn.conf.py alike."""
    return {
        "bind": f"{settings['CONNECTOR_HOST']}:{settings['PORT']}",
        # Threads wait on AllMySMS and the database; processes add CPU. One per core, and two at least so
        # that one busy or restarting process never leaves nobody to answer.
        "workers": settings["CONNECTOR_WORKERS"] or max(2, os.cpu_count() or 1),
        "threads": settings["CONNECTOR_THREADS"],
        "worker_class": "gthread",
        # A request may wait for AllMySMS's read timeout: a worker is killed only well after that.
        "timeout": int(settings["ALLMYSMS_READ_TIMEOUT"]) + 30,
        "graceful_timeout": 20,
        "accesslog": "-",
        # gunicorn's control socket is one path per user: two services on one host would take it from
        # each other, and nothing here uses it.
        "control_socket_disable": True,
        # No query strings in the access log: AllMySMS-style callers may put keys there. The request id
        # is the one the caller got in X-Request-Id, to find the request's other lines.
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s',
        "logger_class": AccessLog,
        "child_exit": _child_exit,
    }


def _child_exit(_server, worker) -> None:
    from .metrics import process_ended
    process_ended(worker.pid)


class AccessLog(glogging.Logger):
    """gunicorn's logger, with inbound URL tokens (credentials) shown as fingerprints, every line masked
    (logs.Masking), and JSON lines when CONNECTOR_LOG_FORMAT is json."""

    _json = False

    def setup(self, cfg):
        from . import config, logs
        super().setup(cfg)
        settings = config.load()
        self._json = settings["CONNECTOR_LOG_FORMAT"] == "json"
        for handler in self.error_log.handlers + self.access_log.handlers:
            logs.equip(handler, settings, keep_format=not self._json)
        # The application's own lines go to the root logger; under plain gunicorn nobody else sets it up.
        logs.configure(settings)

    def atoms(self, resp, req, environ, request_time):
        from .inbound import masked
        atoms = super().atoms(resp, req, environ, request_time)
        for name in ("U", "r", "{raw_uri}e"):
            if isinstance(atoms.get(name), str):
                atoms[name] = masked(atoms[name])
        return atoms

    def access(self, resp, req, environ, request_time):
        if not self._json:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return
        atoms = self.atoms_wrapper_class(self.atoms(resp, req, environ, request_time))
        http = {"remote": atoms["h"], "method": atoms["m"], "path": atoms["U"], "status": _number(atoms["s"]),
                "bytes": _number(atoms["B"]), "duration_ms": _number(atoms["M"])}
        request_id = atoms["{x-request-id}o"]
        try:
            self.access_log.info(self.cfg.access_log_format, atoms,
                                 extra={"http": http, "request_id": None if request_id == "-" else request_id})
        except Exception:
            self.exception("the access log line could not be written")


def _number(text):
    return int(text) if isinstance(text, str) and text.isdigit() else text


class WorkerProcess:
    """`connector worker` as a child of `connector serve`, started again if it dies."""

    def __init__(self):
        self._stop = threading.Event()
        self.process: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True).start()
        return self

    def _supervise(self) -> None:
        while not self._stop.is_set():
            self.process = subprocess.Popen([sys.executable, "-m", "connector.cli", "worker",
                                             "--parent", str(os.getpid())])
            while self.process.poll() is None and not self._stop.wait(0.5):
                pass
            if self._stop.is_set():
                return
            from .metrics import process_ended
            process_ended(self.process.pid)
            log.warning("the delivery worker stopped (exit %s); starting it again", self.process.returncode)
            self._stop.wait(1.0)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        process = self.process
        if process and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()

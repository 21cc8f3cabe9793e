"""Running the service: gunicorn through the app factory, and the built-in sandbox beside it."""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import cast

from gunicorn.app.base import BaseApplication
from gunicorn.sock import BaseSocket

# The stubs describe gunicorn 26, which had no STOP_KEEPALIVE_LINGER.
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker  # type: ignore[attr-defined]

from connector import services
from connector.observe import processes
from connector.ops.access import AccessLog
from connector.ops.handoff import RequestThreads

log = logging.getLogger(__name__)

#: Seconds a delivery worker process has, past the grace, to record its outcomes and give back the rest.
SETTLE_TIME = 4.0


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
        from connector import create_app

        return create_app()


def worker_once_the_database_answers(settings, told_to_stop: Callable[[float], bool]):
    """A delivery worker for these settings, made once the database answers; None when ``told_to_stop`` (which
    waits up to the seconds given, and says whether the process is to stop) says so first. A worker started
    while the database is away waits for it quietly: one line then, one when it answers, none in between."""
    from connector.storage import schema
    from connector.storage.outage import Backoff, reason, unavailable

    backoff, store, waiting_since = Backoff(), None, None
    while True:
        try:
            if store is None:
                store = services.open_store(settings, replayable=True)
            # Asked again: the store may have been made without the database; a schema that is not this
            # version's stops the worker here (ConfigError), not at each of its turns.
            schema.check(store.engine)
            break
        except Exception as exc:
            if not unavailable(exc):
                raise
            # Once made, the store says it itself (store.outage), and when the database is back.
            if store is None and waiting_since is None:
                waiting_since = time.monotonic()
                log.error(
                    "The delivery worker cannot start: the database does not answer (%s). It starts as "
                    "soon as it does; nothing more is logged until then.",
                    reason(exc),
                )
            elif store is not None:
                store.outage.failed(exc)
            if told_to_stop(backoff.delay()):
                if store is not None:
                    store.close()
                return None
    if waiting_since is not None:
        log.warning(
            "The database answers again, after %.1f s: the delivery worker starts.", time.monotonic() - waiting_since
        )
    return services.build(settings, store=store).delivery_worker()


def run_worker(settings: dict, parent: int | None = None) -> None:
    """`connector worker`: deliver until SIGTERM or SIGINT (or, with ``parent``, until that process is gone),
    then finish the deliveries out within CONNECTOR_SHUTDOWN_GRACE and give back the others."""
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())

    def told_to_stop(seconds: float) -> bool:
        until = time.monotonic() + seconds
        while not stopped.wait(max(0.0, min(1.0, until - time.monotonic()))):
            # A worker started by `connector serve` must not outlive it, even when serve is SIGKILLed.
            if parent and os.getppid() != parent:
                return True
            if time.monotonic() >= until:
                return False
        return True

    worker = worker_once_the_database_answers(settings, told_to_stop)
    if worker is None:
        return
    worker.start()
    # A log line, not a print: with CONNECTOR_LOG_FORMAT=json every line of the output is JSON.
    logging.getLogger("connector.worker").info("delivering events; stop with Ctrl-C")
    while not told_to_stop(3600):
        pass
    grace = settings["CONNECTOR_SHUTDOWN_GRACE"]
    worker.stop(timeout=grace + SETTLE_TIME, grace=grace)
    worker.store.close()


def start_sandbox(port: int = 0, host: str = "127.0.0.1"):
    """The built-in sandbox on a real loopback port in a background thread: (base URL, stop, state)."""
    from connector.sandbox import SandboxState, create_sandbox_app, make_sandbox_server

    state = SandboxState()
    server = make_sandbox_server(create_sandbox_app(state), host, port)
    # Told to stop, it does within poll_interval; until then, each is a wake-up for nothing.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 1.0}, name="sandbox", daemon=True)
    thread.start()
    return f"http://{host}:{server.server_port}", server.shutdown, state


def _point_sandbox_at(app, sandbox, settings: dict) -> None:
    """Do for the demo accounts what a customer does in the AllMySMS customer area: set the URL that
    receipts and replies are pushed to, here this service's own inbound URL."""
    from connector.events import inbound
    from connector.sandbox import DEMO_ACCOUNTS
    from connector.web.accounts import inbound_token

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
    from connector.console.access import token_path

    host = _reachable_host(settings)
    where = (
        "the CONNECTOR_OPERATOR_TOKEN setting"
        if settings["CONNECTOR_OPERATOR_TOKEN"]
        else f"the file {token_path(settings['CONNECTOR_DATA_DIR'])}"
    )
    log.warning("Operator console at http://%s:%s/console; log in with the token in %s.", host, settings["PORT"], where)


def serve(settings: dict) -> None:
    """Start gunicorn; when no AllMySMS URL is set, first start the sandbox and point the workers at it."""
    sandbox = None
    if not settings["ALLMYSMS_BASE_URL"] and settings["CONNECTOR_SANDBOX"]:
        # Started in the master process, before the workers fork, so every worker talks to one sandbox.
        url, _, sandbox = start_sandbox(settings["CONNECTOR_SANDBOX_PORT"])
        os.environ["ALLMYSMS_BASE_URL"] = url
        os.environ["ALLMYSMS_SANDBOX"] = "true"
        log.warning(
            "Sandbox mode: no message leaves this machine. Sandbox at %s; demo login 'demo', API key 'demo-api-key'.",
            url,
        )
    # Fail here, once and readably, rather than in every worker as it boots.
    from connector import create_app

    app = create_app()
    if sandbox is not None:
        _point_sandbox_at(app, sandbox, settings)
        _announce_console(settings)
    # Workers open their own connections after the fork; none may be inherited from here.
    app.extensions["connector"].store.close()
    # Before any process of the service counts anything: the web and delivery workers inherit it.
    from connector.observe.metrics import prepare_directory

    prepare_directory(settings["CONNECTOR_DATA_DIR"])
    supervisors = []
    if settings["CONNECTOR_DELIVERY_WORKER"] == "process":
        # Deliveries run in a process of their own: in the web workers they would compete with
        # callbacks for the interpreter lock, and a thread in this master would be inside SQLite
        # transactions whenever gunicorn forks a worker, leaving the child a lock it can never release.
        # More than one, because a worker's event loop and its database thread share one interpreter lock.
        supervisors = [
            WorkerProcess(settings["CONNECTOR_SHUTDOWN_GRACE"]).start()
            for _ in range(settings["CONNECTOR_DELIVERY_PROCESSES"])
        ]
    try:
        # The delivery workers are told to stop as the web processes are, not after them: both within the grace.
        _Gunicorn(gunicorn_options(settings, on_stop=[supervisor.terminate for supervisor in supervisors])).run()
    finally:
        for supervisor in supervisors:
            supervisor.stop()


#: gthread, except that a request is read whole before a thread is given to it (ReadingWorker).
WORKER_CLASS = "connector.ops.serving.ReadingWorker"


def gunicorn_options(settings: dict, on_stop: Sequence[Callable[[], None]] = ()) -> dict:
    """gunicorn's settings, for `connector serve` and for gunicorn.conf.py alike; ``on_stop`` is called as the
    service begins to stop."""
    return {
        "bind": f"{settings['CONNECTOR_HOST']}:{settings['PORT']}",
        # Threads wait on AllMySMS and the database; processes add CPU. One per core, and two at least so
        # that one busy or restarting process never leaves nobody to answer.
        "workers": settings["CONNECTOR_WORKERS"] or max(2, os.cpu_count() or 1),
        "threads": settings["CONNECTOR_THREADS"],
        "worker_class": WORKER_CLASS,
        # A request may wait for AllMySMS's read timeout: a worker is killed only well after that.
        "timeout": int(settings["ALLMYSMS_READ_TIMEOUT"]) + 30,
        # On SIGTERM, each process answers what it holds for this long at most, then the master kills it.
        "graceful_timeout": math.ceil(settings["CONNECTOR_SHUTDOWN_GRACE"]),
        "on_starting": partial(_stop_gracefully, on_stop=list(on_stop)),
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


def _stop_gracefully(arbiter, *, on_stop: list[Callable[[], None]]) -> None:
    """gunicorn's on_starting hook: when the master stops (SIGTERM, SIGINT), it first closes the door to new
    connections, then calls ``on_stop``, then does what it always does (closes its listeners, tells the web
    processes to stop, waits for them at most graceful_timeout)."""
    stop = arbiter.stop

    def stopping(graceful: bool = True):
        # The listeners are shared with another process (a new master after USR2, systemd's sockets) when
        # gunicorn would not remove a Unix socket's file either: they stay open then, as they were.
        if arbiter.reexec_pid == arbiter.master_pid == 0 and not arbiter.systemd and not arbiter.cfg.reuse_port:
            for listener in arbiter.LISTENERS:
                _refuse_new_connections(listener)
        for call in on_stop:
            try:
                call()
            except Exception:
                log.exception("could not tell a process to stop")
        stop(graceful)

    arbiter.stop = stopping


#: Linux's SO_ATTACH_FILTER (socket(7)): Python's socket module does not name it.
_SO_ATTACH_FILTER = 26


def _refuse_new_connections(listener) -> None:
    """Have the kernel drop every new connection to ``listener`` (a socket filter that keeps no packet), while
    the connections it has already queued stay, for the web processes to accept and answer before they close
    it. Closed at once, the socket would reset them: clients that connected and sent their request, never
    answered. A client dropped this way tries again a second later and is refused, the socket gone by then.
    Linux only: elsewhere the socket is simply closed once its queue is emptied, a moment that a client
    connecting at that very instant can still fall into."""
    if not sys.platform.startswith("linux") or listener.family not in (socket.AF_INET, socket.AF_INET6):
        return
    import ctypes

    class Instruction(ctypes.Structure):  # struct sock_filter
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):  # struct sock_fprog
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    keep_nothing = (Instruction * 1)(Instruction(0x06, 0, 0, 0))  # BPF_RET | BPF_K: keep 0 bytes of the packet
    try:
        listener.setsockopt(
            socket.SOL_SOCKET,
            _SO_ATTACH_FILTER,
            bytes(Program(1, ctypes.cast(keep_nothing, ctypes.POINTER(Instruction)))),
        )
    except OSError as exc:
        log.warning("new connections could not be turned away before stopping (%s)", exc)


#: The answer to a request still arriving when a stopping process can wait for it no longer: it was not
#: handled, so a client or proxy may safely send it again (to another process).
_STOPPING = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class ReadingWorker(ThreadWorker):
    """gunicorn's threaded worker, but each request is read whole (headers and body) by the worker's event
    loop before a thread is given to it. gthread hands a connection to a thread as soon as a byte arrives,
    and the thread then blocks on the socket: a few dozen clients trickling their requests held every
    thread, and /healthz waited behind them. Here such a client holds a socket and a buffer, never a thread,
    and is cut off when CONNECTOR_REQUEST_READ_TIMEOUT is up. Told to stop, it takes no new connection and
    answers those it holds, requests still arriving included, within CONNECTOR_SHUTDOWN_GRACE."""

    def init_process(self):
        from connector import config

        settings = config.load()
        self._read_timeout = settings["CONNECTOR_REQUEST_READ_TIMEOUT"]
        # Past what the app accepts, a thread takes over at once: the app answers 413 without reading on.
        self._body_limit = max(settings["CONNECTOR_MAX_BODY_BYTES"], settings["CONNECTOR_MAX_CALLBACK_BYTES"])
        cfg = self.cfg
        self._head_limit = (
            (cfg.limit_request_line or 8190)
            + 4
            + (cfg.limit_request_fields or 100) * ((cfg.limit_request_field_size or 8190) + 2)
        )
        self._reading: dict = {}
        self._stopped_at: float | None = None
        # A stopping process reads requests that are arriving for this long, then has the rest of the grace
        # to answer them.
        grace = cfg.graceful_timeout
        self._read_while_stopping = max(grace / 2, grace - 1.0)
        super().init_process()

    def get_thread_pool(self):
        # Requests are handed to threads without stalling the event loop (handoff.py).
        return RequestThreads(self.cfg.threads)

    def handle_exit(self, sig, frame):
        processes.stop_taking_work()  # SIGTERM: /readyz says so from now on
        super().handle_exit(sig, frame)

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            self._stop_listening()

    def _stop_listening(self):
        """Stopping: accept what the listeners have queued (connections made, requests perhaps sent) to answer
        it, then close them, so that no connection waits any more on this process. The service's listening
        socket is gone once every process has closed it: new connections are refused (_refuse_new_connections
        has the kernel drop them meanwhile, when the whole service stops)."""
        listeners: list[BaseSocket] = self.sockets  # type: ignore[assignment]  # the stubs say plain sockets
        for listener in listeners:
            if listener.sock is None:
                continue
            listener.setblocking(False)
            while True:
                try:
                    client, address = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno == errno.ECONNABORTED:
                        continue
                    break
                self.nr_conns += 1
                client.setblocking(True)
                self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))
            listener.close()

    def enqueue_req(self, conn):
        # Runs on the event loop only (accept, a kept-alive socket becoming readable, a pipelined request).
        if self.cfg.is_ssl or conn.is_http2:
            return super().enqueue_req(conn)  # a TLS record cannot be read ahead of its handshake
        arrival = _Arrival(time.monotonic() + self._read_timeout)
        if conn.parser is not None:
            # Bytes of the next request a previous one read ahead: they start this one.
            arrival.data += conn.parser.unreader.take_buffered()
            if arrival.ready(self._head_limit, self._body_limit):
                return self._hand_over(conn, arrival)
        conn.sock.setblocking(False)
        self._reading[conn] = arrival
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_bytes, conn))
        return None

    def _on_bytes(self, conn, _sock):
        arrival = self._reading[conn]
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(conn)
            return
        arrival.data += chunk
        if arrival.ready(self._head_limit, self._body_limit, fresh=chunk):
            self.poller.unregister(conn.sock)
            del self._reading[conn]
            self._hand_over(conn, arrival)
        elif arrival.expects_continue and not arrival.continued:
            # The client waits for this before it sends the body; a second one from gunicorn later is
            # allowed (a client reads any number of 1xx answers).
            arrival.continued = True
            _send_quietly(conn.sock, b"HTTP/1.1 100 Continue\r\n\r\n")

    def _hand_over(self, conn, arrival):
        conn.arrived = bytes(arrival.data)
        super().enqueue_req(conn)

    def handle(self, conn):
        arrived = getattr(conn, "arrived", None)
        if arrived is not None:
            conn.arrived = None
            conn.data_ready = True
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(arrived)
        return super().handle(conn)

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and self._stopped_at is None:
            self._stopped_at = now
        for conn, arrival in list(self._reading.items()):
            deadline = arrival.deadline
            if self._stopped_at is not None:
                # Stopping: a request that is arriving is read to its end, within the grace; a connection
                # that has sent nothing yet gets as long as gthread gives a kept-alive one.
                deadline = min(
                    deadline, self._stopped_at + (self._read_while_stopping if arrival.data else STOP_KEEPALIVE_LINGER)
                )
            if deadline <= now:
                if arrival.data:
                    _send_quietly(
                        conn.sock,
                        _STOPPING
                        if self._stopped_at is not None and arrival.deadline > now
                        else b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                    )
                self._drop(conn)

    def _drop(self, conn):
        self.poller.unregister(conn.sock)
        del self._reading[conn]
        self.nr_conns -= 1
        conn.close()


def _send_quietly(sock, data: bytes) -> None:
    # Non-blocking and best effort: a client that does not read its answer gets nothing more from us.
    try:
        sock.send(data)
    except OSError:
        pass


_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _Arrival:
    """The bytes of one request as they come in, and whether they make a whole request yet. Anything
    malformed counts as whole: gunicorn's own parser then refuses it, with the answer it always gives."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.data = bytearray()
        self.expects_continue = self.continued = False
        self._body_at: int | None = None
        self._length: int | None = None  # None: chunked
        self._whole = False

    def ready(self, head_limit: int, body_limit: int, fresh: bytes = b"\n") -> bool:
        if self._whole:
            return True
        if self._body_at is None:
            if b"\n" not in fresh:
                return len(self.data) > head_limit
            end = self.data.find(b"\r\n\r\n")
            if end < 0:
                return len(self.data) > head_limit
            self._body_at = end + 4
            self._whole = self._read_head(bytes(self.data[:end]), body_limit)
            if self._whole:
                return True
        if self._length is not None:
            return len(self.data) - self._body_at >= self._length
        # Chunked: looked at again only when a line may have ended.
        return b"\n" in fresh and self._chunked_end(body_limit)

    def _read_head(self, head: bytes, body_limit: int) -> bool:
        """Note the body's framing; True when a thread should take over with the head alone."""
        length, chunked = None, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                if length is not None or not value.isdigit():
                    return True
                length = int(value)
            elif name == b"transfer-encoding":
                if not value.endswith(b"chunked"):
                    return True
                chunked = True
            elif name == b"expect" and value == b"100-continue":
                self.expects_continue = True
        if chunked and length is not None:
            return True
        self._length = None if chunked else (length or 0)
        return self._length is not None and self._length > body_limit

    def _chunked_end(self, body_limit: int) -> bool:
        data, at, total = self.data, cast(int, self._body_at), 0  # the headers were read: the body's start is known
        while True:
            line_end = data.find(b"\r\n", at)
            if line_end < 0:
                return len(data) - at > 1024  # no chunk-size line is that long
            size = bytes(data[at:line_end]).split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size):
                return True
            total += int(size, 16)
            if total > body_limit:
                return True
            if int(size, 16) == 0:
                return data.find(b"\r\n\r\n", line_end) >= 0  # the trailers, if any, and the empty line
            at = line_end + 2 + int(size, 16) + 2
            if at > len(data):
                return False


def _child_exit(_server, worker) -> None:
    from connector.observe.metrics import process_ended

    process_ended(worker.pid)


class WorkerProcess:
    """`connector worker` as a child of `connector serve`, started again if it dies."""

    def __init__(self, grace: float = 25.0):
        self.grace = grace  # the worker's CONNECTOR_SHUTDOWN_GRACE
        self._stop = threading.Event()
        self._lock = threading.Lock()  # between the supervising thread and the one telling it to stop
        self._told_at: float | None = None
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        # The first one from here, before gunicorn forks its workers: Popen waits for the child's exec on a
        # pipe, which a process forked meanwhile would hold open (and Popen waiting) for as long as it lives.
        self.process = self._spawn()
        threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True).start()
        return self

    @staticmethod
    def _spawn() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "connector.ops.cli", "worker", "--parent", str(os.getpid())])

    def _supervise(self) -> None:
        while True:
            process = cast(subprocess.Popen[bytes], self.process)  # set before this thread starts; never unset
            while process.poll() is None and not self._stop.wait(0.5):
                pass
            if self._stop.is_set():
                return
            from connector.observe.metrics import process_ended

            process_ended(process.pid)
            log.warning("the delivery worker stopped (exit %s); starting it again", process.returncode)
            if self._stop.wait(1.0):
                return
            process = self._spawn()
            with self._lock:
                self.process, late = process, self._told_at is not None
            if late:  # told to stop while this one was starting
                process.terminate()
                return

    def terminate(self) -> None:
        """Tell the worker to stop (SIGTERM: it finishes its deliveries within the grace, gives back the
        others), without waiting for it."""
        with self._lock:
            self._stop.set()
            process, first = self.process, self._told_at is None
            if first:
                self._told_at = time.monotonic()
        if first and process and process.poll() is None:
            process.terminate()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the worker, waiting at most ``timeout`` seconds from when it was told (by default the grace
        and the time to record what it did), then kill it: what it held is sent again after the lease."""
        self.terminate()
        process = self.process
        if process is None:
            return
        waited = time.monotonic() - cast(float, self._told_at)  # set by terminate()
        try:
            process.wait(max(0.0, (self.grace + SETTLE_TIME if timeout is None else timeout) - waited))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

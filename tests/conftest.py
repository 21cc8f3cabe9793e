"""Shared fixtures: the sandbox and the connector as real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from werkzeug.wrappers import Request, Response

from connector import create_app
from connector.sandbox import SandboxState, create_sandbox_app, make_sandbox_server
from connector.storage import schema
from connector.storage.database import default_url, engine_url

DEMO = ("demo", "demo-api-key")


class LoopbackServer:
    """A WSGI app served on a free port of 127.0.0.1 by a background thread."""

    def __init__(self, wsgi_app):
        self._server = make_sandbox_server(wsgi_app)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        # A short poll interval keeps shutdown, and so every test's teardown, quick.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, monkeypatch):
    """Every test gets its own SQLite database and secret key."""
    monkeypatch.setenv("CONNECTOR_DATA_DIR", str(tmp_path / "var"))
    for name in ("DATABASE_URL", "ALLMYSMS_BASE_URL", "CONNECTOR_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)


#: Where the PostgreSQL half of the store and delivery tests runs; each test gets a schema of its own.
POSTGRES_URL = os.environ.get("CONNECTOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_postgres_problem: list[str] = []


def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None; asked once per run."""
    if not _postgres_problem:
        import psycopg

        try:
            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
            _postgres_problem.append("")
        except psycopg.Error as exc:
            _postgres_problem.append(
                f"PostgreSQL is not reachable at {POSTGRES_URL} (set CONNECTOR_TEST_POSTGRES_URL): {str(exc).strip()}"
            )
    return _postgres_problem[0] or None


@contextmanager
def postgres_schema(migrated: bool = True):
    """A fresh schema (migrated unless asked not to) on the test PostgreSQL: the DATABASE_URL that uses it.
    Dropped at the end, after ending the connections that the test's engines left open (they carry the
    schema's name)."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{name}&application_name={name}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    try:
        from sqlalchemy import create_engine

        if migrated:
            engine = create_engine(engine_url(url))
            schema.migrate(engine)
            engine.dispose()
        yield url
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,))
            admin.execute(f"DROP SCHEMA {name} CASCADE")


def require(problem: str | None, module: bool = False) -> None:
    """Skip the test (or the whole module), saying why, when ``problem`` names something missing; under
    CI=true fail instead, since a CI run that skipped PostgreSQL, Node or the browser would pass untested."""
    if not problem:
        return
    if os.environ.get("CI", "").strip().lower() in ("true", "1"):
        pytest.fail(f"{problem} (CI=true: what the tests need must be there)", pytrace=False)
    pytest.skip(problem, allow_module_level=module)


@contextmanager
def postgres_database(monkeypatch, migrated: bool = True):
    """A schema of the test's own on PostgreSQL as DATABASE_URL (in the environment too, so create_app and
    worker processes pick it up); where PostgreSQL cannot be reached, the test is skipped saying why (failed
    under CI=true)."""
    require(postgres_unreachable())
    with postgres_schema(migrated) as url:
        monkeypatch.setenv("DATABASE_URL", url)
        yield url


@pytest.fixture
def postgres(monkeypatch):
    with postgres_database(monkeypatch) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, monkeypatch, tmp_path):
    """Run the test once on each store backend: the DATABASE_URL in use."""
    if request.param == "sqlite":
        yield default_url(str(tmp_path / "var"))
        return
    with postgres_database(monkeypatch) as url:
        yield url


@pytest.fixture
def store(backend):
    """The store on each backend; a test module may define its own (a replayable one, say)."""
    from connector.storage.store import Store

    made = Store(backend, secret_key="k" * 64)
    yield made
    made.close()


@dataclass
class Sandbox:
    url: str
    state: SandboxState


@pytest.fixture
def sandbox():
    state = SandboxState()
    server = LoopbackServer(create_sandbox_app(state))
    yield Sandbox(server.url, state)
    server.stop()
    state.close()


def connector_settings(upstream_url: str, **overrides) -> dict:
    return {"ALLMYSMS_BASE_URL": upstream_url, "CONNECTOR_VALIDATE_OUTPUT": True, **overrides}


@pytest.fixture
def app(sandbox):
    return create_app(connector_settings(sandbox.url))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner():
    """Runs the `connector` command in this process: ``runner.invoke(connector, ["check"])``."""
    from click.testing import CliRunner

    return CliRunner()


class Api:
    """The connector as a platform calls it: a real server, a requests session with Basic auth."""

    def __init__(self, url: str, auth=DEMO):
        self.url = url
        self.session = requests.Session()
        self.session.auth = auth

    def action(self, key: str, body=None, **kwargs):
        return self.session.post(f"{self.url}/v1/actions/{key}", json=body, timeout=30, **kwargs)

    def get(self, path: str, **kwargs):
        return self.session.get(self.url + path, timeout=30, **kwargs)


@pytest.fixture
def serve():
    """Start a connector app as a real server; every server is stopped at the end of the test."""
    servers = []

    def start(app) -> Api:
        server = LoopbackServer(app)
        servers.append(server)
        return Api(server.url)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def api(app, serve):
    return serve(app)


@pytest.fixture
def through(scripted, serve):
    """The connector, as a real server, in front of the scripted upstream."""

    def build(**settings):
        return serve(create_app(connector_settings(scripted.url, **settings)))

    return build


@dataclass
class Scripted:
    """A canned reply of the scripted upstream."""

    status: int = 200
    body: bytes | str | dict = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


class ScriptedUpstream:
    """A stand-in for the outside world that answers what a test scripts, and records what it was asked."""

    def __init__(self):
        self.replies: deque[Scripted] = deque()
        self.default = Scripted(body={"status": 100, "statusText": "ok"})
        self.requests: list[dict] = []
        self.server = LoopbackServer(self._wsgi)
        self.url = self.server.url

    def script(self, *replies: Scripted):
        self.replies.extend(replies)

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        self.requests.append(
            {"path": request.path, "form": request.form.to_dict(), "json": request.get_json(silent=True)}
        )
        reply = self.replies.popleft() if self.replies else self.default
        if reply.delay:
            time.sleep(reply.delay)  # the upstream being slow is the behaviour under test
        body = json.dumps(reply.body) if isinstance(reply.body, dict) else reply.body
        response = Response(
            body,
            status=reply.status,
            headers=reply.headers,
            content_type=reply.headers.get("Content-Type", "application/json"),
        )
        return response(environ, start_response)


@pytest.fixture
def scripted():
    upstream = ScriptedUpstream()
    yield upstream
    upstream.server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Subscriber:
    """A webhook receiver on loopback: records every delivery; answers as a test scripts, per path."""

    def __init__(self):
        self.received: list[dict] = []
        self.scripts: dict[str, deque] = {}
        self.server = LoopbackServer(self._wsgi)
        self.url = self.server.url

    def target(self, path: str = "/hook") -> str:
        return self.url + path

    def script(self, path: str, *replies: Scripted):
        self.scripts.setdefault(path, deque()).extend(replies)

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        arrived = time.monotonic()
        body = request.get_data()
        replies = self.scripts.get(request.path)
        reply = replies.popleft() if replies else Scripted(status=200, body=b"ok")
        if reply.delay:
            time.sleep(reply.delay)  # a slow subscriber is the behaviour under test
        self.received.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "body": body,
                "status": reply.status,
                "at": arrived,
            }
        )
        body_out = json.dumps(reply.body) if isinstance(reply.body, dict) else reply.body
        return Response(body_out, status=reply.status, headers=reply.headers)(environ, start_response)

    def deliveries(self, path: str = "/hook", ok_only: bool = True) -> list[dict]:
        return [r for r in list(self.received) if r["path"] == path and (not ok_only or 200 <= r["status"] < 300)]


@pytest.fixture
def subscriber():
    receiver = Subscriber()
    yield receiver
    receiver.server.stop()


def stored_receipt(event_id: str, **more) -> dict:
    """A delivery receipt as the store takes it (EventStore.add), with ``more`` of its fields (``raw``)."""
    return {
        "id": event_id,
        "type": "sms.delivery_receipt",
        "timestamp": "2026-12-01T08:30:03Z",
        "data": {"sms_id": event_id},
        **more,
    }


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    """Poll until ``condition()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Clock:
    """A clock tests move by hand, so scheduled campaigns and receipts come due without sleeping."""

    def __init__(self):
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += timedelta(**delta)

    def paris(self, **delta):
        return (self.now + timedelta(**delta)).astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M:%S")


class CuttableProxy:
    """A TCP forwarder on 127.0.0.1 to a server (the test PostgreSQL): ``cut()`` drops every connection and
    refuses new ones until ``restore()``, as a database that goes away and comes back looks to the service."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self._open.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def restore(self):
        self._open.set()

    def close(self):
        self._closed = True
        self.cut()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self._listener.close()


@pytest.fixture
def postgres_through_proxy(monkeypatch):
    """A migrated PostgreSQL schema of the test's own, reached through a CuttableProxy: (DATABASE_URL, proxy)."""
    from urllib.parse import urlsplit

    with postgres_database(monkeypatch) as url:
        parts = urlsplit(url)
        proxy = CuttableProxy(parts.hostname, parts.port or 5432)
        proxied = url.replace(f"{parts.hostname}:{parts.port or 5432}", f"127.0.0.1:{proxy.port}", 1)
        monkeypatch.setenv("DATABASE_URL", proxied)
        try:
            yield proxied, proxy
        finally:
            proxy.close()


@pytest.fixture
def live_service(sandbox, serve):
    """The connector on its sandbox, as `connector serve` runs it: a delivery worker, receipts pushed to
    the demo account's inbound URL, and 127.0.0.1 allowed as a target for the tests' local receivers."""
    app = create_app(
        connector_settings(
            sandbox.url,
            ALLMYSMS_SANDBOX=True,
            CONNECTOR_ALLOWED_TARGETS="127.0.0.1",
            CONNECTOR_RETRY_SCHEDULE="0,0.2,0.2",
        )
    )
    worker = app.extensions["connector"].delivery_worker()
    worker.poll_interval = 0.01
    worker.start()
    api = serve(app)
    sandbox.state.set_callback_url("demo", api.get("/v1/me").json()["inbound_url"])
    yield api
    worker.stop()

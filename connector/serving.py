"""Running the service: gunicorn through the app factory, and the built-in sandbox beside it."""

from __future__ import annotations

import logging
import os
import threading

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
        # Each worker builds its own app after the fork: nothing is shared but the environment.
        from . import create_app
        return create_app()


def start_sandbox(port: int = 0, host: str = "127.0.0.1") -> tuple[str, callable]:
    """The built-in sandbox on a real loopback port in a background thread: (base URL, stop)."""
    from .sandbox import create_sandbox_app, make_sandbox_server

    server = make_sandbox_server(create_sandbox_app(), host, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox",
                              daemon=True)
    thread.start()
    return f"http://{host}:{server.server_port}", server.shutdown


def serve(settings: dict) -> None:
    """Start gunicorn; when no AllMySMS URL is set, first start the sandbox and point the workers at it."""
    if not settings["ALLMYSMS_BASE_URL"] and settings["CONNECTOR_SANDBOX"]:
        # Started in the master process, before the workers fork, so every worker talks to one sandbox.
        url, _ = start_sandbox(settings["CONNECTOR_SANDBOX_PORT"])
        os.environ["ALLMYSMS_BASE_URL"] = url
        log.warning("Sandbox mode: no message leaves this machine. Sandbox at %s; demo login 'demo', "
                    "API key 'demo-api-key'.", url)
    # Fail here, once and readably, rather than in every worker as it boots.
    from . import create_app
    create_app()
    options = {
        "bind": f"{settings['CONNECTOR_HOST']}:{settings['PORT']}",
        "workers": settings["CONNECTOR_WORKERS"],
        "threads": settings["CONNECTOR_THREADS"],
        "worker_class": "gthread",
        "timeout": int(settings["ALLMYSMS_READ_TIMEOUT"]) + 30,
        "graceful_timeout": 20,
        "accesslog": "-",
        # No query strings in the access log: AllMySMS-style callers may put keys there.
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
    }
    _Gunicorn(options).run()

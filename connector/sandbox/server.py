"""Serving the sandbox over HTTP without writing query strings (API keys, numbers) to the access log."""

import logging

from werkzeug.serving import make_server

from connector.observe import logs


def make_sandbox_server(app, host="127.0.0.1", port=0):
    """A threaded werkzeug server for a sandbox app; port 0 picks a free port (see .server_port).

    Feed methods accept GET, so `apiKey`, phone numbers and whole feeds can travel in the URL, and
    werkzeug logs the full URL of each request: its logger carries the logs' masking filter, query
    strings cut out, whatever handlers it writes to.
    """
    logs.guard(logging.getLogger("werkzeug"), queries=True)
    return make_server(host, port, app, threaded=True)

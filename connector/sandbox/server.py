"""Serving the sandbox over HTTP without writing query strings (API keys, numbers) to the access log."""

import re

from werkzeug.serving import WSGIRequestHandler, make_server

_QUERY = re.compile(r"\?[^\s\"']*")


class RedactingRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler with every query string cut out of its log lines.

    Feed methods accept GET, so `apiKey`, phone numbers and whole feeds can travel in the URL,
    and the stock handler logs the full URL of each request.
    """

    def log(self, type, message, *args):
        text = message % args if args else message
        super().log(type, "%s", _QUERY.sub("?[redacted]", text))


def make_sandbox_server(app, host="127.0.0.1", port=0):
    """A threaded werkzeug server for a sandbox app; port 0 picks a free port (see .server_port)."""
    return make_server(host, port, app, threaded=True, request_handler=RedactingRequestHandler)

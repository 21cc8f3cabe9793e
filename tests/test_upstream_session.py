"""The AllMySMS client's session: what the environment says of AllMySMS's address (proxy, NO_PROXY) is read
once, when the service starts, and then used by every call."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from connector.sending.upstream import new_session
from tests.conftest import LoopbackServer


class _Recorder:
    """A WSGI app answering 200 and keeping each request line's target (a proxy sees the whole URL)."""

    def __init__(self):
        self.targets: list[str] = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.targets.append(environ.get("REQUEST_URI") or request.full_path)
        return Response("{}", mimetype="application/json")(environ, start_response)


def test_a_proxy_the_environment_names_at_start_carries_every_call(monkeypatch):
    proxy = _Recorder()
    server = LoopbackServer(proxy)
    try:
        monkeypatch.setenv("HTTP_PROXY", server.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        session = new_session(2, "http://allmysms.invalid")
        monkeypatch.delenv("HTTP_PROXY")  # read at start: a change later is not seen
        for _ in range(2):
            assert session.post("http://allmysms.invalid/http/9.0/getInfo/", data={"a": "b"}, timeout=10).ok
        assert proxy.targets == ["http://allmysms.invalid/http/9.0/getInfo/"] * 2
    finally:
        server.stop()


def test_an_address_no_proxy_names_is_called_directly(monkeypatch):
    upstream, proxy = _Recorder(), _Recorder()
    servers = [LoopbackServer(upstream), LoopbackServer(proxy)]
    try:
        monkeypatch.setenv("HTTP_PROXY", servers[1].url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        session = new_session(2, servers[0].url)
        assert session.post(f"{servers[0].url}/http/9.0/getInfo/", data={"a": "b"}, timeout=10).ok
        assert len(upstream.targets) == 1 and proxy.targets == []
    finally:
        for server in servers:
            server.stop()

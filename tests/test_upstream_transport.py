"""How the AllMySMS client reaches its address: what the environment says of it (proxy, NO_PROXY, proxy login,
CA bundle) is read once, when the service starts, then used by every call; certificates are checked."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from urllib.parse import urlencode

import pytest
import trustme
import urllib3
from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connector.errors import ConfigError, UpstreamUnavailable
from connector.sending.upstream import AllMySMS, Credentials, Transport, form_encoded
from tests.conftest import LoopbackServer

ACCOUNT = b'{"status": "Active Account", "credits": "12"}'
FEED = '{"DATA":{"MESSAGE":"Hi","SMS":[{"MOBILEPHONE":"33611111111"}]}}'
TIMEOUT = urllib3.Timeout(connect=5, read=10)


class _Recorder:
    """A WSGI app answering an account reply and keeping each request line's target (a proxy sees the whole
    URL) and the headers that matter here."""

    def __init__(self):
        self.targets: list[str] = []
        self.proxy_logins: list[str | None] = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.targets.append(environ.get("REQUEST_URI") or request.full_path)
        self.proxy_logins.append(request.headers.get("Proxy-Authorization"))
        return Response(ACCOUNT, mimetype="application/json")(environ, start_response)


@pytest.fixture
def recorders():
    started = []

    def start(count):
        for _ in range(count):
            recorder = _Recorder()
            started.append(LoopbackServer(recorder))
            yield recorder, started[-1].url

    yield start
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def _no_proxy_of_the_machine(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# The characters whose escapes interact, often together, as in feeds; and any text at all.
_FORM_TEXT = st.text(st.sampled_from('%+ &="{}:,aZ9~é€😀\n'), max_size=40) | st.text(
    st.characters(codec="utf-8"), max_size=40
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_FORM_TEXT, _FORM_TEXT, max_size=4), st.integers(0, 3000))
@example({"smsData": '{"MESSAGE":"100% + 1"}'}, 2)
def test_a_form_is_encoded_to_the_bytes_urlencode_gives(fields, repeat):
    """Short fields, and long ones (a feed of many recipients) where every escape applies many times over."""
    assert form_encoded(fields) == urlencode(fields).encode()
    long = {key: value * repeat for key, value in fields.items()}
    assert form_encoded(long) == urlencode(long).encode()


def test_a_feed_in_another_script_is_encoded_as_urlencode_does():
    feed = '{"DATA":{"MESSAGE":"' + "".join(chr(c) for c in range(0x4E00, 0x4F00)) * 20 + '% +"}}'
    assert form_encoded({"smsData": feed}) == urlencode({"smsData": feed}).encode()


def _posted(transport: Transport, path: str = "/http/9.0/getInfo/") -> bytes:
    response = transport.post(path, timeout=TIMEOUT, form={"login": "demo", "apiKey": "k"})
    try:
        return response.read()
    finally:
        response.release_conn()


def test_a_proxy_the_environment_names_at_start_carries_every_call(monkeypatch, recorders):
    [(proxy, proxy_url)] = recorders(1)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    transport = Transport("http://allmysms.invalid/base", 2)
    monkeypatch.delenv("HTTP_PROXY")  # read at start: a change later is not seen
    for _ in range(2):
        assert _posted(transport) == ACCOUNT
    assert proxy.targets == ["http://allmysms.invalid/base/http/9.0/getInfo/"] * 2
    assert proxy.proxy_logins == [None, None]


def test_a_proxy_login_in_its_url_is_sent_to_the_proxy_only(monkeypatch, recorders):
    [(proxy, proxy_url)] = recorders(1)
    monkeypatch.setenv("HTTP_PROXY", proxy_url.replace("http://", "http://agency:s%40cret@"))
    assert _posted(Transport("http://allmysms.invalid", 2)) == ACCOUNT
    assert proxy.proxy_logins == ["Basic " + base64.b64encode(b"agency:s@cret").decode()]
    assert proxy.targets == ["http://allmysms.invalid/http/9.0/getInfo/"]  # no login in the request line


def test_an_address_no_proxy_names_is_called_directly(monkeypatch, recorders):
    (upstream, upstream_url), (proxy, proxy_url) = recorders(2)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert _posted(Transport(upstream_url, 2)) == ACCOUNT
    assert upstream.targets == ["/http/9.0/getInfo/"] and proxy.targets == []


def test_a_proxy_that_is_not_http_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ConfigError, match="names a socks5:// proxy; http:// or https:// are accepted"):
        Transport("https://api.allmysms.com", 2)


def test_a_proxy_that_refuses_connections_means_nothing_was_sent(monkeypatch):
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed.getsockname()[1]}")
        client = AllMySMS("http://allmysms.invalid", transport=Transport("http://allmysms.invalid"), connect_retries=0)
        with pytest.raises(UpstreamUnavailable) as refused:
            client.send_sms(Credentials("demo", "k"), FEED)
    assert refused.value.code == "upstream_unavailable" and "Nothing was sent" in refused.value.message


class _TlsUpstream:
    """AllMySMS over HTTPS on 127.0.0.1, with a certificate for 127.0.0.1 from a CA of the test's own."""

    def __init__(self, tmp_path):
        self.ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self.recorder = _Recorder()
        self._server = make_server("127.0.0.1", 0, self.recorder, threaded=True, ssl_context=context)
        self.url = f"https://127.0.0.1:{self._server.server_port}"
        self.bundle = tmp_path / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.bundle))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def tls_upstream(tmp_path):
    upstream = _TlsUpstream(tmp_path)
    yield upstream
    upstream.stop()


def test_https_with_the_ca_bundle_the_environment_names(monkeypatch, tls_upstream):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_upstream.bundle))
    client = AllMySMS(tls_upstream.url, transport=Transport(tls_upstream.url))
    assert client.account(Credentials("demo", "k")) == {"status": "Active Account", "credits": "12"}
    assert tls_upstream.recorder.targets == ["/http/9.0/getInfo/"]


def test_a_certificate_no_trusted_ca_signed_is_refused_before_anything_is_sent(tls_upstream):
    client = AllMySMS(tls_upstream.url, transport=Transport(tls_upstream.url), connect_retries=0)
    with pytest.raises(UpstreamUnavailable) as refused:
        client.send_sms(Credentials("demo", "k"), FEED)
    assert refused.value.code == "upstream_unavailable" and "Nothing was sent" in refused.value.message
    assert tls_upstream.recorder.targets == []


class _Tunnel:
    """An HTTP proxy that answers CONNECT only, as one in front of AllMySMS over HTTPS does, and relays the
    bytes both ways; it keeps each CONNECT's target and Proxy-Authorization."""

    def __init__(self):
        self.connects: list[tuple[str, str | None]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            self.connects.append((f"{method} {target}", headers.get("Proxy-Authorization")))
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                threading.Thread(target=_relay, args=(upstream, client), daemon=True).start()
                _relay(client, upstream)

    def stop(self):
        self._listener.close()


def _relay(source, sink):
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def test_https_through_a_proxy_goes_in_a_tunnel_the_proxy_login_opens(monkeypatch, tls_upstream):
    tunnel = _Tunnel()
    try:
        monkeypatch.setenv("HTTPS_PROXY", tunnel.url.replace("http://", "http://agency:s3cret@"))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_upstream.bundle))
        client = AllMySMS(tls_upstream.url, transport=Transport(tls_upstream.url))
        for _ in range(2):
            assert client.account(Credentials("demo", "k")) == {"status": "Active Account", "credits": "12"}
    finally:
        tunnel.stop()
    # A tunnel a call (the test upstream closes each connection), each opened with the proxy's login; inside,
    # the certificate was checked and only the path was sent.
    login = "Basic " + base64.b64encode(b"agency:s3cret").decode()
    assert tunnel.connects == [(f"CONNECT {tls_upstream.url.removeprefix('https://')}", login)] * 2
    assert tls_upstream.recorder.targets == ["/http/9.0/getInfo/"] * 2
    assert tls_upstream.recorder.proxy_logins == [None, None]  # the proxy's login never reaches AllMySMS

"""The only HTTP client of AllMySMS: timeouts, retries that are safe, and every reply classified."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote_plus, urlsplit, urlunsplit

import urllib3
from requests import utils as environment
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from connector.errors import AuthenticationFailed, ConfigError, InvalidInput, UpstreamUnavailable
from connector.observe import metrics
from connector.sending import feeds, outcomes
from connector.sending.deadlines import Deadlines
from connector.sending.retry import retry_after_seconds

FEED_PATH = "/http/9.0/{method}/"
VOICE_PATH = "/voice/send/bulk"
SANDBOX_REPLY_PATH = "/sandbox/replies"
USER_AGENT = "AllMySMS-Connector/0.1"


@dataclass(frozen=True)
class Credentials:
    login: str
    api_key: str = field(repr=False)


class Transport:
    """Kept-open connections to AllMySMS's one address, through urllib3's pool. requests' layers above that
    pool (sessions, hooks, cookies, adapters) cost a one-recipient send as much CPU as the call itself.

    What the environment says of the address is read once, here, with requests' own rules: a proxy from
    HTTP(S)_PROXY unless NO_PROXY names the host, a CA bundle from REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
    (certifi's otherwise), and a login from .netrc."""

    def __init__(self, base_url: str, pool_size: int = 16) -> None:
        parts = urlsplit(base_url or "http://allmysms.invalid")
        self.prefix = parts.path.rstrip("/")
        self.headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}
        tls: dict[str, Any] = {}
        if parts.scheme == "https":
            bundle = _ca_bundle()
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir" if os.path.isdir(bundle) else "ca_certs": bundle}
        netrc = environment.get_netrc_auth(base_url) if base_url else None
        if netrc:
            self.headers["Authorization"] = _basic(*netrc)
        proxy = environment.select_proxy(base_url, environment.get_environ_proxies(base_url)) if base_url else None
        origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        # Through a proxy the request line carries the whole URL; directly, only the path.
        self._pool: urllib3.PoolManager | urllib3.HTTPConnectionPool
        if proxy:
            self._origin, self._pool = origin, _proxied(proxy, pool_size, tls)
        else:
            self._origin, self._pool = "", urllib3.connection_from_url(origin, maxsize=pool_size, **tls)

    def post(
        self,
        path: str,
        *,
        timeout: urllib3.Timeout,
        form: Mapping[str, str] | None = None,
        body: Any = None,
        auth: tuple[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """POST ``form`` (url-encoded) or ``body`` (JSON); the answer is left unread, for the caller to read
        within its own bounds. Never retried, never redirected: the caller decides, knowing what a send is."""
        headers = dict(self.headers)
        if form is not None:
            payload = form_encoded(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            payload = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        if auth is not None:
            headers["Authorization"] = _basic(*auth)
        return self._pool.urlopen(
            "POST",
            self._origin + self.prefix + path,
            body=payload,
            headers=headers,
            timeout=timeout,
            retries=False,
            redirect=False,
            preload_content=False,
        )


#: The bytes a form value keeps as they are (urllib's quote_plus's own); any other is %XX, and a space +.
_KEPT = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_ESCAPES = {byte: "+" if byte == 32 else f"%{byte:02X}" for byte in range(256)}
#: '%' is escaped first and '+' next: the escapes of the others bring both in.
_ESCAPE_ORDER = {ord("%"): 0, ord("+"): 1}


def form_encoded(fields: Mapping[str, str]) -> bytes:
    """The bytes ``urlencode(fields)`` gives, for a quarter of its CPU on a feed: a 2,000-recipient smsData is
    some 145 KB, which urllib quotes a byte at a time in Python, and here in one pass a distinct byte."""
    return "&".join(f"{_quoted(key)}={_quoted(value)}" for key, value in fields.items()).encode("ascii")


def _quoted(text: str) -> str:
    data = text.encode()
    if len(data) - len(text) > len(text) // 8:  # much text in another script: byte by byte is then the cheaper
        return quote_plus(text)
    escaped = set(data.translate(None, _KEPT))
    if not escaped:
        return text
    if len(escaped) > 24:
        return quote_plus(text)
    quoted = data.decode("latin-1")
    for byte in sorted(escaped, key=lambda byte: _ESCAPE_ORDER.get(byte, 2)):
        quoted = quoted.replace(chr(byte), _ESCAPES[byte])
    return quoted


def _proxied(proxy: str, pool_size: int, tls: dict[str, Any]) -> urllib3.PoolManager:
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(
            "The proxy to AllMySMS cannot be used",
            [f"HTTPS_PROXY, HTTP_PROXY or ALL_PROXY names a {parts.scheme}:// proxy; http:// or https:// are accepted"],
        )
    login, password = environment.get_auth_from_url(proxy)
    headers = {"Proxy-Authorization": _basic(login, password)} if login else None
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], "", "", ""))
    return urllib3.ProxyManager(bare, num_pools=1, maxsize=pool_size, proxy_headers=headers, **tls)


def _ca_bundle() -> str:
    return (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or environment.DEFAULT_CA_BUNDLE_PATH
    )


def _basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


class _Ended(Exception):
    """A call that ended before an answer could be read: its row of outcomes.ENDINGS, and what to log."""

    def __init__(self, ending: str, detail: str):
        super().__init__(detail)
        self.ending = ending
        self.detail = detail


class AllMySMS:
    def __init__(
        self,
        base_url: str,
        *,
        transport: Transport | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 60,
        connect_retries: int = 2,
        max_reply_bytes: int = 64 << 20,
        max_concurrent: int = 16,
    ):
        self.base_url = base_url.rstrip("/")
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.transport = transport or Transport(base_url)
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.connect_retries = connect_retries
        self.max_reply_bytes = max_reply_bytes
        self.max_concurrent = max_concurrent
        self._slots = threading.BoundedSemaphore(max_concurrent)

    # Feed methods of the HTTP API 9.0.

    def send_sms(self, credentials: Credentials, sms_data: str) -> tuple[str, dict[str, Any]]:
        return self._feed(outcomes.SEND_SMS, credentials, {"smsData": sms_data})

    def simulate(self, credentials: Credentials, sms_data: str) -> dict[str, Any]:
        return self._feed(outcomes.SIMULATE_CAMPAIGN, credentials, {"smsData": sms_data})[1]

    def account(self, credentials: Credentials) -> dict[str, Any]:
        return self._feed(outcomes.GET_INFO, credentials, {})[1]

    def blacklist(self, credentials: Credentials) -> dict[str, Any]:
        return self._feed(outcomes.GET_BLACKLIST, credentials, {})[1]

    def delete_campaign(self, credentials: Credentials, campaign_id: str) -> dict[str, Any]:
        return self._feed(outcomes.DELETE_CAMPAIGN, credentials, {"campId": campaign_id})[1]

    def get_acks(self, credentials: Credentials, campaign_id: str) -> dict[str, Any]:
        """The delivery receipts of one campaign (read them with feeds.acks)."""
        return self._feed(outcomes.GET_ACKS, credentials, {"campId": campaign_id})[1]

    def ack_by_sms_id(self, credentials: Credentials, sms_id: str) -> dict[str, Any]:
        """The delivery receipt of one SMS (read it with feeds.ack)."""
        return self._feed(outcomes.GET_ACK_BY_SMS_ID, credentials, {"smsId": sms_id})[1]

    def pull(self, credentials: Credentials, campaign_id: str) -> dict[str, Any]:
        """The replies to one campaign (read them with feeds.pulls)."""
        return self._feed(outcomes.GET_PULL, credentials, {"campId": campaign_id})[1]

    def pulls(self, credentials: Credentials, limit: int) -> dict[str, Any]:
        """The replies not fetched before, at most ``limit``. AllMySMS hands each reply out once: what this
        returns is gone from the next call, so the caller must keep it before anything can fail."""
        return self._feed(outcomes.GET_PULLS, credentials, {"limit": str(limit)})[1]

    def credits_by_country(self, credentials: Credentials, iso_code: str) -> dict[str, Any]:
        """The credits one SMS costs to a country (read them with feeds.credits_per_sms)."""
        return self._feed(outcomes.GET_CREDITS_BY_COUNTRY, credentials, {"countryIsoCode": iso_code})[1]

    def send_mms(self, credentials: Credentials, mms_data: str) -> tuple[str, dict[str, Any]]:
        return self._feed(outcomes.SEND_MMS, credentials, {"mmsData": mms_data})

    def send_email(self, credentials: Credentials, email_data: str) -> tuple[str, dict[str, Any]]:
        return self._feed(outcomes.SEND_EMAIL, credentials, {"emailData": email_data})

    def lists(self, credentials: Credentials) -> dict[str, Any]:
        """The account's contact lists (read them with feeds.contact_lists)."""
        return self._feed(outcomes.GET_LISTS, credentials, {})[1]

    def create_list(self, credentials: Credentials, list_data: str) -> dict[str, Any]:
        return self._feed(outcomes.CREATE_LIST, credentials, {"listData": list_data})[1]

    def populate_list(self, credentials: Credentials, populate_data: str) -> dict[str, Any]:
        return self._feed(outcomes.POPULATE_LIST, credentials, {"populateData": populate_data})[1]

    def delete_contacts(self, credentials: Credentials, delete_data: str) -> dict[str, Any]:
        return self._feed(outcomes.DELETE_CONTACTS, credentials, {"deleteData": delete_data})[1]

    def _feed(
        self, method: outcomes.Method, credentials: Credentials, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        data = {"login": credentials.login, "apiKey": credentials.api_key, "returnformat": "json", **params}
        return self._call(method, FEED_PATH.format(method=method.feed_name), form=data)

    # REST API.

    def send_voice(self, credentials: Credentials, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        method = outcomes.SIMULATE_VOICE if body.get("simulate") else outcomes.SEND_VOICE
        return self._call(method, VOICE_PATH, body=body, auth=(credentials.login, credentials.api_key))

    def sandbox_reply(self, credentials: Credentials, body: dict[str, Any]) -> dict[str, Any]:
        """The built-in sandbox only: play a phone answering an SMS."""
        try:
            with self._slot():
                response = self._request(SANDBOX_REPLY_PATH, body=body, auth=(credentials.login, credentials.api_key))
                raw = _read_bounded(response, 1 << 20, self.read_timeout)
            answer = feeds.read_reply(raw, response.headers.get("Content-Type", ""))
        except (_Ended, feeds.Unreadable) as failed:
            raise UpstreamUnavailable(
                "The sandbox did not answer as expected; try again.", log_detail=f"sandbox reply: {failed}"
            ) from None
        if response.status == 201:
            return answer
        if response.status == 401:
            raise AuthenticationFailed("The sandbox does not know this login and API key.")
        raise InvalidInput(f"The sandbox refused the reply: {answer.get('description', 'no reason given')}")

    # Every call ends in one row of outcomes.ENDINGS: transport failures are rows too.

    def _call(self, method: outcomes.Method, path: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        reply, retry_after = None, None
        with self._slot(), metrics.upstream_request(method.name) as seen:
            try:
                response = self._request(path, **kwargs)
                body = _read_bounded(response, self.max_reply_bytes, self.read_timeout)
                seen.http_status = status = response.status
                detail = f"HTTP {status} from {path}"
                try:
                    reply = seen.reply = feeds.read_reply(body, response.headers.get("Content-Type", ""))
                except feeds.Unreadable as unreadable:
                    detail += f": {unreadable}"
                ending = outcomes.classify(status, reply, method)
                if ending == "throttled":
                    retry_after = _retry_after(response)
            except _Ended as ended:
                ending, detail = ended.ending, f"{path}: {ended.detail}"
        word = outcomes.settle(
            ending, method, reply, log_detail=f"{method.name} ended {ending}; {detail}", retry_after=retry_after
        )
        # settle returns only for a success, and only a reply that was read is one.
        return word, cast(dict[str, Any], reply)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """One of ``max_concurrent`` calls at once. Waiting for a slot is waiting to connect: past the connect
        timeout the caller is told to come back, rather than every thread of the service queueing here
        while AllMySMS is slow (and AllMySMS seeing a flood from one address)."""
        if not self._slots.acquire(timeout=self.connect_timeout):
            raise UpstreamUnavailable(
                "The service is waiting on AllMySMS for too many requests at once. Nothing was sent; try again "
                "in a few seconds.",
                code="upstream_busy",
                status=503,
                retry_after=5,
                log_detail=f"all {self.max_concurrent} calls to AllMySMS in use",
            )
        try:
            yield
        finally:
            self._slots.release()

    def _request(self, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.transport.post(path, timeout=self._timeout, **kwargs)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if not _never_connected(exc):
                    raise _Ended("no_answer", f"{type(exc).__name__} after the request was sent") from None
                if attempt > self.connect_retries:
                    raise _Ended("not_connected", f"{type(exc).__name__} after {attempt} attempts") from None
                time.sleep(min(0.2 * 2 ** (attempt - 1), 2.0))


_DEADLINES = Deadlines()


def _read_bounded(response: urllib3.BaseHTTPResponse, limit: int, seconds: float) -> bytes:
    """The body, at most ``limit`` bytes, all of it within ``seconds``: the read timeout bounds each wait
    for data, and an answer trickling a byte at a time would otherwise hold the request for as long as
    it likes. Past the deadline the connection is cut, and the answer counts as lost. The connection goes
    back to the pool only once its answer was read to the end."""
    chunks, size = [], 0
    cut = _DEADLINES.after(seconds, lambda: _cut(response))
    try:
        for chunk in response.stream(65536):
            size += len(chunk)
            if size > limit:
                raise _Ended("too_large", f"reply over {limit} bytes")
            chunks.append(chunk)
    except _Ended:
        response.close()
        raise
    except Exception as exc:  # the cut shows as whatever the socket raised mid-read
        response.close()
        raise _Ended("no_answer", f"{type(exc).__name__} while reading the answer") from None
    finally:
        cut.cancel()
        response.release_conn()
    return b"".join(chunks)


def _cut(response: urllib3.BaseHTTPResponse) -> None:
    sock = getattr(response.connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _never_connected(exc: BaseException | None) -> bool:
    """True when the request provably never left: refused or timed out while connecting (to AllMySMS or
    to the proxy in between)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        # A certificate is checked before the request is written.
        if isinstance(exc, (NewConnectionError, ConnectTimeoutError, ssl.SSLCertVerificationError)):
            return True
        inner = getattr(exc, "original_error", None) or getattr(exc, "reason", None)
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        exc = inner or exc.__cause__ or exc.__context__
    return False


def _retry_after(response: urllib3.BaseHTTPResponse) -> int:
    seconds = retry_after_seconds(response.headers.get("Retry-After"), time.time())
    return 30 if seconds is None else max(1, min(int(seconds), 3600))

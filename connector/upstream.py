"""The only HTTP client of AllMySMS: timeouts, retries that are safe, and every reply classified."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from . import feeds, metrics, outcomes
from .deadlines import Deadlines
from .retry import retry_after_seconds
from .errors import AuthenticationFailed, InvalidInput, OutcomeUnknown, Throttled, UpstreamFailed, UpstreamUnavailable

log = logging.getLogger(__name__)

FEED_PATH = "/http/9.0/{method}/"
VOICE_PATH = "/voice/send/bulk"
SANDBOX_REPLY_PATH = "/sandbox/replies"


@dataclass(frozen=True)
class Credentials:
    login: str
    api_key: str = field(repr=False)


def new_session(pool_size: int = 16) -> requests.Session:
    session = requests.Session()
    # Retries are decided here, knowing whether a send may have gone out; urllib3 must not retry on its own.
    adapter = HTTPAdapter(max_retries=0, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class AllMySMS:
    def __init__(self, base_url: str, *, session: requests.Session | None = None, connect_timeout: float = 5,
                 read_timeout: float = 60, connect_retries: int = 2, max_reply_bytes: int = 64 << 20):
        self.base_url = base_url.rstrip("/")
        self.session = session or new_session()
        self.timeout = (connect_timeout, read_timeout)
        self.connect_retries = connect_retries
        self.max_reply_bytes = max_reply_bytes

    # Feed methods of the HTTP API 9.0.

    def send_sms(self, credentials: Credentials, sms_data: str) -> tuple[str, dict]:
        reply = self._feed("sendSms", credentials, {"smsData": sms_data}, sends=True)
        return outcomes.raise_for_status(reply, sends=True), reply

    def simulate(self, credentials: Credentials, sms_data: str) -> dict:
        reply = self._feed("simulateCampaign", credentials, {"smsData": sms_data}, sends=False)
        outcomes.raise_for_status(reply)
        return reply

    def account(self, credentials: Credentials) -> dict:
        reply = self._feed("getInfo", credentials, {}, sends=False)
        outcomes.raise_for_status(reply, textual_ok=True)
        return reply

    def blacklist(self, credentials: Credentials) -> dict:
        reply = self._feed("getBlacklist", credentials, {}, sends=False)
        outcomes.raise_for_status(reply)
        return reply

    def delete_campaign(self, credentials: Credentials, campaign_id: str) -> dict:
        # Deleting twice is harmless, so a lost answer may be retried like a read.
        reply = self._feed("deleteCampaign", credentials, {"campId": campaign_id}, sends=False)
        outcomes.raise_for_status(reply, field_names={"recipients": "campaign_id"})
        return reply

    def _feed(self, method: str, credentials: Credentials, params: dict, *, sends: bool) -> dict:
        data = {"login": credentials.login, "apiKey": credentials.api_key, "returnformat": "json", **params}
        with metrics.upstream_request(method) as seen:
            response = self._request("POST", self.base_url + FEED_PATH.format(method=method), sends=sends, data=data)
            seen.http_status = response.status_code
            seen.reply = self._reply(response, sends=sends)
        return seen.reply

    # REST API.

    def send_voice(self, credentials: Credentials, body: dict) -> tuple[str, dict]:
        sends = not body.get("simulate")
        with metrics.upstream_request("voice/send/bulk") as seen:
            response = self._request("POST", self.base_url + VOICE_PATH, sends=sends, json=body,
                                     auth=(credentials.login, credentials.api_key))
            seen.http_status = response.status_code
            reply = seen.reply = self._reply(response, sends=sends, rest=True)
        return outcomes.raise_for_status(reply, field_names={"message": "text"}, sends=True), reply

    def sandbox_reply(self, credentials: Credentials, body: dict) -> dict:
        """The built-in sandbox only: play a phone answering an SMS."""
        response = self._request("POST", self.base_url + SANDBOX_REPLY_PATH, sends=False, json=body,
                                 auth=(credentials.login, credentials.api_key))
        with response:
            answer = feeds.read_reply(_read_bounded(response, 1 << 20, self.timeout[1]),
                                      response.headers.get("Content-Type", ""))
        if response.status_code == 201:
            return answer
        if response.status_code == 401:
            raise AuthenticationFailed("The sandbox does not know this login and API key.")
        raise InvalidInput(f"The sandbox refused the reply: {answer.get('description', 'no reason given')}")

    # Transport.

    def _request(self, method: str, url: str, *, sends: bool, **kwargs) -> requests.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False,
                                                stream=True, **kwargs)
                return response
            except requests.exceptions.RequestException as exc:
                if _never_connected(exc):
                    if attempt <= self.connect_retries:
                        time.sleep(min(0.2 * 2 ** (attempt - 1), 2.0))
                        continue
                    raise UpstreamUnavailable(
                        "AllMySMS cannot be reached right now. Nothing was sent; try again in a few minutes.",
                        log_detail=f"{method} {_path(url)}: {type(exc).__name__} after {attempt} attempts",
                    ) from None
                if isinstance(exc, requests.exceptions.Timeout) or isinstance(exc, requests.exceptions.ConnectionError):
                    raise self._lost_answer(url, exc, sends) from None
                raise UpstreamUnavailable("AllMySMS could not be asked.", log_detail=f"{type(exc).__name__}") from None

    def _lost_answer(self, url: str, exc: Exception, sends: bool):
        detail = f"POST {_path(url)}: {type(exc).__name__} after the request was sent"
        if sends:
            return OutcomeUnknown(
                "AllMySMS received the send but did not answer in time, so the messages MAY have been sent. "
                "Check the campaign list or the delivery receipts in the AllMySMS customer area before sending "
                "again; sending again blindly could send them twice.", log_detail=detail)
        return UpstreamUnavailable("AllMySMS did not answer in time. Nothing was changed; try again later.",
                                   code="upstream_timeout", status=504, log_detail=detail)

    def _reply(self, response: requests.Response, *, sends: bool, rest: bool = False) -> dict:
        with response:
            try:
                body = _read_bounded(response, self.max_reply_bytes, self.timeout[1])
            except requests.exceptions.RequestException as exc:
                raise self._lost_answer(response.url, exc, sends) from None
        status = response.status_code
        if status == 429:
            raise Throttled("AllMySMS asks to slow down. Nothing was sent; try again shortly.",
                            retry_after=_retry_after(response))
        if status in (401, 403) and rest:
            raise AuthenticationFailed("AllMySMS does not recognise this login and API key. Copy them again from "
                                       "the AllMySMS customer area (menu API) into the connection.")
        if 300 <= status < 400 or status >= 500:
            detail = f"HTTP {status} from {_path(response.url)}"
            if sends:
                raise UpstreamFailed(f"AllMySMS answered with an error (HTTP {status}). The messages were probably "
                                     "not sent; check the campaign list in the AllMySMS customer area before trying "
                                     "again.", log_detail=detail).with_disposition("check_before_retry")
            raise UpstreamUnavailable(f"AllMySMS answered with an error (HTTP {status}). Try again later.",
                                      log_detail=detail)
        if status >= 400 and not rest:
            raise UpstreamFailed(f"AllMySMS refused the request (HTTP {status}).",
                                 log_detail=f"HTTP {status} from {_path(response.url)}")
        return feeds.read_reply(body, response.headers.get("Content-Type", ""))


_DEADLINES = Deadlines()


def _read_bounded(response: requests.Response, limit: int, seconds: float) -> bytes:
    """The body, at most ``limit`` bytes, all of it within ``seconds``: the read timeout bounds each wait
    for data, and an answer trickling a byte at a time would otherwise hold the request for as long as
    it likes. Past the deadline the connection is cut, and the answer counts as lost."""
    chunks, size = [], 0
    cut = _DEADLINES.after(seconds, lambda: _cut(response))
    try:
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > limit:
                raise UpstreamFailed("AllMySMS sent an answer far larger than expected.",
                                     log_detail=f"reply over {limit} bytes")
            chunks.append(chunk)
    except requests.exceptions.RequestException:
        raise
    except Exception as exc:  # the cut shows as whatever the socket raised mid-read
        if isinstance(exc, UpstreamFailed):
            raise
        raise requests.exceptions.ReadTimeout(f"the answer was cut after {seconds:g} s") from None
    finally:
        cut.cancel()
    return b"".join(chunks)


def _cut(response: requests.Response) -> None:
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _never_connected(exc: BaseException) -> bool:
    """True when the request provably never left: refused or timed out while connecting."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (NewConnectionError, ConnectTimeoutError)):
            return True
        inner = getattr(exc, "reason", None)
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        exc = inner or exc.__cause__ or exc.__context__
    return False


def _retry_after(response: requests.Response) -> int:
    seconds = retry_after_seconds(response.headers.get("Retry-After"), time.time())
    return 30 if seconds is None else max(1, min(int(seconds), 3600))


def _path(url: str) -> str:
    # The query string may carry the API key: never log it.
    return url.split("?", 1)[0]

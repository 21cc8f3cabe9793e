"""Who is calling: the AllMySMS login and API key of HTTP Basic authentication, checked with AllMySMS (and
remembered a few minutes), and failures counted per address and login so that guessing is throttled."""

from __future__ import annotations

import base64
import binascii

from flask import Response, g, request

from connector.errors import AuthenticationFailed, Throttled
from connector.sending.upstream import Credentials
from connector.web import current_services
from connector.web.accounts import Account


def verified_account() -> Account:
    """The caller's account, its credentials checked with AllMySMS (401 otherwise)."""
    return verified(credentials())


def verified(given: Credentials) -> Account:
    services = current_services()
    account = services.accounts.verified(given)
    services.refusals.accepted(given.login, given.api_key)
    return account


def credentials() -> Credentials:
    """The caller's AllMySMS login and API key, from HTTP Basic authentication: 401 when unusable or when
    AllMySMS refused this very pair a moment ago, 429 when this address or login failed too often lately.
    Every 401 of a request that asked for them counts as a failure (see count_refusal)."""
    known: Credentials | None = g.get("credentials")
    if known is not None:
        return known
    refusals = current_services().refusals
    address = refusals.address_of(request.remote_addr, request.headers.get("X-Forwarded-For"))
    g.caller = (address, None, None)
    given = _read_credentials()
    g.caller = (address, given.login, given.api_key)
    wait = refusals.wait_for(address, given.login, given.api_key)
    if wait:
        raise Throttled(
            f"Too many failed logins from this address or for this login. Nothing was done; check the "
            f"login and API key of the connection, and try again in {wait} s.",
            retry_after=wait,
            code="too_many_failures",
        )
    if refusals.refused_before(given.login, given.api_key):
        g.caller = (address, given.login, None)  # already counted: the memory is not made to last longer
        raise AuthenticationFailed(
            "AllMySMS refused this login and API key a moment ago. Check them in the "
            "connection (the API key is in the AllMySMS customer area)."
        )
    g.credentials = given
    return given


def count_refusal(response: Response) -> None:
    caller = g.pop("caller", None)
    if caller is not None and response.status_code == 401:
        current_services().refusals.failed(*caller)


def _read_credentials() -> Credentials:
    header = request.headers.get("Authorization", "")
    if not header:
        raise AuthenticationFailed(
            "Connect with your AllMySMS login and API key (HTTP Basic authentication: "
            "the login as user name, the API key as password).",
            code="missing_credentials",
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed(
            "Use HTTP Basic authentication: the AllMySMS login as user name and the API key as password.",
            code="unsupported_authentication",
        )
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthenticationFailed(
            "The Authorization header could not be read: it must be 'Basic ' followed by base64 of login:apiKey.",
            code="malformed_credentials",
        ) from None
    login, colon, api_key = text.partition(":")
    if not colon or not login.strip() or not api_key.strip():
        raise AuthenticationFailed("Both the AllMySMS login and the API key are needed.", code="missing_credentials")
    return Credentials(login.strip(), api_key.strip())

"""Where events may be sent: https, and never to this machine or a private network unless allowed."""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


class TargetRefused(ValueError):
    """A target URL the service will not call, with the reason in words a user can act on."""


# IPv6 ranges that carry an IPv4 address in a fixed place: the address is reached through that IPv4 one
# (by a NAT64 gateway, a 6to4 relay or the host's own stack), so it is judged by it. NAT64's well-known
# prefix is how IPv6-only networks reach every IPv4 site: refusing it would refuse public subscribers there.
def _last_32_bits(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


_EMBEDDING = (
    (ipaddress.IPv6Network("64:ff9b::/96"), "a NAT64", _last_32_bits),
    (ipaddress.IPv6Network("::ffff:0:0/96"), "an IPv4-mapped", _last_32_bits),
    (ipaddress.IPv6Network("::ffff:0:0:0/96"), "an IPv4-translated", _last_32_bits),
    (ipaddress.IPv6Network("2002::/16"), "a 6to4", lambda ip: ip.sixtofour),
    # IPv4-compatible, deprecated (RFC 4291); :: and ::1 are in it too, and are judged before it.
    (ipaddress.IPv6Network("::/96"), "an IPv4-compatible", _last_32_bits),
)
# Refused whatever they carry: local by definition, and where the IPv4 address sits depends on how each
# network set them up, so there is nothing certain to check. Python's own list of global addresses changes
# between versions (3.12.4 added some of these): what is refused here must not.
_LOCAL = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.IPv6Network("fec0::/10"),  # site-local (deprecated by RFC 3879, still routed locally)
)


class AllowList:
    """Hosts, addresses and networks that may be called even though private (local development, tests).

    Written as a comma-separated setting: ``127.0.0.1, localhost, 10.0.0.0/8``. An allowed host may
    also be called over plain http.
    """

    def __init__(self, text: str = ""):
        self.hosts: set[str] = set()
        self.networks: list[Any] = []
        for item in (part.strip().lower() for part in text.split(",")):
            if not item:
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.hosts.add(item)

    def allows_host(self, host: str) -> bool:
        return host.lower() in self.hosts or self._allows_address(host)

    def _allows_address(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def allows(self, host: str, address: str) -> bool:
        return host.lower() in self.hosts or self._allows_address(address)


def check(
    url: str, allowed: AllowList, resolve: Callable[..., list[tuple[Any, ...]]] = socket.getaddrinfo
) -> list[tuple[Any, ...]]:
    """The socket addresses ``url`` may be reached at; TargetRefused unless it may receive events.

    Called when subscribing and again before each connection to a subscriber, which then goes to one of
    these addresses, since a name can be pointed elsewhere after it was checked."""
    _refuse_unwritable(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("The target URL cannot be read.") from None
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("https", "http") or not host:
        raise TargetRefused("The target URL must start with https:// and name a host.")
    if parts.scheme == "http" and not allowed.allows_host(host):
        raise TargetRefused("The target URL must use https://.")
    if parts.username or parts.password:
        raise TargetRefused("The target URL must not carry a user name or password.")
    try:
        infos = resolve(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise TargetRefused(f"The host {host} cannot be found.") from None
    for info in infos:
        address = info[4][0].split("%", 1)[0]
        problem = _problem(ipaddress.ip_address(address))
        if problem and not allowed.allows(host, address):
            raise TargetRefused(f"The host {host} {problem}, which cannot receive events from this service.")
    return [info[4] for info in infos]


def _refuse_unwritable(url: str) -> None:
    """Refuse what no URL may hold written out: parsers disagree on it (one drops a tab, another stops at a
    NUL, a resolver reads a space), so the host checked may not be the host called."""
    for position, character in enumerate(url, 1):
        kind = unicodedata.category(character)
        if character == " ":
            what = "a space"
        elif character.isspace() or kind == "Cc":
            what = f"the control character U+{ord(character):04X}"
        elif kind == "Cf":
            what = f"the invisible character U+{ord(character):04X}"
        elif kind == "Cs":
            what = f"U+{ord(character):04X}, half of a UTF-16 pair that is not a character on its own,"
        else:
            continue
        raise TargetRefused(
            f"The target URL contains {what} at position {position}. Write a URL without "
            "spaces or control characters (percent-encode them in its path, e.g. %20)."
        )


def _problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why events may not go to ``ip``, as the end of a sentence about its host; None when they may."""
    if isinstance(ip, ipaddress.IPv6Address) and not (ip.is_loopback or ip.is_unspecified):
        for network, kind, embedded in _EMBEDDING:
            if ip in network:
                if _problem(embedded(ip)):
                    return f"resolves to {kind} IPv6 address that leads to a private or local IPv4 address"
                return None
        if any(ip in network for network in _LOCAL):
            return "is on a private or local network"
    if not ip.is_global or ip.is_multicast:
        return "is on a private or local network"
    return None

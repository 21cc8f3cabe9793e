"""Where events may be sent: https, and never to this machine or a private network unless allowed."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class TargetRefused(ValueError):
    """A target URL the service will not call, with the reason in words a user can act on."""


class AllowList:
    """Hosts, addresses and networks that may be called even though private (local development, tests).

    Written as a comma-separated setting: ``127.0.0.1, localhost, 10.0.0.0/8``. An allowed host may
    also be called over plain http.
    """

    def __init__(self, text: str = ""):
        self.hosts: set[str] = set()
        self.networks: list = []
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


def check(url: str, allowed: AllowList, resolve=socket.getaddrinfo) -> list[tuple]:
    """The socket addresses ``url`` may be reached at; TargetRefused unless it may receive events.

    Called when subscribing and again before each connection to a subscriber, which then goes to one of
    these addresses, since a name can be pointed elsewhere after it was checked."""
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
    except (OSError, UnicodeError):
        raise TargetRefused(f"The host {host} cannot be found.") from None
    for info in infos:
        address = info[4][0].split("%", 1)[0]
        ip = ipaddress.ip_address(address)
        if not ip.is_global or ip.is_multicast:
            if not allowed.allows(host, address):
                raise TargetRefused(f"The host {host} is on a private or local network, which cannot receive "
                                    "events from this service.")
    return [info[4] for info in infos]

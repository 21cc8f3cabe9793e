"""Who a request came from: the peer, or behind trusted reverse proxies the first hop they did not add.
The API's failure counts and the console's login throttle both tell clients apart by it."""

from __future__ import annotations

import ipaddress
from typing import Any

from connector.errors import ConfigError


def trusted_networks(setting: str) -> tuple[Any, ...]:
    """CONNECTOR_TRUSTED_PROXIES as networks; a bare address is a network of one."""
    networks, problems = [], []
    for part in filter(None, (part.strip() for part in setting.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            problems.append(
                f"CONNECTOR_TRUSTED_PROXIES: {part!r} is not an address or a network; write addresses "
                "or CIDR networks separated by commas, e.g. 10.0.0.0/8,192.168.1.5"
            )
    if problems:
        raise ConfigError("The configuration is not valid", problems)
    return tuple(networks)


def client_address(remote_addr: str | None, forwarded_for: str | None, trusted: tuple[Any, ...]) -> str:
    """The address a request came from: the peer, unless the peer is a trusted proxy; then, walking
    X-Forwarded-For from the right (the entries the trusted proxies added), the first that is not one.
    Entries left of that were written by the client and may be anything: never believed."""
    address = remote_addr or "-"
    if not trusted or not forwarded_for:  # the peer, without parsing its address (every request asks)
        return address
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    while hops and _is_trusted(address, trusted):
        address = hops.pop()
    return address


def _is_trusted(address: str, trusted: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in trusted)

"""Which target URLs may receive events."""

from __future__ import annotations

import socket

import pytest

from connector.targets import AllowList, TargetRefused, check


def resolver(*addresses):
    def resolve(host, port, type=0):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]
    return resolve


def test_a_public_https_target_is_accepted():
    check("https://hooks.example.com/catch/1", AllowList(), resolve=resolver("93.184.216.34"))


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.5", "169.254.169.254",
                                     "::1", "fd00::1", "0.0.0.0", "100.64.0.1", "224.0.0.1"])
def test_local_private_link_local_and_metadata_addresses_are_refused(address):
    with pytest.raises(TargetRefused, match="private or local"):
        check("https://hooks.example.com/", AllowList(), resolve=resolver(address))


def test_a_name_that_resolves_to_one_private_address_among_public_ones_is_refused():
    with pytest.raises(TargetRefused):
        check("https://rebind.example.com/", AllowList(), resolve=resolver("93.184.216.34", "127.0.0.1"))


def test_plain_http_is_refused_unless_the_host_is_allowed():
    with pytest.raises(TargetRefused, match="https"):
        check("http://hooks.example.com/", AllowList(), resolve=resolver("93.184.216.34"))
    check("http://127.0.0.1:9000/hook", AllowList("127.0.0.1"), resolve=resolver("127.0.0.1"))


def test_an_allowed_network_admits_its_addresses():
    allowed = AllowList("10.0.0.0/8, localhost")
    check("https://internal.example/", allowed, resolve=resolver("10.9.9.9"))
    check("http://localhost:8080/", allowed, resolve=resolver("127.0.0.1"))
    with pytest.raises(TargetRefused):
        check("https://internal.example/", allowed, resolve=resolver("192.168.0.1"))


@pytest.mark.parametrize("url, reason", [
    ("ftp://hooks.example.com/", "https"), ("https:///nohost", "https"), ("not a url", "https"),
    ("https://user:pw@hooks.example.com/", "user name"), ("https://hooks.example.com:99999/", "cannot be read"),
])
def test_malformed_targets_are_refused_with_a_reason(url, reason):
    with pytest.raises(TargetRefused, match=reason):
        check(url, AllowList(), resolve=resolver("93.184.216.34"))


def test_an_unknown_host_is_refused():
    def fail(*args, **kwargs):
        raise socket.gaierror("no such host")
    with pytest.raises(TargetRefused, match="cannot be found"):
        check("https://nowhere.invalid/", AllowList(), resolve=fail)

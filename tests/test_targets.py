"""Which target URLs may receive events."""

from __future__ import annotations

import socket

import pytest

from connector.events.targets import AllowList, TargetRefused, check

PUBLIC = "93.184.216.34"


def resolver(*addresses):
    def resolve(host, port, type=0):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    return resolve


def test_a_public_https_target_is_accepted_and_reached_at_the_address_it_was_checked_at():
    assert check("https://hooks.example.com/catch/1", AllowList(), resolve=resolver(PUBLIC)) == [(PUBLIC, 443)]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.5",
        "169.254.169.254",
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "ff02::1",
    ],
)
def test_local_private_link_local_and_metadata_addresses_are_refused(address):
    with pytest.raises(TargetRefused) as refused:
        check("https://hooks.example.com/", AllowList(), resolve=resolver(address))
    assert str(refused.value) == (
        "The host hooks.example.com is on a private or local network, which cannot receive events from this service."
    )


@pytest.mark.parametrize(
    "address, kind",
    [
        ("64:ff9b::7f00:1", "a NAT64"),
        ("64:ff9b::a9fe:a9fe", "a NAT64"),  # 127.0.0.1, 169.254.169.254
        ("2002:7f00:1::", "a 6to4"),
        ("2002:a00:1::1", "a 6to4"),  # 127.0.0.1, 10.0.0.1
        ("::7f00:1", "an IPv4-compatible"),
        ("::c0a8:101", "an IPv4-compatible"),  # 127.0.0.1, 192.168.1.1
        ("::ffff:0:7f00:1", "an IPv4-translated"),
        ("::ffff:0:a9fe:a9fe", "an IPv4-translated"),
        ("::ffff:127.0.0.1", "an IPv4-mapped"),
        ("::ffff:10.0.0.1", "an IPv4-mapped"),
    ],
)
def test_an_ipv6_address_carrying_a_private_ipv4_address_is_refused_by_that_ipv4_address(address, kind):
    with pytest.raises(TargetRefused) as refused:
        check("https://hooks.example.com/", AllowList(), resolve=resolver(address))
    assert str(refused.value) == (
        f"The host hooks.example.com resolves to {kind} IPv6 address that leads to a "
        "private or local IPv4 address, which cannot receive events from this service."
    )


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::5db8:d822", "2002:5db8:d822::1", "::ffff:0:5db8:d822", "::ffff:93.184.216.34", "2606:4700:4700::1111"],
)
def test_an_ipv6_address_carrying_a_public_ipv4_address_is_accepted(address):
    """NAT64 is how IPv6-only networks reach IPv4 sites: a public one behind it is a public subscriber."""
    assert check("https://hooks.example.com/", AllowList(), resolve=resolver(address)) == [(address, 443)]


@pytest.mark.parametrize("address", ["64:ff9b:1::5db8:d822", "64:ff9b:1:ffff::1", "fec0::1", "feff::5db8:d822"])
def test_local_use_nat64_and_site_local_addresses_are_refused_whatever_they_carry(address):
    with pytest.raises(TargetRefused, match=r"^The host hooks\.example\.com is on a private or local network"):
        check("https://hooks.example.com/", AllowList(), resolve=resolver(address))


def test_a_name_that_resolves_to_one_private_address_among_public_ones_is_refused():
    with pytest.raises(TargetRefused, match="rebind.example.com is on a private or local network"):
        check("https://rebind.example.com/", AllowList(), resolve=resolver(PUBLIC, "127.0.0.1"))


def test_plain_http_is_refused_unless_the_host_is_allowed():
    with pytest.raises(TargetRefused, match=r"^The target URL must use https://\.$"):
        check("http://hooks.example.com/", AllowList(), resolve=resolver(PUBLIC))
    assert check("http://127.0.0.1:9000/hook", AllowList("127.0.0.1"), resolve=resolver("127.0.0.1")) == [
        ("127.0.0.1", 9000)
    ]


def test_an_allowed_network_admits_its_addresses_and_no_others():
    allowed = AllowList("10.0.0.0/8, localhost")
    assert check("https://internal.example/", allowed, resolve=resolver("10.9.9.9")) == [("10.9.9.9", 443)]
    assert check("http://localhost:8080/", allowed, resolve=resolver("127.0.0.1")) == [("127.0.0.1", 8080)]
    with pytest.raises(TargetRefused, match="internal.example is on a private or local network"):
        check("https://internal.example/", allowed, resolve=resolver("192.168.0.1"))


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ftp://hooks.example.com/", "The target URL must start with https:// and name a host."),
        ("https:///nohost", "The target URL must start with https:// and name a host."),
        ("notaurl", "The target URL must start with https:// and name a host."),
        ("https://user:pw@hooks.example.com/", "The target URL must not carry a user name or password."),
        ("https://hooks.example.com:99999/", "The target URL cannot be read."),
        ("https://[::1/", "The target URL cannot be read."),
    ],
)
def test_malformed_targets_are_refused_with_a_reason(url, reason):
    with pytest.raises(TargetRefused) as refused:
        check(url, AllowList(), resolve=resolver(PUBLIC))
    assert str(refused.value) == reason


@pytest.mark.parametrize(
    "url, what, position",
    [
        ("https://exa\x00mple.com/", "the control character U+0000", 12),
        ("https://127.0.0.1\x00.hooks.example.com/", "the control character U+0000", 18),
        ("https://hooks.example.com/a b", "a space", 28),
        ("not a url", "a space", 4),
        ("https://hooks.example.com/\r\nHost: evil", "the control character U+000D", 27),
        ("https://hooks.exa\tmple.com/", "the control character U+0009", 18),
        ("https://hooks.example.com/\x1b[2J", "the control character U+001B", 27),
        ("https://hooks.example.com/\x85", "the control character U+0085", 27),
        ("https://hooks.example.com/\u2028", "the control character U+2028", 27),
        ("https://hooks\u200b.example.com/", "the invisible character U+200B", 14),
        ("https://hooks.example.com/\ud800", "U+D800, half of a UTF-16 pair that is not a character on its own,", 27),
    ],
)
def test_spaces_and_control_characters_are_refused_before_the_url_is_read(url, what, position):
    def must_not_resolve(*args, **kwargs):
        raise AssertionError("a URL holding a control character was resolved")

    with pytest.raises(TargetRefused) as refused:
        check(url, AllowList("127.0.0.1"), resolve=must_not_resolve)
    assert str(refused.value) == (
        f"The target URL contains {what} at position {position}. Write a URL without "
        "spaces or control characters (percent-encode them in its path, e.g. %20)."
    )


def test_an_unknown_host_is_refused():
    def fail(*args, **kwargs):
        raise socket.gaierror("no such host")

    with pytest.raises(TargetRefused) as refused:
        check("https://nowhere.invalid/", AllowList(), resolve=fail)
    assert str(refused.value) == "The host nowhere.invalid cannot be found."


@pytest.mark.parametrize(
    "target, what",
    [
        ("https://exa\x00mple.com/", "the control character U+0000 at position 12"),
        ("https://[64:ff9b::7f00:1]/hook", "resolves to a NAT64 IPv6 address"),
    ],
)
def test_a_subscription_to_a_refused_target_is_a_clear_error_at_target_url(client, target, what):
    answer = client.post(
        "/v1/triggers/delivery_receipt/subscriptions",
        json={"target_url": target},
        headers={"Authorization": "Basic ZGVtbzpkZW1vLWFwaS1rZXk="},
    )  # demo:demo-api-key
    assert answer.status_code == 422, answer.get_data(as_text=True)
    (problem,) = answer.get_json()["error"]["fields"]
    assert problem["path"] == "target_url" and what in problem["message"]
    assert (
        client.get(
            "/v1/triggers/delivery_receipt/subscriptions", headers={"Authorization": "Basic ZGVtbzpkZW1vLWFwaS1rZXk="}
        ).get_json()
        == []
    )

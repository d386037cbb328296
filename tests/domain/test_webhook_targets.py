"""The outbound-webhook address policy: pure functions, no resolving, no connecting."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.webhook_targets import literal_address, refusal, refusal_for_host


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("fd12:3456::1", "unique_local"),
        ("fc00::1", "unique_local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("100.64.0.1", "not_public"),  # shared address space (CGNAT)
        ("192.0.2.10", "private"),  # documentation (TEST-NET-1)
        ("240.0.0.1", "private"),  # reserved
        ("255.255.255.255", "private"),  # broadcast
        ("2001:db8::1", "private"),  # documentation
        # IPv6 spellings of IPv4 addresses are judged by the IPv4 address they carry.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated)
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 of 169.254.169.254
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert refusal(ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("2130706433", "127.0.0.1"),  # one 32-bit number
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.1", "127.0.0.1"),  # a.b: b is 24 bits
        ("127.1", "127.0.0.1"),
        ("10.1.256", "10.1.1.0"),  # a.b.c: c is 16 bits
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("127.0.0.1.", "127.0.0.1"),  # a trailing dot
        ("0", "0.0.0.0"),
    ],
)
def test_literals_in_every_spelling_a_resolver_reads(host: str, address: str) -> None:
    assert literal_address(host) == ip_address(address)


@pytest.mark.parametrize(
    "host",
    ["example.com", "hooks.example", "1.2.3.4.5", "08.0.0.1", "256.0.0.1", "0x1g", "1.2.3.256"],
)
def test_names_and_malformed_numbers_are_not_literals(host: str) -> None:
    assert literal_address(host) is None


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost", "loopback"),
        ("LOCALHOST.", "loopback"),
        ("api.localhost", "loopback"),
        ("metadata.google.internal", "metadata"),
        ("2130706433", "loopback"),
        ("[::ffff:a9fe:a9fe]", "metadata"),
        ("hooks.example.com", None),  # a name: checked when a delivery resolves it
        ("8.8.8.8", None),
    ],
)
def test_what_registration_can_tell_without_resolving(host: str, reason: str | None) -> None:
    assert refusal_for_host(host) == reason


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_ipv4_address_in_any_spelling_means_the_same(value: int) -> None:
    address = IPv4Address(value)
    a, b, c, d = address.packed
    spellings = [str(value), hex(value), f"{a}.{b}.{(c << 8) | d}", f"0{a:o}.{b}.{c}.{d}"]
    for spelling in spellings:
        assert literal_address(spelling) == address
    # Its IPv6 spellings are refused for the reason it is, and never allowed.
    reason = refusal(address)
    for spelled in (IPv6Address(f"::ffff:{address}"), IPv6Address(f"64:ff9b::{address}")):
        assert refusal(spelled) == reason or (reason is None and spelled.ipv4_mapped)

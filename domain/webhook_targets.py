"""Which hosts an outbound webhook may reach: public unicast addresses only.

A webhook URL is chosen by whoever holds an admin key, and the delivery log reports what
the target answered; without this policy a webhook is a probe of the network the worker
sits in (its loopback services, the private network, the cloud metadata endpoint). The
API checks a URL's host when an endpoint is registered (`refusal_for_host`: IP literals in
any spelling a resolver accepts, and names that are loopback by definition); the worker
checks every address the host resolves to right before it connects, and connects only to
an address it checked (`activities/webhook_transport.py`).

Pure functions of their arguments: nothing here resolves or connects.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Final

Address = IPv4Address | IPv6Address

# Instance-metadata endpoints of the big clouds. Every one is also link-local, unique-local
# or otherwise not public (and refused as such); named here so the reason says what it is.
METADATA_ADDRESSES: Final = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # AWS ECS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)
# Names that are loopback or metadata by definition (RFC 6761 for `localhost`).
_LOCAL_NAMES: Final = frozenset({"localhost", "metadata.google.internal", "metadata.goog"})

_UNIQUE_LOCAL: Final = IPv6Network("fc00::/7")
_IPV4_COMPATIBLE: Final = IPv6Network("::/96")  # deprecated `::a.b.c.d`
_NAT64: Final = IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix
_THIS_NETWORK: Final = IPv4Network("0.0.0.0/8")
# One to four numbers separated by dots, each decimal, octal (leading 0) or hex (0x): the
# forms a C resolver (inet_aton) reads as an IPv4 address, e.g. 2130706433 or 0x7f.1.
_INET_ATON_FORM: Final = re.compile(r"(?i)(0x[0-9a-f]*|\d+)(\.(0x[0-9a-f]*|\d+)){0,3}")


def refusal(address: Address) -> str | None:
    """Why a webhook may not connect to `address` (`loopback`, `private`, `link_local`,
    `unique_local`, `multicast`, `unspecified`, `metadata`, `not_public`), or None."""
    if isinstance(address, IPv6Address):
        if address in _NAT64:  # DNS64 answers: what counts is the IPv4 address behind it
            return refusal(IPv4Address(int(address) & 0xFFFFFFFF))
        embedded = _embedded_ipv4(address)
        if embedded is not None and (reason := refusal(embedded)) is not None:
            return reason
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_unspecified or (isinstance(address, IPv4Address) and address in _THIS_NETWORK):
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, IPv6Address) and address in _UNIQUE_LOCAL:
        return "unique_local"
    if address.is_private:
        return "private"
    if not address.is_global or address.is_reserved:
        return "not_public"  # shared (CGNAT), documentation, benchmarking, reserved ranges
    return None


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries and may be routed to, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): the client is where it ends up
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def literal_address(host: str) -> Address | None:
    """The address `host` spells, if it is an IP literal: `[::1]`, `fe80::1%eth0`, and the
    IPv4 forms a C resolver accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`); else None."""
    host = host.strip().removeprefix("[").removesuffix("]")
    try:
        return ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    host = host.removesuffix(".")
    if not _INET_ATON_FORM.fullmatch(host):
        return None
    return _inet_aton(host.split("."))


def _inet_aton(parts: list[str]) -> IPv4Address | None:
    """a.b.c.d; a.b.c (c: 16 bits); a.b (b: 24 bits); a (32 bits): as inet_aton(3)."""
    numbers: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            number = int(part[2:] or "0", 16)
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                return None
            number = int(part, 8)
        else:
            number = int(part)
        numbers.append(number)
    *leading, last = numbers
    if any(n > 0xFF for n in leading) or last >= 1 << (8 * (5 - len(numbers))):
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (3 - index))
    return IPv4Address(value)


def refusal_for_host(host: str) -> str | None:
    """Why a URL with this host may not be registered, as far as can be told without
    resolving it: an IP literal the policy refuses, or a name that is loopback or metadata
    by definition. Other names are checked when a delivery resolves them."""
    address = literal_address(host)
    if address is not None:
        return refusal(address)
    name = host.strip().lower().removesuffix(".")
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return "metadata" if name.startswith("metadata") else "loopback"
    return None

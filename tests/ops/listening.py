"""Which local addresses listen on a TCP port, read from /proc/net/tcp and tcp6 (the
kernel's own table: no psutil, no `ss` needed)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

_LISTEN = "0A"


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_addresses(port: int) -> set[str]:
    """The addresses with a socket listening on `port`: {"127.0.0.1"}, {"0.0.0.0"}, {"::"}."""
    found: set[str] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            hex_ip, _, hex_port = local.partition(":")
            if state == _LISTEN and int(hex_port, 16) == port:
                found.add(_address(hex_ip))
    return found

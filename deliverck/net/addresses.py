"""Which addresses are reachable from the public internet.

Python's `ipaddress.is_private` is true for the documentation ranges
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32), which are
exactly where deliverck's lab and independent test labs live, so we keep our
own explicit table: an address in one of these blocks is reported, never
probed.  Sources: RFC 1918, RFC 6598 (CGNAT), RFC 1122/4291 (loopback,
unspecified), RFC 3927/4291 (link-local), RFC 4193 (ULA), IANA special-purpose
registries.
"""

from __future__ import annotations

import enum
import ipaddress


class Scope(str, enum.Enum):
    PUBLIC = "public"
    PRIVATE = "private"            # RFC 1918 / RFC 4193 ULA
    SHARED = "shared"              # RFC 6598 CGNAT 100.64.0.0/10
    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    UNSPECIFIED = "unspecified"
    MULTICAST = "multicast"
    RESERVED = "reserved"          # 0/8, 240/4, broadcast, benchmarking ranges ...

    @property
    def routable(self) -> bool:
        return self is Scope.PUBLIC


_V4 = [
    ("0.0.0.0/8", Scope.UNSPECIFIED),
    ("10.0.0.0/8", Scope.PRIVATE),
    ("100.64.0.0/10", Scope.SHARED),
    ("127.0.0.0/8", Scope.LOOPBACK),
    ("169.254.0.0/16", Scope.LINK_LOCAL),
    ("172.16.0.0/12", Scope.PRIVATE),
    ("192.0.0.0/24", Scope.RESERVED),
    ("192.168.0.0/16", Scope.PRIVATE),
    ("198.18.0.0/15", Scope.RESERVED),
    ("224.0.0.0/4", Scope.MULTICAST),
    ("240.0.0.0/4", Scope.RESERVED),
]
_V6 = [
    ("::/128", Scope.UNSPECIFIED),
    ("::1/128", Scope.LOOPBACK),
    ("::ffff:0:0/96", Scope.RESERVED),     # IPv4-mapped: never a real AAAA
    ("fc00::/7", Scope.PRIVATE),
    ("fe80::/10", Scope.LINK_LOCAL),
    ("ff00::/8", Scope.MULTICAST),
]
_TABLE = [(ipaddress.ip_network(n), s) for n, s in _V4 + _V6]


def scope(ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> Scope:
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    for net, s in _TABLE:
        if addr.version == net.version and addr in net:
            return s
    return Scope.PUBLIC


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

"""What one DNS lookup returned, as data: the ground floor of net/dns.py and net/dnssanity.py.

Both the client (dns.py) and the judgement of the resolver itself (dnssanity.py) speak in these
types; keeping them here lets each import them without importing the other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(str, enum.Enum):
    OK = "ok"                  # records of the asked type exist
    NODATA = "nodata"          # the name exists, no records of that type
    NXDOMAIN = "nxdomain"      # the name does not exist
    SERVFAIL = "servfail"      # the resolver could not get an answer (or DNSSEC bogus)
    REFUSED = "refused"        # the resolver refused to answer
    TIMEOUT = "timeout"        # nobody answered in time
    UNREACHABLE = "unreachable"  # network error talking to the resolver
    ERROR = "error"            # malformed answer, or any other failure

    @property
    def definite(self) -> bool:
        """True when DNS gave an authoritative-looking answer we can reason about."""
        return self in (Outcome.OK, Outcome.NODATA, Outcome.NXDOMAIN)


@dataclass(frozen=True)
class DnsAnswer:
    qname: str                       # as asked, no trailing dot
    rdtype: str                      # "MX", "A", ...
    outcome: Outcome
    records: tuple = ()              # dnspython rdata objects of the final answer RRset
    canonical_name: str = ""         # differs from qname when a CNAME chain was followed
    ttl: int = 0
    authenticated: bool = False      # AD bit from the resolver
    detail: str = ""                 # human text for failures
    server: str = ""                 # which resolver answered / failed
    elapsed_ms: int = 0
    recursion_available: bool = True   # RA flag of the answer (False: an authoritative-only server)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def via_cname(self) -> bool:
        return bool(self.canonical_name) and self.canonical_name.lower() != self.qname.lower()

    def texts(self) -> tuple[str, ...]:
        return tuple(r.to_text() for r in self.records)

    def describe(self) -> str:
        """One line for evidence: `name TYPE -> outcome / records`."""
        head = f"{self.qname} {self.rdtype}"
        if self.outcome is Outcome.OK:
            body = ", ".join(self.texts())
            if self.via_cname:
                body = f"(via CNAME {self.canonical_name}) {body}"
            return f"{head}: {body}"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{head}: {self.outcome.value.upper()}{extra}"


@dataclass(frozen=True)
class ResolverAddress:
    ip: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


def norm(name: str) -> str:
    """Names compare without their trailing dot and case (RFC 4343)."""
    return name.rstrip(".").lower()


def one_line(s: str) -> str:
    """Remote or library text squeezed to one bounded line for a message."""
    return " ".join(s.split())[:300]

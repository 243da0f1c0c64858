"""Whose fault is a failed SPF lookup: the zone that holds the name, or the resolver we asked?

A stub resolver cannot see past its recursive resolver: SERVFAIL or silence
means either "the name servers of that zone fail" (the domain's fault, and
every receiver meets it: SPF temperror, mail deferred, RFC 7208 2.6.6) or
"this resolver cannot resolve anything" (an offline machine, a captive portal,
a broken forwarder: deliverck's environment, nobody else meets it).

The evidence that separates them is a control question the resolver can only
answer by working: the root's NS set and the SOA of the failing name's
top-level domain.  When both come back, the resolver reaches the root and the
TLD, so a failure further down lies at or below the delegation of the zone that
holds the name (the blame rule of docs/usage.md: the target is blamed only then).
When either fails too, the resolver is at fault and the result is "could not
check".  A resolver that answers REFUSED, cannot be reached or sends a
malformed answer is at fault by itself: a recursive resolver turns an
authoritative server's REFUSED into SERVFAIL, so REFUSED came from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from deliverck.net.dns import DnsAnswer, Outcome
from deliverck.records.spf.evaluator import Lookup
from deliverck.records.spf.trace import LookupTrace

ZONE = "zone"          # the name servers of the zone that holds the name
RESOLVER = "resolver"  # the resolver deliverck asked, or the network between


@dataclass(frozen=True)
class Blame:
    party: str                     # ZONE or RESOLVER
    name: str                      # the name whose lookup failed
    rdtype: str
    outcome: str                   # how it failed: servfail, timeout, refused, ...
    resolver: str                  # who was asked ("" when unknown)
    probes: tuple[DnsAnswer, ...]  # the control questions and their answers

    @property
    def zone(self) -> bool:
        return self.party == ZONE

    def evidence(self) -> tuple[str, ...]:
        """The control questions and their answers, one line each."""
        return tuple(_describe(p) for p in self.probes)

    def failed_line(self) -> str:
        return f"{self.name} {self.rdtype}: {self.outcome.upper()}"

    def resolver_sentence(self) -> str:
        """One line for "could not check": who failed, what it answered, what to do."""
        who = f"the resolver {self.resolver}" if self.resolver else "the resolver"
        seen = "; ".join(f"{p.qname or '.'} {p.rdtype}: {p.outcome.value.upper()}" for p in self.probes
                         if not _works(p))
        if seen:
            return (f"{who} answered {self.outcome.upper()} for {self.name} {self.rdtype} and fails the control "
                    f"questions too ({seen}): it cannot resolve, so nothing is known about {self.name}; "
                    "use a working recursive resolver (--resolver IP)")
        return (f"{who} answered {self.outcome.upper()} for {self.name} {self.rdtype}: a recursive resolver "
                "does not pass that on from a domain's name servers, so the fault is the resolver's or this "
                "network's; use a working recursive resolver (--resolver IP)")

    def zone_sentence(self) -> str:
        """One line for a real temperror: the zone's name servers fail, the resolver works."""
        tld = self.probes[-1].qname if self.probes else ""
        return (f"the {self.rdtype} lookup of {self.name} failed ({self.outcome}) while the resolver answers for "
                f"the root and for {tld or 'the top-level domain'}: the name servers of the zone holding "
                f"{self.name} do not answer")


def _describe(ans: DnsAnswer) -> str:
    line = ans.describe()
    return "." + line if not ans.qname or ans.qname == "." else line


def _works(ans: DnsAnswer) -> bool:
    return ans.outcome in (Outcome.OK, Outcome.NODATA)


def tld_of(name: str) -> str:
    labels = [x for x in name.rstrip(".").split(".") if x]
    return labels[-1].lower() if labels else ""


async def _ask(dns: Lookup, name: str, rdtype: str) -> DnsAnswer:
    try:
        return await dns.lookup(name, rdtype)
    except Exception as e:  # a stand-in resolver that raises is a resolver that does not work
        return DnsAnswer(name, rdtype, Outcome.ERROR, detail=f"{type(e).__name__}: {e}")


async def locate(dns: Lookup, failed: LookupTrace, resolver: str = "") -> Blame:
    """Blame for one failed lookup (its outcome is not ok/nodata/nxdomain)."""
    outcome = failed.outcome
    if outcome not in (Outcome.SERVFAIL.value, Outcome.TIMEOUT.value):
        return Blame(RESOLVER, failed.name, failed.rdtype, outcome, resolver, ())
    return await _probe(dns, failed.name, failed.rdtype, outcome, resolver)


async def resolver_denies(dns: Lookup, name: str, rdtype: str = "TXT", resolver: str = "") -> Blame | None:
    """For an NXDOMAIN answer: a Blame on the resolver when it also denies the root
    (an offline machine's resolver, a captive portal), else None (the name really does not exist)."""
    root = await _ask(dns, ".", "NS")
    if _works(root):
        return None
    return Blame(RESOLVER, name, rdtype, Outcome.NXDOMAIN.value, resolver or root.server, (root,))


async def _probe(dns: Lookup, name: str, rdtype: str, outcome: str, resolver: str) -> Blame:
    probes = [await _ask(dns, ".", "NS")]
    tld = tld_of(name)
    if tld and _works(probes[0]):
        probes.append(await _ask(dns, tld, "SOA"))
    who = resolver or next((p.server for p in probes if p.server), "")
    party = ZONE if all(_works(p) for p in probes) and len(probes) == 2 else RESOLVER
    return Blame(party, name, rdtype, outcome, who, tuple(probes))

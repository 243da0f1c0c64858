"""An in-memory DNS for tests, benchmarks and examples: answers from a dict.

    zone = {"example.com": [("TXT", "v=spf1 mx -all"), ("MX", "10 mx.example.com.")],
            "mx.example.com": [("A", "192.0.2.1")],
            "slow.example.com": "TIMEOUT"}

Names absent from the zone are NXDOMAIN; present names without records of the
asked type are NODATA; the value "TIMEOUT" (for a name) or a record
("TXT", "TIMEOUT") gives a timeout, ("TXT", "SERVFAIL") a SERVFAIL.  TXT
values may be a str or a list of strings (one record, several strings).
Records are real dnspython rdata.  `delay` makes every answer take that long
(asyncio.sleep), and `active`/`max_active`/`queries` record concurrency.

It lives in net/ beside the real client (net.dns.DnsClient) because it plays
the same role, the resolver behind the SPF evaluator's `Lookup`, and produces
the same DnsAnswer; the evaluator in records/spf stays free of any resolver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT

from deliverck.net.dns import DnsAnswer, Outcome


def _rdata(rdtype: str, value) -> object:
    if rdtype == "TXT":
        strings = [value] if isinstance(value, (str, bytes)) else list(value)
        raw = [s.encode("utf-8") if isinstance(s, str) else s for s in strings]
        # Character-strings hold 255 bytes: a long string becomes several (joined again by SPF).
        chunks = [b[i:i + 255] for b in raw for i in range(0, max(len(b), 1), 255)]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value)


class MemoryDns:
    def __init__(self, zone: Mapping[str, object], *, delay: float = 0.0) -> None:
        # A name maps to "TIMEOUT" or to its (rdtype, value) records.
        self.zone: dict[str, str | list[tuple[str, object]]] = {}
        for name, recs in zone.items():
            key = name.rstrip(".").lower()
            if recs == "TIMEOUT":
                self.zone[key] = "TIMEOUT"
                continue
            assert isinstance(recs, Iterable)
            prior = self.zone.get(key, [])
            assert isinstance(prior, list), f"{name}: TIMEOUT and records under one name"
            self.zone[key] = prior + list(recs)
        self.delay = delay
        self.queries: list[tuple[str, str]] = []
        self.active = 0
        self.max_active = 0

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        if "\\" in name:   # dnspython's text form (\DDD escapes), as check_host() asks for odd labels
            name = ".".join(lb.decode("utf-8", "replace") for lb in dns.name.from_text(name).labels if lb)
        qname = name.rstrip(".").lower()
        rdtype = rdtype.upper()
        self.queries.append((qname, rdtype))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            else:
                await asyncio.sleep(0)
            return self._answer(qname, rdtype)
        finally:
            self.active -= 1

    async def addresses(self, name: str) -> tuple[DnsAnswer, DnsAnswer]:
        a, aaaa = await asyncio.gather(self.lookup(name, "A"), self.lookup(name, "AAAA"))
        return a, aaaa

    async def ptr(self, ip: str) -> DnsAnswer:
        import dns.reversename

        return await self.lookup(dns.reversename.from_address(ip).to_text(omit_final_dot=True), "PTR")

    def _answer(self, qname: str, rdtype: str) -> DnsAnswer:
        recs = self.zone.get(qname)
        if recs is None:
            return DnsAnswer(qname, rdtype, Outcome.NXDOMAIN)
        if isinstance(recs, str):         # "TIMEOUT", the only text value
            return DnsAnswer(qname, rdtype, Outcome.TIMEOUT, detail="simulated timeout")
        # CNAME: follow one chain
        for t, v in recs:
            if t == "CNAME" and rdtype != "CNAME":
                target = str(v).rstrip(".").lower()
                inner = self._answer(target, rdtype)
                return DnsAnswer(qname, rdtype, inner.outcome, inner.records, canonical_name=target)
        out = []
        for t, v in recs:
            if t != rdtype:
                continue
            if v == "TIMEOUT":
                return DnsAnswer(qname, rdtype, Outcome.TIMEOUT, detail="simulated timeout")
            if v == "SERVFAIL":
                return DnsAnswer(qname, rdtype, Outcome.SERVFAIL)
            out.append(_rdata(t, v))
        if not out:
            return DnsAnswer(qname, rdtype, Outcome.NODATA)
        return DnsAnswer(qname, rdtype, Outcome.OK, tuple(out))

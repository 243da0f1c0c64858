"""RFC 7208 check_host() on deliverck's asynchronous DNS layer.

Evaluation follows the RFC's order exactly; lookups are fetched ahead.  When
a record is parsed, the TXT lookups of its macro-free include:/redirect=
targets (and, when they arrive, their own records' targets) and the A/AAAA
or MX lookups of its macro-free a/mx/exists mechanisms are started as tasks
while the terms are evaluated in order.  Results are consumed in RFC order
from a per-evaluation cache, so a prefetch never changes a result, and the
lookup limit counts the terms evaluated, not the prefetches.  A deep include
tree thus costs about its depth in round trips.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import urllib.parse
from dataclasses import dataclass
from typing import Protocol

import dns.reversename

from deliverck.net.dns import DnsAnswer, Outcome
from deliverck.spf.record import (
    MacroExpand, MacroString, Mechanism, Modifier, ParseError, SpfRecord,
    is_spf_record, parse_macro_string, parse_record,
)
from deliverck.spf.trace import DomainTrace, LookupTrace, TermTrace

LOOKUP_LIMIT = 10       # RFC 7208 4.6.4
VOID_LIMIT = 2          # RFC 7208 4.6.4
MX_LIMIT = 10
PTR_LIMIT = 10
PREFETCH_CAP = 60       # queries started ahead per evaluation, whatever the records say
RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")


class Lookup(Protocol):
    async def lookup(self, name: str, rdtype: str) -> DnsAnswer: ...


@dataclass(frozen=True)
class SpfResult:
    result: str                      # one of RESULTS
    domain: str
    ip: str
    sender: str
    helo: str
    mechanism: str = ""              # the term that decided ("" for the default result, none, errors)
    explanation: str = ""            # on fail: the exp= text or the default explanation
    problems: tuple[str, ...] = ()   # human lines: why permerror/temperror, limits, ...
    lookups_used: int = 0            # DNS-querying terms evaluated (limit 10)
    void_lookups: int = 0            # lookups with no answer (limit 2)
    trace: DomainTrace | None = None

    def as_dict(self) -> dict:
        return {
            "result": self.result, "domain": self.domain, "ip": self.ip, "sender": self.sender,
            "helo": self.helo, "mechanism": self.mechanism, "explanation": self.explanation,
            "problems": list(self.problems), "lookups_used": self.lookups_used,
            "void_lookups": self.void_lookups, "trace": self.trace.as_dict() if self.trace else None,
        }


class _Stop(Exception):
    """Ends check_host() of the current domain with permerror or temperror."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result
        self.message = message


def valid_domain(name: str) -> bool:
    """A multi-label domain name with sane labels (RFC 7208 4.3)."""
    n = name[:-1] if name.endswith(".") else name
    if not n or len(n) > 253 or "[" in n or "]" in n:
        return False
    labels = n.split(".")
    if len(labels) < 2 or any(not lb or len(lb) > 63 for lb in labels):
        return False
    return not labels[-1].isdigit()


def _split_sender(sender: str) -> tuple[str, str]:
    if "@" in sender:
        local, _, domain = sender.rpartition("@")
        return local or "postmaster", domain
    return "postmaster", sender


def _txt(rdata) -> str:
    strings = getattr(rdata, "strings", None)
    if strings is None:
        return str(rdata)
    return b"".join(strings).decode("utf-8", "replace")


def _answers(ans: DnsAnswer) -> tuple[str, ...]:
    out = []
    for r in ans.records[:20]:
        if hasattr(r, "strings"):
            out.append(_txt(r))
        else:
            out.append(r.to_text())
    return tuple(out)


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def _truncate(name: str) -> str:
    """Over 253 characters: drop labels from the left (RFC 7208 7.3)."""
    name = name.rstrip(".")
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name


class Evaluator:
    def __init__(self, ip: str, sender: str, helo: str, dns: Lookup, receiver: str,
                 now: int | None, default_explanation: str | None) -> None:
        addr = ipaddress.ip_address(ip)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        self.addr = addr
        # %{i} of an IPv6 address: nibbles in the case the address was given in.
        self._upper_hex = any(c in "ABCDEF" for c in ip)
        self.ip = str(addr)
        self.sender = sender
        self.local, self.sender_domain = _split_sender(sender)
        self.helo = helo
        self.dns = dns
        self.receiver = receiver
        self.now = int(time.time()) if now is None else now
        self.default_explanation = default_explanation
        self.lookups = 0
        self.voids = 0
        self.problems: list[str] = []
        self._cache: dict[tuple[str, str], asyncio.Future] = {}
        self._bg: list[asyncio.Future] = []
        self._prefetched = 0
        self._validated: str | None = None

    # ---- DNS ---------------------------------------------------------------

    @property
    def addr_type(self) -> str:
        return "A" if self.addr.version == 4 else "AAAA"

    def _start(self, name: str, rdtype: str) -> asyncio.Future:
        key = (_norm(name), rdtype)
        fut = self._cache.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._safe_lookup(key[0], rdtype))
            self._cache[key] = fut
        return fut

    async def _safe_lookup(self, name: str, rdtype: str) -> DnsAnswer:
        if not name or len(name) > 253 or any(not lb or len(lb) > 63 for lb in name.split(".")):
            # Not a composable DNS name (empty or long label, perhaps from a
            # macro): treated as non-existent (RFC 7208 4.3 by analogy, 4.8).
            return DnsAnswer(name, rdtype, Outcome.NXDOMAIN, detail="not a valid DNS name")
        try:
            return await self.dns.lookup(name, rdtype)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a resolver must not crash the evaluation
            return DnsAnswer(name, rdtype, Outcome.ERROR, detail=f"{type(e).__name__}: {e}")

    async def q(self, name: str, rdtype: str, rec: list[LookupTrace]) -> DnsAnswer:
        ans = await asyncio.shield(self._start(name, rdtype))
        rec.append(LookupTrace(_norm(name), rdtype, ans.outcome.value, _answers(ans)))
        return ans

    # ---- prefetch ----------------------------------------------------------

    def _prefetch(self, record: SpfRecord, domain: str) -> None:
        budget = LOOKUP_LIMIT - self.lookups + 1
        for t in record.terms:
            if budget <= 0 or self._prefetched >= PREFETCH_CAP:
                return
            if not t.counts:
                continue
            budget -= 1
            if isinstance(t, Modifier):
                if t.name == "redirect" and not record.has_all and not t.value.has_macros:
                    self._spawn(self._prefetch_record(_truncate(t.value.literal)))
                continue
            spec = t.domain_spec
            if spec is not None and spec.has_macros:
                continue
            target = _truncate(spec.literal) if spec is not None else domain
            if t.name == "include":
                self._spawn(self._prefetch_record(target))
            elif t.name == "a":
                self._prefetch_one(target, self.addr_type)
            elif t.name == "exists":
                self._prefetch_one(target, "A")
            elif t.name == "mx":
                self._spawn(self._prefetch_mx(target))

    def _prefetch_one(self, name: str, rdtype: str) -> asyncio.Future | None:
        if (_norm(name), rdtype) in self._cache:
            return self._cache[(_norm(name), rdtype)]
        if self._prefetched >= PREFETCH_CAP:
            return None
        self._prefetched += 1
        return self._start(name, rdtype)

    def _spawn(self, coro) -> None:
        self._bg.append(asyncio.ensure_future(coro))

    async def _prefetch_record(self, domain: str) -> None:
        fut = self._prefetch_one(domain, "TXT")
        if fut is None:
            return
        ans = await asyncio.shield(fut)
        if not ans.ok:
            return
        texts = [s for s in (_txt(r) for r in ans.records) if is_spf_record(s)]
        if len(texts) == 1:
            rec = parse_record(texts[0])
            if isinstance(rec, SpfRecord):
                self._prefetch(rec, domain)

    async def _prefetch_mx(self, domain: str) -> None:
        fut = self._prefetch_one(domain, "MX")
        if fut is None:
            return
        ans = await asyncio.shield(fut)
        if ans.ok and len(ans.records) <= MX_LIMIT:
            for r in ans.records:
                ex = r.exchange.to_text(omit_final_dot=True)
                if ex and ex != ".":
                    self._prefetch_one(ex, self.addr_type)

    async def close(self) -> None:
        pending = [t for t in self._bg if not t.done()] + [t for t in self._cache.values() if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ---- macros ------------------------------------------------------------

    async def expand(self, ms: MacroString, domain: str, rec: list[LookupTrace], *, exp: bool = False) -> str:
        out: list[str] = []
        for p in ms.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            out.append(await self._expand_one(p, domain, rec, exp))
        return "".join(out)

    async def _expand_one(self, m: MacroExpand, domain: str, rec: list[LookupTrace], exp: bool) -> str:
        letter = m.letter
        if letter == "s":
            value = f"{self.local}@{self.sender_domain}"
        elif letter == "l":
            value = self.local
        elif letter == "o":
            value = self.sender_domain
        elif letter == "d":
            value = domain
        elif letter == "i":
            if self.addr.version == 4:
                value = self.ip
            else:
                value = ".".join(self.addr.exploded.replace(":", ""))
                if self._upper_hex:
                    value = value.upper()
        elif letter == "p":
            value = await self.validated_name(domain, rec)
        elif letter == "v":
            value = "in-addr" if self.addr.version == 4 else "ip6"
        elif letter == "h":
            value = self.helo
        elif letter == "c":
            value = self.ip
        elif letter == "r":
            value = self.receiver
        elif letter == "t":
            value = str(self.now)
        else:  # pragma: no cover - the parser refuses other letters
            raise _Stop("permerror", f"unknown macro letter {letter!r}")
        if m.digits is not None or m.reverse or m.delimiters:
            delims = m.delimiters or "."
            parts = [value]
            for d in delims:
                parts = [x for piece in parts for x in piece.split(d)]
            if m.reverse:
                parts.reverse()
            if m.digits is not None and m.digits < len(parts):
                parts = parts[-m.digits:]
            value = ".".join(parts)
        if m.upper:
            value = urllib.parse.quote(value, safe="")
        return value

    async def validated_name(self, domain: str, rec: list[LookupTrace]) -> str:
        """%{p}: a PTR name of the address that resolves back to it (RFC 7208 7.3), or "unknown"."""
        names = await self._validated_names(rec)
        if not names:
            return "unknown"
        d = _norm(domain)
        for n in names:
            if _norm(n) == d:
                return n
        for n in names:
            if _norm(n).endswith("." + d):
                return n
        return names[0]

    async def _validated_names(self, rec: list[LookupTrace]) -> list[str]:
        ans = await self.q(dns.reversename.from_address(self.ip).to_text(omit_final_dot=True), "PTR", rec)
        if not ans.ok:
            return []
        names = [r.target.to_text(omit_final_dot=True) for r in ans.records][:PTR_LIMIT]
        answers = await asyncio.gather(*(self.q(n, self.addr_type, rec) for n in names))
        out = []
        for n, a in zip(names, answers):
            if a.ok and any(ipaddress.ip_address(r.address) == self.addr for r in a.records):
                out.append(n)
        return out

    async def target(self, m: Mechanism | Modifier, domain: str, rec: list[LookupTrace]) -> str:
        spec = m.value if isinstance(m, Modifier) else m.domain_spec
        if spec is None:
            return domain
        return _truncate(await self.expand(spec, domain, rec))

    # ---- check_host --------------------------------------------------------

    def _count(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > LOOKUP_LIMIT:
            raise _Stop("permerror", f"more than {LOOKUP_LIMIT} DNS-querying terms (at {term})")

    def _void(self, term: str) -> None:
        self.voids += 1
        if self.voids > VOID_LIMIT:
            raise _Stop("permerror", f"more than {VOID_LIMIT} void lookups (at {term})")

    async def record_for(self, domain: str) -> tuple[str, SpfRecord | ParseError | None, LookupTrace, str]:
        """(result-if-no-evaluation, record, lookup, note): record selection (RFC 7208 4.5)."""
        rec: list[LookupTrace] = []
        ans = await self.q(domain, "TXT", rec)
        if not ans.outcome.definite:
            return "temperror", None, rec[0], f"TXT lookup failed: {ans.outcome.value}"
        if not ans.ok:
            return "none", None, rec[0], f"no SPF record (TXT {ans.outcome.value})"
        texts = [s for s in (_txt(r) for r in ans.records) if is_spf_record(s)]
        if not texts:
            return "none", None, rec[0], "no SPF record (no TXT record starts with v=spf1)"
        if len(texts) > 1:
            return "permerror", None, rec[0], f"{len(texts)} SPF records (exactly one is allowed)"
        parsed = parse_record(texts[0])
        if isinstance(parsed, ParseError):
            return "permerror", parsed, rec[0], f"syntax error: {parsed}"
        return "", parsed, rec[0], ""

    async def check_domain(self, domain: str, via: str, want_exp: bool,
                           ) -> tuple[str, str, str, DomainTrace]:
        """(result, deciding term, explanation, trace) for one domain."""
        domain = _norm(domain)
        early, record, lookup, note = await self.record_for(domain)
        record_text = ""
        if isinstance(record, ParseError):
            self.problems.append(f"{domain}: {note}")
            txts = [t for t in lookup.answers if is_spf_record(t)]
            record_text = txts[0] if txts else ""
            return "permerror", "", "", DomainTrace(domain, via, record_text, lookup, (), "permerror", note)
        if record is None:
            if early in ("permerror", "temperror"):
                self.problems.append(f"{domain}: {note}")
            return early, "", "", DomainTrace(domain, via, "", lookup, (), early, note)
        self._prefetch(record, domain)
        terms: list[TermTrace] = []
        try:
            for t in record.terms:
                if not isinstance(t, Mechanism):
                    continue
                matched, tt = await self.mechanism(t, domain)
                terms.append(tt)
                if matched:
                    result = t.result
                    explanation = ""
                    if result == "fail" and want_exp:
                        explanation = await self.explain(record, domain, terms)
                    return result, t.text, explanation, DomainTrace(
                        domain, via, record.text, lookup, tuple(terms), result)
            redirect = record.redirect
            if redirect is not None and not record.has_all:
                rec: list[LookupTrace] = []
                try:
                    self._count(redirect.text)
                    target = await self.target(redirect, domain, rec)
                except _Stop as e:
                    terms.append(TermTrace(redirect.text, None, tuple(rec), e.message))
                    raise
                result, mech, explanation, child = await self.check_domain(target, "redirect", want_exp)
                note = ""
                if result == "none":
                    result = "permerror"
                    note = f"redirect target {target} has no SPF record"
                    self.problems.append(f"{domain}: {note}")
                terms.append(TermTrace(redirect.text, None, tuple(rec), note, child))
                return result, mech, explanation, DomainTrace(domain, via, record.text, lookup, tuple(terms), result)
            return "neutral", "", "", DomainTrace(domain, via, record.text, lookup, tuple(terms), "neutral",
                                                  "no mechanism matched: default result")
        except _Stop as e:
            partial = getattr(e, "trace", None)
            if partial is not None and (not terms or terms[-1] is not partial):
                terms.append(partial)
            if not any(e.message in p for p in self.problems):
                self.problems.append(f"{domain}: {e.message}")
            return e.result, "", "", DomainTrace(domain, via, record.text, lookup, tuple(terms), e.result, e.message)

    async def mechanism(self, m: Mechanism, domain: str) -> tuple[bool, TermTrace]:
        rec: list[LookupTrace] = []
        note = ""
        child = None
        try:
            if m.name == "all":
                return True, TermTrace(m.text, True)
            if m.name == "ip4" or m.name == "ip6":
                if (m.name == "ip4") != (self.addr.version == 4):
                    return False, TermTrace(m.text, False, note="other address family")
                plen = m.cidr4 if m.name == "ip4" else m.cidr6
                net = ipaddress.ip_network(f"{m.network}/{plen if plen is not None else (32 if m.name == 'ip4' else 128)}",
                                           strict=False)
                hit = self.addr in net
                return hit, TermTrace(m.text, hit)
            self._count(m.text)
            target = await self.target(m, domain, rec)
            if m.name == "include":
                result, _mech, _exp, child = await self.check_domain(target, "include", False)
                note = f"include result {result}"
                if result == "pass":
                    return True, TermTrace(m.text, True, tuple(rec), note, child)
                if result in ("fail", "softfail", "neutral"):
                    return False, TermTrace(m.text, False, tuple(rec), note + " -> no match", child)
                if result == "none":
                    raise _Stop("permerror", f"include:{target} has no SPF record")
                raise _Stop(result, f"include:{target} gave {result}")
            if m.name == "a":
                ans = await self.q(target, self.addr_type, rec)
                hit = self._addr_match(ans, m, m.text)
                return hit, TermTrace(m.text, hit, tuple(rec))
            if m.name == "mx":
                hit = await self._mx(target, m, rec)
                return hit, TermTrace(m.text, hit, tuple(rec))
            if m.name == "ptr":
                hit = await self._ptr(target, m, rec)
                return hit, TermTrace(m.text, hit, tuple(rec))
            if m.name == "exists":
                ans = await self.q(target, "A", rec)
                if not ans.outcome.definite:
                    raise _Stop("temperror", f"{m.text}: A lookup of {target} failed ({ans.outcome.value})")
                if not ans.ok:
                    self._void(m.text)
                    return False, TermTrace(m.text, False, tuple(rec), "void lookup")
                return True, TermTrace(m.text, True, tuple(rec))
            raise _Stop("permerror", f"unknown mechanism {m.name}")  # pragma: no cover
        except _Stop as e:
            e.trace = TermTrace(m.text, None, tuple(rec), e.message, child)  # type: ignore[attr-defined]
            raise

    def _addr_match(self, ans: DnsAnswer, m: Mechanism, term: str) -> bool:
        if not ans.outcome.definite:
            raise _Stop("temperror", f"{term}: {ans.rdtype} lookup of {ans.qname} failed ({ans.outcome.value})")
        if not ans.ok:
            self._void(term)
            return False
        return self._in_any(ans, m)

    def _in_any(self, ans: DnsAnswer, m: Mechanism) -> bool:
        plen = m.cidr4 if self.addr.version == 4 else m.cidr6
        for r in ans.records:
            try:
                a = ipaddress.ip_address(r.address)
            except (AttributeError, ValueError):
                continue
            if a.version != self.addr.version:
                continue
            net = ipaddress.ip_network(f"{a}/{plen if plen is not None else a.max_prefixlen}", strict=False)
            if self.addr in net:
                return True
        return False

    async def _mx(self, target: str, m: Mechanism, rec: list[LookupTrace]) -> bool:
        ans = await self.q(target, "MX", rec)
        if not ans.outcome.definite:
            raise _Stop("temperror", f"{m.text}: MX lookup of {target} failed ({ans.outcome.value})")
        if not ans.ok:
            self._void(m.text)
            return False
        names = []
        for r in sorted(ans.records, key=lambda r: r.preference):
            ex = r.exchange.to_text(omit_final_dot=True)
            if ex and ex != ".":
                names.append(ex)
        if len(ans.records) > MX_LIMIT:
            raise _Stop("permerror", f"{m.text}: {target} has {len(ans.records)} MX records (limit {MX_LIMIT})")
        answers = await asyncio.gather(*(self.q(n, self.addr_type, rec) for n in names))
        failed = None
        for a in answers:
            if a.ok and self._in_any(a, m):
                return True
            if not a.outcome.definite:
                failed = a
        if failed is not None:
            raise _Stop("temperror", f"{m.text}: lookup of MX host {failed.qname} failed ({failed.outcome.value})")
        return False

    async def _ptr(self, target: str, m: Mechanism, rec: list[LookupTrace]) -> bool:
        ans = await self.q(dns.reversename.from_address(self.ip).to_text(omit_final_dot=True), "PTR", rec)
        if not ans.ok:
            if ans.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
                self._void(m.text)
            return False   # RFC 7208 5.5: a DNS error in the PTR lookup: no match
        names = [r.target.to_text(omit_final_dot=True) for r in ans.records][:PTR_LIMIT]
        t = _norm(target)
        answers = await asyncio.gather(*(self.q(n, self.addr_type, rec) for n in names))
        for n, a in zip(names, answers):
            if not a.ok:
                continue   # errors: that name is skipped
            if any(ipaddress.ip_address(r.address) == self.addr for r in a.records):
                nn = _norm(n)
                if nn == t or nn.endswith("." + t):
                    return True
        return False

    async def explain(self, record: SpfRecord, domain: str, terms: list[TermTrace]) -> str:
        exp = record.exp
        default = self.default_explanation
        if default is None:
            default = f"{domain} does not designate {self.ip} as permitted sender"
        if exp is None:
            return default
        rec: list[LookupTrace] = []
        try:
            target = await self.target(exp, domain, rec)
            ans = await self.q(target, "TXT", rec)
            if not ans.ok or len(ans.records) != 1:
                terms.append(TermTrace(exp.text, None, tuple(rec), "no single TXT record: default explanation"))
                return default
            text = _txt(ans.records[0])
            ms = parse_macro_string(text, exp=True, allow_space=True)
            value = await self.expand(ms, domain, rec, exp=True)
            terms.append(TermTrace(exp.text, None, tuple(rec), "explanation"))
            return value
        except (ParseError, _Stop) as e:
            terms.append(TermTrace(exp.text, None, tuple(rec), f"explanation unusable ({e}): default explanation"))
            return default


async def check_host(ip: str, domain: str, *, sender: str, helo: str = "", dns: Lookup,
                     receiver: str = "deliverck.invalid", now: int | None = None,
                     default_explanation: str | None = None) -> SpfResult:
    """RFC 7208 check_host(<ip>, <domain>, <sender>).

    `sender` is the MAIL FROM address (for the HELO identity pass
    `postmaster@<helo>`); a sender without local-part gets "postmaster".
    Never raises for DNS or record problems: they are the result.
    """
    ev = Evaluator(ip, sender, helo, dns, receiver, now, default_explanation)
    d = domain.strip()
    if not valid_domain(d):
        return SpfResult("none", d, ev.ip, sender, helo, problems=(f"{d!r} is not a valid domain name",))
    try:
        result, mech, explanation, trace = await ev.check_domain(d, "check_host", True)
    finally:
        await ev.close()
    return SpfResult(result, _norm(d), ev.ip, sender, helo, mech, explanation, tuple(ev.problems),
                     ev.lookups, ev.voids, trace)

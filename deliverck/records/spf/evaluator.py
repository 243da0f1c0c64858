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

import asyncio
import ipaddress
from dataclasses import dataclass

import dns.reversename

from deliverck.net.dns import DnsAnswer, Outcome
from deliverck.records.spf.names import domain_problem, loop_message
from deliverck.records.spf.names import norm as _norm
from deliverck.records.spf.names import txt_string as _txt
from deliverck.records.spf.record import (
    Mechanism,
    ParseError,
    SpfRecord,
    is_spf_record,
    parse_macro_string,
    parse_record,
)
from deliverck.records.spf.state import (
    LOOKUP_LIMIT,
    MX_LIMIT,
    PTR_LIMIT,
    VOID_LIMIT,
    EvalState,
    Lookup,
    _Stop,
)
from deliverck.records.spf.trace import DomainTrace, LookupTrace, TermTrace

__all__ = ["LOOKUP_LIMIT", "VOID_LIMIT", "MX_LIMIT", "PTR_LIMIT", "RESULTS", "CAUSES", "Lookup", "SpfResult",
           "Evaluator", "check_host"]

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
# Why a result came out as it did, when it is not simply "a mechanism matched":
CAUSES = (
    "invalid_domain",    # none: the domain cannot be a DNS name (RFC 7208 4.3)
    "nxdomain",          # none: the domain does not exist (RFC 7208 4.3)
    "no_record",         # none: no TXT record starts with v=spf1 (RFC 7208 4.5)
    "default",           # neutral: nothing matched and there is no all / redirect= (RFC 7208 4.7)
    "multiple",          # permerror: more than one SPF record (RFC 7208 4.5)
    "syntax",            # permerror: a syntax error in a record (RFC 7208 4.6)
    "too_many_lookups",  # permerror: more than 10 DNS-querying terms (RFC 7208 4.6.4)
    "void_lookups",      # permerror: more than 2 void lookups (RFC 7208 4.6.4)
    "mx_limit",          # permerror: an mx mechanism met more than 10 MX records (RFC 7208 4.6.4)
    "loop",              # permerror: an include:/redirect= leads back to a domain being evaluated
    "include_none",      # permerror: an include: target has no SPF record (RFC 7208 5.2)
    "redirect_none",     # permerror: the redirect= target has no SPF record (RFC 7208 6.1)
    "dns_failure",       # temperror: a DNS lookup failed (timeout, SERVFAIL ...) (RFC 7208 4.4, 2.6.6)
)



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
    cause: str = ""                  # one of CAUSES, or "" when a mechanism decided
    failed_lookup: LookupTrace | None = None   # temperror: the lookup that failed
    explanation_source: str = ""     # on fail: "exp" (the domain's exp= text) or "default"
    loop: str = ""                   # cause "loop": the loop, as the lint words it

    def as_dict(self) -> dict:
        return {
            "result": self.result, "domain": self.domain, "ip": self.ip, "sender": self.sender,
            "helo": self.helo, "mechanism": self.mechanism, "explanation": self.explanation,
            "explanation_source": self.explanation_source, "cause": self.cause,
            "failed_lookup": self.failed_lookup.as_dict() if self.failed_lookup else None,
            "problems": list(self.problems), "lookups_used": self.lookups_used,
            "void_lookups": self.void_lookups, "trace": self.trace.as_dict() if self.trace else None,
        }


class Evaluator(EvalState):
    """check_host() of RFC 7208 4, in the RFC's order, over the state of one evaluation."""

    # ---- check_host --------------------------------------------------------

    def _count(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > LOOKUP_LIMIT:
            raise self.stop("permerror", f"more than {LOOKUP_LIMIT} DNS-querying terms (at {term})",
                            "too_many_lookups")

    def _void(self, term: str) -> None:
        self.voids += 1
        if self.voids > VOID_LIMIT:
            raise self.stop("permerror", f"more than {VOID_LIMIT} void lookups (at {term})", "void_lookups")

    def _failed(self, rec: list[LookupTrace], ans: DnsAnswer) -> LookupTrace | None:
        for lk in reversed(rec):
            if lk.rdtype == ans.rdtype and not lk.definite:
                return lk
        return None

    async def record_for(self, domain: str) -> tuple[str, SpfRecord | ParseError | None, LookupTrace, str]:
        """(result-if-no-evaluation, record, lookup, note): record selection (RFC 7208 4.5)."""
        rec: list[LookupTrace] = []
        ans = await self.q(domain, "TXT", rec)
        if not ans.outcome.definite:
            self._note_cause("dns_failure", rec[0])
            return "temperror", None, rec[0], f"TXT lookup failed: {ans.outcome.value}"
        if not ans.ok:
            return "none", None, rec[0], f"no SPF record (TXT {ans.outcome.value})"
        texts = [s for s in (_txt(r) for r in ans.records) if is_spf_record(s)]
        if not texts:
            return "none", None, rec[0], "no SPF record (no TXT record starts with v=spf1)"
        if len(texts) > 1:
            self._note_cause("multiple")
            return "permerror", None, rec[0], f"{len(texts)} SPF records (exactly one is allowed)"
        parsed = parse_record(texts[0])
        if isinstance(parsed, ParseError):
            self._note_cause("syntax")
            return "permerror", parsed, rec[0], f"syntax error: {parsed}"
        return "", parsed, rec[0], ""

    async def check_domain(self, domain: str, via: str, want_exp: bool,
                           ) -> tuple[str, str, str, DomainTrace]:
        """(result, deciding term, explanation, trace) for one domain."""
        domain = _norm(domain)
        self._path.append(domain)
        try:
            return await self._check_domain(domain, via, want_exp)
        finally:
            self._path.pop()

    def _loop_check(self, term: str, target: str) -> None:
        """An include:/redirect= back to a domain being evaluated can only end at the
        lookup limit (the same records, the same cached answers, the same terms
        again): say "loop", as the lint does, instead of "more than 10 lookups".
        The result is the permerror RFC 7208 4.6.4 gives either way."""
        t = _norm(target)
        if t in self._path:
            msg = loop_message(term, t, tuple(self._path))
            self.loop = self.loop or msg
            raise self.stop("permerror", msg, "loop")

    async def _check_domain(self, domain: str, via: str, want_exp: bool,
                            ) -> tuple[str, str, str, DomainTrace]:
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
                    self._loop_check(redirect.text, target)
                except _Stop as e:
                    terms.append(TermTrace(redirect.text, None, tuple(rec), e.message))
                    raise
                result, mech, explanation, child = await self.check_domain(target, "redirect", want_exp)
                note = ""
                if result == "none":
                    result = "permerror"
                    note = f"redirect target {target} has no SPF record"
                    self._note_cause("redirect_none")
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
                self._loop_check(m.text, target)
                result, _mech, _exp, child = await self.check_domain(target, "include", False)
                note = f"include result {result}"
                if result == "pass":
                    return True, TermTrace(m.text, True, tuple(rec), note, child)
                if result in ("fail", "softfail", "neutral"):
                    return False, TermTrace(m.text, False, tuple(rec), note + " -> no match", child)
                if result == "none":
                    raise self.stop("permerror", f"include:{target} has no SPF record", "include_none")
                raise _Stop(result, f"include:{target} gave {result}")
            if m.name == "a":
                ans = await self.q(target, self.addr_type, rec)
                hit = self._addr_match(ans, m, m.text, rec)
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
                    raise self.stop("temperror", f"{m.text}: A lookup of {target} failed ({ans.outcome.value})",
                                    "dns_failure", self._failed(rec, ans))
                if not ans.ok:
                    self._void(m.text)
                    return False, TermTrace(m.text, False, tuple(rec), "void lookup")
                return True, TermTrace(m.text, True, tuple(rec))
            raise _Stop("permerror", f"unknown mechanism {m.name}")  # pragma: no cover
        except _Stop as e:
            e.trace = TermTrace(m.text, None, tuple(rec), e.message, child)  # type: ignore[attr-defined]
            raise

    def _addr_match(self, ans: DnsAnswer, m: Mechanism, term: str, rec: list[LookupTrace]) -> bool:
        if not ans.outcome.definite:
            raise self.stop("temperror", f"{term}: {ans.rdtype} lookup of {ans.qname} failed ({ans.outcome.value})",
                            "dns_failure", self._failed(rec, ans))
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
            raise self.stop("temperror", f"{m.text}: MX lookup of {target} failed ({ans.outcome.value})",
                            "dns_failure", self._failed(rec, ans))
        if not ans.ok:
            self._void(m.text)
            return False
        names = []
        for r in sorted(ans.records, key=lambda r: r.preference):
            ex = r.exchange.to_text(omit_final_dot=True)
            if ex and ex != ".":
                names.append(ex)
        if len(ans.records) > MX_LIMIT:
            raise self.stop("permerror", f"{m.text}: {target} has {len(ans.records)} MX records (limit {MX_LIMIT})",
                            "mx_limit")
        answers = await asyncio.gather(*(self.q(n, self.addr_type, rec) for n in names))
        failed = None
        for a in answers:
            if a.ok and self._in_any(a, m):
                return True
            if not a.outcome.definite:
                failed = a
        if failed is not None:
            raise self.stop("temperror", f"{m.text}: lookup of MX host {failed.qname} failed "
                            f"({failed.outcome.value})", "dns_failure", self._failed(rec, failed))
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
        self.exp_source = "default"
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
            self.exp_source = "exp"
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
    why = domain_problem(d)
    if why:
        return SpfResult("none", d, ev.ip, sender, helo,
                         problems=(f"{d!r} is not a valid domain name: {why}; check_host() gives none without "
                                   "a DNS query (RFC 7208 4.3)",), cause="invalid_domain")
    try:
        result, mech, explanation, trace = await ev.check_domain(d, "check_host", True)
    finally:
        await ev.close()
    cause = ev.cause if result in ("permerror", "temperror") else ""
    if result == "none":
        outcome = trace.lookup.outcome if trace.lookup is not None else ""
        cause = "nxdomain" if outcome == "nxdomain" else "no_record"
    elif result == "neutral" and not mech:
        cause = "default"
    return SpfResult(result, _norm(d), ev.ip, sender, helo, mech, explanation, tuple(ev.problems),
                     ev.lookups, ev.voids, trace, cause=cause,
                     failed_lookup=ev.failed if cause == "dns_failure" else None,
                     explanation_source=ev.exp_source if result == "fail" else "",
                     loop=ev.loop if cause == "loop" else "")

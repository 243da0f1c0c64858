"""DMARC for a real message: the From domain's policy, SPF and DKIM alignment, the result and the
policy a receiver would apply, under RFC 7489 and under DMARCbis where they differ.

RFC 7489 (3.2, 6.6.3): the policy is at _dmarc.<From domain>, else at _dmarc.<organizational
domain>, the organizational domain coming from the public suffix list; relaxed alignment compares
organizational domains the same way.  DMARCbis (draft-ietf-dmarc-dmarcbis) replaces the list with
the DNS tree walk (records/dmarc_discovery.py): both the policy and the organizational domains
of the From domain and of each authenticated domain come from `_dmarc` records.  deliverck computes
both and says where they part.

Results (RFC 7489 / RFC 8601 words): pass (an aligned SPF or DKIM pass), fail, none (no policy
record), temperror (a lookup needed for the answer failed), and "unknown" where the answer rests
on an SPF result nobody can compute (no sending address known); the check words that as a may.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from deliverck.message.model import DkimSignature
from deliverck.net.dnsanswer import DnsAnswer
from deliverck.records import dmarc as dm
from deliverck.records import dmarc_discovery as bis
from deliverck.records.dkim_discovery import txt_text
from deliverck.target import org_domain

Lookup = Callable[[str, str], Awaitable[DnsAnswer]]
MAX_ORG_WALKS = 6       # DMARCbis organizational-domain walks per message (From + authenticated domains)


@dataclass(frozen=True)
class SpfInput:
    """What DMARC takes from SPF: the result for the MAIL FROM identity and its domain."""

    result: str          # RFC 7208 word, "" when SPF was not evaluated
    domain: str          # the domain SPF authenticated (MAIL FROM's, or HELO's for the null sender)
    claimed: bool        # the address or the envelope came from headers, not from a session or an option


@dataclass(frozen=True)
class DmarcView:
    """The outcome under one set of rules."""

    model: str                          # bis.RFC7489 or bis.DMARCBIS
    result: str                         # pass, fail, none, temperror, unknown
    reason: str
    policy_domain: str = ""
    record: str = ""
    org_domain: str = ""                # the From domain's organizational domain under these rules
    spf_aligned: bool = False
    dkim_aligned: tuple[str, ...] = ()  # d= of the passing signatures that align
    applied: bis.Applied | None = None  # what failing mail gets


@dataclass(frozen=True)
class DmarcResult:
    from_domain: str
    rfc7489: DmarcView
    dmarcbis: DmarcView
    adkim: str = "r"
    aspf: str = "r"
    evidence: tuple[str, ...] = ()

    @property
    def differs(self) -> bool:
        a, b = self.rfc7489, self.dmarcbis
        same_policy = (a.applied is None) == (b.applied is None) and \
            (a.applied is None or b.applied is None or a.applied.same_outcome(b.applied))
        return a.result != b.result or not same_policy


def _candidates(ans: DnsAnswer) -> list[str]:
    return [t for t in (txt_text(r) for r in ans.records) if dm.is_dmarc_candidate(t)] if ans.ok else []


async def _probe(lookup: Lookup, domain: str) -> bis.Probe:
    ans = await lookup(f"_dmarc.{domain}", "TXT")
    if not ans.outcome.definite:
        return bis.Probe(domain, failed=ans.outcome.value)
    return bis.Probe(domain, tuple(_candidates(ans)))


async def _rfc7489_record(lookup: Lookup, domain: str) -> tuple[str, list[bis.Probe]]:
    """(policy domain, the probes made): _dmarc.<domain>, then _dmarc.<org domain> (RFC 7489 6.6.3)."""
    first = await _probe(lookup, domain)
    if first.failed or first.records:
        return domain, [first]
    org = org_domain(domain)
    if org == domain:
        return domain, [first]
    return org, [first, await _probe(lookup, org)]


def _record(probe: bis.Probe) -> tuple[dm.DmarcRecord | None, str]:
    """The record a receiver applies (exactly one, valid) and why there is none."""
    if probe.failed:
        return None, f"the lookup of _dmarc.{probe.domain} failed ({probe.failed})"
    if not probe.records:
        return None, f"no DMARC record at _dmarc.{probe.domain}"
    if len(probe.records) > 1:
        return None, f"{len(probe.records)} DMARC records at _dmarc.{probe.domain}: receivers apply none"
    rec = probe.parsed
    if rec is None or not rec.applies:
        return None, f"the DMARC record at _dmarc.{probe.domain} is invalid: receivers apply none"
    return rec, ""


async def _exists(lookup: Lookup, domain: str) -> bool:
    """RFC 9091 / DMARCbis np=: a domain without A, AAAA and MX does not exist; a failure counts as existing."""
    answers = await asyncio.gather(*(lookup(domain, t) for t in ("A", "AAAA", "MX")))
    return any(a.ok or not a.outcome.definite for a in answers)


def _judge(model: str, from_domain: str, rec: dm.DmarcRecord, spf: SpfInput, dkim: tuple[DkimSignature, ...],
           org: Callable[[str], str | None]) -> tuple[str, str, bool, tuple[str, ...]]:
    """(result, reason, spf aligned, aligned DKIM domains) for one record under one org-domain rule."""
    def aligned(mode: str, domain: str) -> bool | None:
        a, b = from_domain.lower(), domain.lower().rstrip(".")
        if a == b:
            return True
        if mode == "s":
            return False
        oa, ob = org(a), org(b)
        return None if oa is None or ob is None else oa == ob

    spf_al = spf.result == "pass" and aligned(rec.aspf, spf.domain) is True
    dk = tuple(s.domain for s in dkim if s.result == "pass" and aligned(rec.adkim, s.domain) is True)
    if spf_al or dk:
        how = ([f"SPF pass for {spf.domain}" + (" (claimed envelope)" if spf.claimed else "")] if spf_al else []) \
            + [f"DKIM pass for d={d}" for d in dk]
        return "pass", "aligned: " + ", ".join(how), spf_al, dk
    unknown_org = any(aligned(m, d) is None for m, d in
                      [(rec.aspf, spf.domain)] * (spf.result == "pass") +
                      [(rec.adkim, s.domain) for s in dkim if s.result == "pass"])
    dkim_temp = any(s.result == "temperror" and aligned(rec.adkim, s.domain) is not False for s in dkim)
    spf_temp = spf.result == "temperror" and aligned(rec.aspf, spf.domain) is not False
    if unknown_org or dkim_temp or spf_temp:
        return "temperror", "a lookup needed to decide failed (" + ", ".join(
            w for w, c in (("DKIM key", dkim_temp), ("SPF", spf_temp), ("DMARC tree walk", unknown_org)) if c) + ")", \
            False, ()
    if not spf.result and (not spf.domain or aligned(rec.aspf, spf.domain) is not False):
        return "unknown", "no aligned DKIM pass, and SPF could not be evaluated (the sending address is not known)", \
            False, ()
    parts = []
    parts.append(f"SPF {spf.result or 'not evaluated'} for {spf.domain or 'no domain'}"
                 + ("" if spf.result != "pass" else f", not aligned with {from_domain} (aspf={rec.aspf})"))
    passing = [s for s in dkim if s.result == "pass"]
    if passing:
        parts.append("DKIM passes only for " + ", ".join(f"d={s.domain}" for s in passing)
                     + f", not aligned with {from_domain} (adkim={rec.adkim})")
    else:
        parts.append("no DKIM signature passes" if dkim else "no DKIM signature")
    return "fail", "; ".join(parts), False, ()


async def evaluate(from_domain: str, spf: SpfInput, dkim: tuple[DkimSignature, ...], lookup: Lookup) -> DmarcResult:
    from_domain = from_domain.lower().rstrip(".")
    policy_domain, probes = await _rfc7489_record(lookup, from_domain)
    rec, why = _record(probes[-1])
    evidence = [f"_dmarc.{p.domain}: " + (p.failed.upper() if p.failed else " | ".join(p.records) or "no DMARC record")
                for p in probes]
    if rec is None:
        word = "temperror" if probes[-1].failed else "none"
        rfc = DmarcView(bis.RFC7489, word, why, policy_domain, org_domain=org_domain(from_domain))
    else:
        word, reason, spf_al, dk = _judge(bis.RFC7489, from_domain, rec, spf, dkim, org_domain)
        rfc = DmarcView(bis.RFC7489, word, reason, policy_domain, rec.text, org_domain(from_domain), spf_al, dk,
                        bis.rfc7489_policy(rec, from_domain, policy_domain))
    view, more = await _dmarcbis(from_domain, spf, dkim, lookup)
    return DmarcResult(from_domain, rfc, view, rec.adkim if rec else "r", rec.aspf if rec else "r",
                       tuple(dict.fromkeys((*evidence, *more))))   # the two walks often ask the same names


async def _dmarcbis(from_domain: str, spf: SpfInput, dkim: tuple[DkimSignature, ...],
                    lookup: Lookup) -> tuple[DmarcView, tuple[str, ...]]:
    async def probe(d: str) -> bis.Probe:
        return await _probe(lookup, d)

    pw = await bis.policy_walk(from_domain, probe)
    if pw.failed is not None:
        return DmarcView(bis.DMARCBIS, "temperror", f"the tree walk failed at _dmarc.{pw.failed.domain} "
                         f"({pw.failed.failed})"), ()
    found = pw.found
    evidence = tuple(f"_dmarc.{p.domain}: " + (" | ".join(p.records) or "no DMARC record") for p in pw.probes)
    orgs: dict[str, str | None] = {}
    domains = [from_domain] + [s.domain for s in dkim if s.result == "pass"] + ([spf.domain] if spf.result == "pass" else [])
    for d in dict.fromkeys(x.lower().rstrip(".") for x in domains if x):
        if len(orgs) >= MAX_ORG_WALKS:
            break
        orgs[d] = bis.organizational_domain(await bis.org_walk(d, probe))

    def org(d: str) -> str | None:
        return orgs.get(d.lower().rstrip("."))

    from_org = orgs.get(from_domain) or ""
    if found is None:
        return DmarcView(bis.DMARCBIS, "none", "no DMARC record on the tree walk", org_domain=from_org), evidence
    rec = found.parsed
    if rec is None or not rec.applies:
        return DmarcView(bis.DMARCBIS, "none", f"the DMARC record at _dmarc.{found.domain} is invalid",
                         found.domain, found.record or "", from_org), evidence
    exists = True
    if found.domain != from_domain and "np" in rec.tags:
        exists = await _exists(lookup, from_domain)
    word, reason, spf_al, dk = _judge(bis.DMARCBIS, from_domain, rec, spf, dkim, org)
    return DmarcView(bis.DMARCBIS, word, reason, found.domain, rec.text, from_org, spf_al, dk,
                     bis.dmarcbis_policy(rec, from_domain, found.domain, exists)), evidence

"""Audit of a domain's SPF record tree, independent of any sending address.

check_host() stops at the first match, so it cannot say how many lookups the
whole record costs.  `lint_domain` walks every macro-free include: and
redirect= (bounded), counts the DNS-querying terms and void lookups of the
whole tree, and reports the record-level problems an audit names: +all, ?all,
no all, ptr, includes of domains without SPF, loops, syntax errors.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from deliverck.net.dns import DnsAnswer, Outcome
from deliverck.records.spf.names import loop_message
from deliverck.records.spf.names import txt_string as _txt
from deliverck.records.spf.record import (
    Mechanism,
    Modifier,
    ParseError,
    SpfRecord,
    is_spf_record,
    parse_record,
)
from deliverck.records.spf.state import LOOKUP_LIMIT, VOID_LIMIT, Lookup

MAX_RECORDS = 40        # records fetched per lint, whatever the tree says

# The wording of a loop, shared by the spf check's `spf.loop` finding and the
# `deliverck spf` command, so that one cause reads the same everywhere.
LOOP_SUMMARY = "the SPF record tree of {subject} loops: {message}"


@dataclass(frozen=True)
class LintIssue:
    code: str            # plus_all, neutral_all, no_all, ptr, include_missing, include_error,
                         # include_failed, loop, syntax, multiple
    domain: str          # the domain whose record has the problem
    term: str            # the term, or ""
    message: str
    target: str = ""     # include_failed: the name whose TXT lookup failed
    outcome: str = ""    # include_failed: how it failed (timeout, servfail ...)


@dataclass(frozen=True)
class SpfLint:
    domain: str
    lookup: DnsAnswer                 # the TXT lookup of the domain
    records: tuple[str, ...]          # SPF records found at the domain (normally one)
    record: SpfRecord | None          # the parsed record when exactly one parses
    parse_error: str = ""
    total_lookups: int = 0            # DNS-querying terms in the whole tree
    void_lookups: int = 0             # macro-free targets that do not exist / have no records
    void_terms: tuple[str, ...] = ()
    issues: tuple[LintIssue, ...] = ()
    truncated: bool = False           # the walk stopped at MAX_RECORDS

    @property
    def over_limit(self) -> bool:
        return self.total_lookups > LOOKUP_LIMIT

    @property
    def over_void_limit(self) -> bool:
        return self.void_lookups > VOID_LIMIT


@dataclass
class _Walk:
    dns: Lookup
    total: int = 0
    voids: int = 0
    void_terms: list[str] = field(default_factory=list)
    issues: list[LintIssue] = field(default_factory=list)
    fetched: int = 0
    truncated: bool = False


async def _lookup(dns: Lookup, name: str, rdtype: str) -> DnsAnswer:
    try:
        return await dns.lookup(name, rdtype)
    except Exception as e:  # a lint never crashes on a resolver problem
        return DnsAnswer(name, rdtype, Outcome.ERROR, detail=str(e))


def _select(ans: DnsAnswer) -> list[str]:
    if not ans.ok:
        return []
    return [s for s in (_txt(r) for r in ans.records) if is_spf_record(s)]


async def lint_domain(domain: str, dns: Lookup) -> SpfLint:
    domain = domain.rstrip(".").lower()
    ans = await _lookup(dns, domain, "TXT")
    records = _select(ans)
    if len(records) != 1:
        return SpfLint(domain, ans, tuple(records), None)
    parsed = parse_record(records[0])
    if isinstance(parsed, ParseError):
        return SpfLint(domain, ans, tuple(records), None, parse_error=str(parsed))
    w = _Walk(dns)
    _top_level(parsed, domain, w)
    await _walk(parsed, domain, w, (domain,))
    return SpfLint(domain, ans, tuple(records), parsed, "", w.total, w.voids, tuple(w.void_terms),
                   tuple(w.issues), w.truncated)


def _top_level(rec: SpfRecord, domain: str, w: _Walk) -> None:
    alls = [m for m in rec.mechanisms if m.name == "all"]
    if alls and alls[0].qualifier == "+":
        w.issues.append(LintIssue("plus_all", domain, alls[0].text,
                                  f"{alls[0].text}: every address on the internet may send as {domain}"))
    elif alls and alls[0].qualifier == "?":
        w.issues.append(LintIssue("neutral_all", domain, alls[0].text,
                                  f"{alls[0].text}: addresses not listed are neutral, which authorizes nothing and "
                                  "forbids nothing"))
    elif not alls and rec.redirect is None:
        w.issues.append(LintIssue("no_all", domain, "",
                                  "no 'all' mechanism and no redirect=: unlisted addresses get neutral"))


async def _walk(rec: SpfRecord, domain: str, w: _Walk, path: tuple[str, ...]) -> None:
    children: list[tuple[str, str, str]] = []     # (kind, term, target)
    checks = []
    for t in rec.terms:
        if not t.counts:
            continue
        if isinstance(t, Modifier):
            if t.name == "redirect" and not rec.has_all:
                w.total += 1
                if not t.value.has_macros:
                    children.append(("redirect", t.text, t.value.literal.rstrip(".").lower()))
            continue
        w.total += 1
        if t.name == "ptr":
            w.issues.append(LintIssue("ptr", domain, t.text,
                                      f"{t.text}: the ptr mechanism is deprecated (RFC 7208 5.5): slow, unreliable, "
                                      "and some receivers ignore or penalize it"))
            continue
        if t.domain_spec is not None and t.domain_spec.has_macros:
            continue
        target = t.domain_spec.literal.rstrip(".").lower() if t.domain_spec is not None else domain
        if t.name == "include":
            children.append(("include", t.text, target))
        else:
            checks.append((t, target))
    results = await asyncio.gather(*(_void_check(w.dns, t, target) for t, target in checks))
    for (t, _), void in zip(checks, results):
        if void:
            w.voids += 1
            w.void_terms.append(f"{domain}: {t.text} ({void})")
    subs = []
    for kind, term, target in children:
        if target in path:
            w.issues.append(LintIssue("loop", domain, term, loop_message(term, target, path)))
            continue
        if w.fetched >= MAX_RECORDS or w.total > 3 * LOOKUP_LIMIT:
            w.truncated = True
            continue
        w.fetched += 1
        subs.append((kind, term, target))
    answers = await asyncio.gather(*(_lookup(w.dns, target, "TXT") for _, _, target in subs))
    nested = []
    for (_kind, term, target), ans in zip(subs, answers):
        if not ans.outcome.definite:
            w.issues.append(LintIssue("include_failed", domain, term,
                                      f"{term}: the TXT lookup of {target} failed ({ans.outcome.value})",
                                      target, ans.outcome.value))
            continue
        found = _select(ans)
        if not found:
            what = "does not exist" if ans.outcome is Outcome.NXDOMAIN else "has no SPF record"
            if ans.outcome is Outcome.NXDOMAIN:
                w.voids += 1
                w.void_terms.append(f"{domain}: {term} (NXDOMAIN)")
            w.issues.append(LintIssue("include_missing", domain, term,
                                      f"{term}: {target} {what}: receivers get permerror"))
            continue
        if len(found) > 1:
            w.issues.append(LintIssue("include_error", domain, term,
                                      f"{term}: {target} has {len(found)} SPF records: receivers get permerror"))
            continue
        parsed = parse_record(found[0])
        if isinstance(parsed, ParseError):
            w.issues.append(LintIssue("include_error", domain, term,
                                      f"{term}: the record of {target} has a syntax error ({parsed}): "
                                      "receivers get permerror"))
            continue
        nested.append(_walk(parsed, target, w, path + (target,)))
    if nested:
        await asyncio.gather(*nested)


async def _void_check(dns: Lookup, m: Mechanism, target: str) -> str:
    """"" when the mechanism's lookup has an answer, else the outcome that makes it void."""
    if m.name == "a":
        a, aaaa = await asyncio.gather(_lookup(dns, target, "A"), _lookup(dns, target, "AAAA"))
        if a.outcome in (Outcome.NXDOMAIN, Outcome.NODATA) and aaaa.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
            return a.outcome.value.upper()
        return ""
    rdtype = "MX" if m.name == "mx" else "A"
    ans = await _lookup(dns, target, rdtype)
    if ans.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
        return ans.outcome.value.upper()
    return ""

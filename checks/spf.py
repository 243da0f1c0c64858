"""SPF: does the domain publish a sound SPF record, and does it authorize the
addresses this server sends from?

Receivers evaluate SPF (RFC 7208) for the MAIL FROM domain and, when they
check it, for the HELO name.  A fail is rejected by many (Exchange Online
5.7.23 in seed 002, Postfix with policyd-spf), unauthenticated mail is refused
by Gmail (5.7.26), and a record that is broken (several records, syntax
errors, more than 10 lookups, more than 2 void lookups) is a permerror that
DMARC treats as a failure.
"""

from __future__ import annotations

import asyncio

from deliverck.context import Context, MailAddress, split_public
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net.dns import Outcome
from deliverck.spf.lint import SpfLint, lint_domain

OUT, NONE = Direction.OUTBOUND, Direction.NONE
DNS, MAIL = Owner.DNS_ADMIN, Owner.MAIL_ADMIN
RFC = "RFC 7208"

_AUTH = ("To authorize it, add `ip4:{ip}` (or `ip6:{ip}`, or a mechanism covering it such as `mx` or "
         "`a:<its host name>`) to the SPF record of {domain}, before the final `all`.")

CHECK = CheckSpec(
    id="spf",
    title="SPF (Sender Policy Framework)",
    cause="The domain publishes no SPF record, a broken one, or one that does not authorize the addresses the server sends from.",
    order=70,
    findings=(
        FindingSpec("spf.record", Severity.INFO, "{subject} publishes SPF: {record}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=(f"{RFC} 4.5",)),
        FindingSpec("spf.missing", Severity.WARNING,
                    "{subject} publishes no SPF record ({outcome}): receivers cannot authenticate its mail by SPF",
                    "Publish one TXT record at {subject} listing the addresses that send its mail, e.g. "
                    "`{subject}. TXT \"v=spf1 mx -all\"`. Gmail and Yahoo require SPF or DKIM of every sender "
                    "(both for bulk senders); a domain that sends no mail should publish `v=spf1 -all`.",
                    DNS, OUT, refs=(f"{RFC} 4.5", "Gmail email sender guidelines", "Yahoo sender best practices")),
        FindingSpec("spf.multiple", Severity.ERROR,
                    "{subject} publishes {count} SPF records: receivers get permerror",
                    "Merge them into a single TXT record starting with v=spf1 (RFC 7208 3.2).",
                    DNS, OUT, refs=(f"{RFC} 3.2", f"{RFC} 4.5")),
        FindingSpec("spf.syntax", Severity.ERROR,
                    "the SPF record of {subject} has a syntax error ({error}): receivers get permerror",
                    "Correct the record; check each term against RFC 7208 section 5 and 6.",
                    DNS, OUT, refs=(f"{RFC} 4.6", f"{RFC} 12")),
        FindingSpec("spf.too_many_lookups", Severity.ERROR,
                    "the SPF record of {subject} needs {count} DNS lookups (limit 10): receivers get permerror",
                    "Reduce the include:, a, mx, ptr, exists and redirect= terms of the whole tree to at most 10: "
                    "replace includes you do not use, use ip4:/ip6: ranges instead of a and mx.",
                    DNS, OUT, refs=(f"{RFC} 4.6.4",)),
        FindingSpec("spf.void_lookups", Severity.ERROR,
                    "the SPF record of {subject} makes {count} void lookups (limit 2): receivers get permerror",
                    "Remove the terms that name domains without records: {terms}.",
                    DNS, OUT, refs=(f"{RFC} 4.6.4",)),
        FindingSpec("spf.plus_all", Severity.ERROR,
                    "the SPF record of {subject} ends in {term}: it authorizes every address on the internet",
                    "Replace `+all` with `-all` (or `~all` while you check that every sender is listed).",
                    DNS, OUT, refs=(f"{RFC} 5.1",)),
        FindingSpec("spf.neutral_all", Severity.WARNING,
                    "the SPF record of {subject} ends in {term}: unlisted addresses are neutral, so the record "
                    "forbids nothing",
                    "End the record with `-all` (or `~all`) once every sending address is listed.",
                    DNS, OUT, refs=(f"{RFC} 5.1", f"{RFC} 8.2")),
        FindingSpec("spf.no_all", Severity.NOTICE,
                    "the SPF record of {subject} has no all mechanism and no redirect=: unlisted addresses are neutral",
                    "End the record with `-all` (or `~all`).", DNS, OUT, refs=(f"{RFC} 4.7",)),
        FindingSpec("spf.ptr", Severity.WARNING,
                    "the SPF record tree of {subject} uses the deprecated ptr mechanism ({term})",
                    "Replace ptr with ip4:/ip6: ranges or a: names (RFC 7208 5.5: ptr SHOULD NOT be used).",
                    DNS, OUT, refs=(f"{RFC} 5.5",)),
        FindingSpec("spf.include_missing", Severity.ERROR,
                    "the SPF record tree of {subject}: {message}",
                    "Remove the term, or correct the name to a domain that publishes SPF.",
                    DNS, OUT, refs=(f"{RFC} 5.2",)),
        FindingSpec("spf.include_error", Severity.ERROR,
                    "the SPF record tree of {subject}: {message}",
                    "Correct the included record, or remove the include.",
                    DNS, OUT, refs=(f"{RFC} 5.2",)),
        FindingSpec("spf.loop", Severity.ERROR,
                    "the SPF record tree of {subject} loops: {message}",
                    "Remove the include:/redirect= that points back up the tree.",
                    DNS, OUT, refs=(f"{RFC} 4.6.4",)),
        FindingSpec("spf.lookup_failed", Severity.ERROR,
                    "SPF of {subject} could not be determined: {message}; receivers get temperror and defer",
                    "Make the name servers of the names involved answer TXT (and A/MX) queries.",
                    DNS, OUT, refs=(f"{RFC} 4.4", f"{RFC} 2.6.6"), inconclusive=True),
        FindingSpec("spf.pass", Severity.INFO,
                    "SPF pass: {domain} authorizes {ip} ({mechanism})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=(f"{RFC} 2.6.3",)),
        FindingSpec("spf.fail", Severity.ERROR,
                    "SPF fail: {domain} does not authorize {ip} ({mechanism}); receivers that enforce SPF reject "
                    "its mail",
                    _AUTH, DNS, OUT, refs=(f"{RFC} 2.6.4", "RFC 7372 3.2", "seed 002")),
        FindingSpec("spf.softfail", Severity.WARNING,
                    "SPF softfail: {domain} does not authorize {ip} ({mechanism}); its mail is suspect, often spam-"
                    "foldered, and does not count as authenticated",
                    _AUTH, DNS, OUT, refs=(f"{RFC} 2.6.5",)),
        FindingSpec("spf.neutral", Severity.WARNING,
                    "SPF neutral for {ip} at {domain} ({mechanism}): the address is not authorized",
                    _AUTH, DNS, OUT, refs=(f"{RFC} 2.6.2",)),
        FindingSpec("spf.none", Severity.WARNING,
                    "SPF none for {ip}: {domain} publishes no SPF record, its mail is not SPF-authenticated",
                    "Publish an SPF record for {domain} that lists {ip}.", DNS, OUT, refs=(f"{RFC} 2.6.1",)),
        FindingSpec("spf.permerror", Severity.ERROR,
                    "SPF permerror for {ip} at {domain}: {problem}",
                    "Fix the record so that it evaluates (see the trace); receivers treat permerror as a failure "
                    "(DMARC fails, many reject).",
                    DNS, OUT, refs=(f"{RFC} 2.6.7", "RFC 7372 3.2")),
        FindingSpec("spf.temperror", Severity.ERROR,
                    "SPF temperror for {ip} at {domain}: {problem}",
                    "Make the name servers involved answer; receivers defer mail on temperror.",
                    DNS, OUT, refs=(f"{RFC} 2.6.6",), inconclusive=True),
        FindingSpec("spf.helo_pass", Severity.INFO,
                    "SPF pass for the HELO name {helo} from {ip}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=(f"{RFC} 2.3",)),
        FindingSpec("spf.helo_fail", Severity.ERROR,
                    "SPF {result} for the HELO name {helo} from {ip} ({mechanism}): receivers that check the HELO "
                    "identity reject or penalize the mail",
                    "Publish `{helo}. TXT \"v=spf1 a -all\"` (the host authorizes its own address), or make the "
                    "server announce a name whose SPF lists {ip}.",
                    DNS, OUT, refs=(f"{RFC} 2.3", "RFC 7372 3.2")),
        FindingSpec("spf.helo_none", Severity.NOTICE,
                    "the HELO name {helo} publishes no SPF record",
                    "Publish `{helo}. TXT \"v=spf1 a -all\"` so that receivers can verify the HELO identity "
                    "(RFC 7208 2.3 recommends it).",
                    DNS, OUT, refs=(f"{RFC} 2.3",)),
        FindingSpec("spf.helo_error", Severity.ERROR,
                    "SPF {result} for the HELO name {helo} from {ip}: {problem}",
                    "Fix the SPF record of {helo} (see the trace).",
                    DNS, OUT, refs=(f"{RFC} 2.3",)),
        FindingSpec("spf.helo_temperror", Severity.ERROR,
                    "SPF temperror for the HELO name {helo} from {ip}: {problem}",
                    "Make the name servers of {helo} answer TXT queries.",
                    DNS, OUT, refs=(f"{RFC} 2.3", f"{RFC} 2.6.6"), inconclusive=True),
        FindingSpec("spf.not_public", Severity.INFO,
                    "{subject} is not a public address ({scope}); SPF was not evaluated for it",
                    "Nothing to check from outside.", Owner.NOBODY, NONE),
    ),
)


def _trace(res) -> tuple[str, ...]:
    lines = list(res.trace.render()) if res.trace is not None else []
    if res.explanation:
        lines.append(f"explanation: {res.explanation}")
    lines += [f"problem: {p}" for p in res.problems]
    return tuple(lines[:80])


def _domain(ctx: Context) -> str:
    sender = ctx.config.sender
    if sender and "@" in sender:
        return sender.rpartition("@")[2].rstrip(".").lower()
    if ctx.target.is_ip:
        return ""
    return ctx.target.name


async def _address(ctx: Context, ma: MailAddress, domain: str, sender: str, helo: str) -> list[Finding]:
    ip = ma.ip
    res = await ctx.spf(ip, domain, sender=sender, helo=helo)
    args = dict(ip=ip, domain=domain, mechanism=res.mechanism or "default result", hosts=list(ma.hosts),
                problem="; ".join(res.problems) or res.result, result=res.result)
    out: list[Finding] = []
    if res.result == "pass":
        out.append(CHECK.finding("pass", ip, (res.trace.record,) if res.trace else (), **args))
    elif res.result in ("fail", "softfail", "neutral", "none", "permerror", "temperror"):
        out.append(CHECK.finding(res.result, ip, _trace(res), **args))
    if helo:
        hres = await ctx.spf(ip, helo, sender=f"postmaster@{helo}", helo=helo)
        hargs = dict(ip=ip, helo=helo, result=hres.result, mechanism=hres.mechanism or "default result",
                     problem="; ".join(hres.problems) or hres.result)
        if hres.result == "pass":
            out.append(CHECK.finding("helo_pass", ip, **hargs))
        elif hres.result in ("fail", "softfail"):
            sev = Severity.ERROR if hres.result == "fail" else Severity.WARNING
            out.append(CHECK.finding("helo_fail", ip, _trace(hres), severity=sev, **hargs))
        elif hres.result == "none":
            out.append(CHECK.finding("helo_none", helo, _trace(hres), **hargs))
        elif hres.result == "neutral":
            out.append(CHECK.finding("helo_fail", ip, _trace(hres), severity=Severity.NOTICE, **hargs))
        elif hres.result == "permerror":
            out.append(CHECK.finding("helo_error", ip, _trace(hres), **hargs))
        else:
            out.append(CHECK.finding("helo_temperror", ip, _trace(hres), **hargs))
    return out


def _record_findings(domain: str, lint: SpfLint) -> list[Finding]:
    out: list[Finding] = []
    ans = lint.lookup
    if not ans.outcome.definite:
        return [CHECK.finding("lookup_failed", domain, (ans.describe(),),
                              message=f"the TXT lookup of {domain} failed ({ans.outcome.value})")]
    if not lint.records:
        return [CHECK.finding("missing", domain, (ans.describe(),), outcome=ans.outcome.value.upper()
                              if not ans.ok else "no TXT record starts with v=spf1")]
    if len(lint.records) > 1:
        return [CHECK.finding("multiple", domain, lint.records, count=len(lint.records))]
    if lint.record is None:
        return [CHECK.finding("syntax", domain, lint.records, error=lint.parse_error, record=lint.records[0])]
    record = lint.record.text
    out.append(CHECK.finding("record", domain, (record,), record=record))
    if lint.over_limit:
        out.append(CHECK.finding("too_many_lookups", domain, (record,), count=lint.total_lookups))
    if lint.over_void_limit:
        out.append(CHECK.finding("void_lookups", domain, lint.void_terms, count=lint.void_lookups,
                                 terms="; ".join(lint.void_terms)))
    seen_ptr = False
    for issue in lint.issues:
        if issue.code == "ptr":
            if not seen_ptr:
                out.append(CHECK.finding("ptr", domain, (f"{issue.domain}: {issue.term}",), term=issue.term))
            seen_ptr = True
        elif issue.code in ("plus_all", "neutral_all"):
            out.append(CHECK.finding(issue.code, domain, (record,), term=issue.term))
        elif issue.code == "no_all":
            out.append(CHECK.finding("no_all", domain, (record,)))
        elif issue.code in ("include_missing", "include_error", "loop"):
            out.append(CHECK.finding(issue.code, domain, (f"{issue.domain}: {issue.term}",), message=issue.message))
        elif issue.code == "include_failed":
            out.append(CHECK.finding("lookup_failed", domain, (f"{issue.domain}: {issue.term}",),
                                     message=issue.message))
    return out


async def run(ctx: Context) -> list[Finding]:
    domain = _domain(ctx)
    if not domain:
        raise Skip("no domain to evaluate SPF for: give --sender ADDRESS with an IP address target")
    if not ctx.target.is_ip and not ctx.config.sender:
        mx = await ctx.mx()
        assert mx is not None
        if mx.answer.outcome is Outcome.NXDOMAIN and mx.apex.nxdomain:
            raise Skip(f"{domain} does not exist (see the mx check)")
    sender = ctx.config.sender or f"postmaster@{domain}"
    helo = (ctx.config.helo_name or "").rstrip(".").lower()
    lint = await lint_domain(domain, ctx.dns_client)
    out = _record_findings(domain, lint)
    public, notes = split_public(CHECK, await ctx.mail_addresses())
    out += notes
    results = await asyncio.gather(*(_address(ctx, ma, domain, sender, helo) for ma in public))
    no_record = not lint.records and lint.lookup.outcome.definite
    for r in results:
        # Without a record every address is "none": spf.missing says so once.
        out += [f for f in r if not (no_record and f.id == "spf.none")]
    return out

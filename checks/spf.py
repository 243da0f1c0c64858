"""SPF: does the domain publish a sound SPF record, and does it authorize the
addresses this server sends from?

Receivers evaluate SPF (RFC 7208) for the MAIL FROM domain and, when they
check it, for the HELO name.  A fail is rejected by many (Exchange Online
5.7.23 in seed 002, Postfix with policyd-spf), unauthenticated mail is refused
by Gmail (5.7.26), and a record that is broken (several records, syntax
errors, more than 10 lookups, more than 2 void lookups) is a permerror that
DMARC treats as a failure.

Blame (docs/usage.md): a lookup that fails is laid at the domain's door only
when the resolver still answers for the root and for the failing name's
top-level domain; then the fault lies at or below that zone's delegation and
receivers meet it too (temperror: they defer), which spf.lookup_failed /
spf.temperror / spf.helo_temperror say, with the control answers as evidence
and the deferral predicted.  They stay inconclusive (status error, exit 3),
as mx.lookup_failed does for the same cause: one failed lookup cannot tell a
dead zone from a passing outage.  Otherwise (the resolver refuses, cannot be
reached, or fails the control questions too) it is spf.resolver_failed:
could not check, owned by the checking network, no record blamed and no NDR
predicted (deliverck.records.spf.blame).
"""

from __future__ import annotations

import asyncio
import ipaddress

from deliverck.checkcontext import CheckContext
from deliverck.context import MailAddress, split_public
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net.dns import Outcome
from deliverck.records.spf.blame import Blame
from deliverck.records.spf.evaluator import SpfResult
from deliverck.records.spf.lint import LOOP_SUMMARY, MAX_RECORDS, SpfLint
from deliverck.records.spf.names import txt_string
from deliverck.records.spf.record import Modifier, ParseError, is_spf_record, parse_record
from deliverck.records.spf.state import LOOKUP_LIMIT
from deliverck.records.spf.trace import LookupTrace
from deliverck.target import sender_domain_of

OUT, NONE = Direction.OUTBOUND, Direction.NONE
DNS, MAIL = Owner.DNS_ADMIN, Owner.MAIL_ADMIN
RFC = "RFC 7208"

# {auth}/{auth_range}: the mechanism of the address's own family (ip4: or ip6:, RFC 7208 5.6).
_AUTH = ("To authorize it, add `{auth}` to the SPF record of {domain}, before the final `all` (or a mechanism "
         "that covers it: the range of your sending servers, e.g. `{auth_range}` if every address in it is "
         "yours, or `mx`, or `a:<its host name>`).")
_TEMP_FIX = ("Make the name servers of the zone holding the failing name answer TXT (and A, AAAA, MX) queries "
             "for it: check that every server listed in its NS records (and in the parent's delegation) answers "
             "and is not lame.")

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
                    LOOP_SUMMARY,
                    "Remove the include:/redirect= that points back up the tree.",
                    DNS, OUT, refs=(f"{RFC} 4.6.4",)),
        FindingSpec("spf.lookup_failed", Severity.ERROR,
                    "SPF of {subject} cannot be evaluated: {message}; receivers get temperror and defer its mail",
                    _TEMP_FIX, DNS, OUT, refs=(f"{RFC} 4.4", f"{RFC} 2.6.6"), inconclusive=True),
        FindingSpec("spf.resolver_failed", Severity.ERROR,
                    "SPF of {subject} could not be checked from here: {message}",
                    "Run deliverck with a working recursive resolver (--resolver IP) or repair this machine's "
                    "DNS; nothing shows a fault in the records of {subject}.",
                    Owner.NETWORK, NONE, refs=(f"{RFC} 2.6.6",), inconclusive=True),
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
                    "Publish an SPF record for {domain} that lists {ip}, e.g. `{domain}. TXT \"v=spf1 {auth} -all\"` "
                    "with your other sending servers added.", DNS, OUT, refs=(f"{RFC} 2.6.1",)),
        FindingSpec("spf.permerror", Severity.ERROR,
                    "SPF permerror for {ip} at {domain}: {problem}",
                    "Fix the record so that it evaluates (see the trace); receivers treat permerror as a failure "
                    "(DMARC fails, many reject).",
                    DNS, OUT, refs=(f"{RFC} 2.6.7", "RFC 7372 3.2")),
        FindingSpec("spf.temperror", Severity.ERROR,
                    "SPF temperror for {ip} at {domain}: {problem}; receivers defer its mail",
                    _TEMP_FIX, DNS, OUT, refs=(f"{RFC} 2.6.6",), inconclusive=True),
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
                    "SPF temperror for the HELO name {helo} from {ip}: {problem}; receivers that check the HELO "
                    "identity defer the mail",
                    "Make the name servers of {helo} (and of every name its SPF record uses) answer TXT queries.",
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


def _domain(ctx: CheckContext) -> str:
    sender = sender_domain_of(ctx.config.sender)
    if sender:
        return sender
    if ctx.target.is_ip:
        return ""
    return ctx.target.name


def auth_terms(ip: str) -> dict[str, str]:
    """The mechanism that authorizes `ip`, and a covering range, in the address's own family."""
    a = ipaddress.ip_address(ip)
    if a.version == 4:
        return {"auth": f"ip4:{a}", "auth_range": f"ip4:{ipaddress.ip_network(f'{a}/24', strict=False)}"}
    return {"auth": f"ip6:{a}", "auth_range": f"ip6:{ipaddress.ip_network(f'{a}/64', strict=False)}"}


class _Blamer:
    """One Blame per failed (name, type), and one finding per cause."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.reported: set[tuple[str, str]] = set()
        self.resolver = ", ".join(ctx.resolvers)

    async def blame(self, lk: LookupTrace) -> Blame:
        return await self.ctx.spf_blame(lk)

    def first(self, lk: LookupTrace) -> bool:
        """True the first time this failed lookup is reported."""
        key = (lk.name.rstrip(".").lower(), lk.rdtype)
        if key in self.reported:
            return False
        self.reported.add(key)
        return True

    async def resolver_finding(self, subject: str, b: Blame) -> Finding:
        return CHECK.finding("resolver_failed", subject, (b.failed_line(),) + b.evidence(),
                             message=b.resolver_sentence())


async def _address(ctx: CheckContext, ma: MailAddress, domain: str, sender: str, helo: str,
                   ) -> tuple[MailAddress, SpfResult, SpfResult | None]:
    if not helo:
        return ma, await ctx.spf(ma.ip, domain, sender=sender, helo=helo), None
    res, hres = await asyncio.gather(ctx.spf(ma.ip, domain, sender=sender, helo=helo),
                                     ctx.spf(ma.ip, helo, sender=f"postmaster@{helo}", helo=helo))
    return ma, res, hres


async def _address_findings(ma: MailAddress, res: SpfResult, hres: SpfResult | None, domain: str, helo: str,
                            blamer: _Blamer) -> list[Finding]:
    ip = ma.ip
    args = dict(ip=ip, domain=domain, mechanism=res.mechanism or "default result", hosts=list(ma.hosts),
                problem="; ".join(res.problems) or res.result, result=res.result, **auth_terms(ip))
    out: list[Finding] = []
    if res.result == "pass":
        out.append(CHECK.finding("pass", ip, (res.trace.record,) if res.trace else (), **args))
    elif res.result == "temperror":
        out += await _temperror(ip, res, "temperror", args, blamer)
    elif res.result in ("fail", "softfail", "neutral", "none", "permerror"):
        out.append(CHECK.finding(res.result, ip, _trace(res), **args))
    if hres is not None:
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
            out += await _temperror(ip, hres, "helo_temperror", hargs, blamer)
    return out


async def _temperror(ip: str, res: SpfResult, fid: str, args: dict, blamer: _Blamer) -> list[Finding]:
    """A temperror: the zone's (receivers defer), or the resolver's (could not check, nobody blamed)."""
    lk = res.failed_lookup
    if lk is None:      # nothing to locate the fault with: say what happened, blame nobody
        return [CHECK.finding("resolver_failed", ip, _trace(res), message=args["problem"])]
    b = await blamer.blame(lk)
    if not blamer.first(lk):
        return []       # the record-level finding (or another address) already reports this lookup
    if b.zone:
        return [CHECK.finding(fid, ip, _trace(res) + b.evidence(), **{**args, "problem": b.zone_sentence()})]
    return [await blamer.resolver_finding(ip, b)]


async def _failed_lookup(subject: str, lk: LookupTrace, blamer: _Blamer, evidence: tuple[str, ...]) -> list[Finding]:
    b = await blamer.blame(lk)
    if not blamer.first(lk):
        return []
    if b.zone:
        return [CHECK.finding("lookup_failed", subject, evidence + b.evidence(), message=b.zone_sentence())]
    return [await blamer.resolver_finding(subject, b)]


async def include_tree(ctx: CheckContext, domain: str) -> dict:
    """The include tree of `domain`'s SPF record, for the report's picture of the 10-lookup budget.

    Each node: domain, term (the include:/redirect= that names it, "" at the top), lookups (the
    DNS-querying terms of its own record, RFC 7208 4.6.4), total (its own and its subtree's),
    over and over_term (the term that spends the 11th lookup: the include naming this node, or
    one of its own terms), error
    ("" or why it was not followed), children.  Counted as records/spf/lint.py counts (the whole
    tree, as if no term matched first); asked from the run's DNS cache, which the lint filled."""
    budget = [MAX_RECORDS]
    root = await _tree_node(ctx, domain, "", (domain,), budget)
    _mark_over(root, [0])
    return _strip(root)


async def _tree_node(ctx: CheckContext, domain: str, term: str, path: tuple[str, ...], budget: list[int]) -> dict:
    node = _leaf(domain, term, "")
    ans = await ctx.dns(domain, "TXT")
    found = [t for t in (txt_string(r) for r in ans.records) if is_spf_record(t)] if ans.ok else []
    parsed = parse_record(found[0]) if len(found) == 1 else None
    if not ans.outcome.definite:
        node["error"] = f"TXT lookup failed ({ans.outcome.value})"
    elif len(found) != 1:
        node["error"] = f"{len(found)} SPF records" if found else (
            "does not exist" if ans.outcome is Outcome.NXDOMAIN else "no SPF record")
    elif isinstance(parsed, ParseError):
        node["error"] = f"syntax error: {parsed}"
    if node["error"] or parsed is None or isinstance(parsed, ParseError):
        node["total"] = 0
        return node
    follow = []
    for t in parsed.terms:
        if not t.counts or (isinstance(t, Modifier) and parsed.has_all):
            continue
        node["lookups"] += 1
        spec = t.value if isinstance(t, Modifier) else t.domain_spec
        if t.name in ("include", "redirect") and spec is not None and not spec.has_macros:
            follow.append((len(node["_seq"]), t.text, spec.literal.rstrip(".").lower()))
        node["_seq"].append(t.text)
    jobs = []
    for pos, text, target in follow:
        if target in path:
            node["_seq"][pos] = _leaf(target, text, "loop: already on the path")
        elif budget[0] <= 0:
            node["_seq"][pos] = _leaf(target, text, f"not followed: the tree is past {MAX_RECORDS} records")
        else:
            budget[0] -= 1
            jobs.append((pos, _tree_node(ctx, target, text, path + (target,), budget)))
    for (pos, _), child in zip(jobs, await asyncio.gather(*(j for _, j in jobs))):
        node["_seq"][pos] = child
    node["children"] = [c for c in node["_seq"] if isinstance(c, dict)]
    node["total"] = node["lookups"] + sum(c["total"] for c in node["children"])
    return node


def _leaf(domain: str, term: str, error: str) -> dict:
    return {"domain": domain, "term": term, "lookups": 0, "total": 0, "over": False, "over_term": "",
            "error": error, "children": [], "_seq": []}


def _mark_over(node: dict, count: list[int]) -> None:
    """Walk the terms in evaluation order; the term that spends lookup LOOKUP_LIMIT + 1 marks its node
    (for an include, the included node: the include that went over)."""
    for item in node["_seq"]:
        count[0] += 1
        if count[0] == LOOKUP_LIMIT + 1:
            marked = item if isinstance(item, dict) else node
            marked["over"], marked["over_term"] = True, item["term"] if isinstance(item, dict) else item
        if isinstance(item, dict):
            _mark_over(item, count)


def _strip(node: dict) -> dict:
    return {k: ([_strip(c) for c in v] if k == "children" else v) for k, v in node.items() if k != "_seq"}


async def _record_findings(ctx: CheckContext, domain: str, lint: SpfLint, blamer: _Blamer) -> list[Finding]:
    out: list[Finding] = []
    ans = lint.lookup
    if not ans.outcome.definite:
        lk = LookupTrace(domain, "TXT", ans.outcome.value, (), ans.detail)
        return await _failed_lookup(domain, lk, blamer, (ans.describe(),))
    if not lint.records:
        return [CHECK.finding("missing", domain, (ans.describe(),), outcome=ans.outcome.value.upper()
                              if not ans.ok else "no TXT record starts with v=spf1")]
    if len(lint.records) > 1:
        return [CHECK.finding("multiple", domain, lint.records, count=len(lint.records))]
    if lint.record is None:
        return [CHECK.finding("syntax", domain, lint.records, error=lint.parse_error, record=lint.records[0])]
    record = lint.record.text
    tree = await include_tree(ctx, domain)
    out.append(CHECK.finding("record", domain, (record,), record=record, tree=tree,
                             lookups=tree["total"], limit=LOOKUP_LIMIT))
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
            lk = LookupTrace(issue.target, "TXT", issue.outcome)
            out += await _failed_lookup(domain, lk, blamer, (f"{issue.domain}: {issue.term}",))
    return out


async def run(ctx: CheckContext) -> list[Finding]:
    domain = _domain(ctx)
    if not domain:
        raise Skip("no domain to evaluate SPF for: give --sender ADDRESS with an IP address target")
    if not ctx.target.is_ip and not ctx.config.sender:
        mx = await ctx.mx()
        assert mx is not None
        if mx.answer.outcome is Outcome.NXDOMAIN and mx.apex.nxdomain:
            raise Skip(f"{domain} does not exist (see the mx check)")
    elif ctx.target.is_ip or domain != ctx.target.name.rstrip(".").lower():
        # The sender's own domain: when it does not exist, the sender_domain check says so
        # once (receivers refuse the sender itself), not spf.missing beside it.
        if (await ctx.dns(domain, "MX")).outcome is Outcome.NXDOMAIN:
            raise Skip(f"{domain} does not exist (see the sender_domain check)")
    sender = ctx.config.sender or f"postmaster@{domain}"
    helo = (ctx.config.helo_name or "").rstrip(".").lower()
    blamer = _Blamer(ctx)
    lint = await ctx.spf_lint(domain)
    public, notes = split_public(CHECK, await ctx.mail_addresses())
    evaluated = await asyncio.gather(*(_address(ctx, ma, domain, sender, helo) for ma in public))
    out = await _record_findings(ctx, domain, lint, blamer)
    out += notes
    no_record = not lint.records and lint.lookup.outcome.definite
    for ma, res, hres in evaluated:
        found = await _address_findings(ma, res, hres, domain, helo, blamer)
        # Without a record every address is "none": spf.missing says so once.
        out += [f for f in found if not (no_record and f.id == "spf.none")]
    return out

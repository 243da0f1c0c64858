"""DMARC: does the domain publish a usable policy, and would the server's mail pass it?

Receivers look up _dmarc.<From domain>, else _dmarc.<organizational domain>
(RFC 7489 6.6.3), and apply its policy to mail whose SPF and DKIM results are
not aligned with the From domain.  With p=reject, mail from a server that is
not in the domain's SPF record and does not DKIM-sign is refused (Exchange
Online 5.7.509, Gmail 5.7.26); with p=quarantine it lands in the spam folder.
"""

from __future__ import annotations

import asyncio

from deliverck.checkcontext import CheckContext
from deliverck.context import MailAddress
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net.dns import DnsAnswer
from deliverck.records import dmarc as dm
from deliverck.records.dkim_discovery import txt_text
from deliverck.target import org_domain

OUT, NONE = Direction.OUTBOUND, Direction.NONE
ADM, DNS = Owner.MAIL_ADMIN, Owner.DNS_ADMIN

CHECK = CheckSpec(
    id="dmarc",
    title="DMARC policy and alignment",
    cause="The domain's DMARC policy is missing or broken, or mail from the server fails it and is rejected.",
    order=90,
    findings=(
        FindingSpec("dmarc.record", Severity.INFO,
                    "{subject}: DMARC policy p={policy} (subdomains sp={sp}, pct={pct}, adkim={adkim}, "
                    "aspf={aspf}){where}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 7489 6.3",)),
        FindingSpec("dmarc.none_found", Severity.WARNING,
                    "{domain} has no DMARC record (looked up {names}); receivers apply no policy, and Gmail and "
                    "Yahoo require one from bulk senders",
                    "Publish a TXT record at _dmarc.{org}, at least `v=DMARC1; p=none; "
                    "rua=mailto:dmarc-reports@{org}`, then tighten to quarantine/reject once reports show all "
                    "legitimate mail passes.",
                    DNS, OUT, refs=("RFC 7489 6.6.3",)),
        FindingSpec("dmarc.multiple", Severity.ERROR,
                    "{subject} holds {count} DMARC records; receivers then apply no DMARC policy at all",
                    "Merge them into one TXT record starting with v=DMARC1 and delete the others.",
                    DNS, OUT, refs=("RFC 7489 6.6.3",)),
        FindingSpec("dmarc.syntax", Severity.ERROR,
                    "{subject}: the DMARC record is invalid and receivers ignore it: {error}",
                    "Fix the record: `v=DMARC1; p=none|quarantine|reject; ...`, tags separated by ';', "
                    "v=DMARC1 first.",
                    DNS, OUT, refs=("RFC 7489 6.4",)),
        FindingSpec("dmarc.no_valid_policy", Severity.ERROR,
                    "{subject}: the DMARC record has no valid p= ({problems}) and no valid rua=, so receivers "
                    "apply no DMARC policy",
                    "Add p=none, p=quarantine or p=reject right after v=DMARC1.",
                    DNS, OUT, refs=("RFC 7489 6.6.3",)),
        FindingSpec("dmarc.invalid_value", Severity.WARNING,
                    "{subject}: the DMARC record has invalid values: {problems}",
                    "Correct the values (RFC 7489 6.3 lists each tag's syntax).",
                    DNS, OUT, refs=("RFC 7489 6.3",)),
        FindingSpec("dmarc.unknown_tags", Severity.NOTICE,
                    "{subject}: the DMARC record has tags receivers ignore: {tags}",
                    "Remove or correct them (known tags: v, p, sp, np, adkim, aspf, pct, rua, ruf, fo, rf, ri).",
                    DNS, NONE, refs=("RFC 7489 6.3",)),
        FindingSpec("dmarc.policy_none", Severity.NOTICE,
                    "{subject}: the DMARC policy for {domain} is {tag}=none: monitoring only, receivers do not act "
                    "on failing mail",
                    "Once aggregate reports show all legitimate mail passes, move to p=quarantine, then "
                    "p=reject.",
                    DNS, NONE, refs=("RFC 7489 6.3",)),
        FindingSpec("dmarc.pct_partial", Severity.NOTICE,
                    "{subject}: pct={pct}: the policy applies to only {pct}% of failing mail",
                    "Raise pct to 100 (or remove it) once the policy is known not to hurt legitimate mail.",
                    DNS, NONE, refs=("RFC 7489 6.3",)),
        FindingSpec("dmarc.external_unauthorized", Severity.WARNING,
                    "{subject}: reports to {uri} will not be sent: {auth_name} has no v=DMARC1 record "
                    "authorizing them",
                    "Ask the operator of {dest} to publish `{auth_name}. TXT \"v=DMARC1\"` (or send reports to "
                    "an address in your own domain).",
                    DNS, NONE, refs=("RFC 7489 7.1",)),
        FindingSpec("dmarc.too_many_report_uris", Severity.NOTICE,
                    "{subject}: {tag}= lists {count} report URIs; receivers need send reports to only the first "
                    "{minimum} (RFC 7489 6.2), so {beyond} may get none{unchecked}",
                    "List at most two URIs in {tag}=, the most important first, and forward reports from there "
                    "if more parties need them.",
                    DNS, NONE, refs=("RFC 7489 6.2",)),
        FindingSpec("dmarc.external_authorized", Severity.INFO,
                    "{subject}: reports to {uri} are authorized by {auth_name}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 7489 7.1",)),
        FindingSpec("dmarc.would_fail_reject", Severity.ERROR,
                    "mail from {subject} with From: @{domain} fails DMARC ({reason}); the policy p=reject"
                    "{pct_note} makes receivers refuse it",
                    "Authorize {subject} in {spf_domain}'s SPF record (e.g. `ip4:`/`ip6:` or `mx`), or DKIM-sign "
                    "its outbound mail with d={domain} and publish the key.",
                    ADM, OUT, refs=("RFC 7489 6.6.2", "seed 002")),
        FindingSpec("dmarc.would_fail_quarantine", Severity.WARNING,
                    "mail from {subject} with From: @{domain} fails DMARC ({reason}); the policy "
                    "p=quarantine{pct_note} sends it to the spam folder",
                    "Authorize {subject} in {spf_domain}'s SPF record, or DKIM-sign its outbound mail with "
                    "d={domain} and publish the key.",
                    ADM, OUT, refs=("RFC 7489 6.6.2",)),
        FindingSpec("dmarc.dkim_dependent", Severity.WARNING,
                    "mail from {subject} with From: @{domain} passes DMARC only if it is DKIM-signed ({reason}); "
                    "the policy is p={policy}",
                    "Make sure {subject} signs all outbound mail with d={domain}, or authorize it in SPF too.",
                    ADM, OUT, refs=("RFC 7489 4.2",)),
        FindingSpec("dmarc.would_pass", Severity.INFO,
                    "mail from {subject} with From: @{domain} passes DMARC ({reason})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 7489 4.2",)),
        FindingSpec("dmarc.prediction_unknown", Severity.ERROR,
                    "could not tell whether mail from {subject} passes DMARC: {reason}",
                    "Fix the lookups reported by the spf and dkim checks, then run again.",
                    DNS, OUT, inconclusive=True),
        FindingSpec("dmarc.lookup_failed", Severity.ERROR,
                    "the DMARC lookup {subject} TXT failed ({outcome}); receivers that see this defer mail "
                    "or skip DMARC",
                    "Check the name servers of {domain}: they must answer TXT queries for _dmarc names.",
                    DNS, OUT, inconclusive=True),
        FindingSpec("dmarc.external_lookup_failed", Severity.ERROR,
                    "the report authorization lookup {auth_name} TXT failed ({outcome})",
                    "Check the name servers of {dest}.", DNS, NONE, inconclusive=True),
    ),
)


def _candidates(ans: DnsAnswer) -> list[str]:
    return [t for t in (txt_text(r) for r in ans.records) if dm.is_dmarc_candidate(t)] if ans.ok else []


async def discover(ctx: CheckContext, domain: str) -> tuple[str, DnsAnswer, list[str], list[str]]:
    """(policy domain, answer, candidate records, names looked up); RFC 7489 6.6.3."""
    names = [f"_dmarc.{domain}"]
    ans = await ctx.dns(names[0], "TXT")
    found = _candidates(ans)
    if found or not ans.outcome.definite:
        return domain, ans, found, names
    org = org_domain(domain)
    if org == domain:
        return domain, ans, found, names
    names.append(f"_dmarc.{org}")
    ans2 = await ctx.dns(names[1], "TXT")
    return org, ans2, _candidates(ans2), names


def _spf_result(res) -> str:
    return str(getattr(res, "result", "") or "").lower()


async def _predict(ctx: CheckContext, domain: str, policy_domain: str, rec: dm.DmarcRecord,
                   policy: str) -> list[Finding]:
    addresses = [a for a in await ctx.mail_addresses() if a.scope.routable or "--ip" in a.sources]
    if not addresses:
        return []
    sender = ctx.config.sender if "@" in (ctx.config.sender or "") else f"postmaster@{domain}"
    spf_domain = sender.rsplit("@", 1)[1].lower()
    disc = await ctx.dkim_keys(domain)
    dkim_possible = bool(disc.usable)
    dkim_unknown = bool(disc.failed) and not dkim_possible
    try:
        import deliverck.records.spf  # noqa: F401  (written in parallel; the prediction needs it)
    except ImportError as e:
        return [CHECK.finding("prediction_unknown", a.ip, ip=a.ip, domain=domain,
                              reason=f"the SPF evaluator is not available ({e})") for a in addresses]

    async def one(a: MailAddress) -> Finding:
        try:
            res = await ctx.spf(a.ip, spf_domain, sender=sender, helo=ctx.config.helo_name or a.host)
            result = _spf_result(res)
        except Exception as e:  # a crash in SPF evaluation must not hide the DMARC policy
            return CHECK.finding("prediction_unknown", a.ip, ip=a.ip, domain=domain,
                                 reason=f"SPF evaluation failed ({type(e).__name__}: {e})")
        ev = dm.evaluate(rec.aspf, domain, result, spf_domain, dkim_possible)
        evidence = (f"DMARC {policy_domain}: {rec.text}", f"SPF {spf_domain} for {a.ip}: {result}",
                    f"DKIM: {len(disc.usable)} usable key(s) found for {domain}")
        args = dict(ip=a.ip, domain=domain, policy_domain=policy_domain, policy=policy, spf=result,
                    spf_domain=spf_domain, reason=ev.reason, pct=rec.pct,
                    pct_note=f" (pct={rec.pct})" if rec.pct < 100 else "")
        outcome = ev.outcome
        if outcome == "fail" and dkim_unknown:
            outcome = "unknown"
            args["reason"] = ev.reason + "; DKIM key lookups failed"
        if outcome == "unknown":
            return CHECK.finding("prediction_unknown", a.ip, evidence, **args)
        if outcome == "pass":
            return CHECK.finding("would_pass", a.ip, evidence, **args)
        if outcome == "dkim_dependent":
            return CHECK.finding("dkim_dependent", a.ip, evidence, **args)
        return CHECK.finding("would_fail_reject" if policy == "reject" else "would_fail_quarantine",
                             a.ip, evidence, **args)

    return list(await asyncio.gather(*(one(a) for a in addresses)))


async def run(ctx: CheckContext) -> list[Finding]:
    domain = await ctx.mail_domain()
    if not domain:
        raise Skip("no mail domain to look up a DMARC policy for (an address, or a name that does not exist)")
    policy_domain, ans, found, names = await discover(ctx, domain)
    name = f"_dmarc.{policy_domain}"
    if not ans.outcome.definite:
        return [CHECK.finding("lookup_failed", ans.qname, (ans.describe(),), domain=domain,
                              outcome=ans.outcome.value)]
    if not found:
        return [CHECK.finding("none_found", domain, tuple(a for a in names), domain=domain,
                              names=", ".join(names), org=org_domain(domain))]
    if len(found) > 1:
        return [CHECK.finding("multiple", name, tuple(found), count=len(found), domain=domain)]
    text = found[0]
    try:
        rec = dm.parse_record(text)
    except dm.DmarcSyntaxError as e:
        return [CHECK.finding("syntax", name, (text,), error=str(e), domain=domain)]
    out: list[Finding] = []
    if not rec.applies:
        return [CHECK.finding("no_valid_policy", name, (text,), problems="; ".join(rec.problems), domain=domain)]
    policy = rec.policy_for(domain, policy_domain)
    where = "" if policy_domain == domain else f", found at the organizational domain {policy_domain}; " \
        f"{domain} gets sp={rec.subdomain_policy}"
    out.append(CHECK.finding("record", name, (text,), policy=rec.policy, sp=rec.subdomain_policy, pct=rec.pct,
                             adkim=rec.adkim, aspf=rec.aspf, where=where, domain=domain,
                             policy_domain=policy_domain, effective=policy))
    if rec.problems:
        out.append(CHECK.finding("invalid_value", name, (text,), problems="; ".join(rec.problems)))
    if rec.unknown_tags:
        out.append(CHECK.finding("unknown_tags", name, (text,), tags=", ".join(rec.unknown_tags)))
    if policy == "none":
        out.append(CHECK.finding("policy_none", name, (text,), domain=domain,
                                 tag="sp" if policy_domain != domain and "sp" in rec.tags else "p"))
    elif rec.pct < 100:
        out.append(CHECK.finding("pct_partial", name, (text,), pct=rec.pct))

    for tag in ("rua", "ruf"):
        uris = getattr(rec, tag)
        if len(uris) > dm.RECEIVER_URI_MINIMUM:
            beyond = [u.uri for u in uris[dm.RECEIVER_URI_MINIMUM:]]
            shown = ", ".join(beyond[:3]) + (f" and {len(beyond) - 3} more" if len(beyond) > 3 else "")
            unchecked = (f"; deliverck checked the destinations of the first {dm.REPORT_URI_LIMIT} only"
                         if len(uris) > dm.REPORT_URI_LIMIT else "")
            out.append(CHECK.finding("too_many_report_uris", name, (f"{tag}: {len(uris)} URIs",), tag=tag,
                                     count=len(uris), minimum=dm.RECEIVER_URI_MINIMUM, beyond=shown,
                                     unchecked=unchecked, limit=dm.REPORT_URI_LIMIT))
    external = dm.external_destinations(rec, policy_domain, org_domain)
    auth_answers = await asyncio.gather(
        *(ctx.dns(dm.authorization_name(policy_domain, u.domain), "TXT") for u in external))
    for u, a in zip(external, auth_answers):
        args = dict(uri=u.uri, dest=u.domain, auth_name=dm.authorization_name(policy_domain, u.domain))
        if not a.outcome.definite:
            out.append(CHECK.finding("external_lookup_failed", name, (a.describe(),), outcome=a.outcome.value,
                                     **args))
        elif dm.authorizes([txt_text(r) for r in a.records] if a.ok else []):
            out.append(CHECK.finding("external_authorized", name, (a.describe(),), **args))
        else:
            out.append(CHECK.finding("external_unauthorized", name, (a.describe(),), **args))

    if policy in ("quarantine", "reject"):
        out += await _predict(ctx, domain, policy_domain, rec, policy)
    return out

"""DMARC: does the domain publish a usable policy, and would the server's mail pass it?

Receivers look up _dmarc.<From domain>, else _dmarc.<organizational domain>
(RFC 7489 6.6.3), and apply its policy to mail whose SPF and DKIM results are
not aligned with the From domain.  With p=reject, mail from a server that is
not in the domain's SPF record and does not DKIM-sign is refused (Exchange
Online 5.7.509, Gmail 5.7.26); with p=quarantine it lands in the spam folder.

DMARCbis (draft-ietf-dmarc-dmarcbis) finds the policy and the organizational
domain by a DNS tree walk instead of the public suffix list, adds t= and psd=,
keeps np= (RFC 9091) and drops pct=, rf= and ri=.  Receivers move slowly:
predictions follow the rules of the receivers in
records/dmarc_discovery.RECEIVER_RULES (RFC 7489 for all of them today), and
`dmarc.bis_disagrees` says where DMARCbis receivers would decide otherwise.

Finding ids: dmarc.record, none_found, multiple, syntax, no_valid_policy,
invalid_value, unknown_tags, policy_none, pct_partial, external_unauthorized,
too_many_report_uris, external_authorized, would_fail_reject,
would_fail_quarantine, dkim_dependent, would_pass, prediction_unknown,
lookup_failed, external_lookup_failed; DMARCbis (issue 17): bis_disagrees (the
two rule sets give different organizational domains or policies; args aspect,
rfc7489, dmarcbis and the receivers following each), test_mode (t=y: not a
full reject), np_policy, psd_record, removed_tags (pct/rf/ri, and what pct=0
becomes), would_fail_reject_bis (only DMARCbis receivers refuse the mail),
bis_walk_incomplete (a tree-walk lookup failed: no comparison).
"""

from __future__ import annotations

import asyncio

from deliverck.checkcontext import CheckContext
from deliverck.context import MailAddress
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net.dns import DnsAnswer
from deliverck.records import dmarc as dm
from deliverck.records import dmarc_discovery as bis
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
                    "{pct_note} makes receivers refuse it{bis_note}",
                    "Authorize {subject} in {spf_domain}'s SPF record (e.g. `ip4:`/`ip6:` or `mx`), or DKIM-sign "
                    "its outbound mail with d={domain} and publish the key.",
                    ADM, OUT, refs=("RFC 7489 6.6.2", "seed 002")),
        FindingSpec("dmarc.would_fail_quarantine", Severity.WARNING,
                    "mail from {subject} with From: @{domain} fails DMARC ({reason}); the policy "
                    "p=quarantine{pct_note} sends it to the spam folder{bis_note}",
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
        FindingSpec("dmarc.bis_disagrees", Severity.NOTICE,
                    "{subject}: RFC 7489 and DMARCbis disagree on the {aspect} for {domain}: RFC 7489 (public "
                    "suffix list; {rfc7489_receivers}) gives {rfc7489}, DMARCbis (DNS tree walk; "
                    "{dmarcbis_receivers}) gives {dmarcbis}",
                    "Publish records that give one answer under both: a _dmarc record at the organizational "
                    "domain (with psd=n where the public suffix list places it higher), no pct= (use t=y "
                    "for testing), and the same policy for subdomains either way.",
                    DNS, NONE, refs=("draft-ietf-dmarc-dmarcbis, DNS Tree Walk", "RFC 7489 6.6.3")),
        FindingSpec("dmarc.test_mode", Severity.NOTICE,
                    "{subject}: {tag}={policy} with t=y is not a full {policy}: receivers that follow DMARCbis "
                    "apply {weaker} (test mode); receivers still on RFC 7489 ignore t= and apply {policy}",
                    "Remove t=y once aggregate reports show all legitimate mail passes.",
                    DNS, NONE, refs=("draft-ietf-dmarc-dmarcbis, t tag",)),
        FindingSpec("dmarc.np_policy", Severity.INFO,
                    "{subject}: mail From non-existent subdomains of {policy_domain} gets np={np} (RFC 9091, "
                    "DMARCbis); receivers on plain RFC 7489 apply {fallback} to it",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 9091 4", "draft-ietf-dmarc-dmarcbis, np tag")),
        FindingSpec("dmarc.psd_record", Severity.INFO,
                    "{subject}: a public suffix operator's record (psd=y): DMARCbis receivers take each name "
                    "right below {policy_domain} as its own organizational domain and apply this policy to "
                    "those that publish none; RFC 7489 receivers ignore psd=",
                    "Nothing to fix, if {policy_domain} is a public suffix (registrations are made below it); "
                    "otherwise remove psd=y.",
                    Owner.NOBODY, NONE, refs=("draft-ietf-dmarc-dmarcbis, psd tag",)),
        FindingSpec("dmarc.removed_tags", Severity.INFO,
                    "{subject}: {tags} removed in DMARCbis: {note}",
                    "Keep them while receivers follow RFC 7489, but do not rely on pct= for testing: add t=y "
                    "for that.",
                    DNS, NONE, refs=("draft-ietf-dmarc-dmarcbis, Changes from RFC 7489",)),
        FindingSpec("dmarc.would_fail_reject_bis", Severity.WARNING,
                    "mail from {subject} with From: @{domain} fails DMARC ({reason}); receivers that follow "
                    "DMARCbis apply {dmarcbis} and refuse it (RFC 7489 gives {rfc7489})",
                    "Authorize {subject} in {spf_domain}'s SPF record, or DKIM-sign its outbound mail with "
                    "d={domain} and publish the key.",
                    ADM, OUT, refs=("draft-ietf-dmarc-dmarcbis, Mail Receiver Actions",)),
        FindingSpec("dmarc.bis_walk_incomplete", Severity.NOTICE,
                    "the DMARCbis tree walk from {domain} stopped at {subject} TXT ({outcome}): RFC 7489 and "
                    "DMARCbis were not compared",
                    "Check the name servers that answer for {subject}.", DNS, NONE),
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


def _enforcing(a: bis.Applied | None) -> bool:
    return a is not None and a.policy in ("quarantine", "reject")


def _fail_findings(subject: str, evidence: tuple[str, ...], args: dict, rfc: bis.Applied | None,
                   dmarcbis: bis.Applied | None) -> list[Finding]:
    """The failure findings for one address: by the RFC 7489 receivers' policy, and one for the
    DMARCbis receivers when only their rules make it a rejection."""
    out = []
    bis_rejects = dmarcbis is not None and dmarcbis.policy == "reject"
    if rfc is not None and _enforcing(rfc):
        differs = dmarcbis is not None and not rfc.same_outcome(dmarcbis)
        note = f"; receivers that follow DMARCbis apply {dmarcbis.describe()}" if differs and dmarcbis else ""
        out.append(CHECK.finding("would_fail_reject" if rfc.policy == "reject" else "would_fail_quarantine",
                                 subject, evidence, **args, bis_note=note))
    if bis_rejects and dmarcbis is not None and (rfc is None or rfc.policy != "reject"):
        out.append(CHECK.finding("would_fail_reject_bis", subject, evidence, **args,
                                 dmarcbis=dmarcbis.describe(),
                                 rfc7489=rfc.describe() if rfc else "no policy"))
    return out


async def _predict(ctx: CheckContext, domain: str, policy_domain: str, rec: dm.DmarcRecord,
                   rfc: bis.Applied | None, dmarcbis: bis.Applied | None) -> list[Finding]:
    addresses = [a for a in await ctx.mail_addresses() if a.scope.routable or "--ip" in a.sources]
    if not addresses:
        return []
    sender = ctx.config.sender if "@" in (ctx.config.sender or "") else f"postmaster@{domain}"
    spf_domain = sender.rsplit("@", 1)[1].lower()
    disc = await ctx.dkim_keys(domain)
    dkim_possible = bool(disc.usable)
    dkim_unknown = bool(disc.failed) and not dkim_possible
    policy = rfc.policy if rfc is not None and _enforcing(rfc) else (dmarcbis.policy if dmarcbis else "none")
    try:
        import deliverck.records.spf  # noqa: F401  (written in parallel; the prediction needs it)
    except ImportError as e:
        return [CHECK.finding("prediction_unknown", a.ip, ip=a.ip, domain=domain,
                              reason=f"the SPF evaluator is not available ({e})") for a in addresses]

    async def one(a: MailAddress) -> list[Finding]:
        try:
            res = await ctx.spf(a.ip, spf_domain, sender=sender, helo=ctx.config.helo_name or a.host)
            result = _spf_result(res)
        except Exception as e:  # a crash in SPF evaluation must not hide the DMARC policy
            return [CHECK.finding("prediction_unknown", a.ip, ip=a.ip, domain=domain,
                                  reason=f"SPF evaluation failed ({type(e).__name__}: {e})")]
        ev = dm.evaluate(rec.aspf, domain, result, spf_domain, dkim_possible)
        evidence = (f"DMARC {policy_domain}: {rec.text}", f"SPF {spf_domain} for {a.ip}: {result}",
                    f"DKIM: {len(disc.usable)} usable key(s) found for {domain}")
        args = dict(ip=a.ip, domain=domain, policy_domain=policy_domain, policy=policy, spf=result,
                    spf_domain=spf_domain, reason=ev.reason, pct=rec.pct,
                    pct_note=f" ({rfc.note})" if rfc is not None and rfc.note else "")
        outcome = ev.outcome
        if outcome == "fail" and dkim_unknown:
            outcome = "unknown"
            args["reason"] = ev.reason + "; DKIM key lookups failed"
        if outcome == "unknown":
            return [CHECK.finding("prediction_unknown", a.ip, evidence, **args)]
        if outcome == "pass":
            return [CHECK.finding("would_pass", a.ip, evidence, **args)]
        if outcome == "dkim_dependent":
            return [CHECK.finding("dkim_dependent", a.ip, evidence, **args)]
        return _fail_findings(a.ip, evidence, args, rfc, dmarcbis)

    return [f for group in await asyncio.gather(*(one(a) for a in addresses)) for f in group]


async def _probe(ctx: CheckContext, domain: str) -> bis.Probe:
    ans = await ctx.dns(f"_dmarc.{domain}", "TXT")
    if not ans.outcome.definite:
        return bis.Probe(domain, failed=ans.outcome.value)
    return bis.Probe(domain, tuple(_candidates(ans)))


async def _exists(ctx: CheckContext, domain: str) -> bool:
    """RFC 9091 2.1 / DMARCbis: a domain does not exist when A, AAAA and MX all give NXDOMAIN or
    NODATA.  A failed lookup counts as existing: np= is then not applied."""
    answers = await asyncio.gather(*(ctx.dns(domain, t) for t in ("A", "AAAA", "MX")))
    return any(a.ok or not a.outcome.definite for a in answers)


def _tag_findings(name: str, domain: str, policy_domain: str, rec: dm.DmarcRecord) -> list[Finding]:
    """What the DMARCbis tags of one record mean to the two kinds of receivers."""
    out: list[Finding] = []
    ev = (rec.text,)
    applied = bis.dmarcbis_policy(rec, domain, policy_domain)
    raw = bis.dmarcbis_policy(rec, domain, policy_domain, test_mode=False)
    if rec.test_mode and raw.policy != "none":
        out.append(CHECK.finding("test_mode", name, ev, tag=raw.tag, policy=raw.policy, weaker=applied.policy,
                                 domain=domain))
    if "np" in rec.tags and rec.nonexistent_policy:
        fallback = f"sp={rec.subdomain_policy}" if "sp" in rec.tags else f"p={rec.policy}"
        out.append(CHECK.finding("np_policy", name, ev, np=rec.nonexistent_policy, fallback=fallback,
                                 policy_domain=policy_domain))
    if rec.psd == "y":
        out.append(CHECK.finding("psd_record", name, ev, policy_domain=policy_domain))
    if rec.removed_tags:
        out.append(CHECK.finding("removed_tags", name, ev, tags=", ".join(f"{t}=" for t in rec.removed_tags),
                                 note=bis.removed_tags_note(rec), pct=rec.pct))
    return out


def _disagree(subject: str, domain: str, aspect: str, rfc7489: str, dmarcbis: str,
              evidence: tuple[str, ...]) -> Finding:
    def who(model: str) -> str:
        names = bis.receivers_following(model)
        return "followed by " + ", ".join(names) if names else "no receiver in deliverck's table yet"
    return CHECK.finding("bis_disagrees", subject, evidence, domain=domain, aspect=aspect, rfc7489=rfc7489,
                         dmarcbis=dmarcbis, rfc7489_receivers=who(bis.RFC7489),
                         dmarcbis_receivers=who(bis.DMARCBIS))


async def _dmarcbis(ctx: CheckContext, domain: str, rec: dm.DmarcRecord | None,
                    policy_domain: str) -> tuple[list[Finding], bis.Applied | None, dm.DmarcRecord | None, str]:
    """The DMARCbis view: its findings, the policy its receivers apply, and the record and domain
    it came from."""
    async def lookup(d: str) -> bis.Probe:
        return await _probe(ctx, d)

    pw = await bis.policy_walk(domain, lookup)
    ow = await bis.org_walk(domain, lookup)
    failed = pw.failed or ow.failed
    if failed is not None:
        return [CHECK.finding("bis_walk_incomplete", f"_dmarc.{failed.domain}", (failed.failed,), domain=domain,
                              outcome=failed.failed)], None, None, ""
    found = pw.found
    bis_rec = found.parsed if found is not None else None
    bis_domain = found.domain if found is not None else ""
    out: list[Finding] = []
    if rec is not None:
        out += _tag_findings(f"_dmarc.{policy_domain}", domain, policy_domain, rec)
    if bis_rec is not None and bis_domain != policy_domain:
        out += _tag_findings(f"_dmarc.{bis_domain}", domain, bis_domain, bis_rec)
    applied = None
    if bis_rec is not None and bis_rec.applies:
        exists = True
        if bis_domain != domain and "np" in bis_rec.tags:
            exists = await _exists(ctx, domain)
        applied = bis.dmarcbis_policy(bis_rec, domain, bis_domain, exists)
    rfc = bis.rfc7489_policy(rec, domain, policy_domain) if rec is not None else None
    evidence = tuple(f"_dmarc.{p.domain}: " + (" | ".join(p.records) or "no DMARC record") for p in ow.probes)
    subject = f"_dmarc.{bis_domain or policy_domain or domain}"
    rfc_org, bis_org = org_domain(domain), bis.organizational_domain(ow)
    if (rec is not None or bis_rec is not None) and bis_org and rfc_org != bis_org:
        out.append(_disagree(subject, domain, "organizational domain", rfc_org, bis_org, evidence))
    if (rfc is None) != (applied is None) or (rfc and applied and not rfc.same_outcome(applied)):
        out.append(_disagree(subject, domain, "policy", rfc.describe() if rfc else "no policy",
                             applied.describe() if applied else "no policy", evidence))
    return out, applied, bis_rec, bis_domain


def _record_findings(domain: str, policy_domain: str, rec: dm.DmarcRecord) -> list[Finding]:
    """What the record found by RFC 7489 discovery says, tag by tag."""
    name = f"_dmarc.{policy_domain}"
    text = rec.text
    policy = rec.policy_for(domain, policy_domain)
    where = "" if policy_domain == domain else f", found at the organizational domain {policy_domain}; " \
        f"{domain} gets sp={rec.subdomain_policy}"
    out = [CHECK.finding("record", name, (text,), policy=rec.policy, sp=rec.subdomain_policy, pct=rec.pct,
                         adkim=rec.adkim, aspf=rec.aspf, where=where, domain=domain,
                         policy_domain=policy_domain, effective=policy, np=rec.nonexistent_policy,
                         psd=rec.psd, t="y" if rec.test_mode else "n")]
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
    return out


async def _report_destinations(ctx: CheckContext, policy_domain: str, rec: dm.DmarcRecord) -> list[Finding]:
    name = f"_dmarc.{policy_domain}"
    out: list[Finding] = []
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
    return out


async def run(ctx: CheckContext) -> list[Finding]:
    domain = await ctx.mail_domain()
    if not domain:
        raise Skip("no mail domain to look up a DMARC policy for (an address, or a name that does not exist)")
    policy_domain, ans, found, names = await discover(ctx, domain)
    name = f"_dmarc.{policy_domain}"
    if not ans.outcome.definite:
        return [CHECK.finding("lookup_failed", ans.qname, (ans.describe(),), domain=domain,
                              outcome=ans.outcome.value)]
    if len(found) > 1:
        # DMARCbis discards them all and walks on: a parent's record may apply there
        multiple = CHECK.finding("multiple", name, tuple(found), count=len(found), domain=domain)
        return [multiple, *(await _dmarcbis(ctx, domain, None, policy_domain))[0]]
    out: list[Finding] = []
    rec: dm.DmarcRecord | None = None
    if not found:
        out.append(CHECK.finding("none_found", domain, tuple(a for a in names), domain=domain,
                                 names=", ".join(names), org=org_domain(domain)))
    else:
        try:
            rec = dm.parse_record(found[0])
        except dm.DmarcSyntaxError as e:
            return [CHECK.finding("syntax", name, (found[0],), error=str(e), domain=domain)]
        if not rec.applies:
            return [CHECK.finding("no_valid_policy", name, (found[0],), problems="; ".join(rec.problems),
                                  domain=domain)]
        out += _record_findings(domain, policy_domain, rec)
        out += await _report_destinations(ctx, policy_domain, rec)
    bis_out, applied, bis_rec, bis_domain = await _dmarcbis(ctx, domain, rec, policy_domain)
    out += bis_out
    rfc = bis.rfc7489_policy(rec, domain, policy_domain) if rec is not None else None
    if _enforcing(rfc) or (applied is not None and applied.policy == "reject"):
        use, where = (rec, policy_domain) if rec is not None else (bis_rec, bis_domain)
        assert use is not None
        out += await _predict(ctx, domain, where, use, rfc, applied)
    return out

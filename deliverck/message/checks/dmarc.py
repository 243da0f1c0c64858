"""DMARC for the message: does an aligned SPF or DKIM pass cover the From domain, and what happens if not?

DMARC passes when SPF passes for a domain aligned with the From domain, or a DKIM signature
passes with an aligned d= (RFC 7489 3.1, 4.2).  When it fails, the From domain's policy says what
receivers do: p=reject is the certain refusal (Gmail 550 5.7.26, Exchange Online 550 5.7.509,
Yahoo 554 5.7.9), p=quarantine sends it to spam, p=none only reports.  deliverck computes the
result under RFC 7489 (public suffix list) and under DMARCbis (DNS tree walk, t=, np=, no pct=)
and reports both where they differ (records/dmarc_discovery.py says which receiver follows which).

A failure is judged on the envelope deliverck has: when the sending address or MAIL FROM came
from headers, the SPF half of the answer is a claim and the finding says so.  A message that was
forwarded with a valid ARC chain fails DMARC at the final receiver through no fault of the From
domain; that is reported as message_dmarc.forwarded_fail, not as the domain's failure.

Sources: RFC 7489 (3.1 alignment, 6.3 p/sp/pct, 6.6.3 discovery); draft-ietf-dmarc-dmarcbis (tree
walk, t=, np=); RFC 9091 (np=); RFC 8617 (ARC); Google, "Email sender guidelines"; Microsoft Learn,
"Use DMARC to validate email" (5.7.509); Yahoo, "Sender Requirements & Recommendations".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deliverck.message.auth import AuthResults
from deliverck.message.auth_dmarc import DmarcResult
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.records import dmarc_discovery as bis

if TYPE_CHECKING:
    from deliverck.message.context import MessageContext

OUT, NONE = Direction.OUTBOUND, Direction.NONE
ADM, DNS = Owner.MAIL_ADMIN, Owner.DNS_ADMIN
REFS = ("RFC 7489 3.1", "RFC 7489 6.6.3")
ALIGN_FIX = ("Make the message authenticate as {from_domain}: sign it with d={from_domain} (DKIM survives "
             "forwarding), and send it with an envelope sender at {from_domain} from an address its SPF record "
             "authorizes.")


def _spec(name: str, sev: Severity, summary: str, fix: str, owner: Owner = ADM,
          refs: tuple[str, ...] = REFS, inconclusive: bool = False) -> FindingSpec:
    return FindingSpec(f"message_dmarc.{name}", sev, summary, fix, owner, NONE if owner is Owner.NOBODY else OUT,
                       refs=refs, inconclusive=inconclusive)


CHECK = CheckSpec(
    id="message_dmarc",
    title="DMARC of the message",
    cause="Neither SPF nor DKIM passes aligned with the From domain, so receivers apply the domain's DMARC "
          "policy: reject refuses the message, quarantine files it as spam.",
    order=26,
    findings=(
        _spec("pass", Severity.INFO, "DMARC pass for {from_domain} ({reason}); policy {policy}", "Nothing to fix.",
              Owner.NOBODY),
        _spec("fail_reject", Severity.ERROR, "DMARC fails for {from_domain} and its policy is {policy}: receivers "
              "that apply DMARC refuse the message ({reason}){basis}", ALIGN_FIX),
        _spec("fail_quarantine", Severity.WARNING, "DMARC fails for {from_domain} and its policy is {policy}: "
              "receivers file the message as spam ({reason}){basis}", ALIGN_FIX),
        _spec("fail_none", Severity.WARNING, "DMARC fails for {from_domain} (policy {policy}: monitoring only, but "
              "Gmail, Yahoo and Outlook.com refuse unaligned bulk mail) ({reason}){basis}", ALIGN_FIX,
              refs=REFS + ("Google Email sender guidelines",)),
        _spec("fail_reject_bis", Severity.WARNING, "DMARC fails for {from_domain}: receivers that follow DMARCbis "
              "reject it ({dmarcbis}), receivers that follow RFC 7489 apply {rfc7489} ({reason}){basis}", ALIGN_FIX,
              refs=REFS + ("draft-ietf-dmarc-dmarcbis",)),
        _spec("forwarded_fail", Severity.WARNING, "DMARC fails for {from_domain} ({policy}) after forwarding through "
              "{sealers}, whose ARC chain validates and records the original result ({first}): receivers that trust "
              "the sealer may accept it, others apply {policy}",
              "The forwarder or list ({last}) should keep the message unchanged or rewrite From to its own domain "
              "(the DMARC mitigation of mailing lists); a receiver's admin can list {last} as a trusted ARC sealer.",
              Owner.RECEIVER, REFS + ("RFC 8617", "RFC 7960 4.1.3")),
        _spec("unauthenticated", Severity.ERROR, "neither SPF nor DKIM passes for the message from {from_domain} "
              "(SPF {spf} for {spf_domain}; {dkim}): Gmail and Yahoo refuse unauthenticated mail from every "
              "sender{basis}",
              "Authorize the sending address in the SPF record of the envelope sender's domain, and DKIM-sign "
              "the mail with d={from_domain}.", ADM, ("RFC 7208 2.6", "RFC 6376 6.1", "Google Email sender guidelines",
                                                        "Yahoo Sender Requirements (2024)")),
        _spec("none", Severity.WARNING, "{from_domain} publishes no DMARC policy ({reason}): Gmail and Yahoo refuse "
              "bulk mail from domains without one",
              "Publish a DMARC record at _dmarc.{org}: start with `v=DMARC1; p=none; rua=mailto:<reports>`, "
              "then move to quarantine and reject.", DNS, REFS + ("Google Email sender guidelines",)),
        _spec("temperror", Severity.ERROR, "DMARC for {from_domain} could not be decided: {reason}",
              "Check the name servers of the domains named, then run again.", DNS, REFS, inconclusive=True),
        _spec("unknown", Severity.NOTICE, "DMARC for {from_domain} depends on SPF for the sending address, which "
              "is not known: {reason}",
              "Pass the sending address with --ip and the envelope sender with --mail-from, or send the message "
              "to `deliverck listen`.", Owner.NOBODY, REFS),
        _spec("models_differ", Severity.NOTICE, "DMARC for {from_domain}: RFC 7489 receivers get {rfc7489}, "
              "DMARCbis receivers get {dmarcbis} ({rfc7489_receivers}; {dmarcbis_receivers})",
              "Publish records that give the same answer under both (a record at the From domain's own _dmarc "
              "name; pct= replaced by t=).", DNS, REFS + ("draft-ietf-dmarc-dmarcbis",)),
    ),
)


def _basis(auth: AuthResults) -> str:
    mf = auth.spf_mailfrom
    if mf.result and mf.claimed:
        return f"; SPF was evaluated for the address the header claims ({mf.ip}; {mf.source})"
    return ""


def _outcome(view: bis.Applied | None, result: str) -> str:
    return f"{result}, {view.describe()}" if view is not None else result


def _fail(mctx: MessageContext, auth: AuthResults, d: DmarcResult) -> list[Finding]:
    rfc, new = d.rfc7489, d.dmarcbis
    args = dict(from_domain=d.from_domain, reason=rfc.reason if rfc.result == "fail" else new.reason,
                basis=_basis(auth))
    ev = d.evidence + tuple(x for s in (auth.spf_mailfrom,) for x in s.evidence)
    subject = f"_dmarc.{rfc.policy_domain or new.policy_domain or d.from_domain}"
    applied = rfc.applied if rfc.result == "fail" else None
    arc = auth.arc
    if arc.result == "pass" and any(s.result != "pass" and s.aligned for s in auth.dkim):
        sets = sorted(arc.sets, key=lambda s: s.instance)
        policy = applied or new.applied
        return [CHECK.finding("forwarded_fail", subject, ev, **args,
                              policy=policy.describe() if policy is not None else "no policy",
                              sealers=", ".join(arc.sealers), last=arc.sealers[-1] if arc.sealers else "?",
                              first=sets[0].aar if sets and sets[0].aar else "nothing readable")]
    if applied is not None and applied.policy in ("reject", "quarantine", "none"):
        name = {"reject": "fail_reject", "quarantine": "fail_quarantine", "none": "fail_none"}[applied.policy]
        out = [CHECK.finding(name, subject, ev, policy=applied.describe(), **args)]
        if applied.policy != "reject" and new.result == "fail" and new.applied and new.applied.policy == "reject":
            out.append(CHECK.finding("fail_reject_bis", subject, ev, dmarcbis=new.applied.describe(),
                                     rfc7489=applied.describe(), **args))
        return out
    if new.result == "fail" and new.applied is not None:
        name = "fail_reject_bis" if new.applied.policy == "reject" else "fail_none"
        return [CHECK.finding(name, subject, ev, dmarcbis=new.applied.describe(),
                              rfc7489=_outcome(rfc.applied, rfc.result), policy=new.applied.describe(), **args)]
    return []


def _unauthenticated(auth: AuthResults, d: DmarcResult) -> list[Finding]:
    """Neither SPF nor DKIM passes (whatever the alignment): the all-senders rule of Gmail and Yahoo.
    Not said when SPF was not evaluated or a lookup failed (that is may, not will), nor when a
    valid ARC chain carries the results from before forwarding (receivers may use it instead)."""
    mf = auth.spf_mailfrom
    if mf.result in ("", "pass", "temperror") or auth.arc.result == "pass":
        return []
    if any(s.result in ("pass", "temperror") for s in auth.dkim):
        return []
    dkim = "no DKIM signature passes" if auth.dkim else "no DKIM signature"
    return [CHECK.finding("unauthenticated", d.from_domain, mf.evidence, from_domain=d.from_domain, spf=mf.result,
                          spf_domain=mf.domain, dkim=dkim, basis=_basis(auth))]


async def run(mctx: MessageContext) -> list[Finding]:
    auth = await mctx.auth()
    d = auth.dmarc
    if d is None:
        raise Skip("the message has no From domain to apply DMARC to (message_format reports the From field)")
    rfc, new = d.rfc7489, d.dmarcbis
    subject = f"_dmarc.{rfc.policy_domain or d.from_domain}"
    out: list[Finding] = []
    if "temperror" in (rfc.result, new.result) and "fail" not in (rfc.result, new.result):
        out.append(CHECK.finding("temperror", subject, d.evidence, from_domain=d.from_domain,
                                 reason=rfc.reason if rfc.result == "temperror" else new.reason))
    elif rfc.result == "pass" or (rfc.result == "none" and new.result == "pass"):
        v = rfc if rfc.result == "pass" else new
        out.append(CHECK.finding("pass", subject, d.evidence, from_domain=d.from_domain, reason=v.reason,
                                 policy=v.applied.describe() if v.applied else "none"))
    elif "fail" in (rfc.result, new.result):
        out += _fail(mctx, auth, d)
    elif "unknown" in (rfc.result, new.result):
        out.append(CHECK.finding("unknown", subject, d.evidence, from_domain=d.from_domain,
                                 reason=rfc.reason if rfc.result == "unknown" else new.reason))
    elif rfc.result == "none" and new.result == "none":
        out.append(CHECK.finding("none", subject, d.evidence, from_domain=d.from_domain, reason=rfc.reason,
                                 org=rfc.org_domain or d.from_domain))
    out += _unauthenticated(auth, d)
    if d.differs and rfc.result != "temperror" and new.result != "temperror":
        def who(model: str) -> str:
            names = bis.receivers_following(model)
            return f"{model}: " + (", ".join(names) if names else "no receiver in deliverck's table yet")
        out.append(CHECK.finding("models_differ", subject, d.evidence, from_domain=d.from_domain,
                                 rfc7489=_outcome(rfc.applied, rfc.result), dmarcbis=_outcome(new.applied, new.result),
                                 rfc7489_receivers=who(bis.RFC7489), dmarcbis_receivers=who(bis.DMARCBIS)))
    return out

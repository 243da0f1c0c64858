"""SPF for the message's envelope: does the sending address pass for the MAIL FROM domain (and HELO)?

deliverck's own evaluator (RFC 7208 check_host) runs for the address and identities of the
envelope.  Where they come from matters and every finding says it: `deliverck listen` saw the
connection, --ip/--mail-from/--helo are the user's statement, and otherwise the address is the one
the receiver's Received field claims and the MAIL FROM is the Return-Path.  A result for a claimed
address is "for the address the header claims": deliverck did not see the connection.

A DNS failure during evaluation is temperror, an inconclusive result (never fail).  A fail is
refused by many receivers on its own (Exchange Online 550 5.7.23 where the admin turned on the
hard-fail rule; Postfix with policyd-spf), and Gmail and Yahoo refuse mail that passes neither SPF
nor DKIM (550 5.7.26, Yahoo 550 5.7.9).  The HELO identity is reported too (RFC 7208 2.3), as a
warning only when it fails: few receivers act on it alone.

Sources: RFC 7208 (2.3 HELO, 2.4 MAIL FROM and the null sender, 2.6 results, 4 check_host);
Google, "Email sender guidelines"; Yahoo, "Sender Requirements & Recommendations".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deliverck.message.auth import SpfCheck
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity

if TYPE_CHECKING:
    from deliverck.message.context import MessageContext

OUT, NONE = Direction.OUTBOUND, Direction.NONE
ADM, DNS = Owner.MAIL_ADMIN, Owner.DNS_ADMIN
REFS = ("RFC 7208 2.6",)
AUTHORIZE = ("If {ip} is yours and sends mail for {domain}, add it to the SPF record of {domain} (ip4:/ip6:, or "
             "the include: your provider documents); otherwise send through a server the record already "
             "authorizes.")


def _spec(name: str, sev: Severity, summary: str, fix: str, owner: Owner = DNS, refs: tuple[str, ...] = REFS,
          inconclusive: bool = False) -> FindingSpec:
    return FindingSpec(f"message_spf.{name}", sev, summary, fix, owner, NONE if owner is Owner.NOBODY else OUT,
                       refs=refs, inconclusive=inconclusive)


CHECK = CheckSpec(
    id="message_spf",
    title="SPF of the message's envelope",
    cause="The address the message was sent from is not authorized by the SPF record of the envelope sender's "
          "domain, so receivers treat it as unauthenticated or refuse it.",
    order=24,
    findings=(
        _spec("pass", Severity.INFO, "SPF pass for {domain} from {where}", "Nothing to fix.", Owner.NOBODY),
        _spec("fail", Severity.ERROR, "SPF fail: {domain} does not authorize {where} ({reason}){forwarded}",
              AUTHORIZE + "{forwarded_fix}",
              refs=REFS + ("RFC 7208 8.4",)),
        _spec("softfail", Severity.WARNING, "SPF softfail: {domain} does not authorize {where} (~all)", AUTHORIZE),
        _spec("neutral", Severity.NOTICE, "SPF neutral for {domain} from {where}: the record states nothing about it",
              AUTHORIZE),
        _spec("none", Severity.WARNING, "SPF none: {domain} publishes no SPF record ({reason}); the message came "
              "from {where}", "Publish an SPF record for {domain}: `v=spf1 ip4:<your outgoing addresses> -all`."),
        _spec("permerror", Severity.ERROR, "SPF permerror: the SPF record of {domain} cannot be evaluated ({reason})",
              "Repair the SPF record of {domain} (`deliverck {domain}` shows the spf findings and the trace).",
              refs=REFS + ("RFC 7208 2.6.7",)),
        _spec("temperror", Severity.ERROR, "SPF for {domain} from {where} could not be evaluated: {reason}",
              "Check that the name servers of {domain} answer, then run again.", DNS, REFS + ("RFC 7208 2.6.6",),
              inconclusive=True),
        _spec("not_evaluated", Severity.NOTICE, "SPF not evaluated: {reason}",
              "Pass the sending address with --ip and the envelope sender with --mail-from, or send the message "
              "to `deliverck listen`, which sees both.", Owner.NOBODY, ("RFC 7208 4",)),
        _spec("helo_result", Severity.INFO, "SPF for the HELO name {domain}: {result} from {where}", "Nothing to fix.",
              Owner.NOBODY, ("RFC 7208 2.3",)),
        _spec("helo_fail", Severity.WARNING, "SPF for the HELO name {domain}: {result} from {where}",
              "Publish an SPF record for the HELO name {domain} that authorizes {ip} (`v=spf1 a -all` for a host "
              "that sends from its own address).", DNS, ("RFC 7208 2.3",)),
    ),
)

RESULT_IDS = {"pass": "pass", "fail": "fail", "softfail": "softfail", "neutral": "neutral", "none": "none",
              "permerror": "permerror", "temperror": "temperror"}


def where(c: SpfCheck) -> str:
    """The address and how sure deliverck is of it: seen, stated, or claimed by a header."""
    if c.claimed:
        return f"{c.ip} (the address the header claims: {c.source})"
    return f"{c.ip} ({c.source})"


async def run(mctx: MessageContext) -> list[Finding]:
    auth = await mctx.auth()
    mf, helo = auth.spf_mailfrom, auth.spf_helo
    out: list[Finding] = []
    if mf.result in RESULT_IDS:
        # Forwarding breaks SPF by design; a valid ARC chain says the message was forwarded, so the
        # failure is the forwarder's (it kept the original envelope sender), not the domain's.
        fwd = auth.arc.result == "pass" and mf.result == "fail"
        last = auth.arc.sealers[-1] if auth.arc.sealers else "the forwarder"
        out.append(CHECK.finding(RESULT_IDS[mf.result], mf.domain, mf.evidence, domain=mf.domain, ip=mf.ip,
                                 where=where(mf), reason=mf.reason or mf.result,
                                 forwarded=f"; the message was forwarded (ARC sealed by {last})" if fwd else "",
                                 forwarded_fix=(f" A forwarder such as {last} should rewrite the envelope sender "
                                                "(SRS) when it forwards." if fwd else ""),
                                 severity=Severity.WARNING if fwd else None))
    else:
        out.append(CHECK.finding("not_evaluated", mf.domain or "MAIL FROM", mf.evidence, reason=mf.reason))
    if helo.result:
        name = "helo_fail" if helo.result in ("fail", "permerror") else "helo_result"
        out.append(CHECK.finding(name, helo.domain, helo.evidence, domain=helo.domain, ip=helo.ip,
                                 where=where(helo), result=helo.result))
    return out

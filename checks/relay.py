"""Open relay: does an MX address accept mail for foreign domains from anyone?

An open relay is found and abused by spammers within hours; its addresses
then land on DNSBLs and its own users' mail is refused everywhere (seed 000's
RBL cause, seed 004's 554 ... found in dnsbl, Exchange Online's 5.7.606-649
banned sending IP).  The test stops at RCPT TO, with RFC 2606 addresses
that belong to nobody, and ends with RSET: nothing is ever sent.
"""

from __future__ import annotations

from deliverck.checkcontext import CheckContext
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity
from deliverck.net.smtp import RELAY_RECIPIENT, RELAY_SENDER
from deliverck.smtpfacts import evidence, undecided_reason

CHECK = CheckSpec(
    id="relay",
    title="Open relay",
    cause="An MX address accepts mail from anyone to any domain (open relay), which gets it blocklisted.",
    order=60,
    findings=(
        FindingSpec("relay.closed", Severity.INFO,
                    "{ip} ({host}) refuses to relay: RCPT TO:<{recipient}> got {reply}",
                    "Nothing to fix.", Owner.NOBODY, Direction.NONE, refs=("RFC 5321 3.6.2",)),
        FindingSpec("relay.open", Severity.CRITICAL,
                    "{ip} ({host}) is an open relay: it accepted RCPT TO:<{recipient}> from <{sender}> ({reply})",
                    "Restrict relaying to authenticated users and your own networks (Postfix "
                    "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
                    "reject_unauth_destination; Exchange: remove anonymous relay permissions from the "
                    "receive connector). Then check the DNSBLs for its addresses.",
                    Owner.MAIL_ADMIN, Direction.OUTBOUND, refs=("RFC 5321 3.6.2", "RFC 2505", "seed 000", "seed 004")),
        FindingSpec("relay.not_tested", Severity.ERROR,
                    "relaying through {ip} ({host}) could not be tested: {reason}",
                    "See the smtp check; a server that refuses MAIL FROM:<{sender}> may have sender checks "
                    "that hide the answer.",
                    Owner.NOBODY, Direction.NONE, inconclusive=True),
    ),
)


async def run(ctx: CheckContext) -> list[Finding]:
    greeted, undecided = await ctx.greeted_sessions()
    out: list[Finding] = []
    for ma, s in undecided + greeted:
        args = dict(ip=ma.ip, host=ma.host or ma.ip, sender=RELAY_SENDER, recipient=RELAY_RECIPIENT)
        ev = evidence(s, "MAIL", "RCPT")
        if not s.usable:
            out.append(CHECK.finding("not_tested", ma.ip, ev, reason=f"no SMTP session ({undecided_reason(s)})",
                                     **args))
        elif s.relay is None:
            out.append(CHECK.finding("not_tested", ma.ip, ev, reason="the session ended before MAIL FROM", **args))
        elif s.relay.rcpt is None:
            mail = s.relay.mail
            reason = f"MAIL FROM was answered {mail.line()}" if mail else "MAIL FROM got no answer"
            out.append(CHECK.finding("not_tested", ma.ip, ev, reason=reason, **args))
        elif s.relay.open:
            out.append(CHECK.finding("open", ma.ip, ev, reply=s.relay.rcpt.line(), **args))
        else:
            out.append(CHECK.finding("closed", ma.ip, ev, reply=s.relay.rcpt.line(), **args))
    return out

"""The sender's own domain: does the domain of --sender exist and receive mail?

Receivers judge the envelope sender's domain before they look at the
message.  Postfix's reject_unknown_sender_domain refuses mail whose sender
domain has no MX and no address record (450 4.1.8, or 550 5.1.8 with
unknown_address_reject_code = 550) and, since Postfix 3.0, one that declares
a null MX (RFC 7505 4.2); Yahoo's sender requirements (February 2024) say the
sending domain must exist (have an SOA) and the From domain must be able to
receive mail.  A domain that does not exist cannot receive the bounces or
replies either.

The check runs only when --sender names a domain other than the target's
own name: for the target itself the mx check already judges the same facts.
The domain's SPF and DMARC records are the spf and dmarc checks' business
(both follow --sender); this check reports a missing record itself only when
that check does not run in the audit (--skip, --only), so one cause gives one
finding.  It asks for the records the same Context facts do (spf_lint, the
_dmarc TXT lookups), so the records are looked up once however many checks
read them.

Existence is read from the rcodes of the MX, A and AAAA lookups: NXDOMAIN
means no name at or below exists (RFC 8020), while any NOERROR answer places
the name inside a zone, i.e. under an SOA.  A lookup that times out or
SERVFAILs is "could not check" (sender_domain.unresolved, inconclusive): it
is never read as a missing domain.
"""

from __future__ import annotations

import asyncio

from deliverck.checkcontext import CheckContext
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net.dns import DnsAnswer, Outcome
from deliverck.records import dmarc as dm
from deliverck.records.dkim_discovery import txt_text
from deliverck.target import org_domain, sender_domain_of

OUT, NONE = Direction.OUTBOUND, Direction.NONE
DNS = Owner.DNS_ADMIN
POSTFIX = "postconf(5) reject_unknown_sender_domain"
YAHOO = "Yahoo Sender Requirements & Recommendations (senders.yahooinc.com, 2024)"

CHECK = CheckSpec(
    id="sender_domain",
    title="The sender's own domain",
    cause="The domain of the envelope sender (--sender) does not exist, cannot receive mail (no MX and no "
          "address, or a null MX), or lacks SPF/DMARC, so receivers that verify it refuse the mail.",
    order=65,
    findings=(
        FindingSpec("sender_domain.ok", Severity.INFO,
                    "{domain}, the domain of the sender {sender}, exists and receives mail ({how})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 5321 5.1",)),
        FindingSpec("sender_domain.nxdomain", Severity.ERROR,
                    "{domain}, the domain of the sender {sender}, does not exist (NXDOMAIN): receivers that "
                    "verify the sender domain (Postfix reject_unknown_sender_domain, Yahoo) refuse the mail, "
                    "and bounces and replies to it cannot be delivered",
                    "Send from an address in a domain that exists, or register {domain} and publish its zone "
                    "with MX records (check the --sender address and the server's envelope sender for typos).",
                    DNS, OUT, refs=(POSTFIX, "RFC 3463 3.2 (X.1.8)", YAHOO)),
        FindingSpec("sender_domain.no_mail", Severity.ERROR,
                    "{domain}, the domain of the sender {sender}, has no MX and no address record: receivers "
                    "that verify the sender domain refuse the mail as 'Domain not found'",
                    "Publish MX records for {domain} naming the hosts that receive its mail (`{domain}. MX 10 "
                    "mail.{domain}.`), or send from a domain that receives mail.",
                    DNS, OUT, refs=(POSTFIX, "RFC 5321 5.1", YAHOO)),
        FindingSpec("sender_domain.null_mx", Severity.ERROR,
                    "{domain}, the domain of the sender {sender}, publishes a null MX (MX 0 .): it declares "
                    "that it receives no mail, so receivers may refuse mail from it (RFC 7505 4.2)",
                    "Do not send from a null-MX domain: publish real MX records for {domain} if it sends mail, "
                    "or use a sender address in a domain that receives mail.",
                    DNS, OUT, refs=("RFC 7505 4.2", POSTFIX, YAHOO)),
        FindingSpec("sender_domain.no_spf", Severity.WARNING,
                    "{domain}, the domain of the sender {sender}, publishes no SPF record ({outcome}); Gmail "
                    "and Yahoo require SPF or DKIM of every sender, both of bulk senders",
                    "Publish one TXT record at {domain} listing the servers that send its mail, e.g. "
                    "`{domain}. TXT \"v=spf1 mx -all\"`.",
                    DNS, OUT, refs=("RFC 7208 4.5", YAHOO)),
        FindingSpec("sender_domain.no_dmarc", Severity.WARNING,
                    "{domain}, the domain of the sender {sender}, has no DMARC record (looked up {names}); "
                    "Gmail, Yahoo and Outlook.com require one of bulk senders",
                    "Publish a TXT record at _dmarc.{org}, at least `v=DMARC1; p=none; "
                    "rua=mailto:dmarc-reports@{org}`.",
                    DNS, OUT, refs=("RFC 7489 6.6.3", YAHOO)),
        FindingSpec("sender_domain.unresolved", Severity.ERROR,
                    "could not tell whether {domain}, the domain of the sender {sender}, exists and receives "
                    "mail: {lookups}",
                    "Rerun later; if it persists, check the name servers of {domain} (they must answer MX, A "
                    "and AAAA queries), or the resolver deliverck uses (--resolver IP). Receivers that meet "
                    "the same failure defer the mail (450 4.1.8 at Postfix).",
                    Owner.NETWORK, NONE, refs=(POSTFIX,), inconclusive=True),
    ),
)


def _null_only(mx: DnsAnswer) -> bool:
    """Is the MX RRset a null MX (every exchange the root), as RFC 7505 3 defines it?"""
    exchanges = [r.exchange.to_text(omit_final_dot=True) for r in mx.records]
    return bool(exchanges) and all(ex in ("", ".") for ex in exchanges)


async def _dmarc_missing(ctx: CheckContext, domain: str) -> tuple[bool, list[str]]:
    """(no record, names looked up) with RFC 7489 6.6.3's two lookups; a failed lookup is not "missing"."""
    names = [f"_dmarc.{domain}"]
    org = org_domain(domain)
    if org != domain:
        names.append(f"_dmarc.{org}")
    for name in names:
        ans = await ctx.dns(name, "TXT")
        if not ans.outcome.definite or (ans.ok and any(dm.is_dmarc_candidate(txt_text(r)) for r in ans.records)):
            return False, names
    return True, names


async def _records(ctx: CheckContext, domain: str, args: dict) -> list[Finding]:
    out: list[Finding] = []
    if not ctx.config.selects("spf"):
        lint = await ctx.spf_lint(domain)
        if not lint.records and lint.lookup.outcome.definite:
            out.append(CHECK.finding("no_spf", domain, (lint.lookup.describe(),),
                                     outcome=lint.lookup.outcome.value.upper(), **args))
    if not ctx.config.selects("dmarc"):
        missing, names = await _dmarc_missing(ctx, domain)
        if missing:
            out.append(CHECK.finding("no_dmarc", domain, tuple(names), names=", ".join(names),
                                     org=org_domain(domain), **args))
    return out


async def run(ctx: CheckContext) -> list[Finding]:
    domain = sender_domain_of(ctx.config.sender)
    if not domain:
        raise Skip("no --sender given: the sender's domain is the target's own (see the mx, spf and dmarc checks)")
    if not ctx.target.is_ip and domain == ctx.target.name.rstrip(".").lower():
        raise Skip(f"the sender's domain {domain} is the target itself (see the mx, spf and dmarc checks)")
    args = dict(domain=domain, sender=ctx.config.sender)
    mx, hosts = await asyncio.gather(ctx.dns(domain, "MX"), ctx.addresses(domain))
    answers = (mx, hosts.a, hosts.aaaa)
    evidence = tuple(a.describe() for a in answers)
    if mx.outcome is Outcome.NXDOMAIN or (not mx.outcome.definite and hosts.nxdomain):
        return [CHECK.finding("nxdomain", domain, evidence, **args)]
    if not mx.outcome.definite:
        failed = "; ".join(f"{a.qname} {a.rdtype}: {a.outcome.value.upper()}" for a in answers
                           if not a.outcome.definite)
        return [CHECK.finding("unresolved", domain, evidence, lookups=failed, **args)]
    if mx.ok and _null_only(mx):
        return [CHECK.finding("null_mx", domain, evidence, **args)]
    if mx.ok:
        how = "MX " + ", ".join(r.exchange.to_text(omit_final_dot=True) for r in mx.records)
    elif hosts.ips:
        how = "no MX; its address " + ", ".join(hosts.ips) + " is its implicit MX (RFC 5321 5.1)"
    elif hosts.failed:
        failed = "; ".join(f"{a.qname} {a.rdtype}: {a.outcome.value.upper()}" for a in hosts.failed)
        return [CHECK.finding("unresolved", domain, evidence, lookups=f"no MX, and {failed}", **args)]
    else:
        return [CHECK.finding("no_mail", domain, evidence, **args)]
    return [CHECK.finding("ok", domain, evidence, how=how, **args)] + await _records(ctx, domain, args)

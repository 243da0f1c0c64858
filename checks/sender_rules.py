"""Sender requirements of the large mailbox providers that no single record shows.

Since February 2024 Gmail and Yahoo, and since May 2025 Outlook.com, refuse bulk
mail (5,000 or more messages a day from one From domain) unless SPF and DKIM both
pass, a DMARC record exists, and the From domain is aligned with the SPF or the
DKIM domain (Gmail 5.7.32, Outlook.com 5.7.515).  The spf, dkim, dmarc, ptr and
starttls checks report the records; what is left is alignment, which is about two
domains at once: the domain of the audited system (its SPF record authorizes the
server, its DKIM keys sign for it) and the From domain of the mail (--sender).
When they lie in different organizational domains and the From domain has neither
a DKIM key the server could sign with nor an SPF record that authorizes the server,
the mail authenticates, but as someone else: sender_rules.not_aligned.

Whether the rule fires depends on volume, which deliverck cannot see: the catalog
marks these replies `profile = "bulk"`, and --sender-profile decides (`will` for
bulk, `may` with the condition otherwise; deliverck/ndr/predict.py).  Under
--sender-profile bulk, sender_rules.not_visible lists the bulk rules that only the
messages and the receivers' own tools show (spam rate, one-click unsubscribe,
complaints); it is left out otherwise because those rules bind bulk senders only,
and an info line about them would be noise in every transactional audit.

Sources: Google, "Email sender guidelines" (support.google.com/a/answer/81126);
Yahoo, "Sender Requirements & Recommendations" (senders.yahooinc.com); Microsoft
Tech Community, "Strengthening Email Ecosystem: Outlook's New Requirements for
High-Volume Senders" (April 2025); RFC 7489 3.1 (identifier alignment).
"""

from __future__ import annotations

import asyncio

from deliverck.checkcontext import CheckContext
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.target import org_domain

OUT, NONE = Direction.OUTBOUND, Direction.NONE
GUIDELINES = ("Google Email sender guidelines", "Yahoo Sender Requirements (2024)",
              "Outlook.com high-volume sender requirements (2025)")

CHECK = CheckSpec(
    id="sender_rules",
    title="Mailbox providers' sender requirements",
    cause="Mail whose From domain is not aligned with the domain that authenticates it is refused by Gmail, "
          "Yahoo and Outlook.com from bulk senders.",
    order=95,
    findings=(
        FindingSpec("sender_rules.aligned", Severity.INFO,
                    "From {from_domain}: aligned identifier possible ({how})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 7489 3.1",)),
        FindingSpec("sender_rules.not_aligned", Severity.WARNING,
                    "mail From {from_domain} sent by {system}: its SPF and DKIM identify {system}, and "
                    "{from_domain} has neither a DKIM key nor an SPF record that authorizes {ip}, so the From "
                    "domain is not aligned (DMARC fails; Gmail, Yahoo and Outlook.com refuse such bulk mail)",
                    "Sign the mail with a key of {from_domain} (publish it at <selector>._domainkey.{from_domain} "
                    "and make {system} sign with d={from_domain}), or add {system}'s addresses to the SPF record of "
                    "{from_domain} and send with an envelope sender at {from_domain}.",
                    Owner.MAIL_ADMIN, OUT, refs=("RFC 7489 3.1",) + GUIDELINES),
        FindingSpec("sender_rules.not_visible", Severity.INFO,
                    "not visible from outside: the bulk-sender rules that only the messages and the receivers "
                    "show (spam rate under 0.3 %, one-click unsubscribe per RFC 8058 honoured within 2 days, "
                    "complaint rate, valid RFC 5322 messages)",
                    "Watch the spam rate in Google Postmaster Tools (postmaster.google.com), join Yahoo's "
                    "Complaint Feedback Loop (Yahoo Sender Hub, senders.yahooinc.com) and Microsoft SNDS "
                    "(sendersupport.olc.protection.outlook.com/snds); check that a real marketing message carries "
                    "List-Unsubscribe (https) and List-Unsubscribe-Post: List-Unsubscribe=One-Click, both "
                    "covered by its DKIM signature (`deliverck message FILE --sender-profile bulk` checks a "
                    "saved one).",
                    Owner.NOBODY, NONE, refs=("RFC 8058",) + GUIDELINES),
    ),
)


async def _spf_passes(ctx: CheckContext, ips: list[str], domain: str) -> bool:
    """True when `domain`'s SPF passes for every outbound address (an envelope at `domain` would align)."""
    results = await asyncio.gather(*(ctx.spf(ip, domain) for ip in ips))
    return bool(results) and all(str(getattr(r, "result", "")).lower() == "pass" for r in results)


async def _alignment(ctx: CheckContext, system: str, from_domain: str) -> list[Finding]:
    addresses = [a for a in await ctx.mail_addresses() if a.scope.routable or "--ip" in a.sources]
    if not addresses:
        return []
    ips = [a.ip for a in addresses]
    disc = await ctx.dkim_keys(from_domain)
    if disc.usable:
        selectors = ", ".join(s for s, _ in disc.usable)
        return [CHECK.finding("aligned", from_domain, from_domain=from_domain,
                              how=f"DKIM key of {from_domain} at {selectors}")]
    if disc.failed:
        return []       # the dkim check reports the failed lookups; alignment cannot be settled
    if await _spf_passes(ctx, ips, from_domain):
        return [CHECK.finding("aligned", from_domain, from_domain=from_domain,
                              how=f"SPF of {from_domain} authorizes {', '.join(ips)}")]
    system_spf = await _spf_passes(ctx, ips, system)
    system_dkim = bool((await ctx.dkim_keys(system)).usable)
    evidence = (f"From domain {from_domain} (organizational domain {org_domain(from_domain)})",
                f"sending system {system} (organizational domain {org_domain(system)})",
                f"SPF of {system} for {', '.join(ips)}: {'pass' if system_spf else 'not pass'}",
                f"DKIM keys of {system}: {'found' if system_dkim else 'none found'}",
                f"DKIM keys of {from_domain}: none found at the selectors looked up",
                f"SPF of {from_domain} for {', '.join(ips)}: not pass")
    return [CHECK.finding("not_aligned", from_domain, evidence, from_domain=from_domain, system=system,
                          ip=ips[0], spf=system_spf, dkim=system_dkim)]


async def run(ctx: CheckContext) -> list[Finding]:
    from_domain = await ctx.mail_domain()
    if not from_domain:
        raise Skip("no From domain to judge (an address without --sender, or a name that does not exist)")
    out: list[Finding] = []
    system = "" if ctx.target.is_ip else ctx.target.name.rstrip(".").lower()
    if system and org_domain(system) != org_domain(from_domain):
        out += await _alignment(ctx, system, from_domain)
    if ctx.config.sender_profile == "bulk":
        out.append(CHECK.finding("not_visible", from_domain))
    if not out:
        raise Skip(f"the From domain {from_domain} is the audited domain: the spf, dkim and dmarc checks judge "
                   "its alignment")
    return out

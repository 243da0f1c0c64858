"""HELO/EHLO name: is the name the server announces a resolvable FQDN of its own?

Receivers check the name a sending server gives in HELO/EHLO: Postfix can
reject names that are not fully qualified, invalid or unresolvable
(reject_non_fqdn_helo_hostname, reject_invalid_helo_hostname,
reject_unknown_helo_hostname); Exchange Online rejects a server that
introduces itself with the receiver's own domain (5.7.506 Bad HELO, seed
002); seed 000 and seed 004 report rejects for unresolvable names and names
that do not match the sending address.  A server usually uses the same name
in its greeting as in its outbound HELO, so without `--helo` we judge the
name it announces; `--helo NAME` states the outbound name explicitly.
"""

from __future__ import annotations

import asyncio
import ipaddress

from deliverck.checkcontext import CheckContext
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.target import is_address_literal, is_hostname, org_domain

OUT, NONE = Direction.OUTBOUND, Direction.NONE
MAIL, DNS = Owner.MAIL_ADMIN, Owner.DNS_ADMIN

CHECK = CheckSpec(
    id="helo",
    title="HELO/EHLO name",
    cause="The name the server uses in HELO/EHLO is not a resolvable fully qualified name of its own.",
    order=40,
    findings=(
        FindingSpec("helo.names", Severity.INFO, "{ip} announces itself as {helo} ({where})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 5321 4.1.1.1",)),
        FindingSpec("helo.not_fqdn", Severity.ERROR,
                    "{ip} introduces itself as {helo!r}, which is not a fully qualified domain name",
                    "Set the server's host name for SMTP (Postfix myhostname, Exchange connector FQDN) to its "
                    "full name, e.g. mail.example.com, matching its PTR record.",
                    MAIL, OUT, refs=("RFC 5321 4.1.1.1", "RFC 5321 2.3.5", "seed 000")),
        FindingSpec("helo.localhost", Severity.ERROR,
                    "{ip} introduces itself as {helo!r}, a local-only name",
                    "Configure the real host name (e.g. mail.example.com) as the SMTP name; receivers treat "
                    "localhost names as spambots.",
                    MAIL, OUT, refs=("RFC 5321 4.1.1.1", "RFC 6761 6.3")),
        FindingSpec("helo.address_literal", Severity.WARNING,
                    "{ip} introduces itself with the address literal {helo}",
                    "Address literals are legal (RFC 5321 4.1.3) but many receivers score or refuse them: use "
                    "the host's FQDN, matching its PTR record.",
                    MAIL, OUT, refs=("RFC 5321 4.1.3",)),
        FindingSpec("helo.invalid", Severity.ERROR,
                    "{ip} introduces itself as {helo!r}, which is not a valid host name",
                    "Use a host name of letters, digits, hyphens and dots only (e.g. mail.example.com).",
                    MAIL, OUT, refs=("RFC 5321 2.3.5", "RFC 1123 2.1", "seed 000")),
        FindingSpec("helo.unresolvable", Severity.ERROR,
                    "the HELO name {helo} of {ip} does not resolve ({outcome})",
                    "Publish an A/AAAA record for {helo} pointing at {ip}, or use a name that has one.",
                    DNS, OUT, refs=("seed 000", "seed 004")),
        FindingSpec("helo.not_own_address", Severity.WARNING,
                    "the HELO name {helo} of {ip} resolves to {addresses}, not to {ip}",
                    "Point {helo} at {ip} as well, or use the name that does (its PTR name).",
                    DNS, OUT, refs=("seed 004",)),
        FindingSpec("helo.ptr_mismatch", Severity.WARNING,
                    "{ip} introduces itself as {helo}, but its PTR names {ptr_name}",
                    "Use the same name in HELO, in the PTR record and in the A/AAAA record of the server.",
                    MAIL, OUT, refs=("seed 004", "seed 003")),
        FindingSpec("helo.is_domain_apex", Severity.WARNING,
                    "{ip} introduces itself with the bare domain {helo}, not a host name",
                    "Use the server's own host name (e.g. mail.{helo}); receivers hosting {helo} (e.g. Exchange "
                    "Online for your own tenant) reject a sender claiming to be them (5.7.506 Bad HELO).",
                    MAIL, OUT, refs=("seed 002",)),
        FindingSpec("helo.lookup_failed", Severity.ERROR,
                    "the address lookup of HELO name {helo} (of {ip}) failed ({outcome})",
                    "Check the name servers of the zone that holds {helo}; receivers that see this defer mail.",
                    DNS, OUT, inconclusive=True),
        FindingSpec("helo.not_checked", Severity.ERROR,
                    "the HELO name of {subject} is unknown: no SMTP session completed (give --helo NAME to check it)",
                    "See the smtp check; or pass the name the server uses for outbound mail with --helo.",
                    Owner.NOBODY, NONE, inconclusive=True),
    ),
)

_LOCAL = ("localhost", "localhost.localdomain", "localdomain")


async def judge(ctx: CheckContext, ip: str, helo: str, where: str, seen: tuple[str, ...] = ()) -> list[Finding]:
    """All findings for one (address, HELO name) pair; `seen` is where the name was read."""
    shown = helo
    args = dict(ip=ip, helo=shown, where=where)
    out = [CHECK.finding("names", ip, seen, **args)]
    name = helo.rstrip(".").lower()
    if is_address_literal(name):
        return out + [CHECK.finding("address_literal", ip, seen, **args)]
    if name in _LOCAL or name.startswith("localhost.") or name.endswith((".localdomain", ".localhost")):
        return out + [CHECK.finding("localhost", ip, seen, **args)]
    if "." not in name:
        return out + [CHECK.finding("not_fqdn", ip, seen, **args)]
    if not is_hostname(name):
        return out + [CHECK.finding("invalid", ip, seen, **args)]
    fwd, ptr = await asyncio.gather(ctx.addresses(name), ctx.ptr(ip))
    if fwd.failed and not fwd.ips:
        return out + [CHECK.finding("lookup_failed", ip, fwd.evidence(), outcome=fwd.failed[0].outcome.value, **args)]
    if not fwd.ips:
        outcome = "NXDOMAIN" if fwd.nxdomain else "no A/AAAA record"
        return out + [CHECK.finding("unresolvable", ip, fwd.evidence(), outcome=outcome, **args)]
    if ipaddress.ip_address(ip) not in {ipaddress.ip_address(a) for a in fwd.ips}:
        out.append(CHECK.finding("not_own_address", ip, fwd.evidence(), addresses=", ".join(fwd.ips), **args))
    if ptr.ok:
        names = [r.target.to_text(omit_final_dot=True).lower() for r in ptr.records]
        if name not in names:
            out.append(CHECK.finding("ptr_mismatch", ip, (ptr.describe(),), ptr_name=", ".join(names), **args))
    if org_domain(name) == name:
        out.append(CHECK.finding("is_domain_apex", ip, **args))
    return out


async def run(ctx: CheckContext) -> list[Finding]:
    if ctx.config.helo_name:
        ips = [a.ip for a in await ctx.mail_addresses() if ctx.probe_allowed(a) or a.scope.routable]
        if not ips:
            raise Skip("no sending address known: give --ip ADDR with --helo")
        where = ctx.config.helo_source or "--helo"
        seen: tuple[str, ...] = (f"{where}: {ctx.config.helo_name}",)
        results = await asyncio.gather(*(judge(ctx, ip, ctx.config.helo_name, where, seen) for ip in ips))
        return [f for r in results for f in r]
    greeted, undecided = await ctx.greeted_sessions()
    jobs = []
    for ma, s in greeted:
        greet = s.greeting.first_word if s.greeting else ""
        ehlo = s.ehlo.first_word if s.ehlo is not None and s.ehlo.code == 250 else ""
        name = greet or ehlo
        where = "greeting" if not ehlo or ehlo.lower() == greet.lower() else f"greeting; EHLO reply says {ehlo}"
        seen = tuple(x for x in (f"greeting: {s.greeting.wire()}" if s.greeting else "",
                                 f"EHLO reply: {s.ehlo.lines[0]}" if ehlo and s.ehlo is not None else "") if x)
        jobs.append(judge(ctx, ma.ip, name, where, seen))
    results = await asyncio.gather(*jobs)
    out = [f for r in results for f in r]
    if undecided and not greeted:
        out.append(CHECK.finding("not_checked", ctx.target.label, ips=", ".join(ma.ip for ma, _ in undecided)))
    return out

"""PTR / FCrDNS: does every sending address have reverse DNS that confirms?

Receivers look up the PTR of the connecting address and then the A/AAAA of
that name; when there is no PTR, or the name does not lead back to the same
address (forward-confirmed reverse DNS, FCrDNS), many refuse or defer the
mail (Postfix reject_unknown_client_hostname, Gmail's PTR requirement, seed
000 and 003).  Names that look machine-generated for dial-up or broadband
pools are treated as spam sources by many receivers (seed 004, sina/tom).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re

from deliverck.checkcontext import CheckContext
from deliverck.context import PTR_NAME_LIMIT, MailAddress, split_public
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net.dns import Outcome, reverse_name
from deliverck.target import is_hostname

OUT, NONE = Direction.OUTBOUND, Direction.NONE
IPO, DNS = Owner.IP_OWNER, Owner.DNS_ADMIN

CHECK = CheckSpec(
    id="ptr",
    title="Reverse DNS (PTR, FCrDNS)",
    cause="A sending address has no reverse DNS, reverse DNS that does not lead back to it, or a generic-looking name.",
    order=20,
    findings=(
        FindingSpec("ptr.confirmed", Severity.INFO,
                    "{subject} -> {ptr_name} -> {subject}: forward-confirmed",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 1912 2.1",)),
        FindingSpec("ptr.missing", Severity.ERROR,
                    "{subject} has no reverse DNS (PTR lookup of {rname}: {outcome})",
                    "Ask whoever holds this address block (ISP or hosting provider) to set a PTR record "
                    "for {subject} to the server's host name, e.g. the name it uses in HELO.",
                    IPO, OUT, refs=("RFC 1912 2.1", "seed 000", "seed 003")),
        FindingSpec("ptr.forward_missing", Severity.ERROR,
                    "{subject} has PTR {ptr_name}, but {ptr_name} has no {family} record: reverse DNS is not forward-confirmed",
                    "Publish `{ptr_name}. IN {family} {subject}` in the zone of {ptr_name}, or change the PTR to a "
                    "name that already resolves to {subject}.",
                    DNS, OUT, refs=("RFC 1912 2.1", "seed 003")),
        FindingSpec("ptr.forward_mismatch", Severity.ERROR,
                    "{subject} has PTR {ptr_name}, but {ptr_name} resolves to {forward}, not {subject}",
                    "Make the forward and reverse records agree: add {subject} to the {family} records of "
                    "{ptr_name}, or have the address holder point the PTR at the name this server really uses.",
                    DNS, OUT, refs=("RFC 1912 2.1", "seed 003")),
        FindingSpec("ptr.multiple", Severity.WARNING,
                    "{subject} has {count} PTR records ({names}); receivers pick one at random",
                    "Keep a single PTR record naming the host the server announces in HELO.",
                    IPO, OUT, refs=("RFC 1912 2.1",)),
        FindingSpec("ptr.too_many_names", Severity.WARNING,
                    "{subject} has {count} PTR records; receivers use one of them, picked at random; deliverck "
                    "forward-confirmed only the first {limit} by name ({names}) and left out {left_out}",
                    "Keep a single PTR record naming the host the server announces in HELO.",
                    IPO, OUT, refs=("RFC 1912 2.1",)),
        FindingSpec("ptr.generic", Severity.WARNING,
                    "{subject} has the generic-looking PTR {ptr_name} ({why}): receivers treat such names as "
                    "dynamic or residential addresses",
                    "Ask the address holder for a PTR naming your mail server (e.g. mail.example.com), "
                    "not a name generated from the address.",
                    IPO, OUT, refs=("seed 004", "RFC 1912 2.1")),
        FindingSpec("ptr.name_invalid", Severity.ERROR,
                    "{subject} has the PTR {ptr_name}, which is not a valid host name",
                    "Ask the address holder to set the PTR to a valid fully qualified host name.",
                    IPO, OUT, refs=("RFC 1123 2.1", "RFC 5321 2.3.5")),
        FindingSpec("ptr.lookup_failed", Severity.ERROR,
                    "the reverse DNS lookup for {subject} failed ({outcome}); receivers that see this defer mail",
                    "Check the name servers of the reverse zone {rname}: they must answer PTR queries.",
                    IPO, OUT, refs=("seed 003",), inconclusive=True),
        FindingSpec("ptr.forward_lookup_failed", Severity.ERROR,
                    "the forward lookup of PTR name {ptr_name} (for {subject}) failed ({outcome})",
                    "Check the name servers of the zone that holds {ptr_name}.",
                    DNS, OUT, refs=("seed 003",), inconclusive=True),
        FindingSpec("ptr.not_public", Severity.INFO,
                    "{subject} is not a public address ({scope}); its reverse DNS was not checked",
                    "Nothing to check from outside; see the mx check if this address is published in MX.",
                    Owner.NOBODY, NONE),
        FindingSpec("ptr.addresses_unknown", Severity.ERROR,
                    "could not tell which addresses of {subject} to check: {reason}",
                    "Fix the lookups reported by the mx check, then run again.",
                    DNS, OUT, inconclusive=True),
    ),
)

# Words that broadband and hosting providers put in names they generate for
# pools of customer addresses.  Deliberately narrow: "mail", "host" or "ip"
# alone prove nothing.
_POOL_WORDS = re.compile(
    r"(?:^|[^a-z])(a?dsl|vdsl|xdsl|dyn|dynamic|dynip|pool|dhcp|cust|customer|client|ppp|pppoe|"
    r"dial-?up|cable|broadband|residential|unassigned|catv|ftth|fttx|cpe|nat)(?:[^a-z]|$)",
    re.I,
)


def generic_reason(ip: str, name: str) -> str:
    """Why `name` looks generated from `ip`, or "" if it does not."""
    lname = name.lower()
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        octets = [str(o) for o in addr.packed]
        for seq in (octets, octets[::-1]):
            if re.search(r"(?<![0-9])" + r"[^0-9]+".join(seq) + r"(?![0-9])", lname):
                return "contains the address"
        if addr.packed.hex() in lname:
            return "contains the address in hex"
    else:
        full = addr.exploded.replace(":", "")
        compact = lname.replace("-", "").replace(".", "")
        if full[16:] in compact or full in compact:
            return "contains the address"
    m = _POOL_WORDS.search(lname)
    if m:
        return f"contains {m.group(1).lower()!r}"
    return ""


def _same(ip: str, other: str) -> bool:
    return ipaddress.ip_address(ip) == ipaddress.ip_address(other)


async def _check_address(ctx: CheckContext, ma: MailAddress) -> list[Finding]:
    ip = ma.ip
    rname = reverse_name(ip)
    ans = await ctx.ptr(ip)
    if ans.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
        return [CHECK.finding("missing", ip, (ans.describe(),), ip=ip, rname=rname,
                              outcome=ans.outcome.value.upper(), hosts=list(ma.hosts))]
    if not ans.ok:
        return [CHECK.finding("lookup_failed", ip, (ans.describe(),), ip=ip, rname=rname,
                              outcome=ans.outcome.value)]
    published = list(dict.fromkeys(r.target.to_text(omit_final_dot=True).lower() for r in ans.records))
    out: list[Finding] = []
    names = published
    if len(published) > PTR_NAME_LIMIT:
        # Each name costs forward lookups: past the limit they are named, not followed.
        names = sorted(published)[:PTR_NAME_LIMIT]
        rest = [n for n in published if n not in names]
        shown = ", ".join(rest[:5]) + (f" and {len(rest) - 5} more" if len(rest) > 5 else "")
        out.append(CHECK.finding("too_many_names", ip, (f"{rname} PTR: {len(published)} records",), ip=ip,
                                 count=len(published), limit=PTR_NAME_LIMIT, names=", ".join(names),
                                 left_out=shown))
    elif len(names) > 1:
        out.append(CHECK.finding("multiple", ip, (ans.describe(),), ip=ip, count=len(names),
                                 names=", ".join(names)))
    family = "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"
    valid = [n for n in names if is_hostname(n)]
    for n in names:
        if n not in valid:
            out.append(CHECK.finding("name_invalid", ip, (ans.describe(),), ip=ip, ptr_name=n))
    forwards = await asyncio.gather(*(ctx.addresses(n) for n in valid))
    confirmed = []
    problems: list[Finding] = []
    for n, fwd in zip(valid, forwards):
        lookup = fwd.a if family == "A" else fwd.aaaa
        ev = (ans.describe(), lookup.describe())
        args = dict(ip=ip, ptr_name=n, family=family)
        if not lookup.outcome.definite:
            problems.append(CHECK.finding("forward_lookup_failed", ip, ev, outcome=lookup.outcome.value, **args))
        elif not lookup.ok:
            problems.append(CHECK.finding("forward_missing", ip, ev, **args))
        elif not any(_same(ip, r.address) for r in lookup.records):
            forward = ", ".join(r.address for r in lookup.records)
            problems.append(CHECK.finding("forward_mismatch", ip, ev, forward=forward, **args))
        else:
            confirmed.append(n)
            out.append(CHECK.finding("confirmed", ip, ev, **args))
        why = generic_reason(ip, n)
        if why:
            out.append(CHECK.finding("generic", ip, (ans.describe(),), ip=ip, ptr_name=n, why=why))
    if confirmed:
        # Another PTR name confirms: only receivers that happen to pick the
        # broken name fail, so these drop to warnings.
        problems = [
            p if p.inconclusive else CHECK.finding(
                p.id.split(".", 1)[1], p.subject, p.evidence, severity=Severity.WARNING, **p.args)
            for p in problems
        ]
    return out + problems


async def run(ctx: CheckContext) -> list[Finding]:
    if not ctx.target.is_ip:
        mx = await ctx.mx()
        assert mx is not None
        failed = not mx.answer.outcome.definite or any(
            h.addresses.failed and not h.addresses.ips for h in mx.hosts
        ) or (not mx.records and mx.apex.failed and not mx.apex.ips)
    else:
        failed = False
    addresses = await ctx.mail_addresses()
    if failed and not addresses:
        return [CHECK.finding("addresses_unknown", ctx.target.label, reason="the mail hosts' lookups failed")]
    if not addresses:
        raise Skip("no mail host address to check (see the mx check)")
    public, out = split_public(CHECK, addresses)
    results = await asyncio.gather(*(_check_address(ctx, ma) for ma in public))
    for r in results:
        out += r
    return out

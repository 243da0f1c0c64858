"""MX: can senders find a mail host for the domain at all?

Senders look up MX, fall back to the domain's own A/AAAA when there is none
(RFC 5321 5.1), and give up on a null MX (RFC 7505).  Every MX target must be
a host name (not an alias, not an address) with at least one publicly
routable address, or mail queues at the sender and finally bounces.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from deliverck.checkcontext import CheckContext
from deliverck.context import ADDRESS_LIMIT, HOST_ADDRESS_LIMIT, MX_HOST_LIMIT, HostAddresses
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net.addresses import scope
from deliverck.net.dns import Outcome

IN, NONE = Direction.INBOUND, Direction.NONE
DNS, MAIL = Owner.DNS_ADMIN, Owner.MAIL_ADMIN

CHECK = CheckSpec(
    id="mx",
    title="MX records",
    cause="The domain's MX records are missing, null, or point at hosts senders cannot use.",
    order=10,
    findings=(
        FindingSpec("mx.records", Severity.INFO, "{count} MX record(s): {records}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 5321 5.1",)),
        FindingSpec("mx.domain_nxdomain", Severity.CRITICAL,
                    "{subject} does not exist in DNS (NXDOMAIN): no mail can be delivered to it",
                    "Register the domain or create its zone, then publish MX records; check the name for typos.",
                    DNS, IN, refs=("RFC 5321 5.1",)),
        FindingSpec("mx.no_mail_host", Severity.CRITICAL,
                    "{subject} has neither MX nor A/AAAA records: senders have nowhere to deliver",
                    "Publish an MX record naming your mail host, e.g. `{subject}. IN MX 10 mail.{subject}.`.",
                    DNS, IN, refs=("RFC 5321 5.1",)),
        FindingSpec("mx.implicit", Severity.NOTICE,
                    "{subject} has no MX record; senders fall back to its A/AAAA records (implicit MX)",
                    "If {subject} receives mail, publish an explicit MX record; implicit MX works but "
                    "some receivers check that a sender domain has MX.",
                    DNS, IN, refs=("RFC 5321 5.1",)),
        FindingSpec("mx.null", Severity.NOTICE,
                    "{subject} publishes a null MX: it declares that it accepts no mail",
                    "If the domain should receive mail, replace `MX 0 .` with real MX records. If it only "
                    "sends, be aware that receivers may refuse mail from a null-MX sender domain (RFC 7505 4.2).",
                    DNS, IN, refs=("RFC 7505 3", "RFC 7505 4.2")),
        FindingSpec("mx.null_mixed", Severity.ERROR,
                    "{subject} publishes a null MX together with other MX records",
                    "A null MX must be the only MX record (RFC 7505 3): remove either `MX 0 .` or the other records.",
                    DNS, IN, refs=("RFC 7505 3",)),
        FindingSpec("mx.target_cname", Severity.WARNING,
                    "MX target {subject} is an alias (CNAME to {canonical})",
                    "Point the MX record at the canonical name {canonical} instead of the alias "
                    "(RFC 2181 10.3, RFC 5321 5.1); some MTAs refuse or mishandle aliased MX targets.",
                    DNS, IN, refs=("RFC 2181 10.3", "RFC 5321 5.1")),
        FindingSpec("mx.target_ip_literal", Severity.ERROR,
                    "MX target {subject} is an IP address written as a name; senders look it up as a host name and fail",
                    "MX records must name a host: create an A record (e.g. `mail.{domain}. IN A {subject}`) and "
                    "point the MX at that name.",
                    DNS, IN, refs=("RFC 5321 5.1", "RFC 1035 3.3.9")),
        FindingSpec("mx.target_doubled_origin", Severity.ERROR,
                    "MX target {subject} repeats the zone name: the record was probably written without a trailing dot",
                    "In the zone file write the MX target as a fully qualified name with a trailing dot "
                    "(`{intended}.`), or as a name relative to the origin.",
                    DNS, IN, refs=("RFC 1035 5.1",)),
        FindingSpec("mx.target_nxdomain", Severity.ERROR,
                    "MX target {subject} does not exist (NXDOMAIN)",
                    "Create A/AAAA records for {subject}, or point the MX at an existing mail host.",
                    DNS, IN, refs=("RFC 5321 5.1",)),
        FindingSpec("mx.target_no_address", Severity.ERROR,
                    "MX target {subject} has no A or AAAA record",
                    "Publish A (and, if reachable over IPv6, AAAA) records for {subject}.",
                    DNS, IN, refs=("RFC 5321 5.1",)),
        FindingSpec("mx.target_private", Severity.ERROR,
                    "MX target {subject} resolves to {addresses}, which the internet cannot reach ({scopes})",
                    "Publish the mail host's public address in public DNS; keep internal addresses in an "
                    "internal view only. deliverck does not probe these addresses.",
                    DNS, IN, refs=("RFC 1918", "RFC 6598", "RFC 5321 5.1")),
        FindingSpec("mx.no_usable_host", Severity.CRITICAL,
                    "no MX host of {subject} has a usable public address: inbound mail cannot be delivered",
                    "Fix the MX targets listed above so at least one resolves to a public address of a "
                    "running mail server.",
                    DNS, IN, refs=("RFC 5321 5.1",)),
        FindingSpec("mx.ipv6_only", Severity.WARNING,
                    "every MX host of {subject} has only IPv6 addresses: senders without IPv6 cannot deliver",
                    "Publish an IPv4 address (A record) for at least one MX host.",
                    DNS, IN, refs=("RFC 3974",)),
        FindingSpec("mx.single_host", Severity.NOTICE,
                    "{subject} has a single MX host ({host}): while it is down, mail waits in senders' queues",
                    "Nothing is lost while senders retry (typically 1-5 days), but consider a second MX host "
                    "in another network for longer outages.",
                    MAIL, IN, refs=("RFC 5321 4.5.4.1",)),
        FindingSpec("mx.equal_preference", Severity.INFO,
                    "MX hosts {hosts} share preference {preference}: senders spread mail across them at random",
                    "Intended for load sharing; make sure every one of them accepts mail for {subject}.",
                    Owner.NOBODY, NONE, refs=("RFC 5321 5.1",)),
        # Fan-out limits (context.py): what a sender would never try, deliverck does not audit either.
        FindingSpec("mx.too_many_hosts", Severity.WARNING,
                    "{subject} publishes {count} MX hosts: senders try a few addresses per delivery, most "
                    "preferred first (Postfix and Exim: 5), so hosts past the first few never get mail; "
                    "deliverck checked the first {limit} and left out {left_out}",
                    "Publish MX records only for the mail hosts you run (a handful at most), each with the "
                    "preference senders should try it in.",
                    DNS, IN, refs=("RFC 5321 5.1", "postconf(5) smtp_mx_address_limit", "Exim hosts_max_try")),
        FindingSpec("mx.too_many_addresses", Severity.WARNING,
                    "MX host {subject} has {count} {family} addresses: senders try at most a few addresses "
                    "per delivery (Postfix smtp_mx_address_limit 5, Exim hosts_max_try 5); deliverck "
                    "checked the first {limit}",
                    "Publish only the addresses where {subject} accepts mail; spread load with more MX hosts "
                    "or a load balancer behind a few addresses, not with hundreds of address records.",
                    DNS, IN, refs=("RFC 5321 5.1", "postconf(5) smtp_mx_address_limit", "Exim hosts_max_try")),
        FindingSpec("mx.addresses_not_audited", Severity.NOTICE,
                    "the mail hosts of {subject} have more than {limit} addresses: deliverck audited the first "
                    "{limit} (reverse DNS, block lists, SPF, SMTP) and left out {count}: {addresses}",
                    "Senders try only the first few addresses (Postfix and Exim: 5); if every address matters, "
                    "audit them one by one (`deliverck IP`).",
                    DNS, IN, refs=("RFC 5321 5.1", "postconf(5) smtp_mx_address_limit")),
        FindingSpec("mx.lookup_failed", Severity.ERROR,
                    "the MX lookup for {subject} failed ({outcome}): senders cannot route mail to it either",
                    "Check the domain's authoritative name servers: they must answer MX queries (and DNSSEC, "
                    "if signed, must validate). Until they do, senders defer and eventually bounce.",
                    DNS, IN, refs=("RFC 5321 5.1",), inconclusive=True),
        FindingSpec("mx.target_lookup_failed", Severity.ERROR,
                    "the address lookup for MX target {subject} failed ({outcome})",
                    "Check the name servers of the zone that holds {subject}.",
                    DNS, IN, refs=("RFC 5321 5.1",), inconclusive=True),
    ),
)


def _is_ip_name(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _doubled_origin(name: str) -> str:
    """`mail.example.com.example.com` -> `mail.example.com`; else ""."""
    labels = name.split(".")
    for k in range(2, len(labels) // 2 + 1):
        if labels[-k:] == labels[-2 * k:-k]:
            return ".".join(labels[:-k])
    return ""


def _host_findings(name: str, addr: HostAddresses, domain: str) -> tuple[list[Finding], str]:
    """Findings for one mail host, and its state: usable, not_found, unreachable or unknown."""
    out: list[Finding] = []
    reported_name = False
    if _is_ip_name(name):
        out.append(CHECK.finding("target_ip_literal", name, addr.evidence(), domain=domain))
        reported_name = True
    intended = _doubled_origin(name)
    if intended:
        out.append(CHECK.finding("target_doubled_origin", name, addr.evidence(), intended=intended))
        reported_name = True
    if not addr.ips and addr.failed:
        worst = addr.failed[0]
        out.append(CHECK.finding("target_lookup_failed", name, addr.evidence(), outcome=worst.outcome.value))
        return out, "unknown"
    if not addr.ips:
        if not reported_name:
            kind = "target_nxdomain" if addr.nxdomain else "target_no_address"
            out.append(CHECK.finding(kind, name, addr.evidence()))
        return out, "not_found"
    if addr.cname_target:
        out.append(CHECK.finding("target_cname", name, addr.evidence(), canonical=addr.cname_target))
    bad = [ip for ip in addr.ips if not scope(ip).routable]
    if bad:
        scopes = ", ".join(sorted({scope(ip).value for ip in bad}))
        mixed = len(bad) < len(addr.ips)
        out.append(CHECK.finding(
            "target_private", name, addr.evidence(),
            severity=Severity.WARNING if mixed else None,
            addresses=", ".join(bad), scopes=scopes,
        ))
    return out, "usable" if len(bad) < len(addr.ips) else "unreachable"


async def run(ctx: CheckContext) -> list[Finding]:
    mx = await ctx.mx()
    if mx is None:
        raise Skip("the target is an IP address; MX records belong to domains")
    d = mx.domain
    ans = mx.answer
    ev = (ans.describe(),)
    if ans.outcome is Outcome.NXDOMAIN:
        return [CHECK.finding("domain_nxdomain", d, ev)]
    if not ans.outcome.definite:
        return [CHECK.finding("lookup_failed", d, ev, outcome=ans.outcome.value)]

    out: list[Finding] = []
    if not mx.records:  # NODATA: implicit MX or nothing at all
        if mx.apex.ips:
            out.append(CHECK.finding("implicit", d, ev + mx.apex.evidence(), hosts=[_host_fact(0, d, mx.apex)]))
            host_findings, state = _host_findings(d, mx.apex, d)
            out += host_findings + _over_limit(d, mx.apex)
            if state in ("not_found", "unreachable"):
                out.append(CHECK.finding("no_usable_host", d, mx.apex.evidence(), host=d,
                                         ip=(mx.apex.ips or ("",))[0], reason=state))
            return out
        if mx.apex.failed:
            out.append(CHECK.finding("target_lookup_failed", d, mx.apex.evidence(),
                                     outcome=mx.apex.failed[0].outcome.value))
            return out
        return [CHECK.finding("no_mail_host", d, ev + mx.apex.evidence())]

    every = [f"{p} {ex or '.'}" for p, ex in mx.records]
    shown = _shown(every)
    out.append(CHECK.finding("records", d, shown, count=len(mx.records), records=", ".join(shown),
                             hosts=host_facts(mx)))
    if mx.unresolved:
        count = len({ex for _, ex in mx.records if ex})
        out.append(CHECK.finding("too_many_hosts", d, shown, count=count, limit=MX_HOST_LIMIT,
                                 left_out=_listed(mx.unresolved, "host")))
    if mx.null:
        if all(ex == "" for _, ex in mx.records):
            out.append(CHECK.finding("null", d, shown))
            return out
        out.append(CHECK.finding("null_mixed", d, shown))

    seen: dict[str, str] = {}
    v4_usable = False
    for host in mx.hosts:
        if host.name in seen:
            continue
        host_findings, state = _host_findings(host.name, host.addresses, d)
        out += host_findings + _over_limit(host.name, host.addresses)
        seen[host.name] = state
        if state == "usable" and any(scope(ip).routable for ip in host.addresses.ipv4):
            v4_usable = True
    first = mx.hosts[0] if mx.hosts else None
    where = dict(host=first.name if first else d,
                 ip=(first.addresses.ips or ("",))[0] if first else "")
    states = set(seen.values())
    if states and states <= {"not_found", "unreachable"}:
        # Why matters for the bounce: a host that cannot be found fails at
        # once, one that cannot be reached is retried until it expires.
        reason = states.pop() if len(states) == 1 else "mixed"
        out.append(CHECK.finding("no_usable_host", d, shown, reason=reason, **where))
    elif "usable" in states and not v4_usable:
        out.append(CHECK.finding("ipv6_only", d, shown, **where))
    if len(seen) == 1:
        out.append(CHECK.finding("single_host", d, shown, host=next(iter(seen))))
    by_pref: dict[int, list[str]] = defaultdict(list)
    for h in mx.hosts:
        if h.name not in by_pref[h.preference]:
            by_pref[h.preference].append(h.name)
    for pref, names in sorted(by_pref.items()):
        if len(names) > 1:
            out.append(CHECK.finding("equal_preference", d, shown, hosts=", ".join(names), preference=pref))
    return out + await left_out_findings(ctx)


def _shown(items, limit: int = 2 * MX_HOST_LIMIT) -> list[str]:
    """Evidence stays readable (and small) when a domain publishes hundreds of records."""
    items = list(items)
    if len(items) <= limit:
        return items
    return items[:limit] + [f"... and {len(items) - limit} more"]


def _listed(names, what: str) -> str:
    names = list(names)
    head = ", ".join(_shown(names, 5))
    return f"{len(names)} {what}{'s' if len(names) != 1 else ''} ({head})"


def _over_limit(name: str, addr: HostAddresses) -> list[Finding]:
    out = []
    for fam, count in addr.over_limit:
        rdtype, audited = ("A", addr.ipv4) if fam == "IPv4" else ("AAAA", addr.ipv6)
        audited = tuple(ip for ip in addr.audited if ip in frozenset(audited))
        ev = (f"{name} {rdtype}: {count} records; audited: {', '.join(audited)}",)
        out.append(CHECK.finding("too_many_addresses", name, ev, count=count, family=fam, limit=HOST_ADDRESS_LIMIT))
    return out


async def left_out_findings(ctx: CheckContext) -> list[Finding]:
    """Addresses past the audit's address limit (context.ADDRESS_LIMIT)."""
    plan = await ctx.address_plan()
    if not plan.left_out:
        return []
    return [CHECK.finding("addresses_not_audited", ctx.target.name, _shown(plan.left_out),
                          count=len(plan.left_out), limit=ADDRESS_LIMIT,
                          addresses=", ".join(_shown(plan.left_out, 5)))]


def host_facts(mx) -> list[dict]:
    """The MX hosts as plain data for the report's diagram: {name, preference, addresses (all published),
    audited (the first HOST_ADDRESS_LIMIT per family: the ptr, dnsbl, smtp and starttls findings name
    these in `ip`; past ADDRESS_LIMIT in all, mx.too_many_addresses names those left out), cname, error}.
    Hosts past MX_HOST_LIMIT are listed with the reason they were not looked up.  mx.implicit carries
    the same list with the domain itself as its one host (preference 0, RFC 5321 5.1)."""
    out: list[dict] = []
    resolved = {h.name: h for h in mx.hosts}
    for pref, name in mx.records:
        if not name or any(o["name"] == name and o["preference"] == pref for o in out):
            continue
        h = resolved.get(name)
        if h is None:
            out.append({"name": name, "preference": pref, "addresses": [], "audited": [], "cname": "",
                        "error": f"not looked up: past the first {MX_HOST_LIMIT} MX hosts"})
            continue
        out.append(_host_fact(pref, name, h.addresses))
    return out


def _host_fact(pref: int, name: str, a: HostAddresses) -> dict:
    if a.nxdomain:
        error = "does not exist (NXDOMAIN)"
    elif a.failed and not a.ips:
        error = f"address lookup failed ({a.failed[0].outcome.value})"
    else:
        error = "" if a.ips else "no A or AAAA record"
    return {"name": name, "preference": pref, "addresses": list(a.ips), "audited": list(a.audited),
            "cname": a.cname_target, "error": error}

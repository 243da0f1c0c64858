"""DANE: do the MX hosts' TLSA records authenticate the certificates they present?

A sender that does DANE (Postfix, Exim, Exchange Online, ...) looks up TLSA at
`_25._tcp.<MX host>` when the MX host's address records are DNSSEC-secure
(RFC 7672 2.2).  A secure TLSA RRset makes TLS mandatory and authenticated:
no STARTTLS, a chain no usable record matches, or a TLSA lookup that fails
validation make it defer and finally bounce (Exchange Online 4.7.321-325 /
5.7.321-325, seed 002).  The chain is the one the shared SMTP session
recorded: no second connection.

DNSSEC status comes from the AD bit of the configured validating resolver,
else from deliverck's own validation.  When neither can say (the chain breaks
at the root or a TLD, or the resolver strips DNSSEC), DANE could not be
judged from here (`dane.cannot_validate`): the TLSA records are never called
ineffective or bogus on that evidence.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from deliverck.checkcontext import CheckContext
from deliverck.context import MailAddress
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net import dnssec as _dnssec
from deliverck.net.dns import DnsAnswer, Outcome
from deliverck.records import tlsa as dane
from deliverck.smtpfacts import evidence, undecided_reason

IN, NONE = Direction.INBOUND, Direction.NONE
MAIL, DNS = Owner.MAIL_ADMIN, Owner.DNS_ADMIN
_REFS = ("RFC 7672", "RFC 7671")

CHECK = CheckSpec(
    id="dane",
    title="DANE (TLSA records for SMTP)",
    cause="An MX host publishes DNSSEC-secure TLSA records that its STARTTLS certificate does not satisfy, or "
          "its TLSA lookup fails validation, so DANE senders defer and bounce.",
    order=55,
    findings=(
        FindingSpec("dane.matched", Severity.INFO,
                    "{ip} ({host}): TLSA {record} at {qname} matches the presented certificate ({how})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 7672 3.1",)),
        FindingSpec("dane.not_used", Severity.INFO,
                    "{host} publishes no TLSA record at {qname}: DANE senders use opportunistic TLS",
                    "Optional: publish `3 1 1` TLSA records for the server's key (and the next key) in a "
                    "DNSSEC-signed zone to make TLS to {host} mandatory and authenticated.",
                    Owner.NOBODY, NONE, refs=("RFC 7672 2.2",)),
        FindingSpec("dane.no_starttls", Severity.ERROR,
                    "{host} publishes TLSA at {qname} but {ip} does not offer STARTTLS: DANE senders defer "
                    "and bounce",
                    "Enable STARTTLS on {ip} with the certificate the TLSA records describe, or remove the "
                    "TLSA records (first, and wait out their TTL) if TLS cannot be offered.",
                    MAIL, IN, ndr=("exchange-online.dane-starttls-not-supported-deferred",
                                   "exchange-online.dane-starttls-not-supported",
                                   "postfix.dane-tls-not-offered", "generic.dane-tls-required"),
                    refs=("RFC 7672 2.2", "seed 002")),
        FindingSpec("dane.tls_failed", Severity.ERROR,
                    "{host} publishes TLSA at {qname} but the TLS handshake with {ip} failed ({error}): "
                    "DANE senders defer",
                    "Fix the server's TLS configuration (certificate and key files, protocol versions).",
                    MAIL, IN, ndr=("generic.dane-tls-failed",), refs=("RFC 7672 2.2",)),
        FindingSpec("dane.no_match", Severity.ERROR,
                    "no usable TLSA record at {qname} matches the certificate of {ip} ({host}): {detail}",
                    "Publish TLSA records for the key the server presents (`3 1 1` = SHA-256 of its "
                    "SubjectPublicKeyInfo), or install the certificate they describe; during a key change "
                    "publish the new key's record before deploying the key (RFC 7671 8.1).",
                    MAIL, IN, ndr=("exchange-online.dane-tlsa-invalid-deferred", "exchange-online.dane-tlsa-invalid",
                                   "generic.dane-tlsa-mismatch"),
                    refs=("RFC 7671 5", "RFC 7672 3.1", "seed 002")),
        FindingSpec("dane.ta_cert_expired", Severity.ERROR,
                    "{ip} ({host}) chains to its DANE-TA anchor ({record}), but {detail}",
                    "Renew the certificate: under DANE-TA(2) senders check the dates; under DANE-EE(3) "
                    "they would not.",
                    MAIL, IN, ndr=("exchange-online.dane-certificate-expired-deferred",
                                   "exchange-online.dane-certificate-expired", "generic.dane-tlsa-mismatch"),
                    refs=("RFC 7672 3.1.2", "seed 002")),
        FindingSpec("dane.ta_host_mismatch", Severity.ERROR,
                    "{ip} ({host}) chains to its DANE-TA anchor ({record}), but the certificate names {names}, "
                    "not {host}",
                    "Issue the certificate with subjectAltName {host} (the MX host name): under DANE-TA(2) "
                    "senders check it (RFC 7672 3.2.2).",
                    MAIL, IN, ndr=("exchange-online.dane-certificate-host-mismatch-deferred",
                                   "exchange-online.dane-certificate-host-mismatch", "generic.dane-tlsa-mismatch"),
                    refs=("RFC 7672 3.2.2", "RFC 7672 3.2.3", "seed 002")),
        FindingSpec("dane.tlsa_bogus", Severity.ERROR,
                    "the TLSA lookup of {qname} fails ({outcome}): with a validating resolver this is DNSSEC "
                    "bogus, and DANE senders defer mail to {host}",
                    "Repair the zone's DNSSEC (re-sign it, fix the DS at the parent, refresh expired "
                    "signatures) or the name server that fails the lookup.",
                    DNS, IN, ndr=("exchange-online.dane-dnssec-invalid-deferred",
                                  "exchange-online.dane-dnssec-invalid", "generic.dane-tlsa-lookup-failed"),
                    refs=("RFC 7672 2.2", "RFC 4035 5.5", "seed 002")),
        FindingSpec("dane.insecure", Severity.NOTICE,
                    "TLSA at {qname} has no effect: {reason}",
                    "Sign the zone with DNSSEC (and publish the DS at the parent) for the TLSA records to "
                    "count, or remove them.",
                    DNS, NONE, refs=("RFC 7672 2.2",)),
        FindingSpec("dane.unusable_usage", Severity.WARNING,
                    "TLSA at {qname} holds no record usable for SMTP ({reason}): DANE senders require TLS "
                    "but cannot authenticate {host}",
                    "Publish DANE-EE(3) or DANE-TA(2) records (e.g. `3 1 1` of the server's key); usages 0 "
                    "and 1 are not used for SMTP.",
                    DNS, IN, refs=("RFC 7672 3.1.3",)),
        FindingSpec("dane.no_rollover", Severity.WARNING,
                    "TLSA at {qname} is a single {record}: the next key has no record, so a key change "
                    "breaks delivery from DANE senders until DNS catches up",
                    "Publish a second record for the next key (or a `2 1 1` for the issuing CA) alongside "
                    "the current one, and only then deploy the new key (RFC 7671 8.1, '3 1 1 + 3 1 1').",
                    DNS, IN, refs=("RFC 7671 8.1", "RFC 7672 3.1")),
        FindingSpec("dane.lookup_failed", Severity.ERROR,
                    "the TLSA lookup of {qname} could not complete: {detail}",
                    "Check the resolver and retry.", Owner.NOBODY, NONE, inconclusive=True),
        FindingSpec("dane.not_checked", Severity.ERROR,
                    "DANE of {ip} ({host}) could not be checked: no SMTP session ({reason})",
                    "See the smtp check.", Owner.NOBODY, NONE, inconclusive=True),
        FindingSpec("dane.cannot_validate", Severity.ERROR,
                    "DANE of {host} cannot be judged from here: {what} carry no AD bit from the resolver and "
                    "deliverck cannot validate them itself ({reason})",
                    "Nothing found wrong with {host}: the break is above its zone (the root, a TLD) or in the "
                    "resolver. For a private DNS root give its trust anchor with --trust-anchor FILE; otherwise "
                    "use a validating resolver that passes DNSSEC records through (--resolver IP), then run "
                    "again.",
                    Owner.NETWORK, NONE, refs=("RFC 7672 2.2", "RFC 6840 5.7"), inconclusive=True),
    ),
)

_BOGUS = (Outcome.SERVFAIL,)


def tlsa_name(host: str, port: int = 25) -> str:
    return f"_{port}._tcp.{host.rstrip('.').lower()}"


async def tlsa_for(ctx: CheckContext, host: str) -> tuple[DnsAnswer, str, tuple[str, ...]]:
    """(TLSA answer, the host name it is for, reference names) for an MX host, RFC 7672 2.2.2.

    When the host's address lookup followed a CNAME, the TLSA of the CNAME's target is tried
    first, then that of the original name.  Both names are reference identifiers for DANE-TA.
    """
    addrs = await ctx.addresses(host)
    target = addrs.cname_target.rstrip(".").lower()
    names = [target, host] if target and target != host else [host]
    first: DnsAnswer | None = None
    for n in names:
        ans = await ctx.dns(tlsa_name(n), "TLSA")
        if first is None:
            first = ans
        if ans.outcome is not Outcome.NXDOMAIN and ans.outcome is not Outcome.NODATA:
            return ans, n, tuple(names)
    assert first is not None
    return first, names[0], tuple(names)


def records(ans: DnsAnswer) -> list[dane.Tlsa]:
    return [dane.Tlsa.from_rdata(r) for r in ans.records] if ans.ok else []


SECURE, INSECURE, UNKNOWN = "secure", "insecure", "unknown"


async def dnssec_status(ctx: CheckContext, ans: DnsAnswer) -> tuple[str, str]:
    """(secure | insecure | unknown, why unknown) for an answer.  The validating resolver's AD bit
    decides (deliverck asks with AD=1); without it, deliverck's own validation (net/dnssec.py, from
    the trust anchor the dnssec check uses) may still say secure.
    Own validation never turns an answer bogus here: a resolver that does not validate must not
    make DANE look broken.  When it breaks above the name's zone (or cannot be done at all), the
    state is unknown: that is the checker's environment, not the domain."""
    if ans.authenticated:
        return SECURE, ""
    if not ans.ok:
        return INSECURE, ""
    v = await _own(ctx, ans)
    if v is None:
        return INSECURE, ""
    if v.secure:
        return SECURE, ""
    if (v.broken_above or v.state == _dnssec.INDETERMINATE) and not await _resolver_validates(ctx, ans.qname):
        return UNKNOWN, v.reason
    return INSECURE, ""       # (a validating resolver's answer without AD: not signed)


async def _resolver_validates(ctx: CheckContext, name: str) -> bool:
    """Does the resolver vouch (AD) for the public suffix above `name`?  Then its verdict on the name
    stands where deliverck's own validation cannot be done (a private root, a stripped chain)."""
    try:
        view = await ctx.suffix_view(name)
    except Exception:  # noqa: BLE001 - a second opinion only
        return False
    return view.authenticated


async def _own(ctx: CheckContext, ans: DnsAnswer):
    try:
        return await ctx.dnssec_validation(ans.qname, ans.rdtype)
    except Exception:  # noqa: BLE001 - a second opinion only
        return None


async def addresses_status(ctx: CheckContext, addrs) -> tuple[str, str]:
    """The host's address RRsets that exist: all secure, any unknown, or insecure."""
    got = [a for a in (addrs.a, addrs.aaaa) if a.ok]
    if not got:
        return INSECURE, ""
    states = [await dnssec_status(ctx, a) for a in got]
    if all(st == SECURE for st, _ in states):
        return SECURE, ""
    unknown = [why for st, why in states if st == UNKNOWN]
    return (UNKNOWN, unknown[0]) if unknown else (INSECURE, "")


async def _bogus_is_environment(ctx: CheckContext, ans: DnsAnswer, addrs) -> str:
    """A SERVFAIL for TLSA blames the zone unless the chain breaks above it: "" or why it does.
    Evidence that the resolver validates down to the name's suffix (AD on the host's addresses)
    keeps the blame where the resolver put it."""
    if any(a.authenticated for a in (addrs.a, addrs.aaaa)):
        return ""
    v = await _own(ctx, ans)
    if v is not None and v.broken_above and not await _resolver_validates(ctx, ans.qname):
        return v.reason
    return ""


async def _tlsa_servfail(ctx: CheckContext, host: str, ans: DnsAnswer, args: dict) -> Finding:
    """A SERVFAIL for the TLSA RRset.  DANE senders ask for TLSA only when the host's addresses are
    secure (RFC 7672 2.2.2): for a host in an unsigned zone the failure delays nobody.  Where they
    do ask, it blames the zone only when deliverck's own validation does not show the data to be
    fine (a resolver's passing failure, under load, is not the zone's) and the chain does not
    break above the zone."""
    qname = args["qname"]
    addrs = await ctx.addresses(host)
    state, why = await addresses_status(ctx, addrs)
    if state == UNKNOWN:
        return CHECK.finding("cannot_validate", host, (ans.describe(), why) + addrs.evidence(),
                             what=f"the address records of {host}", reason=why, **{**args, "qname": host})
    if state != SECURE:
        return CHECK.finding("insecure", host, (ans.describe(),) + addrs.evidence(),
                             reason=f"the address records of {host} are not DNSSEC-secure, so senders never look "
                                    "up TLSA (RFC 7672 2.2.2); the TLSA lookup itself failed here "
                                    f"({ans.outcome.value.upper()}), which no sender meets", **args)
    above = await _bogus_is_environment(ctx, ans, addrs)
    if above:
        return CHECK.finding("cannot_validate", host, (ans.describe(), above), what=f"the TLSA records at {qname}",
                             reason=above, **args)
    own = await _own(ctx, ans)
    if own is not None and own.state in (_dnssec.SECURE, _dnssec.INSECURE):
        # deliverck fetched and validated the same RRset itself: the resolver's SERVFAIL was its own.
        return CHECK.finding("lookup_failed", host, (ans.describe(), f"own validation: {own.state}: {own.reason}"),
                             detail=f"the resolver answered {ans.outcome.value.upper()}, but the records validate "
                                    f"from the root ({own.state}): a failure of the resolver, not of the zone",
                             **args)
    return CHECK.finding("tlsa_bogus", host, (ans.describe(),), outcome=ans.outcome.value.upper(), **args)


async def run(ctx: CheckContext) -> list[Finding]:
    targets = await ctx.smtp_targets()
    if not targets:
        raise Skip("no receiving address to probe (see the mx check)")
    hosts = sorted({h for ma in targets for h in ma.hosts})
    if not hosts:
        raise Skip("the target is an address, not a name: DANE applies to MX host names")
    if why := ctx.zone_file_reason([ctx.target.name, *hosts], "DANE"):
        raise Skip(why)

    out: list[Finding] = []
    per_host: dict[str, tuple[DnsAnswer, str, tuple[str, ...], bool]] = {}
    # Every host's TLSA at once: no serial round trips per MX host.
    looked_up = await asyncio.gather(*(tlsa_for(ctx, h) for h in hosts))
    for host, (ans, name, refs) in zip(hosts, looked_up):
        qname = tlsa_name(name)
        args = dict(host=host, qname=qname)
        if ans.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
            out.append(CHECK.finding("not_used", host, (ans.describe(),), **args))
            continue
        if ans.outcome in _BOGUS:
            out.append(await _tlsa_servfail(ctx, host, ans, args))
            continue
        if not ans.ok:
            out.append(CHECK.finding("lookup_failed", host, (ans.describe(),), detail=ans.describe(), **args))
            continue
        addrs = await ctx.addresses(host)
        state, why = await dnssec_status(ctx, ans)
        if state == UNKNOWN:
            out.append(CHECK.finding("cannot_validate", host, (ans.describe(), why), what=f"the TLSA records at {qname}",
                                     reason=why, **args))
            continue
        if state != SECURE:
            out.append(CHECK.finding("insecure", host, (ans.describe(),), reason="the TLSA RRset is not "
                                     "DNSSEC-secure (no AD bit from the validating resolver)", **args))
            continue
        state, why = await addresses_status(ctx, addrs)
        if state == UNKNOWN:
            out.append(CHECK.finding("cannot_validate", host, (ans.describe(), why) + addrs.evidence(),
                                     what=f"the address records of {host}", reason=why,
                                     **{**args, "qname": host}))
            continue
        if state != SECURE:
            out.append(CHECK.finding("insecure", host, (ans.describe(),) + addrs.evidence(),
                                     reason=f"the address records of {host} are not DNSSEC-secure, so senders "
                                            "never look up TLSA (RFC 7672 2.2.2)", **args))
            continue
        recs = records(ans)
        if not any(r.usable for r in recs):
            reason = "; ".join(sorted({r.why_unusable for r in recs}))
            out.append(CHECK.finding("unusable_usage", host, (ans.describe(),), reason=reason, **args))
        elif not dane.rollover_ready(recs):
            lone = next(r for r in recs if r.usable)
            out.append(CHECK.finding("no_rollover", host, (ans.describe(),), record=f"{lone.usage} {lone.selector} "
                                     f"{lone.mtype}", **args))
        per_host[host] = (ans, qname, refs, any(r.usable for r in recs))

    if not per_host:
        return out
    greeted, undecided = await ctx.greeted_sessions()
    now = datetime.now(UTC)
    for ma, s in undecided:
        if ma.host in per_host:
            out.append(CHECK.finding("not_checked", ma.ip, evidence(s), reason=undecided_reason(s),
                                     ip=ma.ip, host=ma.host))
    for ma, s in greeted:
        if ma.host not in per_host:
            continue
        ans, qname, refs, usable = per_host[ma.host]
        # RFC 7672 3.2.2: the MX host name (and its CNAME expansion); senders such as Exchange Online
        # also accept the next-hop domain, so a leaf naming only the domain is not reported.
        names = refs + ((ctx.target.name,) if getattr(ctx.target, "name", "") else ())
        out += judge(ma, s, ans, qname, names, usable, now, evidence(s))
    return out


def judge(ma: MailAddress, s, ans: DnsAnswer, qname: str, refs: tuple[str, ...], usable: bool,
          now: datetime, ev: tuple[str, ...]) -> list[Finding]:
    """Findings for one address of a host with a secure TLSA RRset."""
    args = dict(ip=ma.ip, host=ma.host, qname=qname)
    ev = (ans.describe(),) + tuple(ev)
    if not s.starttls_offered:
        return [CHECK.finding("no_starttls", ma.ip, ev, **args)]
    if s.tls is None or s.tls.error:
        error = s.tls.error if s.tls else "no TLS session"
        return [CHECK.finding("tls_failed", ma.ip, ev, error=error[:200], **args)]
    if not usable:
        return []         # reported once per host (unusable_usage)
    v = dane.verify(records(ans), s.tls.chain, refs, now=now)
    rec = v.record.short() if v.record else ""
    if v.status == dane.MATCHED:
        return [CHECK.finding("matched", ma.ip, ev, record=rec, how=v.detail, **args)]
    if v.status == dane.TA_EXPIRED:
        return [CHECK.finding("ta_cert_expired", ma.ip, ev, record=rec, detail=v.detail, **args)]
    if v.status == dane.TA_HOST_MISMATCH:
        return [CHECK.finding("ta_host_mismatch", ma.ip, ev, record=rec,
                              names=", ".join(v.names) or "no names", **args)]
    return [CHECK.finding("no_match", ma.ip, ev, detail=v.detail, **args)]
